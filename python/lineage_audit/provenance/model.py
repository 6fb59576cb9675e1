"""Results of Tier 1 checks and the rule that combines them into a source rating.

The rule (also in ``docs/tier1.md``), applied to one source's checks, first match wins:

1. **invalid** if any check is ``invalid`` (a tamper *finding*: a C2PA manifest that fails
   validation or cannot be read, or an AIBOM that fails its CycloneDX schema).
2. **opaque** if there are no OpenLineage events, no AIBOM and no C2PA manifest (assets
   without a manifest count as none).
3. **trusted** if at least one C2PA asset was checked and every one is ``trusted`` (its
   signer chains to a pinned trust anchor). An AIBOM or OpenLineage events cannot make a
   source trusted (neither is signed), and their absence does not lower it.
4. **valid** if any evidence checked out: an AIBOM valid against its schema, OpenLineage
   events present, or a C2PA manifest ``valid`` or ``trusted``.
5. **unverifiable** otherwise: the only evidence is a C2PA manifest that could not be
   verified offline (remote-only manifest, unsupported format).

Confidence is a fixed function of the rating (:data:`CONFIDENCE`), strictly decreasing along
:data:`RATINGS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ProvenanceInputError

__all__ = [
    "CHECK_STATES",
    "CONFIDENCE",
    "RATINGS",
    "RATING_RULE",
    "CheckResult",
    "SourceRating",
    "combine",
]

#: The states each check reports.
CHECK_STATES: Mapping[str, tuple[str, ...]] = {
    "aibom": ("valid", "invalid", "absent"),
    "c2pa": ("trusted", "valid", "invalid", "opaque", "unverifiable"),
    "openlineage": ("present", "absent"),
}

#: Source ratings, best first.
RATINGS: tuple[str, ...] = ("trusted", "valid", "unverifiable", "opaque", "invalid")

#: Confidence of a source's inputs by rating: what Tier 2 propagates downstream.
CONFIDENCE: Mapping[str, float] = {
    "trusted": 1.0,
    "valid": 0.8,
    "unverifiable": 0.5,
    "opaque": 0.3,
    "invalid": 0.0,
}

#: Names the combination rule and confidence table above; recorded with every rating so a
#: rating can be recomputed from its checks by the same rule.
RATING_RULE = "lineage-audit.tier1.rating/v1"


@dataclass(frozen=True)
class CheckResult:
    """One check that ran (or found nothing to check) for a source.

    ``state`` is one of :data:`CHECK_STATES` for ``check``; ``reasons`` say why in words
    (C2PA validation codes appear verbatim); ``tool`` and ``schema`` name what checked and
    against what; ``details`` holds what was read (JSON-serialisable).
    """

    check: str
    state: str
    reasons: tuple[str, ...]
    tool: str
    schema: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        states = CHECK_STATES.get(self.check)
        if states is None:
            expected = f"expected one of {sorted(CHECK_STATES)}"
            raise ProvenanceInputError("check", expected, self.check)
        if self.state not in states:
            raise ProvenanceInputError(
                f"{self.check}.state", f"expected one of {list(states)}", self.state
            )
        reasons = (self.reasons,) if isinstance(self.reasons, str) else tuple(self.reasons)
        if not all(isinstance(reason, str) for reason in reasons):
            raise ProvenanceInputError(f"{self.check}.reasons", "expected strings", reasons)
        object.__setattr__(self, "reasons", reasons)

    @property
    def label(self) -> str:
        """``aibom``, ``openlineage``, or ``c2pa <asset>`` (the asset as given)."""
        asset = self.details.get("asset")
        return f"{self.check} {asset}" if asset else self.check

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "state": self.state,
            "reasons": list(self.reasons),
            "tool": self.tool,
            "schema": self.schema,
            "details": self.details,
        }


@dataclass(frozen=True)
class SourceRating:
    """A source's Tier 1 rating: the combination of its checks by :func:`combine`."""

    source: str
    rating: str
    confidence: float
    checks: tuple[CheckResult, ...]
    reasons: tuple[str, ...]

    @property
    def finding(self) -> bool:
        """True when the rating is ``invalid``: evidence of tampering to report."""
        return self.rating == "invalid"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rating": self.rating,
            "confidence": self.confidence,
            "finding": self.finding,
            "rule": RATING_RULE,
            "reasons": list(self.reasons),
            "checks": [check.to_json() for check in self.checks],
        }


def combine(source: str, checks: Iterable[CheckResult]) -> SourceRating:
    """Rate ``source`` from its ``checks`` by the rule in this module's docstring."""
    if not isinstance(source, str) or not source.strip():
        raise ProvenanceInputError("source", "expected a non-empty source id", source)
    checks = tuple(checks)
    for check in checks:
        if not isinstance(check, CheckResult):
            raise ProvenanceInputError("checks", "expected CheckResult items", check)
    c2pa = [c for c in checks if c.check == "c2pa"]
    aibom_valid = [c for c in checks if c.check == "aibom" and c.state == "valid"]
    lineage = [c for c in checks if c.check == "openlineage" and c.state == "present"]
    manifests = [c for c in c2pa if c.state != "opaque"]

    invalid = [c for c in checks if c.state == "invalid"]
    if invalid:
        reasons = [f"finding: {c.label}: {reason}" for c in invalid for reason in c.reasons]
        return _rating(source, "invalid", checks, reasons)
    if not aibom_valid and not lineage and not manifests:
        reasons = ["no OpenLineage events, no AIBOM and no C2PA manifest for the source"]
        reasons += [f"{c.label}: no C2PA manifest" for c in c2pa]
        return _rating(source, "opaque", checks, reasons)
    if c2pa and all(c.state == "trusted" for c in c2pa):
        reasons = [
            f"every C2PA asset ({len(c2pa)}) is signed by a signer that chains to a "
            "pinned trust anchor"
        ]
        reasons += [f"{c.label}: {c.reasons[0]}" for c in c2pa if c.reasons]
        return _rating(source, "trusted", checks, reasons)

    reasons = []
    for c in c2pa:
        if c.state in ("trusted", "valid"):
            reasons.append(f"{c.label}: {c.state}: {c.reasons[0] if c.reasons else ''}".rstrip())
    for c in aibom_valid:
        reasons.append(f"AIBOM valid ({c.schema})")
    for c in lineage:
        reasons.append(c.reasons[0] if c.reasons else "OpenLineage events present")
    rating = "valid" if reasons else "unverifiable"
    if not c2pa:
        reasons.append("not trusted: no C2PA asset was checked")
    for c in c2pa:
        if c.state in ("opaque", "unverifiable"):
            why = f"{c.label}: {c.state}: {c.reasons[0] if c.reasons else ''}".rstrip()
            reasons.append(f"not trusted: {why}" if rating == "valid" else why)
    return _rating(source, rating, checks, reasons)


def _rating(source: str, rating: str, checks: tuple[CheckResult, ...], reasons: list[str]):
    return SourceRating(source, rating, CONFIDENCE[rating], checks, tuple(reasons))
