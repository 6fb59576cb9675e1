"""Text forms of proofs (docs §5): c2sp.org/tlog-proof@v1 and the consistency-proof text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .codec import b64decode, b64encode
from .errors import FormatError

__all__ = [
    "TLOG_PROOF_HEADER",
    "ConsistencyText",
    "TlogProof",
    "format_consistency",
    "format_tlog_proof",
    "parse_consistency",
    "parse_tlog_proof",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64


@dataclass(frozen=True)
class TlogProof:
    """A parsed ``.tlog-proof``: extra data (the leaf input), index, path, checkpoint."""

    extra: bytes | None
    index: int
    path: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True)
class ConsistencyText:
    """A parsed consistency proof text: the old size and the hashes."""

    old: int
    proof: tuple[bytes, ...]


def format_tlog_proof(leaf_input: bytes, index: int, path: Sequence[bytes], checkpoint: str) -> str:
    """``c2sp.org/tlog-proof@v1`` text; ``extra`` carries the 158-byte leaf input."""
    lines = [TLOG_PROOF_HEADER, f"extra {b64encode(leaf_input)}", f"index {index}"]
    lines += [b64encode(item) for item in path]
    return "\n".join(lines) + "\n\n" + checkpoint


def _decimal(text: str, field: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(field, "expected a decimal integer without leading zeros", text)
    return int(text)


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a ``.tlog-proof`` file; errors name the offending line."""
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise FormatError("tlog-proof", "no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise FormatError("tlog-proof.header", f"expected {TLOG_PROOF_HEADER!r}", lines[0])
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = b64decode(lines[pos][len("extra ") :], "tlog-proof.extra")
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise FormatError("tlog-proof.index", "missing 'index <n>' line")
    index = _decimal(lines[pos][len("index ") :], "tlog-proof.index")
    path_lines = lines[pos + 1 :]
    if len(path_lines) > MAX_PROOF_HASHES:
        raise FormatError(
            "tlog-proof.path", f"more than {MAX_PROOF_HASHES} hashes", len(path_lines)
        )
    path = tuple(b64decode(line, f"tlog-proof.path[{i}]", 32) for i, line in enumerate(path_lines))
    return TlogProof(extra, index, path, checkpoint)


def format_consistency(old: int, proof: Sequence[bytes]) -> str:
    """``old <n>`` then one base64 hash per line."""
    return "".join([f"old {old}\n", *(b64encode(item) + "\n" for item in proof)])


def parse_consistency(text: str) -> ConsistencyText:
    """Parse the consistency-proof text."""
    if not text.endswith("\n"):
        raise FormatError("consistency", "text must end with a newline")
    lines = text.split("\n")[:-1]
    if not lines or not lines[0].startswith("old "):
        raise FormatError("consistency.old", "missing 'old <n>' line")
    old = _decimal(lines[0][len("old ") :], "consistency.old")
    if len(lines) - 1 > MAX_PROOF_HASHES:
        raise FormatError(
            "consistency.proof", f"more than {MAX_PROOF_HASHES} hashes", len(lines) - 1
        )
    proof = tuple(
        b64decode(line, f"consistency.proof[{i}]", 32) for i, line in enumerate(lines[1:])
    )
    return ConsistencyText(old, proof)
