"""Backend registry and the ``auto`` choice by device, dimension and size.

The crossover points are measured, not assumed: ``benches/bench_divergence.py`` times every
backend on the same data; the figures behind each constant are quoted beside it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from ..errors import BackendUnavailable
from .array_module import CupyBackend, NumpyBackend
from .base import DEFAULT_BLOCK_ROWS, KernelBackend
from .keops_backend import KeOpsBackend
from .torch_backend import TorchBackend

__all__ = ["BACKENDS", "auto_backend_name", "cuda_available", "make_backend"]

BACKENDS: dict[str, Callable[..., KernelBackend]] = {
    "numpy": NumpyBackend,
    "torch": TorchBackend,
    "cupy": CupyBackend,
    "keops": KeOpsBackend,
}

# On CPU, KeOps beats blocked GEMM only at low dimension (its reduction is O(D) scalar work
# per pair, GEMM runs at BLAS speed). Measured on this 2-core machine by
# benches/bench_divergence.py (see docs/benchmarks.md): faster at D=16, slower at D>=384.
KEOPS_CPU_MAX_DIM = 64
# On a GPU, KeOps keeps its advantage to higher dimension (published KeOps figures; not
# measured here: no GPU).
KEOPS_GPU_MAX_DIM = 128
# Below this many kernel evaluations, torch's per-call overhead outweighs cuBLAS speed.
GPU_MIN_PAIRS = 1 << 20
# KeOps pays a fixed cost per call (argument checks, dispatch into the compiled module) that
# small reductions such as one window's own n x n term never amortise.
KEOPS_MIN_PAIRS = 1 << 20


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_available() -> bool:
    """True when torch sees a CUDA device (the only way we look for one)."""
    if not _installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def auto_backend_name(dimension: int, pairs: int, device: str = "auto") -> tuple[str, str]:
    """``(backend, device)`` for reductions over ``pairs`` kernel values at ``dimension``."""
    if device == "auto":
        device = "cuda" if cuda_available() and pairs >= GPU_MIN_PAIRS else "cpu"
    keops = _installed("pykeops")
    if device.startswith("cuda"):
        if keops and dimension <= KEOPS_GPU_MAX_DIM:
            return "keops", device
        return ("torch" if _installed("torch") else "cupy"), device
    if keops and dimension <= KEOPS_CPU_MAX_DIM and pairs >= KEOPS_MIN_PAIRS:
        return "keops", "cpu"
    return "numpy", "cpu"


def make_backend(
    name: str = "auto",
    *,
    device: str = "auto",
    dimension: int | None = None,
    pairs: int = 0,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> KernelBackend:
    """Instantiate a backend by name, or pick one with ``name="auto"``."""
    if name == "auto":
        if dimension is None:
            raise ValueError("backend 'auto' needs the embedding dimension")
        name, device = auto_backend_name(dimension, pairs, device)
    if name not in BACKENDS:
        raise BackendUnavailable(
            f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}"
        )
    if device == "auto":
        device = "cuda" if name == "cupy" else "cpu"
    return BACKENDS[name](block_rows=block_rows, device=device)
