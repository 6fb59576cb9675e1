"""Primitives of the independent verifier (hashlib + cryptography only).

Deliberately shares no code with the writer modules (records, leaf, merkle, checkpoint,
keys): a bug in the writer must not be mirrored here. Everything follows docs/formats.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from .errors import FormatError

__all__ = [
    "EMPTY_ROOT",
    "LEAF_PREFIX",
    "LEAF_SIZE",
    "MLDSA_SIG_SIZE",
    "Leaf",
    "Note",
    "NoteError",
    "RootAccumulator",
    "TrustedKeys",
    "b64",
    "ecdsa_ok",
    "leaf_hash",
    "mldsa_ok",
    "node_hash",
    "pae",
    "parse_keys",
    "parse_leaf",
    "parse_note",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_PREFIX = b"lineage-audit/leaf/v1\n"
LEAF_SIZE = 158
MLDSA_PK_SIZE = 1952
MLDSA_SIG_SIZE = 3309
KEYS_FORMAT = "lineage-audit/public-keys/v1"
NOTE_MAX_BYTES = 64 * 1024
NOTE_MAX_SIGNATURES = 16
MLDSA_NOTE_ID = b"lineage-audit/ml-dsa-65/v1\n"


# --- encodings --------------------------------------------------------------------------


def verdict_line(valid: bool, reason: str | None, seq: int | None, message: str) -> str:
    """One line every verifier prints: ``VALID ...`` or ``INVALID <reason> seq=<n>: ...``."""
    if valid:
        return f"VALID {message}"
    return f"INVALID {reason} seq={'-' if seq is None else seq}: {message}"


def b64(value: object, field: str, length: int | None = None) -> bytes:
    """Strict RFC 4648 §4 base64 (padded, canonical), optionally of an exact length."""
    if not isinstance(value, str):
        raise FormatError(field, "expected a base64 string", value)
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(field, "not valid base64", value) from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise FormatError(field, "not canonical padded base64", value)
    if length is not None and len(raw) != length:
        raise FormatError(field, f"expected {length} bytes, got {len(raw)}", value)
    return raw


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"".join(
        [b"DSSEv1 ", str(len(t)).encode(), b" ", t, b" ", str(len(payload)).encode(), b" ", payload]
    )


# --- Merkle (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2 inclusion verification (the leaf hash must be 32 bytes)."""
    if index < 0 or index >= size or len(leaf) != 32:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 §2.1.4.2 consistency verification, with transparency-dev's edge cases.

    Equal sizes need an empty proof and equal roots; size 0 is never provable.
    """
    if size1 <= 0 or size2 < size1:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


class RootAccumulator:
    """Streaming Merkle root (a compact range of perfect subtrees)."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the ``(level, idx, hash)`` nodes it completes."""
        index = self.size
        self.size += 1
        done = [(0, index, leaf)]
        level, acc, pos = 0, leaf, index
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            acc = node_hash(left, acc)
            level += 1
            pos >>= 1
            done.append((level, pos, acc))
        self._stack.append((level, acc))
        return done

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1][1]
        for _, item in reversed(self._stack[:-1]):
            acc = node_hash(item, acc)
        return acc


# --- leaf input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    seq: int
    prev: bytes
    pae_hash: bytes
    ecdsa_hash: bytes
    mldsa_hash: bytes


def parse_leaf(data: bytes) -> Leaf | None:
    """The fields of a 158-byte leaf input, or None if length or prefix is wrong."""
    if len(data) != LEAF_SIZE or not data.startswith(LEAF_PREFIX):
        return None
    (seq,) = struct.unpack(">Q", data[22:30])
    return Leaf(seq, data[30:62], data[62:94], data[94:126], data[126:158])


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKeys:
    record_ecdsa: ec.EllipticCurvePublicKey
    record_mldsa: mldsa.MLDSA65PublicKey
    record_ecdsa_id: str
    record_mldsa_id: str
    checkpoint_name: str
    checkpoint_ecdsa: ec.EllipticCurvePublicKey
    checkpoint_mldsa: mldsa.MLDSA65PublicKey
    checkpoint_ecdsa_note_id: bytes
    checkpoint_mldsa_note_id: bytes


def _p256(value: object, field: str) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    der = b64(value, field)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise FormatError(field, "not a DER SubjectPublicKeyInfo", value) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise FormatError(field, "not an ECDSA P-256 public key", value)
    return key, der


def _mldsa65(value: object, field: str) -> tuple[mldsa.MLDSA65PublicKey, bytes]:
    raw = b64(value, field, MLDSA_PK_SIZE)
    try:
        return mldsa.MLDSA65PublicKey.from_public_bytes(raw), raw
    except ValueError:
        raise FormatError(field, "not an ML-DSA-65 public key", value) from None


def _valid_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "+" not in name
        and not any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    )


