"""The confidence rule of an incident (DESIGN §6, Tier 5): documented, monotone, reproducible.

Rule ``lineage-audit/confidence/v1``, over evidence recorded in the incident:

1. **Tier 3.** ``p3 = min p`` over the alerting windows (z at or above the watch threshold);
   1 when there are none. Nominal: not adjusted for the number of windows looked at — the
   halt rule's measured false-halt run length (ARL₀) is the guard against repeated looks.
2. **Tier 4.** ``p4 = min q`` over the attribution batches, where a batch's ``q`` is its
   smallest Benjamini-Hochberg q-value (= the batch's Simes global p-value); 1 when none.
3. **Fisher.** ``X² = -2 (ln p3 + ln p4)``, always with 4 degrees of freedom: a tier without
   evidence counts as ``p = 1``. The tiers' statistics use different data and models and
   are taken as independent under the null.
4. ``p = P(χ²₄ ≥ X²) = e^(-X²/2) (1 + X²/2)``.
5. **Structural adjustments** (Tier 2 and Tier 1), each multiplying ``p`` by a fixed factor,
   applied once per kind present (repeated findings of one kind are not independent):
   recursive re-entry x0.1, convergence x0.5, a tamper finding (Tier 1 ``invalid``) x0.5,
   an opaque source x0.8.
6. ``confidence = 1 - p``; band ``high`` when ``p ≤ 0.01``, ``medium`` when ``p ≤ 0.1``,
   else ``low``.

Monotone: a smaller p-value anywhere, an extra alerting window or batch, or an extra kind
of structural finding never lowers the confidence (each step is non-increasing in its
inputs; tests check it on random evidence). Reproducible: :func:`compute_confidence` is a
pure function of :class:`ConfidenceInputs`, which the incident records; every step is
returned with its inputs, formula and value so the artifact can show it. ``confidence``
is an evidence score, not a probability that contamination occurred.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import IncidentError

__all__ = [
    "RULE",
    "STRUCTURAL_FACTORS",
    "ConfidenceInputs",
    "ConfidenceResult",
    "Step",
    "compute_confidence",
]

RULE = "lineage-audit/confidence/v1"
# Order is the order of the steps; values are the factors on p (documented in docs/tier5.md).
STRUCTURAL_FACTORS: dict[str, tuple[float, str]] = {
    "re_entry": (0.1, "Tier 2: the model's own output re-enters its input (recursive re-entry)"),
    "convergence": (0.5, "Tier 2: k sources of the asset share one upstream product"),
    "invalid_source": (0.5, "Tier 1: a source's provenance is invalid (a tamper finding)"),
    "opaque_source": (0.8, "Tier 1: a source has no AIBOM, C2PA manifest or OpenLineage"),
}


@dataclass(frozen=True)
class ConfidenceInputs:
    """The evidence the rule reads, as recorded in the incident."""

    tier3_window_p: tuple[float, ...] = ()
    tier4_batch_min_q: tuple[float, ...] = ()
    re_entry: bool = False
    convergence: bool = False
    invalid_source: bool = False
    opaque_source: bool = False

    def __post_init__(self) -> None:
        for name in ("tier3_window_p", "tier4_batch_min_q"):
            values = tuple(getattr(self, name))
            for i, value in enumerate(values):
                if (not isinstance(value, int | float) or isinstance(value, bool)
                        or not math.isfinite(value) or not 0 < value <= 1):  # fmt: skip
                    raise IncidentError(f"{name}[{i}]", "expected a p-value in (0, 1]", value)
            object.__setattr__(self, name, tuple(float(v) for v in values))
        for name in STRUCTURAL_FACTORS:
            if not isinstance(getattr(self, name), bool):
                raise IncidentError(name, "expected true or false", getattr(self, name))

    def to_json(self) -> dict[str, Any]:
        return {
            "tier3_window_p": list(self.tier3_window_p),
            "tier4_batch_min_q": list(self.tier4_batch_min_q),
            **{name: getattr(self, name) for name in STRUCTURAL_FACTORS},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ConfidenceInputs:
        if not isinstance(obj, Mapping):
            raise IncidentError("confidence.inputs", "expected an object", obj)
        known = {"tier3_window_p", "tier4_batch_min_q", *STRUCTURAL_FACTORS}
        for key in obj:
            if key not in known:
                raise IncidentError(f"confidence.inputs.{key}", "unknown field")
        lists = {}
        for name in ("tier3_window_p", "tier4_batch_min_q"):
            value = obj.get(name, [])
            if not isinstance(value, list):
                raise IncidentError(f"confidence.inputs.{name}", "expected a list", value)
            lists[name] = tuple(value)
        flags = {name: obj.get(name, False) for name in STRUCTURAL_FACTORS}
        return cls(**lists, **flags)


@dataclass(frozen=True)
class Step:
    """One step of the computation as the artifact shows it."""

    name: str
    formula: str
    inputs: dict[str, Any]
    value: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "formula": self.formula, "inputs": self.inputs,
                "value": self.value, "note": self.note}  # fmt: skip


@dataclass(frozen=True)
class ConfidenceResult:
    rule: str
    inputs: ConfidenceInputs
    steps: tuple[Step, ...]
    p: float
    confidence: float
    band: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "inputs": self.inputs.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "p": self.p,
            "confidence": self.confidence,
            "band": self.band,
        }


def _smallest(values: Sequence[float]) -> float:
    return min(values, default=1.0)


def chi2_4_survival(x: float) -> float:
    """P(χ²₄ ≥ x) = e^(-x/2)(1 + x/2), computed in logs so large x underflows cleanly."""
    return math.exp(-x / 2 + math.log1p(x / 2))


def compute_confidence(inputs: ConfidenceInputs) -> ConfidenceResult:
    """Apply rule v1 (module docstring) step by step."""
    p3 = _smallest(inputs.tier3_window_p)
    p4 = _smallest(inputs.tier4_batch_min_q)
    x2 = -2.0 * (math.log(p3) + math.log(p4))
    p = chi2_4_survival(x2)
    steps = [
        Step("tier3", "p3 = min p over alerting windows (1 if none)",
             {"windows": len(inputs.tier3_window_p)}, p3,
             "nominal; repeated looks are guarded by the halt rule's ARL0"),
        Step("tier4", "p4 = min over batches of the smallest BH q-value (1 if none)",
             {"batches": len(inputs.tier4_batch_min_q)}, p4,
             "a batch's smallest q-value is its Simes global p-value"),
        Step("fisher", "X2 = -2 (ln p3 + ln p4), 4 degrees of freedom", {"p3": p3, "p4": p4},
             x2, "a tier without evidence counts as p = 1"),
        Step("combined", "p = exp(-X2/2) (1 + X2/2)", {"X2": x2}, p),
    ]  # fmt: skip
    for name, (factor, why) in STRUCTURAL_FACTORS.items():
        if getattr(inputs, name):
            before, p = p, p * factor
            steps.append(Step(name, f"p = p x {factor}", {"p": before, "factor": factor}, p, why))
    confidence = 1.0 - p
    band = "high" if p <= 0.01 else "medium" if p <= 0.1 else "low"
    steps.append(Step("confidence", "confidence = 1 - p", {"p": p}, confidence, f"band {band}"))
    return ConfidenceResult(RULE, inputs, tuple(steps), p, confidence, band)
