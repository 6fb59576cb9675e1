"""Tier 1: provenance checks at ingest (DESIGN §2, §6).

Per source: its AIBOM (CycloneDX 1.6 / 1.7 ML-BOM, validated with ``cyclonedx-python-lib``;
``modelCard`` and ``data`` read from the raw JSON), the C2PA manifests of its assets (read
with ``c2pa-python`` offline against pinned trust anchors) and whether it emits OpenLineage
events. :func:`rate_source` runs the checks and combines them into a rating (trusted /
valid / unverifiable / opaque / invalid) with reasons, the tool and schema versions used and
a confidence that Tier 2 propagates downstream. ``docs/tier1.md`` documents the rules.
"""

from __future__ import annotations

from .aibom import SUPPORTED_SPEC_VERSIONS, check_aibom
from .c2pa_check import OFFLINE_SETTINGS, check_c2pa, offline_settings
from .errors import ProvenanceError, ProvenanceInputError
from .model import (
    CHECK_STATES,
    CONFIDENCE,
    RATING_RULE,
    RATINGS,
    CheckResult,
    SourceRating,
    combine,
)
from .openlineage import check_openlineage
from .rating import rate_source

__all__ = [
    "CHECK_STATES",
    "CONFIDENCE",
    "OFFLINE_SETTINGS",
    "RATINGS",
    "RATING_RULE",
    "SUPPORTED_SPEC_VERSIONS",
    "CheckResult",
    "ProvenanceError",
    "ProvenanceInputError",
    "SourceRating",
    "check_aibom",
    "check_c2pa",
    "check_openlineage",
    "combine",
    "offline_settings",
    "rate_source",
]
