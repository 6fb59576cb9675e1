"""The package's root exception: every error raised on purpose derives from it.

Each concern keeps its own hierarchy beneath it (``ledger.errors``, ``divergence.errors``);
the CLI turns any of them into ``error: <message>`` and exit code 2.
"""

from __future__ import annotations

__all__ = ["FieldError", "LineageAuditError", "describe"]


class LineageAuditError(Exception):
    """Base class of every error lineage-audit raises on purpose."""


def describe(value: object, limit: int = 80) -> str:
    """A short ``repr`` of ``value`` for error messages (long values are elided)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class FieldError(LineageAuditError, ValueError):
    """Input whose named ``field`` (dotted path) has a ``problem``; ``value`` is what was found."""

    def __init__(self, field: str, problem: str, value: object = None) -> None:
        self.field = field
        self.problem = problem
        self.value = value
        detail = f"{field}: {problem}"
        if value is not None:
            detail += f" (got {describe(value)})"
        super().__init__(detail)
