"""Errors of Tier 5: each names the offending field (or incident, asset class) and value."""

from __future__ import annotations

from ..errors import FieldError

__all__ = [
    "HaltRefused",
    "IncidentError",
    "NotAuthorised",
    "PolicyError",
    "TransitionError",
    "UnknownAsset",
    "UnknownIncident",
    "status_of",
]


class IncidentError(FieldError):
    """Bad input to the incident layer."""


class PolicyError(IncidentError):
    """A malformed incident policy; ``field`` is the dotted TOML key."""


class UnknownAsset(IncidentError):
    """An asset class the policy does not name."""


class UnknownIncident(IncidentError):
    """An incident id the store does not hold."""


class TransitionError(IncidentError):
    """A state change out of order (e.g. resolve before acknowledge)."""


class NotAuthorised(IncidentError):
    """An actor the policy does not allow to do this (recorded as a failed outcome)."""


class HaltRefused(NotAuthorised):
    """The halt hook refused the caller (recorded as a failed ``halt.fire`` outcome)."""


# Anything else (a bad note, reason or state filter) is the caller's input: 400.
_STATUS: tuple[tuple[type[IncidentError], int, str], ...] = (
    (TransitionError, 409, "FAILED_PRECONDITION"),
    (NotAuthorised, 403, "PERMISSION_DENIED"),
    (UnknownIncident, 404, "NOT_FOUND"),
    (UnknownAsset, 404, "NOT_FOUND"),
)


def status_of(exc: IncidentError) -> tuple[int, str]:
    """The HTTP status and gRPC status-code name a client sees for ``exc`` (one table, so
    the queue answers alike over both)."""
    for kind, http, grpc_code in _STATUS:
        if isinstance(exc, kind):
            return http, grpc_code
    return 400, "INVALID_ARGUMENT"
