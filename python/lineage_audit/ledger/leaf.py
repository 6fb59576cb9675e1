"""The fixed 158-byte leaf input that binds an envelope into the hash chain (docs §3)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import FormatError
from .records import Envelope

__all__ = ["LEAF_PREFIX", "LEAF_SIZE", "ZERO_HASH", "LeafInput", "leaf_input_for"]

LEAF_PREFIX = b"lineage-audit/leaf/v1\n"
LEAF_SIZE = 158
ZERO_HASH = bytes(32)
_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class LeafInput:
    """The fields of a leaf input; :meth:`encode` gives the 158 bytes."""

    seq: int
    prev_leaf_hash: bytes
    pae_hash: bytes
    ecdsa_sig_hash: bytes
    mldsa_sig_hash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or not 0 <= self.seq < 2**64:
            raise FormatError("leaf_input.seq", "expected an unsigned 64-bit integer", self.seq)
        for name in ("prev_leaf_hash", "pae_hash", "ecdsa_sig_hash", "mldsa_sig_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise FormatError(f"leaf_input.{name}", "expected 32 bytes", value)

    def encode(self) -> bytes:
        return (
            LEAF_PREFIX
            + _U64.pack(self.seq)
            + self.prev_leaf_hash
            + self.pae_hash
            + self.ecdsa_sig_hash
            + self.mldsa_sig_hash
        )

    @classmethod
    def decode(cls, data: bytes, field: str = "leaf_input") -> LeafInput:
        if len(data) != LEAF_SIZE:
            raise FormatError(field, f"expected {LEAF_SIZE} bytes, got {len(data)}")
        if data[:22] != LEAF_PREFIX:
            raise FormatError(field, "missing the 'lineage-audit/leaf/v1\\n' prefix", data[:22])
        return cls(
            seq=_U64.unpack(data[22:30])[0],
            prev_leaf_hash=data[30:62],
            pae_hash=data[62:94],
            ecdsa_sig_hash=data[94:126],
            mldsa_sig_hash=data[126:158],
        )


def leaf_input_for(
    seq: int, prev_leaf_hash: bytes, envelope: Envelope, ecdsa_sig: bytes, mldsa_sig: bytes
) -> LeafInput:
    """The leaf input of ``envelope`` appended at ``seq`` after ``prev_leaf_hash``."""
    return LeafInput(
        seq=seq,
        prev_leaf_hash=prev_leaf_hash,
        pae_hash=hashlib.sha256(envelope.pae()).digest(),
        ecdsa_sig_hash=hashlib.sha256(ecdsa_sig).digest(),
        mldsa_sig_hash=hashlib.sha256(mldsa_sig).digest(),
    )
