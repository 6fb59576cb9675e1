"""Exception hierarchy of the ledger package.

Every error raised on purpose by ``lineage_audit.ledger`` derives from :class:`LedgerError`;
messages name the offending field (or file) and value.
"""

from __future__ import annotations

from ..errors import FieldError, LineageAuditError

__all__ = [
    "AppendError",
    "CheckpointConflict",
    "CheckpointError",
    "ConsistencyError",
    "FormatError",
    "KeyFileError",
    "KeyMismatchError",
    "LedgerError",
    "ProofError",
    "SignatureError",
    "StoreError",
]


class LedgerError(LineageAuditError):
    """Base class of every ledger error."""


class FormatError(LedgerError, FieldError):
    """Input that does not match a format of docs/formats.md.

    ``field`` names the offending field (dotted path), ``value`` the value found.
    """


class KeyFileError(LedgerError):
    """A key file or key directory that cannot be used (missing, malformed, wrong type)."""


class KeyMismatchError(LedgerError):
    """Signing keys that are not the keys this ledger was created with."""


class SignatureError(LedgerError):
    """A signature that is missing or does not verify."""


class StoreError(LedgerError):
    """The storage backend failed (I/O, locking, read-only database, corrupt schema)."""


class AppendError(StoreError):
    """An entry could not be appended; nothing was written."""


class CheckpointConflict(StoreError):
    """Another writer stored a checkpoint between our check and our insert; retry."""


class ProofError(LedgerError):
    """A proof was requested for sizes or indices the tree cannot prove."""


class CheckpointError(LedgerError):
    """A checkpoint cannot be signed, found or parsed."""


class ConsistencyError(CheckpointError):
    """Signing would produce a checkpoint inconsistent with one already signed."""
