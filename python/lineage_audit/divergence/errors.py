"""Exceptions of the Tier 3 divergence engine; messages name the field and the value."""

from __future__ import annotations

from ..errors import LineageAuditError, describe

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


class InputError(DivergenceError, ValueError):
    """Embeddings or parameters that cannot be scored (shape, NaN/inf, empty, dimension)."""

    def __init__(self, field: str, problem: str, value: object = None) -> None:
        self.field = field
        self.problem = problem
        self.value = value
        detail = f"{field}: {problem}"
        if value is not None:
            detail += f" (got {describe(value)})"
        super().__init__(detail)


class BaselineError(DivergenceError):
    """A baseline that cannot be fitted, found or used for this input."""


class ArtifactError(BaselineError):
    """A baseline artifact on disk that is missing, truncated or altered."""


class EncoderMismatch(BaselineError):
    """Embeddings from a different encoder (or dimension) than the baseline was fitted on."""


class BackendUnavailable(DivergenceError):
    """A compute backend whose library or device is not present here."""
