"""Tier 3: the divergence engine (DESIGN §5).

Kernel two-sample scores of windows of input embeddings against a calibrated baseline, in
sigmas, with watch and halt alerts written to the ledger. One module per concern:
``inputs`` (validation, loading), ``backends`` (numpy/cupy GEMM, torch, KeOps), ``statistics``
(MMD², witness, similarity, paired KDS), ``calibration`` (bootstrap nulls, z), ``rules``
(watch/halt, ARL₀), ``baseline`` + ``fit`` + ``artifact`` (fitting and the on-disk format),
``monitor`` (windows, series, alerts), ``jobs`` (ledger-recorded fit and score), ``cli``.
"""

from __future__ import annotations

from .artifact import load_baseline, save_baseline
from .backends import KernelBackend, make_backend
from .baseline import Baseline, BaselineConfig
from .calibration import NullDistribution
from .errors import (
    ArtifactError,
    BackendUnavailable,
    BaselineError,
    DivergenceError,
    EncoderMismatch,
    InputError,
)
from .fit import fit_baseline
from .inputs import EmbeddingTable, load_embeddings, prepare_embeddings
from .rules import (
    AlertState,
    ConsecutiveRule,
    CusumRule,
    KOfLRule,
    Level,
    Transition,
    WatchRule,
    parse_halt_rule,
)
from .statistics import (
    Bandwidth,
    KernelScorer,
    WindowStatistic,
    WitnessModel,
    mean_similarity,
    median_bandwidth,
    paired_kds,
)

__all__ = [
    "AlertState",
    "ArtifactError",
    "BackendUnavailable",
    "Bandwidth",
    "Baseline",
    "BaselineConfig",
    "BaselineError",
    "ConsecutiveRule",
    "CusumRule",
    "DivergenceError",
    "EmbeddingTable",
    "EncoderMismatch",
    "InputError",
    "KOfLRule",
    "KernelBackend",
    "KernelScorer",
    "Level",
    "NullDistribution",
    "Transition",
    "WatchRule",
    "WindowStatistic",
    "WitnessModel",
    "fit_baseline",
    "load_baseline",
    "load_embeddings",
    "make_backend",
    "mean_similarity",
    "median_bandwidth",
    "paired_kds",
    "parse_halt_rule",
    "prepare_embeddings",
    "save_baseline",
]
