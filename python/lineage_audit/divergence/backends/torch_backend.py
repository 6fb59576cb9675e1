"""Blocked-GEMM backend on torch tensors: the same code on CPU (tested) and CUDA (GPU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import DEFAULT_BLOCK_ROWS, KernelBackend, exp_offset

__all__ = ["TorchBackend"]


def _import_torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(
            "backend torch needs the torch package (pip install 'lineage-audit[torch]')"
        ) from None
    return torch


class TorchBackend(KernelBackend):
    """torch.mm + exp in float32 blocks, float64 accumulation; ``device`` cpu or cuda[:i]."""

    name = "torch"

    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, device: str = "cpu") -> None:
        torch = _import_torch()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"backend torch: device {device!r} but CUDA is unavailable")
        self.torch = torch
        self._device = torch.device(device)
        super().__init__(block_rows=block_rows, device=device)

    def to_device(self, array: np.ndarray) -> Any:
        return self.torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32)).to(self._device)

    def _tensor(self, value: Any) -> Any:
        if isinstance(value, self.torch.Tensor):
            return value
        return self.to_device(value)

    def _scratch(self, rows: int, cols: int) -> Any:
        """One float32 buffer for every kernel block of a call (no allocation per block)."""
        size = min(rows, self.block_rows) * min(cols, self.block_rows)
        return self.torch.empty(size, dtype=self.torch.float32, device=self._device)

    def _block_row_sums(self, y_scaled: Any, x_block: Any, shift: float, scratch: Any) -> Any:
        rows, cols = len(y_scaled), len(x_block)
        block = scratch[: rows * cols].view(rows, cols)
        self.torch.mm(y_scaled, x_block.T, out=block)
        if shift:
            block.sub_(shift)
        block.exp_()
        return block.sum(dim=1, dtype=self.torch.float32).to(self.torch.float64)

    def cross_row_means(self, y: Any, x: Any, gamma: float) -> np.ndarray:
        y, x = self._tensor(y), self._tensor(x)
        shift, scale = exp_offset(gamma)
        out = self.torch.zeros(len(y), dtype=self.torch.float64, device=self._device)
        with self.torch.no_grad():
            scratch = self._scratch(len(y), len(x))
            for i in self.blocks(len(y)):
                y_scaled = y[i : i + self.block_rows] * (2.0 * gamma)
                acc = out[i : i + self.block_rows]
                for j in self.blocks(len(x)):
                    x_block = x[j : j + self.block_rows]
                    acc += self._block_row_sums(y_scaled, x_block, shift, scratch)
        return out.cpu().numpy() * (scale / len(x))

    def pair_sum(self, y: Any, gamma: float) -> float:
        y = self._tensor(y)
        shift, scale = exp_offset(gamma)
        total = 0.0
        with self.torch.no_grad():
            scratch = self._scratch(len(y), len(y))
            for i in self.blocks(len(y)):
                y_scaled = y[i : i + self.block_rows] * (2.0 * gamma)
                for j in self.blocks(len(y)):
                    if j < i:  # symmetric: off-diagonal block pairs counted twice
                        continue
                    y_block = y[j : j + self.block_rows]
                    rows = self._block_row_sums(y_scaled, y_block, shift, scratch)
                    part = float(rows.sum())
                    total += part if i == j else 2.0 * part
        return total * scale - len(y)
