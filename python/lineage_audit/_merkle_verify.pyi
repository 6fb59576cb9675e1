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
