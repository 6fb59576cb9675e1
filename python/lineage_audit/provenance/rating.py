"""Run a source's Tier 1 checks and rate it (the rule is :func:`.model.combine`)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .aibom import aibom_tool, check_aibom
from .c2pa_check import check_c2pa
from .errors import ProvenanceInputError
from .model import CheckResult, SourceRating, combine
from .openlineage import check_openlineage

__all__ = ["rate_source"]

PathLike = str | os.PathLike[str]


def rate_source(
    source: str,
    *,
    aibom: PathLike | bytes | CheckResult | None = None,
    c2pa_assets: Iterable[PathLike | CheckResult] = (),
    trust_anchors: PathLike | None = None,
    openlineage_events: int | CheckResult = 0,
    c2pa_settings: PathLike | None = None,
) -> SourceRating:
    """Check one source and combine the results.

    ``aibom``: a CycloneDX JSON file or its bytes (``None``: no AIBOM). ``c2pa_assets``: the
    source's assets to read for C2PA manifests, each with ``trust_anchors`` (a PEM file) and
    ``c2pa_settings`` (a c2pa settings JSON file) pinned. ``openlineage_events``: how many
    OpenLineage events the source has emitted. Any of them may instead be a
    :class:`CheckResult` computed earlier for the same check.

    ``checks`` of the rating always hold one ``aibom`` and one ``openlineage`` result (which
    may be ``absent``) and one ``c2pa`` result per asset, in that order.
    """
    if not isinstance(source, str) or not source.strip():
        raise ProvenanceInputError("source", "expected a non-empty source id", source)
    if isinstance(c2pa_assets, str | bytes | os.PathLike) or not isinstance(c2pa_assets, Iterable):
        raise ProvenanceInputError(
            "c2pa_assets", "expected a list of paths (or CheckResults)", c2pa_assets
        )
    checks: list[CheckResult] = []
    if aibom is None:
        reasons = ("no AIBOM supplied for the source",)
        checks.append(CheckResult("aibom", "absent", reasons, aibom_tool(), None))
    else:
        checks.append(_given("aibom", aibom) or check_aibom(aibom))
    lineage = _given("openlineage", openlineage_events)
    checks.append(lineage or check_openlineage(openlineage_events))
    for asset in c2pa_assets:
        checks.append(
            _given("c2pa", asset)
            or check_c2pa(asset, trust_anchors=trust_anchors, settings=c2pa_settings)
        )
    return combine(source, checks)


def _given(check: str, value: object) -> CheckResult | None:
    if not isinstance(value, CheckResult):
        return None
    if value.check != check:
        raise ProvenanceInputError(check, f"a CheckResult of {value.check!r} given", value.state)
    return value
