"""Generated input embeddings of the ATLAS-FX feed (what the inference pipeline would send).

Human-written news is a mixture over shared topics, each source with its own topic weights;
ATLAS-FX's commentary is a few tighter clusters near the topics it writes about (a model's
house style: less diverse, slightly off the human distribution). Each hour has
``rows_per_hour`` rows drawn from the sources by their share of the feed; the syndicated
share of the hour (:meth:`Scenario.syndicated_share`) is made of rows of the carrying sources
replaced by commentary. Deterministic in the scenario's seed.

The embeddings are generated, not encoded text: 72 hours of a real feed would take far
longer to embed on a laptop CPU than the whole replay may. The Tier 3 engine on real
sentence embeddings (all-MiniLM-L6-v2 over human and SmolLM2 text) is shown in the
real-text tests and docs/tier3.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .atlas_fx import Scenario

__all__ = ["FeedGenerator", "Hour"]

TOPICS = 16
# Share of the feed per source, in the order of SOURCES: the FXWire feeds are big, the
# opaque sources small (fixed, so every seed has the same structure).
FEED_SHARE = np.array([0.13, 0.13, 0.11, 0.09, 0.09, 0.08, 0.07, 0.08, 0.08, 0.05, 0.09])
MODEL_CLUSTERS = 3
MODEL_SHIFT = 1.1  # distance of a commentary cluster from the topic it writes about
MODEL_SPREAD = 0.55  # within-cluster noise (human rows: 1.0)


@dataclass(frozen=True)
class Hour:
    """The rows of one hour of the feed."""

    hour: int
    embeddings: np.ndarray  # (rows, dim) float32
    times_ns: np.ndarray  # (rows,) event times within the hour, increasing
    source: np.ndarray  # (rows,) index into Scenario.sources
    model_output: np.ndarray  # (rows,) bool: ATLAS-FX commentary

    @property
    def share(self) -> float:
        return float(self.model_output.mean())


class FeedGenerator:
    """The feed of one scenario; ``hour(h)`` is a pure function of the seed and ``h``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        dim = scenario.size.dim
        rng = np.random.default_rng([scenario.seed, 1])
        self.topics = rng.standard_normal((TOPICS, dim)) * 0.9
        self.topics[:, 0] += 3.0  # a common direction: all of it is FX news
        weights = rng.dirichlet(np.full(TOPICS, 0.6), size=len(scenario.sources))
        self.source_topics = weights
        about = rng.choice(TOPICS, size=MODEL_CLUSTERS, replace=False)
        shift = rng.standard_normal((MODEL_CLUSTERS, dim))
        shift *= MODEL_SHIFT / np.linalg.norm(shift, axis=1, keepdims=True)
        self.model_centres = self.topics[about] + shift
        share = FEED_SHARE[: len(scenario.sources)]
        self.feed_share = share / share.sum()
        self.carriers = np.array([s.carries_model_output for s in scenario.sources])

    def _human(self, rng: np.random.Generator, sources: np.ndarray) -> np.ndarray:
        topics = np.array([rng.choice(TOPICS, p=self.source_topics[s]) for s in sources])
        noise = rng.standard_normal((len(sources), self.scenario.size.dim))
        return self.topics[topics] + noise

    def _model(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        cluster = rng.integers(0, MODEL_CLUSTERS, size=rows)
        noise = rng.standard_normal((rows, self.scenario.size.dim))
        return self.model_centres[cluster] + MODEL_SPREAD * noise

    def hour(self, hour: int, *, share: float | None = None) -> Hour:
        """Hour ``hour`` of the feed (negative hours are the clean history before ``t0``)."""
        rows = self.scenario.size.rows_per_hour
        rng = np.random.default_rng([self.scenario.seed, 2, hour + 10_000])
        sources = rng.choice(len(self.feed_share), size=rows, p=self.feed_share)
        data = self._human(rng, sources)
        share = self.scenario.syndicated_share(hour) if share is None else share
        carrier_rows = np.flatnonzero(self.carriers[sources])
        wanted = min(round(share * rows), len(carrier_rows))
        model = np.zeros(rows, dtype=bool)
        if wanted:
            chosen = rng.choice(carrier_rows, size=wanted, replace=False)
            model[chosen] = True
            data[chosen] = self._model(rng, wanted)
        start = self.scenario.time_ns(hour)
        offsets = np.sort(rng.integers(0, 3_600 * 10**9, size=rows))
        return Hour(hour, data.astype(np.float32), start + offsets, sources, model)

    def commentary_archive(self, rows: int) -> np.ndarray:
        """Embeddings of ATLAS-FX's own past commentary: the deployer has its model's outputs,
        so the baseline can carry them as known model-generated rows (the witness and the
        contamination-fraction estimate of each window)."""
        rng = np.random.default_rng([self.scenario.seed, 3])
        return self._model(rng, rows).astype(np.float32)

    def history(self, hours: int) -> tuple[np.ndarray, np.ndarray]:
        """The clean feed of the ``hours`` hours before ``t0``: (embeddings, times_ns)."""
        parts = [self.hour(h, share=0.0) for h in range(-hours, 0)]
        return (
            np.concatenate([p.embeddings for p in parts]),
            np.concatenate([p.times_ns for p in parts]),
        )
