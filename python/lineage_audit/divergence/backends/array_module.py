"""Blocked-GEMM backend over any NumPy-compatible array module: numpy (CPU) or cupy (CUDA).

One implementation serves both devices, so the CUDA path runs the very code the CPU tests
exercise; only :meth:`to_device` and the final host copy differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import DEFAULT_BLOCK_ROWS, KernelBackend, exp_offset

__all__ = ["CupyBackend", "NumpyBackend"]


class _ArrayModuleBackend(KernelBackend):
    xp: Any = np

    def to_device(self, array: np.ndarray) -> Any:
        return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=self.xp.float32))

    def _to_host(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float64)

    def _scratch(self, rows: int, cols: int) -> Any:
        """One float32 buffer for every kernel block of a call (see ``_block_row_sums``)."""
        return self.xp.empty(
            min(rows, self.block_rows) * min(cols, self.block_rows), dtype=self.xp.float32
        )

    def _block_row_sums(self, y_scaled: Any, x_block: Any, shift: float, scratch: Any) -> Any:
        """Row sums of ``exp(y_scaled @ x_block.T - shift)``, float32 block, float64 out.

        The block is computed in place in ``scratch``, reused across blocks: allocating a
        fresh block (up to 16 MiB) each time costs page faults comparable to the GEMM itself
        at low dimension.
        """
        xp = self.xp
        rows, cols = len(y_scaled), len(x_block)
        block = scratch[: rows * cols].reshape(rows, cols)
        xp.matmul(y_scaled, x_block.T, out=block)
        if shift:
            block -= xp.float32(shift)
        xp.exp(block, out=block)
        return block.sum(axis=1, dtype=xp.float32).astype(xp.float64)

    def cross_row_means(self, y: Any, x: Any, gamma: float) -> np.ndarray:
        xp = self.xp
        shift, scale = exp_offset(gamma)
        out = xp.zeros(len(y), dtype=xp.float64)
        scratch = self._scratch(len(y), len(x))
        for i in self.blocks(len(y)):
            y_scaled = y[i : i + self.block_rows] * xp.float32(2.0 * gamma)
            acc = out[i : i + self.block_rows]
            for j in self.blocks(len(x)):
                x_block = x[j : j + self.block_rows]
                acc += self._block_row_sums(y_scaled, x_block, shift, scratch)
        return self._to_host(out) * (scale / len(x))

    def pair_sum(self, y: Any, gamma: float) -> float:
        xp = self.xp
        shift, scale = exp_offset(gamma)
        total = 0.0
        scratch = self._scratch(len(y), len(y))
        for i in self.blocks(len(y)):
            y_scaled = y[i : i + self.block_rows] * xp.float32(2.0 * gamma)
            for j in self.blocks(len(y)):
                if j < i:  # symmetric: each off-diagonal block pair is counted twice below
                    continue
                y_block = y[j : j + self.block_rows]
                rows = self._block_row_sums(y_scaled, y_block, shift, scratch)
                part = float(rows.sum())
                total += part if i == j else 2.0 * part
        # k(y, y) = 1 exactly by definition; the diagonal is n of the scaled total.
        return total * scale - len(y)


class NumpyBackend(_ArrayModuleBackend):
    """CPU default: numpy float32 GEMM (OpenBLAS) in bounded blocks."""

    name = "numpy"
    xp = np

    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, device: str = "cpu") -> None:
        if device != "cpu":
            raise BackendUnavailable(f"backend numpy runs on cpu only, not {device!r}")
        super().__init__(block_rows=block_rows, device=device)


class CupyBackend(_ArrayModuleBackend):
    """CUDA: the same blocked GEMM on cupy arrays (cuBLAS). Untested here: no GPU."""

    name = "cupy"

    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, device: str = "cuda") -> None:
        try:
            import cupy
        except ImportError:
            raise BackendUnavailable(
                "backend cupy needs the cupy package (pip install 'lineage-audit[cuda]')"
            ) from None
        if not device.startswith("cuda"):
            raise BackendUnavailable(f"backend cupy runs on cuda only, not {device!r}")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise BackendUnavailable(f"backend cupy: no usable CUDA device ({exc})") from None
        if count == 0:
            raise BackendUnavailable("backend cupy: no CUDA device")
        self.xp = cupy
        super().__init__(block_rows=block_rows, device=device)

    def _to_host(self, value: Any) -> np.ndarray:
        return np.asarray(value.get(), dtype=np.float64)
