"""The audit ledger (Open Audit Record, DESIGN §4; formats in docs/formats.md).

Records are in-toto statements in DSSE envelopes signed with ECDSA P-256 and ML-DSA-65,
bound by 158-byte leaf inputs into a hash chain and an RFC 9162 Merkle tree, attested by
signed checkpoints, and verifiable offline (:mod:`.verify`). One module per concern:
``errors``, ``codec``, ``keys``, ``records``, ``leaf``, ``merkle``, ``store``,
``groupcommit``, ``signer``, ``checkpoint``, ``proofs``, ``bundle``, ``tiles``, ``ledger``,
``cli``; the independent verifier is ``verify`` (bundles, tlog-proofs) and ``verify_db``
(whole database) on top of ``_vcore``, which shares no code with the writer.

The writer is pure Python (hashlib + cryptography); it never imports the Rust extension.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint, verify_checkpoint
from .errors import (
    AppendError,
    CheckpointError,
    ConsistencyError,
    FormatError,
    KeyFileError,
    KeyMismatchError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
)
from .keys import (
    KeyRing,
    PublicKeys,
    generate_keyring,
    generate_keys,
    load_keyring,
    load_public_keys,
)
from .ledger import Action, Entry, Ledger, RecordSpec
from .records import Subject
from .signer import ProcessSigner, SignerError
from .store import LedgerStore, SQLiteStore, StoreStats
from .verify import (
    LedgerReport,
    Verdict,
    verify_bundle,
    verify_bundle_file,
    verify_ledger,
    verify_tlog_proof,
)

__all__ = [
    "Action",
    "AppendError",
    "Checkpoint",
    "CheckpointError",
    "ConsistencyError",
    "Entry",
    "FormatError",
    "KeyFileError",
    "KeyMismatchError",
    "KeyRing",
    "Ledger",
    "LedgerError",
    "LedgerReport",
    "LedgerStore",
    "ProcessSigner",
    "ProofError",
    "PublicKeys",
    "RecordSpec",
    "SQLiteStore",
    "SignatureError",
    "SignerError",
    "StoreError",
    "StoreStats",
    "Subject",
    "Verdict",
    "generate_keyring",
    "generate_keys",
    "load_keyring",
    "load_public_keys",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_bundle",
    "verify_bundle_file",
    "verify_checkpoint",
    "verify_ledger",
    "verify_tlog_proof",
]
