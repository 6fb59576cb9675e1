"""Backend registry and the ``auto`` choice by device, dimension and size.

The crossover points are measured, not assumed: ``benches/bench_divergence.py`` times every
backend on the same data; the figures behind each constant are quoted beside it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
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

# On CPU, KeOps is the fastest backend at low dimension once its reductions are compiled with
# vector exp and the reference passed as columns (keops_backend.py). benches/bench_divergence.py,
# runs of 2026-11-30 in docs/benchmarks.md (Tier 3), kernel phase (cross n x M + within n x n),
# KeOps over numpy GEMM time at D=16 for M 5k/20k x n 256/1,024: 0.39-0.67 with OpenBLAS's own
# kernel choice, 0.65-0.95 with OPENBLAS_CORETYPE=Haswell (faster thin GEMM). At M=20,000,
# n=1,024 (Haswell): D=24 17.7 vs 20.1 ms, D=32 23.6 vs 22.1 ms, D=48 49 vs 24 ms; so KeOps
# up to D=24. torch CPU at D=16 took 0.46-1.25 of numpy's time, within 1 % of KeOps once and
# slower in the other 11 (shape, run) pairs; at D>=384 it took 0.88-1.23 of numpy's time
# (faster once, at D=384, M=20,000, n=1,024; 1.01-1.23 elsewhere). `auto` keeps numpy there:
# one BLAS, no torch import on the scoring path.
KEOPS_CPU_MAX_DIM = 24
# On a GPU, KeOps keeps its advantage to higher dimension (published KeOps figures; not
# measured here: no GPU).
KEOPS_GPU_MAX_DIM = 128
# Below this many kernel evaluations, torch's per-call overhead outweighs cuBLAS speed.
# Not measured (no GPU here): an estimate (~1 ms of launch and copy overhead per call).
GPU_MIN_PAIRS = 1 << 20
# KeOps pays a fixed cost per call (~0.08 ms here: argument checks, dispatch into the compiled
# module). At a 256-row window's own 256 x 256 term it already matched numpy (0.11-0.12 vs
# 0.13-0.14 ms at D=16), so below this size numpy is used.
KEOPS_MIN_PAIRS = 1 << 16


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _keops_can_compile() -> bool:
    # KeOps compiles its CPU reductions on first use: without a C++ compiler it would fail
    # at the first window, so `auto` does not pick it (it stays selectable by name).
    return _installed("pykeops") and bool(shutil.which(os.environ.get("CXX") or "g++"))


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
    if dimension <= KEOPS_CPU_MAX_DIM and pairs >= KEOPS_MIN_PAIRS and _keops_can_compile():
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
