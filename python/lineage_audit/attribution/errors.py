"""Exceptions of Tier 4 attribution; messages name the offending field and value."""

from __future__ import annotations

from ..errors import FieldError, LineageAuditError

__all__ = [
    "AttributionError",
    "InputError",
    "ReferenceSetError",
    "ScorerError",
    "ScorerUnavailable",
]


class AttributionError(LineageAuditError):
    """Base class of every attribution error."""


class InputError(AttributionError, FieldError):
    """Texts, files or parameters that cannot be scored (empty text, text past the context,
    missing column, duplicate id, bad option)."""


class ReferenceSetError(AttributionError, FieldError):
    """A reference set that is missing, corrupt, altered, or not calibrated for this model or
    these score settings."""


class ScorerError(AttributionError):
    """A scorer that cannot produce prompt log-probs: an HTTP server that returns none or
    refuses a request, a tokenizer the scorer cannot handle."""


class ScorerUnavailable(ScorerError):
    """torch/transformers, or a packaged model, is not installed here."""
