"""Exceptions of Tier 1 provenance; messages name the field and the value."""

from __future__ import annotations

from ..errors import FieldError, LineageAuditError

__all__ = ["ProvenanceError", "ProvenanceInputError"]


class ProvenanceError(LineageAuditError):
    """Base class of every Tier 1 provenance error."""


class ProvenanceInputError(ProvenanceError, FieldError):
    """An input that cannot be checked at all (unsupported version, bad argument, bad
    settings): the check refuses rather than rating it."""
