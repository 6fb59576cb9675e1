"""Blocked-GEMM backend over any NumPy-compatible array module: numpy (CPU) or cupy (CUDA).

One implementation serves both devices, so the CUDA path runs the very code the CPU tests
exercise; only :meth:`to_device` and the final host copy differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import DEFAULT_BLOCK_ROWS
from .blocked import BlockedGemmBackend

__all__ = ["CupyBackend", "NumpyBackend"]


class _ArrayModuleBackend(BlockedGemmBackend):
    xp: Any = np

    def to_device(self, array: np.ndarray) -> Any:
        return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=self.xp.float32))

    def _prepare(self, value: Any) -> Any:
        return self.to_device(value)

    def _zeros64(self, rows: int) -> Any:
        return self.xp.zeros(rows, dtype=self.xp.float64)

    def _host(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=np.float64)

    def _scratch(self, rows: int, cols: int) -> Any:
        return self.xp.empty(
            min(rows, self.block_rows) * min(cols, self.block_rows), dtype=self.xp.float32
        )

    def _block_row_sums(self, y_scaled: Any, x_block: Any, shift: float, scratch: Any) -> Any:
        # In place in the reused scratch block: allocating a fresh block (up to 16 MiB) each
        # time costs page faults comparable to the GEMM itself at low dimension.
        xp = self.xp
        rows, cols = len(y_scaled), len(x_block)
        block = scratch[: rows * cols].reshape(rows, cols)
        xp.matmul(y_scaled, x_block.T, out=block)
        if shift:
            block -= xp.float32(shift)
        xp.exp(block, out=block)
        return block.sum(axis=1, dtype=xp.float32).astype(xp.float64)


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

    def _host(self, value: Any) -> np.ndarray:
        return np.asarray(value.get(), dtype=np.float64)
