"""The Tier 3 statistics (DESIGN §5.1): pure functions plus :class:`KernelScorer`.

- Unbiased MMD² (Gretton et al., JMLR 2012) between the reference X (M rows) and a window Y
  (n rows): ``mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)``,
  and the effect size ``sqrt(max(MMD², 0))``.
- Witness score of a row against known model-generated examples R:
  ``s(y) = mean_r k(y, r) - mean_x k(y, x)``; its window mean is linear in the fraction of
  model-like rows, which gives the estimate λ̂ (see :class:`WitnessModel`).
- Within-window mean cosine similarity (diversity collapse raises it).
- :func:`paired_kds`: the paired Kernel Divergence Score of Choi et al., arXiv:2502.00678.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import KernelBackend
from .errors import InputError
from .inputs import prepare_embeddings

__all__ = [
    "Bandwidth",
    "KernelScorer",
    "WindowStatistic",
    "WitnessModel",
    "mean_similarity",
    "median_bandwidth",
    "paired_kds",
]


@dataclass(frozen=True)
class Bandwidth:
    """Gaussian kernel ``exp(-||a-b||² / (2 sigma²))``, i.e. ``gamma = 1 / (2 sigma²)``."""

    sigma: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError("bandwidth.sigma", "expected a finite positive number", self.sigma)

    @property
    def gamma(self) -> float:
        return 1.0 / (2.0 * self.sigma * self.sigma)

    @property
    def id(self) -> str:
        """Stable identifier of the frozen kernel, recorded with every score."""
        text = json.dumps({"kernel": "gaussian", "sigma": float(self.sigma)}, sort_keys=True)
        return "gauss-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {"kernel": "gaussian", "sigma": self.sigma, "gamma": self.gamma, "id": self.id}


def median_bandwidth(reference: np.ndarray, *, sample: int = 2000, seed: int = 0) -> Bandwidth:
    """Median heuristic on unit rows: ``sigma² = median(||x_i - x_j||²) / 2`` over a sample.

    With this convention the kernel is ``exp(-d² / median d²)`` (the convention alibi-detect
    uses too, so a pinned sigma means the same kernel in both).
    """
    rows = len(reference)
    if rows < 2:
        raise InputError("reference", "need at least 2 rows to set a bandwidth", rows)
    rng = np.random.default_rng(seed)
    take = rng.choice(rows, size=min(sample, rows), replace=False)
    sub = np.asarray(reference[np.sort(take)], dtype=np.float64)
    sq = np.einsum("ij,ij->i", sub, sub)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (sub @ sub.T)
    upper = d2[np.triu_indices(len(sub), k=1)]
    median = float(np.median(np.maximum(upper, 0.0)))
    if median <= 1e-9:  # float32 round-off of identical unit rows, not a distance
        raise InputError("reference", "all sampled embeddings are identical; no bandwidth", rows)
    return Bandwidth(math.sqrt(median / 2.0))


@dataclass(frozen=True)
class WindowStatistic:
    """The kernel terms of one window and the MMD² built from them."""

    n: int
    xx: float  # mean_{i != j} k(x_i, x_j) (fixed per baseline)
    yy: float  # mean_{i != j} k(y_i, y_j)
    xy: float  # mean_{i, j} k(x_i, y_j)

    @property
    def mmd2(self) -> float:
        return self.xx + self.yy - 2.0 * self.xy

    @property
    def effect(self) -> float:
        return math.sqrt(max(self.mmd2, 0.0))


def mean_similarity(window: np.ndarray) -> float:
    """Mean cosine similarity over ordered pairs ``i != j`` of unit rows, in O(nD).

    ``sum_{i != j} y_i . y_j = ||sum_i y_i||² - sum_i ||y_i||²``.
    """
    n = len(window)
    if n < 2:
        raise InputError("window", "need at least 2 rows for a within-window similarity", n)
    total = np.asarray(window, dtype=np.float64).sum(axis=0)
    norms = float(np.einsum("ij,ij->", window, window, dtype=np.float64))
    return (float(total @ total) - norms) / (n * (n - 1))


class KernelScorer:
    """MMD² and witness terms of windows against one reference, on one backend.

    The reference is moved to the backend's device once. ``xx`` (the reference's own term) is
    computed once, or given (a baseline stores it). ``window_backend`` computes the windows'
    own n x n terms (small reductions may prefer another backend than the n x M ones).
    """

    def __init__(
        self,
        reference: np.ndarray,
        bandwidth: Bandwidth,
        backend: KernelBackend,
        *,
        xx: float | None = None,
        targets: np.ndarray | None = None,
        window_backend: KernelBackend | None = None,
    ) -> None:
        if len(reference) < 2:
            raise InputError("reference", "need at least 2 rows", len(reference))
        self.dimension = int(reference.shape[1])
        self.bandwidth = bandwidth
        self.backend = backend
        self.window_backend = window_backend or backend
        backend.prepare(self.dimension)  # a compiling backend compiles now, not at a window
        if self.window_backend is not backend:
            self.window_backend.prepare(self.dimension)
        self.reference_rows = len(reference)
        self._reference = backend.to_device(reference)
        self._targets = None if targets is None else backend.to_device(targets)
        self.xx = self.reference_term() if xx is None else float(xx)

    def reference_term(self) -> float:
        m = self.reference_rows
        return self.backend.pair_sum(self._reference, self.bandwidth.gamma) / (m * (m - 1))

    def cross_means(self, rows: np.ndarray) -> np.ndarray:
        """Per row: mean kernel value against the reference."""
        return self.backend.cross_row_means(
            self.backend.to_device(rows), self._reference, self.bandwidth.gamma
        )

    def target_means(self, rows: np.ndarray) -> np.ndarray:
        """Per row: mean kernel value against the targets R (witness's first term)."""
        if self._targets is None:
            raise InputError("targets", "this scorer has no model-generated examples")
        return self.backend.cross_row_means(
            self.backend.to_device(rows), self._targets, self.bandwidth.gamma
        )

    def within(self, window: np.ndarray) -> float:
        """``mean_{i != j} k(y_i, y_j)`` of a window."""
        n = len(window)
        if n < 2:
            raise InputError("window", "need at least 2 rows for an unbiased MMD²", n)
        backend = self.window_backend
        return backend.pair_sum(backend.to_device(window), self.bandwidth.gamma) / (n * (n - 1))

    def terms(
        self, rows: np.ndarray, cross: np.ndarray | None = None
    ) -> tuple[WindowStatistic, np.ndarray]:
        """MMD² terms of already-validated unit rows, and their per-row cross means (the
        witness reuses them); ``cross`` may be given when precomputed (calibration pool)."""
        cross = self.cross_means(rows) if cross is None else cross
        return WindowStatistic(len(rows), self.xx, self.within(rows), float(cross.mean())), cross

    def statistic(self, window: np.ndarray) -> tuple[WindowStatistic, np.ndarray]:
        """:meth:`terms` of a window after validation and L2 normalisation."""
        window = prepare_embeddings(window, dimension=self.dimension, field="window")
        if len(window) < 2:
            raise InputError("window", "need at least 2 rows for an unbiased MMD²", len(window))
        return self.terms(window)


@dataclass(frozen=True)
class WitnessModel:
    """Calibration of the witness window mean into a contamination fraction λ̂.

    ``E[mean s] = (1-λ) mu_clean + λ mu_model``, so ``λ̂ = (s̄ - mu_clean) / (mu_model -
    mu_clean)``. ``mu_clean`` and ``row_var_clean`` come from the calibration pool,
    ``mu_model`` from held-out model-generated examples; ``inflation[n]`` is the ratio of the
    null window means' variance to ``row_var_clean / n`` (dependence between rows), measured
    on the bootstrap windows. Uncertainty by the delta method over s̄, mu_model and mu_clean.
    """

    mu_clean: float
    se_clean: float
    mu_model: float
    se_model: float
    row_var_clean: float
    inflation: dict[int, float]

    def estimate(self, witness_rows: np.ndarray) -> tuple[float, float]:
        """``(λ̂, standard error)`` for one window's per-row witness scores."""
        n = len(witness_rows)
        gap = self.mu_model - self.mu_clean
        if gap <= 0:
            return math.nan, math.nan
        mean = float(np.mean(witness_rows))
        lam = (mean - self.mu_clean) / gap
        row_var = float(np.var(witness_rows, ddof=1)) if n > 1 else self.row_var_clean
        var_mean = row_var * self._inflation(n) / n
        var = var_mean + lam**2 * self.se_model**2 + (1 - lam) ** 2 * self.se_clean**2
        return lam, math.sqrt(var) / gap

    def _inflation(self, n: int) -> float:
        if n in self.inflation:
            return self.inflation[n]
        nearest = min(self.inflation, key=lambda size: abs(size - n))
        return self.inflation[nearest]

    def to_json(self) -> dict[str, Any]:
        return {
            "mu_clean": self.mu_clean,
            "se_clean": self.se_clean,
            "mu_model": self.mu_model,
            "se_model": self.se_model,
            "row_var_clean": self.row_var_clean,
            "inflation": {str(k): v for k, v in sorted(self.inflation.items())},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> WitnessModel:
        return cls(
            mu_clean=float(obj["mu_clean"]),
            se_clean=float(obj["se_clean"]),
            mu_model=float(obj["mu_model"]),
            se_model=float(obj["se_model"]),
            row_var_clean=float(obj["row_var_clean"]),
            inflation={int(k): float(v) for k, v in obj["inflation"].items()},
        )


def paired_kds(
    before: np.ndarray,
    after: np.ndarray,
    *,
    bandwidth: Bandwidth | None = None,
    block_rows: int = 1024,
) -> float:
    """Paired Kernel Divergence Score (Choi, Khanov, Wei, Li, ICML 2025, arXiv:2502.00678).

    ``before`` and ``after`` embed the same n items with the model before and after a
    fine-tune. With ``Φ = exp(-gamma d²)`` on each side,
    ``KDS = -(1/E) sum_{i,j} |Φ_ij log(Φ_ij / Φ'_ij)| = -(1/E) sum Φ_ij gamma |d'²_ij - d²_ij|``,
    with ``E = n²`` here (the mean over ordered pairs) and the bandwidth from ``before``'s
    median heuristic unless given. Scores nearer 0 mean the fine-tune moved the items less,
    which the paper reads as more of them having been seen (contamination). This is a
    model-version audit, not the streaming Tier 3 statistic.
    """
    before = prepare_embeddings(before, field="before")
    after = prepare_embeddings(after, dimension=None, field="after")
    if before.shape[0] != after.shape[0]:
        raise InputError(
            "after", f"expected the same {before.shape[0]} items as before", after.shape
        )
    bandwidth = bandwidth or median_bandwidth(before)
    gamma = bandwidth.gamma
    b64, a64 = before.astype(np.float64), after.astype(np.float64)
    total = 0.0
    for i in range(0, len(b64), block_rows):
        d2_before = np.maximum(2.0 - 2.0 * (b64[i : i + block_rows] @ b64.T), 0.0)
        d2_after = np.maximum(2.0 - 2.0 * (a64[i : i + block_rows] @ a64.T), 0.0)
        total += float((np.exp(-gamma * d2_before) * gamma * np.abs(d2_after - d2_before)).sum())
    return -total / (len(b64) ** 2)
