"""Exceptions of the Tier 3 divergence engine; messages name the field and the value."""

from __future__ import annotations

from ..errors import FieldError, LineageAuditError

__all__ = [
    "ArtifactError",
    "BackendUnavailable",
    "BaselineError",
    "DivergenceError",
    "EncoderMismatch",
    "InputError",
]


class DivergenceError(LineageAuditError):
    """Base class of every divergence-engine error."""


class InputError(DivergenceError, FieldError):
    """Embeddings or parameters that cannot be scored (shape, NaN/inf, empty, dimension)."""


class BaselineError(DivergenceError):
    """A baseline that cannot be fitted, found or used for this input."""


class ArtifactError(BaselineError):
    """A baseline artifact on disk that is missing, truncated or altered."""


class EncoderMismatch(BaselineError):
    """Embeddings from a different encoder (or dimension) than the baseline was fitted on."""


class BackendUnavailable(DivergenceError):
    """A compute backend whose library or device is not present here."""