def parse_keys(obj: object, field: str = "keys", *, require_format: bool = False) -> TrustedKeys:
    """Parse a public-keys object (docs §1) into trusted keys with their ids."""
    if not isinstance(obj, Mapping):
        raise FormatError(field, "expected a JSON object", type(obj).__name__)
    if require_format and obj.get("format") != KEYS_FORMAT:
        raise FormatError(f"{field}.format", f"expected {KEYS_FORMAT!r}", obj.get("format"))
    record, checkpoint = obj.get("record"), obj.get("checkpoint")
    if not isinstance(record, Mapping):
        raise FormatError(f"{field}.record", "expected a JSON object", record)
    if not isinstance(checkpoint, Mapping):
        raise FormatError(f"{field}.checkpoint", "expected a JSON object", checkpoint)
    name = checkpoint.get("name")
    if not isinstance(name, str) or not _valid_name(name):
        raise FormatError(f"{field}.checkpoint.name", "not a valid note key name", name)
    r_ec, r_ec_der = _p256(record.get("ecdsa-p256"), f"{field}.record.ecdsa-p256")
    r_ml, r_ml_raw = _mldsa65(record.get("ml-dsa-65"), f"{field}.record.ml-dsa-65")
    c_ec, c_ec_der = _p256(checkpoint.get("ecdsa-p256"), f"{field}.checkpoint.ecdsa-p256")
    c_ml, c_ml_raw = _mldsa65(checkpoint.get("ml-dsa-65"), f"{field}.checkpoint.ml-dsa-65")
    sha = hashlib.sha256
    return TrustedKeys(
        record_ecdsa=r_ec,
        record_mldsa=r_ml,
        record_ecdsa_id="ecdsa-p256:" + sha(r_ec_der).hexdigest()[:16],
        record_mldsa_id="ml-dsa-65:" + sha(r_ml_raw).hexdigest()[:16],
        checkpoint_name=name,
        checkpoint_ecdsa=c_ec,
        checkpoint_mldsa=c_ml,
        checkpoint_ecdsa_note_id=sha(c_ec_der).digest()[:4],
        checkpoint_mldsa_note_id=sha(
            name.encode("utf-8") + b"\n\xff" + MLDSA_NOTE_ID + c_ml_raw
        ).digest()[:4],
    )


# --- signatures ---------------------------------------------------------------------------


def ecdsa_ok(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    """ECDSA P-256/SHA-256 over ``message``, DER signature; high-S accepted."""
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def mldsa_ok(key: mldsa.MLDSA65PublicKey, signature: bytes, message: bytes) -> bool:
    """Pure ML-DSA-65, empty context; a signature not exactly 3309 bytes is rejected."""
    if len(signature) != MLDSA_SIG_SIZE:
        return False
    try:
        key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- checkpoints (signed notes) ------------------------------------------------------------


class NoteError(Exception):
    """A checkpoint that does not parse or whose signatures fail."""


@dataclass(frozen=True)
class Note:
    origin: str
    size: int
    root: bytes
    text: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]


def parse_note(note: str) -> Note:
    """Parse a checkpoint note (origin, size, root, optional extension lines; signatures)."""
    raw = note.encode("utf-8", "surrogatepass")
    if len(raw) > NOTE_MAX_BYTES:
        raise NoteError(f"note is {len(raw)} bytes, above the {NOTE_MAX_BYTES}-byte cap")
    if any(ch != "\n" and ord(ch) < 0x20 for ch in note):  # signed-note: below U+0020
        raise NoteError("note contains a control character")
    if not note.endswith("\n"):
        raise NoteError("note does not end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("note has no blank line before its signatures")
    body, sigs = note[: cut + 1], note[cut + 2 :]
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError(f"note text has {len(lines)} lines, expected origin, size, root")
    # tlog-checkpoint allows extension lines after the root; ours has none, others may.
    origin, size_text, root_text, *extensions = lines
    if any(not line for line in extensions):
        raise NoteError("empty extension line in the note text")
    if not origin:
        raise NoteError("empty origin line")
    if not (size_text.isascii() and size_text.isdigit()) or (
        len(size_text) > 1 and size_text.startswith("0")
    ):
        raise NoteError(f"tree size {size_text!r} is not a decimal without leading zeros")
    size = int(size_text)
    if size >= 2**64:
        raise NoteError(f"tree size {size} exceeds 2**64 - 1")
    try:
        root = b64(root_text, "checkpoint.root", 32)
    except FormatError as exc:
        raise NoteError(str(exc)) from None
    sig_lines = sigs.split("\n")[:-1]
    if not sig_lines:
        raise NoteError("note has no signature lines")
    if len(sig_lines) > NOTE_MAX_SIGNATURES:
        raise NoteError(f"note has {len(sig_lines)} signature lines (max {NOTE_MAX_SIGNATURES})")
    parsed = []
    for line in sig_lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or not _valid_name(parts[1]):
            raise NoteError(f"malformed signature line {line[:60]!r}")
        try:
            blob = b64(parts[2], "checkpoint.signature")
        except FormatError as exc:
            raise NoteError(str(exc)) from None
        if len(blob) < 5:
            raise NoteError("signature shorter than key id + signature")
        parsed.append((parts[1], blob[:4], blob[4:]))
    return Note(origin, size, root, body.encode("utf-8"), tuple(parsed))


def verify_note(note: str, keys: TrustedKeys) -> Note:
    """Parse and check both of our signatures (unknown keys ignored, known failures fatal)."""
    parsed = parse_note(note)
    name = keys.checkpoint_name
    if parsed.origin != name:
        raise NoteError(f"origin {parsed.origin!r} is not the trusted log {name!r}")
    found = {"ECDSA P-256": False, "ML-DSA-65": False}
    for sig_name, key_id, sig in parsed.signatures:
        if sig_name != name:
            continue
        if key_id == keys.checkpoint_ecdsa_note_id:
            if not ecdsa_ok(keys.checkpoint_ecdsa, sig, parsed.text):
                raise NoteError("ECDSA P-256 checkpoint signature does not verify")
            found["ECDSA P-256"] = True
        elif key_id == keys.checkpoint_mldsa_note_id:
            if not mldsa_ok(keys.checkpoint_mldsa, sig, parsed.text):
                raise NoteError("ML-DSA-65 checkpoint signature does not verify")
            found["ML-DSA-65"] = True
    for label, ok in found.items():
        if not ok:
            raise NoteError(f"no {label} signature by {name!r}")
    return parsed
