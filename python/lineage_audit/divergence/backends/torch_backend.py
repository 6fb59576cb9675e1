"""Blocked-GEMM backend on torch tensors: the same code on CPU (tested) and CUDA (GPU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import DEFAULT_BLOCK_ROWS
from .blocked import BlockedGemmBackend

__all__ = ["TorchBackend"]


def _import_torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(
            "backend torch needs the torch package (pip install 'lineage-audit[torch]')"
        ) from None
    return torch


class TorchBackend(BlockedGemmBackend):
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

    def _prepare(self, value: Any) -> Any:
        if isinstance(value, self.torch.Tensor):
            return value
        return self.to_device(value)

    def _zeros64(self, rows: int) -> Any:
        return self.torch.zeros(rows, dtype=self.torch.float64, device=self._device)

    def _host(self, value: Any) -> np.ndarray:
        return value.cpu().numpy()

    def _no_grad(self):
        return self.torch.no_grad()

    def _scratch(self, rows: int, cols: int) -> Any:
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
