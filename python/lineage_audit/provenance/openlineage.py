"""OpenLineage check: presence only. Tier 2 owns the event store (and validates each event
against the vendored OpenLineage schemas at ingest); it passes the count of a source's
events here."""

from __future__ import annotations

from .. import __version__
from .errors import ProvenanceInputError
from .model import CheckResult

__all__ = ["check_openlineage"]


def check_openlineage(
    events_count: int, *, tool: str | None = None, schema: str | None = None
) -> CheckResult:
    """``present`` when ``events_count`` > 0, else ``absent``.

    ``tool`` and ``schema`` let the caller name what validated the counted events (for
    example ``"jsonschema 4.26.0"`` and ``"OpenLineage 2-0-2"``); by default the tool is
    this package and the schema is not named.
    """
    if isinstance(events_count, bool) or not isinstance(events_count, int):
        raise ProvenanceInputError("openlineage_events", "expected an integer", events_count)
    if events_count < 0:
        raise ProvenanceInputError("openlineage_events", "expected a count >= 0", events_count)
    tool = tool or f"lineage-audit {__version__} (event count from the lineage store)"
    details = {"events": events_count}
    if events_count:
        plural = "event" if events_count == 1 else "events"
        reason = f"{events_count} OpenLineage {plural} recorded for the source"
        return CheckResult("openlineage", "present", (reason,), tool, schema, details)
    reason = "no OpenLineage events for the source"
    return CheckResult("openlineage", "absent", (reason,), tool, schema, details)
