"""The blocked-GEMM loops shared by the numpy/cupy and torch backends.

Subclasses supply array primitives (device arrays, a scratch block, one block's row sums);
the blocking, the symmetric halving of ``pair_sum`` and the float64 accumulation live here
once, so every device runs the same arithmetic in the same order.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from .base import KernelBackend, exp_offset

__all__ = ["BlockedGemmBackend"]


class BlockedGemmBackend(KernelBackend):
    """``exp(2*gamma*(y . x) - shift)`` in blocks of at most ``block_rows**2``, summed per row."""

    @abstractmethod
    def _prepare(self, value: Any) -> Any:
        """``value`` as this backend's float32 device array (no copy when it already is)."""

    @abstractmethod
    def _zeros64(self, rows: int) -> Any: ...

    @abstractmethod
    def _scratch(self, rows: int, cols: int) -> Any:
        """One float32 buffer reused by every block of a call (no allocation per block)."""

    @abstractmethod
    def _block_row_sums(self, y_scaled: Any, x_block: Any, shift: float, scratch: Any) -> Any:
        """Row sums of ``exp(y_scaled @ x_block.T - shift)``: float32 block, float64 out."""

    @abstractmethod
    def _host(self, value: Any) -> np.ndarray: ...

    def _no_grad(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def cross_row_means(self, y: Any, x: Any, gamma: float) -> np.ndarray:
        y, x = self._prepare(y), self._prepare(x)
        shift, scale = exp_offset(gamma)
        out = self._zeros64(len(y))
        with self._no_grad():
            scratch = self._scratch(len(y), len(x))
            for i in self.blocks(len(y)):
                y_scaled = y[i : i + self.block_rows] * (2.0 * gamma)
                acc = out[i : i + self.block_rows]  # a view: += accumulates into out
                for j in self.blocks(len(x)):
                    acc += self._block_row_sums(y_scaled, x[j : j + self.block_rows], shift,
                                                scratch)  # fmt: skip
        return self._host(out) * (scale / len(x))

    def pair_sum(self, y: Any, gamma: float) -> float:
        y = self._prepare(y)
        shift, scale = exp_offset(gamma)
        total = 0.0
        with self._no_grad():
            scratch = self._scratch(len(y), len(y))
            for i in self.blocks(len(y)):
                y_scaled = y[i : i + self.block_rows] * (2.0 * gamma)
                for j in self.blocks(len(y)):
                    if j < i:  # symmetric: each off-diagonal block pair is counted twice below
                        continue
                    rows = self._block_row_sums(y_scaled, y[j : j + self.block_rows], shift,
                                                scratch)  # fmt: skip
                    part = float(rows.sum())
                    total += part if i == j else 2.0 * part
        # k(y, y) = 1 exactly by definition; the diagonal is n of the scaled total.
        return total * scale - len(y)
