"""The interface every kernel backend implements, and the kernel they all compute.

Kernel: the Gaussian ``k(a, b) = exp(-gamma * ||a - b||^2)`` on L2-normalised rows, which for
unit vectors is ``exp(2 * gamma * (a . b - 1))``: one matrix product, a scale and an exp. Two
reductions cover every statistic of the engine:

- ``cross_row_means(y, x)``: for each row of ``y``, the mean kernel value against all of ``x``
  (the MMD cross term, the witness score, the null pool's per-row means);
- ``pair_sum(y)``: the sum of ``k(y_i, y_j)`` over ordered pairs ``i != j`` (the within-sample
  terms of the unbiased MMD^2).

Backends never hold more than one ``block_rows x block_rows`` kernel block at a time, so
memory is bounded by the block size, not by the reference size. Results come back as host
float64 (sums of float32 blocks are accumulated in float64).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["DEFAULT_BLOCK_ROWS", "KernelBackend", "exp_offset"]

DEFAULT_BLOCK_ROWS = 2048

# exp(2*gamma*dot) overflows float32 past ~88; below this we sum exp(2*gamma*dot) and scale
# by exp(-2*gamma) once (one pass fewer per element), above it we subtract first.
_MAX_UNSHIFTED_EXPONENT = 80.0


def exp_offset(gamma: float) -> tuple[float, float]:
    """``(shift, scale)``: sum ``exp(2*gamma*dot - shift)`` blocks, then multiply by ``scale``.

    ``shift + log(scale) == 2*gamma`` always; the shift is 0 when no overflow is possible.
    """
    two_gamma = 2.0 * gamma
    if two_gamma <= _MAX_UNSHIFTED_EXPONENT:
        return 0.0, math.exp(-two_gamma)
    return two_gamma, 1.0


class KernelBackend(ABC):
    """Blocked Gaussian-kernel reductions on one device."""

    name: str = "abstract"

    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, device: str = "cpu") -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.block_rows = int(block_rows)
        self.device = device

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, block_rows={self.block_rows})"

    @property
    def label(self) -> str:
        """Short name for tables and series, e.g. ``numpy/cpu``."""
        return f"{self.name}/{self.device}"

    @abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """A backend-native copy (or view) of a float32 (n, D) array, kept for reuse."""

    @abstractmethod
    def cross_row_means(self, y: Any, x: Any, gamma: float) -> np.ndarray:
        """``out[i] = mean_j k(y_i, x_j)``, float64 on the host."""

    @abstractmethod
    def pair_sum(self, y: Any, gamma: float) -> float:
        """``sum_{i != j} k(y_i, y_j)`` over ordered pairs."""

    def prepare(self, dimension: int) -> None:
        """Get ready for reductions at ``dimension`` (a backend that compiles does it here,
        so that it is not the first window that waits). Nothing to do by default."""
        return None

    def blocks(self, rows: int) -> range:
        return range(0, rows, self.block_rows)
