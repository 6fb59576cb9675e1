# --- verify ---
# Signature/format half of lineage_audit._merkle_verify (rust/merkle_verify/src/python/verify.rs).
# Every function releases the GIL. Unusable arguments raise ValueError("keys: ...");
# failed verifications raise ValueError("<reason code>: <message>") unless noted.
from typing import TypedDict

class Verdict(TypedDict):
    valid: bool
    reason: str | None  # malformed, checkpoint_signature, signature_missing, envelope_signature,
    # leaf_mismatch, inclusion, chain, consistency
    seq: int | None
    message: str
    keys_pinned: bool
    entries_checked: int
    tree_size: int | None

def record_key_ids(ecdsa_spki: bytes, mldsa_pk: bytes) -> tuple[str, str]:
    """("ecdsa-p256:<16 hex>", "ml-dsa-65:<16 hex>"); both keys are validated."""

def checkpoint_key_ids(name: str, ecdsa_spki: bytes, mldsa_pk: bytes) -> tuple[int, int]:
    """Note key ids (ECDSA, ML-DSA-65) as big-endian u32."""

def verify_ecdsa_p256(spki: bytes, msg: bytes, der_sig: bytes) -> bool:
    """ECDSA P-256/SHA-256 over msg, DER signature, high-S accepted."""

def verify_ml_dsa_65(pk: bytes, msg: bytes, sig: bytes) -> bool:
    """Pure ML-DSA-65 with the empty context; a signature not 3309 bytes is False."""

def verify_envelope(envelope_json: bytes, ecdsa_spki: bytes, mldsa_pk: bytes) -> None:
    """AND policy; raises ValueError("malformed|signature_missing|envelope_signature: ...")."""

def verify_envelopes(
    envelopes: list[bytes], ecdsa_spki: bytes, mldsa_pk: bytes
) -> list[str | None]:
    """Parallel verify_envelope: None when valid, else "<reason>: <message>", in order."""

def verify_checkpoint(
    note: str, name: str, ecdsa_spki: bytes, mldsa_pk: bytes
) -> tuple[str, int, bytes]:
    """(origin, tree size, root); raises ValueError("checkpoint_signature: ...")."""

def verify_tlog_proof(text: str, keys_json: bytes) -> Verdict:
    """c2sp.org/tlog-proof@v1 against a public-keys JSON (keys always pinned)."""

def verify_bundle(bundle: bytes, keys_json: bytes | None = None) -> Verdict:
    """Evidence bundle; without keys_json the bundle's own keys are used (keys_pinned False)."""

# --- merkle (tree, leaf, chain) ---
# Tree/leaf/chain half of lineage_audit._merkle_verify (rust/merkle_verify/src/python/merkle.rs).
# Hashes are 32-byte `bytes`; any other length raises ValueError naming the argument.
# verify_* return False for proofs that do not verify. Large inputs run with the GIL released.

def leaf_hash(leaf_input: bytes) -> bytes:
    """RFC 9162 leaf hash SHA-256(0x00 || leaf_input) of any byte string."""

def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash SHA-256(0x01 || left || right)."""

def empty_root() -> bytes:
    """Root of the empty tree, SHA-256("")."""

def root(leaf_hashes: list[bytes]) -> bytes:
    """Merkle tree hash over leaf hashes (empty list: empty_root())."""

def inclusion_proof(leaf_hashes: list[bytes], index: int) -> list[bytes]:
    """Audit path for `index`, bottom-up; ValueError if index >= len(leaf_hashes)."""

def consistency_proof(leaf_hashes: list[bytes], old_size: int) -> list[bytes]:
    """RFC 9162 consistency proof; ValueError unless 0 < old_size <= len(leaf_hashes)."""

def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: list[bytes] | None, root: bytes
) -> bool:
    """True when leaf_hash is at `index` in the tree (tree_size, root)."""

def verify_consistency(
    old_size: int, new_size: int, proof: list[bytes] | None, old_root: bytes, new_root: bytes
) -> bool:
    """True when (new_size, new_root) extends (old_size, old_root); old_size 0 is False.

    With equal sizes the roots are compared as bytes, so their length is not checked."""

def verify_inclusion_batch(
    leaf_hashes: list[bytes],
    indices: list[int],
    tree_size: int,
    proofs: list[list[bytes]],
    root: bytes,
) -> list[bool]:
    """One verdict per item, verified in parallel; ValueError if the lists differ in length."""

def verify_inclusion_batch_packed(
    leaf_hashes: bytes,
    indices: list[int],
    tree_size: int,
    packed_proofs: bytes,
    root: bytes,
) -> list[bool]:
    """verify_inclusion_batch with packed inputs: leaf_hashes is n x 32 bytes, packed_proofs
    the proofs concatenated in order, each of inclusion-proof-length(index, tree_size) hashes
    (none for an index >= tree_size, whose verdict is False).

    ValueError if a buffer is not a multiple of 32 bytes, len(indices) differs from the number
    of leaf hashes, or packed_proofs is not exactly the total length of those proofs."""

def inclusion_proofs_packed(leaf_hashes: bytes, indices: list[int]) -> bytes:
    """Inclusion proofs of `indices` in the tree over packed leaf hashes (n x 32 bytes),
    concatenated in order: the layout verify_inclusion_batch_packed reads. The tree is built
    once. ValueError if an index is >= n or leaf_hashes is not a multiple of 32 bytes."""

def root_packed(leaf_hashes: bytes) -> bytes:
    """root() over packed leaf hashes (n x 32 bytes); ValueError if not a multiple of 32."""

def verify_chain(
    leaf_inputs: list[bytes], first_seq: int = 0, prev_leaf_hash: bytes | None = None
) -> tuple[bool, int | None, str | None]:
    """Hash-chain check (parallel): (True, None, None) or (False, first bad seq, reason).

    leaf_inputs[0] has seq first_seq and links to prev_leaf_hash (zeros when None)."""

def verify_chain_packed(
    leaf_inputs: bytes, first_seq: int = 0, prev_leaf_hash: bytes | None = None
) -> tuple[bool, int | None, str | None]:
    """verify_chain over leaf inputs packed as n x 158 bytes (read in place).

    ValueError if len(leaf_inputs) is not a multiple of 158."""

def build_leaf_input(
    seq: int,
    prev_leaf_hash: bytes,
    payload_type: str,
    payload: bytes,
    ecdsa_sig: bytes,
    mldsa_sig: bytes,
) -> bytes:
    """The 158-byte leaf input of docs/formats.md §3."""

def parse_leaf_input(leaf_input: bytes) -> dict[str, int | bytes]:
    """Keys: seq, prev_leaf_hash, pae_hash, ecdsa_sig_hash, mldsa_sig_hash, leaf_hash.

    ValueError if the length is not 158 or the prefix is wrong."""

def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE PAE: b"DSSEv1 <len(type)> <type> <len(payload)> " + payload."""
