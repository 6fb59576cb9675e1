"""Checkpoints: C2SP tlog-checkpoint bodies in signed notes (docs §4).

```
<origin>\\n<size>\\n<b64 root>\\n
\\n
— <name> <b64(keyid[4] ‖ DER ECDSA-P256-SHA256 signature over the note text)>\\n
— <name> <b64(keyid[4] ‖ ML-DSA-65 signature over the note text)>\\n
```
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .codec import b64decode, b64encode
from .errors import CheckpointError, FormatError, SignatureError
from .keys import (
    MLDSA65_SIGNATURE_SIZE,
    CheckpointKeys,
    PublicKeys,
    ecdsa_note_key_id,
    mldsa_note_key_id,
    validate_key_name,
)

__all__ = [
    "EM_DASH",
    "MAX_NOTE_SIGNATURES",
    "MAX_NOTE_SIZE",
    "Checkpoint",
    "NoteSignature",
    "checkpoint_text",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

EM_DASH = "\u2014"
MAX_NOTE_SIZE = 64 * 1024
MAX_NOTE_SIGNATURES = 16
MAX_TREE_SIZE = 2**64 - 1


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id and signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint; ``note`` is the whole signed note, verbatim."""

    origin: str
    size: int
    root: bytes
    text: str
    note: str
    signatures: tuple[NoteSignature, ...]


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The note text (the three lines that are signed, final newline included)."""
    validate_key_name(origin, "origin")
    if not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise FormatError("size", "expected an unsigned 64-bit tree size", size)
    if len(root) != 32:
        raise FormatError("root", "expected 32 bytes", root)
    return f"{origin}\n{size}\n{b64encode(root)}\n"


def sign_checkpoint(size: int, root: bytes, keys: CheckpointKeys) -> str:
    """A signed note for ``(size, root)`` with both checkpoint keys; origin = key name."""
    text = checkpoint_text(keys.name, size, root)
    message = text.encode("utf-8")
    ecdsa_sig = keys.ecdsa.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    mldsa_sig = keys.mldsa.sign(message)
    ecdsa_id = ecdsa_note_key_id(keys.ecdsa.public_key())
    mldsa_id = mldsa_note_key_id(keys.name, keys.mldsa.public_key())
    return (
        text
        + "\n"
        + f"{EM_DASH} {keys.name} {b64encode(ecdsa_id + ecdsa_sig)}\n"
        + f"{EM_DASH} {keys.name} {b64encode(mldsa_id + mldsa_sig)}\n"
    )


def _parse_size(line: str) -> int:
    if not line.isascii() or not line.isdigit() or (len(line) > 1 and line[0] == "0"):
        raise FormatError(
            "checkpoint.size", "expected a decimal tree size without leading zeros", line
        )
    size = int(line)
    if size > MAX_TREE_SIZE:
        raise FormatError("checkpoint.size", "tree size exceeds 2**64 - 1", line)
    return size


def parse_checkpoint(note: str | bytes) -> Checkpoint:
    """Parse a signed checkpoint note; errors name the offending part."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_SIZE:
            raise FormatError("checkpoint", f"note larger than {MAX_NOTE_SIZE} bytes", len(note))
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("checkpoint", "note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise FormatError("checkpoint", "expected a string", type(note).__name__)
    if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
        raise FormatError("checkpoint", f"note larger than {MAX_NOTE_SIZE} bytes", len(note))
    for ch in note:
        if ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            raise FormatError("checkpoint", "note contains a control character", ch)
    if not note.endswith("\n"):
        raise FormatError("checkpoint", "note must end with a newline", note[-20:])
    split = note.rfind("\n\n")
    if split < 0:
        raise FormatError("checkpoint", "no blank line between note text and signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = text.split("\n")[:-1]
    if len(lines) != 3:
        raise FormatError(
            "checkpoint",
            f"note text must be exactly 3 lines (origin, size, root), got {len(lines)}",
        )
    origin, size_line, root_line = lines
    if not origin:
        raise FormatError("checkpoint.origin", "empty origin line")
    size = _parse_size(size_line)
    root = b64decode(root_line, "checkpoint.root", 32)
    sig_lines = sig_block.split("\n")[:-1]
    if not sig_lines:
        raise FormatError("checkpoint.signatures", "note has no signature lines")
    if len(sig_lines) > MAX_NOTE_SIGNATURES:
        raise FormatError(
            "checkpoint.signatures",
            f"more than {MAX_NOTE_SIGNATURES} signature lines",
            len(sig_lines),
        )
    signatures = []
    for index, line in enumerate(sig_lines):
        field = f"checkpoint.signatures[{index}]"
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise FormatError(field, "expected '\u2014 <name> <base64 signature>'", line)
        name = validate_key_name(parts[1], f"{field}.name")
        blob = b64decode(parts[2], f"{field}.signature")
        if len(blob) < 5:
            raise FormatError(
                f"{field}.signature", "shorter than a key id plus a signature", parts[2]
            )
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    return Checkpoint(origin, size, root, text, note, tuple(signatures))


def verify_checkpoint(note: str | bytes | Checkpoint, keys: PublicKeys) -> Checkpoint:
    """Parse ``note`` and check both of our checkpoint signatures.

    Signature lines of unknown ``(name, key id)`` are ignored; a known key whose signature
    fails rejects the note; both of ours must be present. Raises :class:`SignatureError` (or
    :class:`FormatError` for an unparsable note).
    """
    checkpoint = note if isinstance(note, Checkpoint) else parse_checkpoint(note)
    name = keys.checkpoint_name
    if checkpoint.origin != name:
        raise CheckpointError(
            f"checkpoint.origin: {checkpoint.origin!r} is not this log's origin {name!r}"
        )
    message = checkpoint.text.encode("utf-8")
    ecdsa_id = ecdsa_note_key_id(keys.checkpoint_ecdsa)
    mldsa_id = mldsa_note_key_id(name, keys.checkpoint_mldsa)
    seen = set()
    for item in checkpoint.signatures:
        if item.name != name:
            continue
        if item.key_id == ecdsa_id:
            try:
                keys.checkpoint_ecdsa.verify(item.signature, message, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                raise SignatureError("checkpoint: ECDSA P-256 signature does not verify") from None
            seen.add("ecdsa")
        elif item.key_id == mldsa_id:
            if len(item.signature) != MLDSA65_SIGNATURE_SIZE:
                raise SignatureError(
                    f"checkpoint: ML-DSA-65 signature is {len(item.signature)} bytes, "
                    f"not {MLDSA65_SIGNATURE_SIZE}"
                )
            try:
                keys.checkpoint_mldsa.verify(item.signature, message)
            except InvalidSignature:
                raise SignatureError("checkpoint: ML-DSA-65 signature does not verify") from None
            seen.add("mldsa")
    for algorithm, label in (("ecdsa", "ECDSA P-256"), ("mldsa", "ML-DSA-65")):
        if algorithm not in seen:
            raise SignatureError(f"checkpoint: no {label} signature by {name!r}")
    return checkpoint
