"""Calibration to sigma (DESIGN §5.2): moving-block-bootstrap null windows and ``z``.

Null windows are drawn from the calibration pool C exactly like production windows: the
same size, made of contiguous blocks of rows (keeping short-range dependence). The blocks of
one window never overlap: a row drawn twice would add ``k(y, y) = 1`` terms to the
within-window sum and bias the null upward.

``p = (1 + #{T₀ >= T}) / (1 + B₀)`` and ``z = Φ⁻¹(1 - p)``: a rank, because the MMD² null is
skewed and ``(T - mean) / sd`` would be wrong in the tail. ``z`` is capped at
``Φ⁻¹(1 - 1/(1+B₀))`` (≈ 3.72 for B₀ = 10⁴) and is ``-inf`` when every null statistic is
at least ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .errors import BaselineError

__all__ = ["NullDistribution", "block_bootstrap_indices", "z_from_p"]

_NORMAL = NormalDist()


def z_from_p(p: float) -> float:
    """``Φ⁻¹(1 - p)``; ``-inf`` at ``p = 1``."""
    if p >= 1.0:
        return -math.inf
    return _NORMAL.inv_cdf(1.0 - p)


def p_from_z(z: float) -> float:
    """One-sided upper tail probability of a standard normal."""
    return 1.0 - _NORMAL.cdf(z)


def check_pool(pool_rows: int, window: int, block_length: int) -> None:
    """Refuse a pool too small to give varied, non-overlapping null windows."""
    blocks = math.ceil(window / block_length)
    if block_length < 1 or block_length > window:
        raise BaselineError(f"block length {block_length} must be between 1 and the window size")
    needed = 2 * blocks * block_length
    if pool_rows < needed:
        raise BaselineError(
            f"calibration pool has {pool_rows} rows; windows of {window} in blocks of "
            f"{block_length} need at least {needed} (use more baseline data, a larger "
            "calibration fraction, or a smaller window)"
        )


def block_bootstrap_indices(
    rng: np.random.Generator, pool_rows: int, window: int, block_length: int
) -> np.ndarray:
    """Row indices of one null window: disjoint contiguous blocks at uniform positions.

    Draws ``b`` sorted distinct slots in ``[0, pool - b(L-1))`` and spreads them by ``i(L-1)``,
    which is uniform over all placements of ``b`` disjoint length-L blocks; no rejection loop.
    """
    blocks = math.ceil(window / block_length)
    free = pool_rows - blocks * (block_length - 1)
    slots = np.sort(rng.choice(free, size=blocks, replace=False))
    starts = slots + np.arange(blocks) * (block_length - 1)
    # Random block order: when n is not a multiple of L the last block is cut short, and that
    # must not always be the highest block (the pool's last rows would never be drawn).
    starts = starts[rng.permutation(blocks)]
    rows = (starts[:, None] + np.arange(block_length)[None, :]).reshape(-1)
    return rows[:window]


def bootstrap_windows(
    rng: np.random.Generator, pool_rows: int, window: int, block_length: int, count: int
) -> Iterator[np.ndarray]:
    for _ in range(count):
        yield block_bootstrap_indices(rng, pool_rows, window, block_length)


@dataclass(frozen=True)
class NullDistribution:
    """B₀ null statistics for one window size, sorted, and the p/z they give."""

    window_size: int
    statistics: np.ndarray  # sorted ascending, float64

    @classmethod
    def of(cls, window_size: int, values: np.ndarray) -> NullDistribution:
        values = np.sort(np.asarray(values, dtype=np.float64))
        if len(values) == 0 or not np.isfinite(values).all():
            raise BaselineError(f"null for window size {window_size} is empty or not finite")
        return cls(window_size, values)

    @property
    def count(self) -> int:
        return len(self.statistics)

    def exceedances(self, statistic: float) -> int:
        """``#{T₀ >= T}``."""
        return self.count - int(np.searchsorted(self.statistics, statistic, side="left"))

    def p_value(self, statistic: float) -> float:
        return (1 + self.exceedances(statistic)) / (1 + self.count)

    def z(self, statistic: float) -> float:
        return z_from_p(self.p_value(statistic))

    def z_many(self, statistics: np.ndarray) -> np.ndarray:
        ranks = np.searchsorted(self.statistics, statistics, side="left")
        p = (1 + self.count - ranks) / (1 + self.count)
        return np.array([z_from_p(float(v)) for v in p])

    @property
    def max_z(self) -> float:
        return z_from_p(1 / (1 + self.count))


def simulate(
    rng: np.random.Generator,
    *,
    pool_rows: int,
    window: int,
    block_length: int,
    count: int,
    statistic: Callable[[np.ndarray], tuple[float, ...]],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``count`` null windows; ``statistic(indices)`` returns one tuple per window."""
    check_pool(pool_rows, window, block_length)
    rows = []
    for indices in bootstrap_windows(rng, pool_rows, window, block_length, count):
        rows.append(statistic(indices))
        if progress is not None:
            progress(1)
    return np.asarray(rows, dtype=np.float64)
