"""Strict encodings shared by the writer: base64 (RFC 4648 §4, padded) and lowercase hex."""

from __future__ import annotations

import base64
import binascii
import re

from .errors import FormatError

__all__ = ["b64decode", "b64encode", "hex_digest", "is_hex_digest"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def b64encode(data: bytes) -> str:
    """Standard-alphabet, padded base64 of ``data``."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, field: str, length: int | None = None) -> bytes:
    """Decode canonical standard base64 (padding required, no whitespace).

    Raises :class:`FormatError` naming ``field`` if ``text`` is not a string, not canonical
    base64, or (when ``length`` is given) does not decode to exactly ``length`` bytes.
    """
    if not isinstance(text, str):
        raise FormatError(field, "expected a base64 string", text)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(field, "not valid base64", text) from None
    if base64.b64encode(data).decode("ascii") != text:
        raise FormatError(field, "not canonical padded base64", text)
    if length is not None and len(data) != length:
        raise FormatError(field, f"expected {length} bytes, got {len(data)}", text)
    return data


def is_hex_digest(text: object) -> bool:
    """True if ``text`` is 64 lowercase hex characters (a SHA-256 digest)."""
    return isinstance(text, str) and _HEX64.fullmatch(text) is not None


def hex_digest(text: object, field: str) -> str:
    """Validate a lowercase hex SHA-256 digest, naming ``field`` on error."""
    if not isinstance(text, str) or not is_hex_digest(text):
        raise FormatError(field, "expected 64 lowercase hex characters (SHA-256)", text)
    return text
