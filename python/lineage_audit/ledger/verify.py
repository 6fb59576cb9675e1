"""Independent pure-Python verifier of evidence bundles and tlog-proofs (docs §5, §6).

Implements exactly the ordered algorithm of docs/formats.md §6; each step runs over every
entry (in bundle order) before the next step starts, and the first failure is the verdict:

0 ``malformed`` · 1 ``checkpoint_signature`` · 2 ``signature_missing`` ·
3 ``envelope_signature`` · 4 ``leaf_mismatch`` · 5 ``inclusion`` · 6 ``chain`` ·
7 ``consistency``.

Step 0 also rejects a leaf input without the ``lineage-audit/leaf/v1`` prefix (``malformed``).
Entries sharing a seq are allowed (each is checked; inclusion forces them to be equal).
Uses hashlib and cryptography only, and none of the writer's modules (see ``_vcore``).
:func:`verify_ledger` (whole-database audit) lives in :mod:`.verify_db` and is re-exported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _vcore as v
from .errors import FormatError
from .lineage_events import check_events, parse_events
from .verify_db import LedgerReport, verify_ledger

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_ENTRIES",
    "MAX_PROOF_HASHES",
    "REASONS",
    "LedgerReport",
    "Verdict",
    "verify_bundle",
    "verify_bundle_file",
    "verify_ledger",
    "verify_tlog_proof",
]

BUNDLE_FORMAT = "lineage-audit/evidence-bundle/v1"
BUNDLE_KINDS = ("evidence", "lineage-path")
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_BUNDLE_ENTRIES = 1_000_000
MAX_PROOF_HASHES = 64
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
REASONS = (
    "malformed",
    "checkpoint_signature",
    "signature_missing",
    "envelope_signature",
    "leaf_mismatch",
    "inclusion",
    "chain",
    "consistency",
    "lineage_event",
)


@dataclass(frozen=True)
class Verdict:
    """``{valid, reason, seq, message}`` plus context.

    ``keys_pinned`` is False when the bundle's own keys were used (no trust anchor given).
    """

    valid: bool
    reason: str | None
    seq: int | None
    message: str
    keys_pinned: bool
    tree_size: int | None = None
    origin: str | None = None
    seqs: tuple[int, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 valid, 1 invalid, 2 unusable input (``malformed``)."""
        if self.valid:
            return 0
        return 2 if self.reason == "malformed" else 1

    def line(self) -> str:
        """One line: ``VALID ...`` or ``INVALID <reason> seq=<n>: <message>``."""
        return v.verdict_line(self.valid, self.reason, self.seq, self.message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seqs"] = list(self.seqs)
        return data


class _Fail(Exception):
    def __init__(self, reason: str, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.seq = seq
        self.message = message


# --- step 0: structure ----------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    seq: int
    leaf_input: bytes
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class _Bundle:
    checkpoint: str
    keys: v.TrustedKeys | None
    entries: tuple[_Entry, ...]
    old_checkpoint: str | None
    consistency_proof: tuple[bytes, ...]


def _obj(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FormatError(field, "expected a JSON object", type(value).__name__)
    return value


def _list(value: object, field: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(field, "expected a JSON array", type(value).__name__)
    if len(value) > limit:
        raise FormatError(field, f"more than {limit} items", len(value))
    return value


def _str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise FormatError(field, "expected a string", value)
    return value


def _hashes(value: object, field: str) -> tuple[bytes, ...]:
    items = _list(value, field, MAX_PROOF_HASHES)
    return tuple(v.b64(item, f"{field}[{i}]", 32) for i, item in enumerate(items))


def _parse_entry(value: object, field: str) -> _Entry:
    obj = _obj(value, field)
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**64:
        raise FormatError(f"{field}.seq", "expected an unsigned 64-bit integer", seq)
    leaf_input = v.b64(obj.get("leaf_input"), f"{field}.leaf_input", v.LEAF_SIZE)
    if v.parse_leaf(leaf_input) is None:
        raise FormatError(f"{field}.leaf_input", "lacks the 'lineage-audit/leaf/v1\\n' prefix")
    envelope = _obj(obj.get("envelope"), f"{field}.envelope")
    payload_type = _str(envelope.get("payloadType"), f"{field}.envelope.payloadType")
    payload = v.b64(envelope.get("payload"), f"{field}.envelope.payload")
    sigs = []
    raw_sigs = _list(envelope.get("signatures"), f"{field}.envelope.signatures", 64)
    for i, item in enumerate(raw_sigs):
        where = f"{field}.envelope.signatures[{i}]"
        sig = _obj(item, where)
        keyid = _str(sig.get("keyid"), f"{where}.keyid")
        sigs.append((keyid, v.b64(sig.get("sig"), f"{where}.sig")))
    proof = _hashes(obj.get("inclusion_proof"), f"{field}.inclusion_proof")
    return _Entry(seq, leaf_input, payload_type, payload, tuple(sigs), proof)


def _parse_bundle(obj: object, *, need_keys: bool) -> _Bundle:
    top = _obj(obj, "bundle")
    if top.get("format") != BUNDLE_FORMAT:
        raise FormatError("format", f"expected {BUNDLE_FORMAT!r}", top.get("format"))
    if top.get("kind") not in BUNDLE_KINDS:
        raise FormatError("kind", f"expected one of {', '.join(BUNDLE_KINDS)}", top.get("kind"))
    checkpoint = _str(top.get("checkpoint"), "checkpoint")
    keys = v.parse_keys(top.get("keys"), "keys") if need_keys else None
    raw_entries = _list(top.get("entries"), "entries", MAX_BUNDLE_ENTRIES)
    entries = tuple(_parse_entry(item, f"entries[{i}]") for i, item in enumerate(raw_entries))
    old_checkpoint, proof = None, ()
    consistency = top.get("consistency")
    if consistency is not None:
        cons = _obj(consistency, "consistency")
        old_checkpoint = _str(cons.get("old_checkpoint"), "consistency.old_checkpoint")
        proof = _hashes(cons.get("proof"), "consistency.proof")
    return _Bundle(checkpoint, keys, entries, old_checkpoint, proof)


# --- steps 1-7 -----------------------------------------------------------------------------


def _step_checkpoint(note: str, keys: v.TrustedKeys) -> v.Note:
    try:
        return v.verify_note(note, keys)
    except v.NoteError as exc:
        raise _Fail("checkpoint_signature", None, f"checkpoint: {exc}") from None


def _pick(entry: _Entry, keyid: str) -> bytes | None:
    for item_keyid, sig in entry.signatures:
        if item_keyid == keyid:
            return sig
    return None


def _run(bundle: _Bundle, keys: v.TrustedKeys) -> v.Note:
    note = _step_checkpoint(bundle.checkpoint, keys)  # 1
    for e in bundle.entries:  # 2
        for label, keyid in (
            ("ECDSA P-256", keys.record_ecdsa_id),
            ("ML-DSA-65", keys.record_mldsa_id),
        ):
            if _pick(e, keyid) is None:
                raise _Fail("signature_missing", e.seq, f"no {label} signature with keyid {keyid}")
    paes = []  # per entry, not per seq: two entries may claim one seq (step 5 catches that)
    for e in bundle.entries:  # 3
        message = v.pae(e.payload_type, e.payload)
        paes.append(message)
        ecdsa_sig = _pick(e, keys.record_ecdsa_id) or b""
        mldsa_sig = _pick(e, keys.record_mldsa_id) or b""
        if not v.ecdsa_ok(keys.record_ecdsa, ecdsa_sig, message):
            raise _Fail("envelope_signature", e.seq, "ECDSA P-256 signature does not verify")
        if not v.mldsa_ok(keys.record_mldsa, mldsa_sig, message):
            detail = (
                f"is {len(mldsa_sig)} bytes, not {v.MLDSA_SIG_SIZE}"
                if len(mldsa_sig) != v.MLDSA_SIG_SIZE
                else "does not verify"
            )
            raise _Fail("envelope_signature", e.seq, f"ML-DSA-65 signature {detail}")
    leaves: dict[int, v.Leaf] = {}
    sha = hashlib.sha256
    for e, pae in zip(bundle.entries, paes, strict=True):  # 4
        leaf = v.parse_leaf(e.leaf_input)
        if leaf is None:
            raise _Fail("leaf_mismatch", e.seq, "leaf input lacks the lineage-audit/leaf/v1 prefix")
        if leaf.seq != e.seq:
            raise _Fail("leaf_mismatch", e.seq, f"leaf input seq field is {leaf.seq}")
        if leaf.pae_hash != sha(pae).digest():
            raise _Fail("leaf_mismatch", e.seq, "leaf input does not commit to this payload (PAE)")
        if leaf.ecdsa_hash != sha(_pick(e, keys.record_ecdsa_id) or b"").digest():
            raise _Fail("leaf_mismatch", e.seq, "leaf input does not commit to the ECDSA signature")
        if leaf.mldsa_hash != sha(_pick(e, keys.record_mldsa_id) or b"").digest():
            raise _Fail(
                "leaf_mismatch", e.seq, "leaf input does not commit to the ML-DSA signature"
            )
        leaves[e.seq] = leaf
    hashes = {}
    for e in bundle.entries:  # 5
        if e.seq >= note.size:
            raise _Fail("inclusion", e.seq, f"seq {e.seq} is not below the tree size {note.size}")
        lh = v.leaf_hash(e.leaf_input)
        hashes[e.seq] = lh
        if not v.verify_inclusion(e.seq, note.size, lh, e.proof, note.root):
            raise _Fail(
                "inclusion",
                e.seq,
                f"inclusion proof does not verify against the root of size {note.size}",
            )
    for e in bundle.entries:  # 6
        prev = leaves[e.seq].prev
        if e.seq == 0 and prev != bytes(32):
            raise _Fail("chain", e.seq, "entry 0 must have an all-zero prev_leaf_hash")
        if e.seq - 1 in hashes and prev != hashes[e.seq - 1]:
            raise _Fail("chain", e.seq, f"prev_leaf_hash is not the leaf hash of entry {e.seq - 1}")
    if bundle.old_checkpoint is not None:  # 7
        try:
            old = v.verify_note(bundle.old_checkpoint, keys)
        except v.NoteError as exc:
            raise _Fail("consistency", None, f"old checkpoint: {exc}") from None
        if not v.verify_consistency(
            old.size, note.size, bundle.consistency_proof, old.root, note.root
        ):
            raise _Fail(
                "consistency",
                None,
                f"consistency proof from size {old.size} to {note.size} does not verify",
            )
    return note


def _pinned(public_keys: object) -> v.TrustedKeys:
    if isinstance(public_keys, str | os.PathLike):
        path = Path(public_keys)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"pinned keys {path}", f"unreadable ({exc})") from None
        return v.parse_keys(obj, "pinned keys", require_format=True)
    if hasattr(public_keys, "to_json"):
        public_keys = public_keys.to_json()
    return v.parse_keys(public_keys, "pinned keys")


def verify_bundle(bundle: bytes | str | Mapping[str, Any], public_keys: object = None) -> Verdict:
    """Verify an evidence bundle (JSON text/bytes or parsed object).

    ``public_keys`` (a public-keys object, file path, or ``PublicKeys``) pins the trusted
    keys; without it the bundle's own keys are used and ``keys_pinned`` is False.
    """
    pinned = public_keys is not None
    try:
        if isinstance(bundle, bytes | str):
            if len(bundle) > MAX_BUNDLE_BYTES:
                raise FormatError("bundle", f"larger than {MAX_BUNDLE_BYTES} bytes", len(bundle))
            try:
                obj = json.loads(bundle)
            except (ValueError, UnicodeDecodeError) as exc:
                raise FormatError("bundle", f"not JSON ({exc})") from None
        else:
            obj = bundle
        parsed = _parse_bundle(obj, need_keys=not pinned)
        events = parse_events(obj)  # a lineage path proof's events: shape at step 0
        keys = _pinned(public_keys) if pinned or parsed.keys is None else parsed.keys
    except (FormatError, RecursionError, ValueError) as exc:
        return Verdict(False, "malformed", None, str(exc), pinned)
    seqs = tuple(e.seq for e in parsed.entries)
    try:
        note = _run(parsed, keys)
    except _Fail as fail:
        return Verdict(False, fail.reason, fail.seq, fail.message, pinned, seqs=seqs)
    failed = check_events(events, obj.get("entries") or [])  # 8: a path proof's events
    if failed is not None:
        reason, seq, message = failed
        return Verdict(False, reason, seq, message, pinned, seqs=seqs)
    since = ""
    if parsed.old_checkpoint is not None:
        since = ", consistent with the earlier checkpoint"
    if obj.get("events"):
        since += f", {len(obj['events'])} lineage events proved in their attested batches"
    trust = "keys pinned" if pinned else "keys NOT pinned: taken from the bundle itself"
    message = (
        f"{len(seqs)} entr{'y' if len(seqs) == 1 else 'ies'} in {note.origin} at tree size "
        f"{note.size}{since} ({trust})"
    )
    return Verdict(True, None, None, message, pinned, note.size, note.origin, seqs)


def verify_bundle_file(path: str | os.PathLike[str], public_keys: object = None) -> Verdict:
    """Read and verify a bundle file (or a ``.tlog-proof``, which needs ``public_keys``)."""
    p = Path(path)
    pinned = public_keys is not None
    try:
        size = p.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            return Verdict(
                False, "malformed", None, f"{p}: larger than {MAX_BUNDLE_BYTES} bytes", pinned
            )
        data = p.read_bytes()
    except OSError as exc:
        return Verdict(False, "malformed", None, f"{p}: cannot read ({exc.strerror})", pinned)
    if data.startswith(TLOG_PROOF_HEADER.encode()):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Verdict(False, "malformed", None, f"{p}: not UTF-8", pinned)
        return verify_tlog_proof(text, public_keys)
    return verify_bundle(data, public_keys)


def _parse_tlog_proof(text: str) -> tuple[bytes, int, tuple[bytes, ...], str]:
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise FormatError("tlog-proof", "no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise FormatError("tlog-proof.header", f"expected {TLOG_PROOF_HEADER!r}", lines[0])
    if len(lines) < 3 or not lines[1].startswith("extra "):
        raise FormatError("tlog-proof.extra", "missing 'extra <b64 leaf input>' line")
    leaf = v.b64(lines[1][6:], "tlog-proof.extra", v.LEAF_SIZE)
    index_text = lines[2][6:] if lines[2].startswith("index ") else ""
    if not (index_text.isascii() and index_text.isdigit()) or (
        len(index_text) > 1 and index_text[0] == "0"
    ):
        raise FormatError("tlog-proof.index", "expected 'index <decimal>'", lines[2])
    path_lines = lines[3:]
    if len(path_lines) > MAX_PROOF_HASHES:
        raise FormatError(
            "tlog-proof.path", f"more than {MAX_PROOF_HASHES} hashes", len(path_lines)
        )
    path = tuple(v.b64(line, f"tlog-proof.path[{i}]", 32) for i, line in enumerate(path_lines))
    return leaf, int(index_text), path, checkpoint


def verify_tlog_proof(text: str, public_keys: object) -> Verdict:
    """Verify a ``c2sp.org/tlog-proof@v1`` whose ``extra`` is a leaf input (docs §5).

    Checks the checkpoint, that the leaf input's seq equals ``index``, and inclusion. The
    proof carries no keys, so ``public_keys`` is required.
    """
    if public_keys is None:
        return Verdict(False, "malformed", None, "tlog-proof: public keys are required", False)
    try:
        keys = _pinned(public_keys)
        leaf_input, index, path, checkpoint = _parse_tlog_proof(text)
        if v.parse_leaf(leaf_input) is None:  # step 0, as in every other verifier
            raise FormatError("tlog-proof leaf input", "not 158 bytes with the leaf/v1 prefix")
    except FormatError as exc:
        return Verdict(False, "malformed", None, str(exc), True)
    try:
        note = _step_checkpoint(checkpoint, keys)
        leaf = v.parse_leaf(leaf_input)
        if leaf is None or leaf.seq != index:
            found = None if leaf is None else leaf.seq
            raise _Fail("leaf_mismatch", index, f"leaf input seq {found} does not match index")
        if not v.verify_inclusion(index, note.size, v.leaf_hash(leaf_input), path, note.root):
            raise _Fail("inclusion", index, f"inclusion proof fails at tree size {note.size}")
    except _Fail as fail:
        return Verdict(False, fail.reason, fail.seq, fail.message, True)
    message = f"seq {index} included in {note.origin} at tree size {note.size}"
    return Verdict(True, None, None, message, True, note.size, note.origin, (index,))
