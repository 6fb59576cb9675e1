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

# On CPU, KeOps never beat blocked GEMM on this machine (2-core AMD EPYC; KeOps compiles its
# CPU reductions as portable scalar C++, GEMM runs in BLAS). benches/bench_divergence.py,
# quiet run in docs/benchmarks.md (Tier 3), kernel phase (cross n x M + within n x n),
# KeOps vs numpy GEMM: D=16 32.7 vs 1.0 ms (M=5000, n=256) and 351 vs 14.9 ms (M=20000,
# n=1024), 21-32x slower; D=384 115-131x, D=768 127x slower. After the KeOps backend moved
# to the squared-distance form: 5.2-5.7x slower at D=16 (same bench, --dims 16).
# torch CPU vs numpy: within +-15 % at D=16, 7-27 % slower at D>=384, so `auto` keeps numpy
# on CPU and never picks KeOps there (it stays selectable by name: bounded memory, no BLAS).
KEOPS_CPU_MAX_DIM = 0
# On a GPU, KeOps keeps its advantage to higher dimension (published KeOps figures; not
# measured here: no GPU).
KEOPS_GPU_MAX_DIM = 128
# Below this many kernel evaluations, torch's per-call overhead outweighs cuBLAS speed.
# Not measured (no GPU here): an estimate (~1 ms of launch and copy overhead per call).
GPU_MIN_PAIRS = 1 << 20
# KeOps pays a fixed cost per call (argument checks, dispatch into the compiled module) that
# small reductions such as one window's own n x n term never amortise (inactive on CPU while
# KEOPS_CPU_MAX_DIM is 0).
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
