"""ATLAS-FX: the reference scenario of recursive contamination, as data the product can replay.

A bank's FX desk runs **ATLAS-FX**, a language model (``models:atlas-fx``) that writes market
commentary from an hourly feed of eleven news sources (``deployer:fx-news-inputs``, asset
class ``fx-news``); it is fine-tuned on that feed once a day. Its commentary is licensed to a
newswire (``syndication:fx-commentary-wire``). A data vendor, FXWire, refreshed its
summariser (``vendor-fxwire:fx-summarizer``) at the start of the quarter; what it did not say
is that the refresh retrained on the newswire — on ATLAS-FX's own commentary. Four of the
eleven sources are FXWire products built on that summariser's digest, so its output reaches
the desk four times over (convergence) and, through the daily fine-tune, reaches the model
that wrote it (recursive re-entry). Two sources publish nothing about themselves (opaque).
Two of the FXWire feeds and one opaque blog aggregator carry ATLAS-FX's commentary
verbatim.

Over the 72 hours from ``t0`` the syndicated share of the feed rises; Tier 3 sees the input
distribution move and raises the first alert (the *signal*). Later the vendor discloses the
refresh's full inputs (Tier 2 then finds the loop) and the nightly Tier 4 batch scores the
sources' texts against ATLAS-FX (a real small language model stands in for it).

This module fixes the construction (who is who, the schedule, the share curve) and the
sizes; the other modules of this package generate the data from it with a seed, and
:mod:`.replay` runs it through the product. Nothing in the output is typed in: every
finding, score and confidence is computed by the product from the generated data, and the
tests compare the product's findings with :meth:`Scenario.truth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ASSET_CLASS",
    "ASSET_DATASET",
    "FULL",
    "HOURS",
    "MODEL_DATASET",
    "QUICK",
    "SIZES",
    "SOURCES",
    "SYNDICATED",
    "VENDOR_PRODUCT",
    "Scenario",
    "Size",
    "Source",
]

T0 = datetime(2026, 11, 16, tzinfo=UTC)  # the start of the 72 hours before the signal
HOURS = 72  # the syndicated share rises over these hours
ASSET_CLASS = "fx-news"
ASSET_DATASET = ("deployer", "fx-news-inputs")
MODEL_DATASET = ("models", "atlas-fx")
MODEL_ID = "atlas-fx"
COMMENTARY = ("deployer", "fx-commentary")
SYNDICATED = ("syndication", "fx-commentary-wire")
VENDOR_MODEL = ("vendor-fxwire", "fx-summarizer")
VENDOR_PRODUCT = ("vendor-fxwire", "fx-digest")
VENDOR_LICENSED = ("vendor-fxwire", "licensed-news")


@dataclass(frozen=True)
class Source:
    """One of the eleven news sources of the feed."""

    name: str  # dataset name in namespace "feeds"
    via_vendor: bool  # built on FXWire's digest (converges with the other three)
    cooperating: bool  # publishes an AIBOM and emits OpenLineage for itself
    carries_model_output: bool  # republishes ATLAS-FX's syndicated commentary verbatim
    upstream: str  # what it is built from (its own OpenLineage input), for cooperating ones

    @property
    def key(self) -> tuple[str, str]:
        return ("feeds", self.name)

    @property
    def id(self) -> str:
        return f"feeds:{self.name}"


SOURCES: tuple[Source, ...] = (
    Source("fxwire-europe", True, True, True, "vendor-fxwire:fx-digest"),
    Source("fxwire-asia", True, True, True, "vendor-fxwire:fx-digest"),
    Source("fxwire-americas", True, True, False, "vendor-fxwire:fx-digest"),
    Source("fxwire-rates", True, True, False, "vendor-fxwire:fx-digest"),
    Source("central-bank-wire", False, True, False, "wires:central-bank-releases"),
    Source("exchange-notices", False, True, False, "wires:exchange-bulletins"),
    Source("macro-calendar", False, True, False, "wires:statistics-offices"),
    Source("broker-research", False, True, False, "wires:broker-notes"),
    Source("press-releases", False, True, False, "wires:corporate-press"),
    Source("social-fx-chatter", False, False, False, ""),
    Source("blog-aggregator", False, False, True, ""),
)


@dataclass(frozen=True)
class Size:
    """How much data one replay generates (``quick`` runs in CI, ``full`` is the main job)."""

    name: str
    rows_per_hour: int  # embeddings per hour = one Tier 3 window
    dim: int  # embedding dimension (generated embeddings)
    baseline_hours: int  # clean history the baseline is fitted on
    null_windows: int  # bootstrap null windows of the fit (>= 10^4 in both sizes)
    texts_per_source: int  # texts sampled from each source for the Tier 4 batch
    model_texts_per_carrier: int  # of those, ATLAS-FX outputs in each carrying source
    reference_texts: int  # human-written texts of the Tier 4 reference set
    new_tokens: int  # length of each ATLAS-FX output (greedy continuation)


QUICK = Size("quick", 128, 64, 120, 10_000, 6, 3, 160, 40)
FULL = Size("full", 256, 64, 120, 10_000, 12, 6, 400, 48)
SIZES = {s.name: s for s in (QUICK, FULL)}


@dataclass(frozen=True)
class Scenario:
    """One replay: the construction plus a seed, a size and the counterfactual switches."""

    seed: int = 2026
    size: Size = FULL
    cooperating_vendors: bool = True  # False: no source or vendor publishes lineage or AIBOM
    tier3: bool = True  # False: the Tier 3 monitor is switched off in the policy
    tier4: bool = True  # False: no Tier 4 batch
    peak_share: float = 0.20  # syndicated share of the feed at hour 72
    onset_hour: int = 0  # the share starts rising here
    tier4_hour: int = 74  # the nightly Tier 4 batch
    disclosure_hour: int = 76  # FXWire discloses the refresh's inputs (if cooperating)
    end_hour: int = 78
    sources: tuple[Source, ...] = field(default=SOURCES)

    # --- the share of model output over time -----------------------------------------------

    def syndicated_share(self, hour: int) -> float:
        """Fraction of the hour's rows that are ATLAS-FX commentary: zero before the onset,
        then rising quadratically to ``peak_share`` at hour 72, flat after."""
        if hour < self.onset_hour:
            return 0.0
        span = HOURS - self.onset_hour
        x = min(hour - self.onset_hour, span) / span
        return self.peak_share * x * x

    # --- time --------------------------------------------------------------------------------

    @staticmethod
    def time_ns(hour: float) -> int:
        return int((T0 + timedelta(hours=hour)).timestamp() * 1e9)

    @staticmethod
    def rfc3339(hour: float) -> str:
        return (T0 + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- what the tiers should find ----------------------------------------------------------

    @property
    def carriers(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.carries_model_output)

    def cooperates(self, source: Source) -> bool:
        return self.cooperating_vendors and source.cooperating

    def truth(self) -> dict[str, Any]:
        """The construction, for comparison with what the product found."""
        opaque = sorted(s.id for s in self.sources if not self.cooperates(s))
        converging = sorted(s.id for s in self.sources if s.via_vendor and self.cooperates(s))
        return {
            "opaque": opaque,
            "converging": converging if len(converging) >= 2 else [],
            "converges_on": ":".join(VENDOR_PRODUCT) if len(converging) >= 2 else None,
            "re_entry_model": ":".join(MODEL_DATASET) if self.cooperating_vendors else None,
            "carrying_model_output": sorted(s.id for s in self.carriers),
            "asset_class": ASSET_CLASS,
        }
