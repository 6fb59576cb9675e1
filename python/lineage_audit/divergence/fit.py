"""Fitting a baseline from time-ordered embeddings (DESIGN §5.2).

Rows are ordered by event time (file order when there is none) and split by time: the older
``1 - calibration_fraction`` become the reference X, the newer rest the calibration pool C,
so the null reflects the drift between the reference and later clean data. The bandwidth is
frozen from X. Each C row's mean kernel value against X is computed once, which makes a null
window's cross term a mean of precomputed numbers; only its within-window term costs a
kernel evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..ledger.records import rfc3339_ns
from .backends import DEFAULT_BLOCK_ROWS, KernelBackend, make_backend
from .baseline import Baseline, BaselineConfig
from .calibration import NullDistribution, check_pool, simulate
from .errors import BaselineError, InputError
from .inputs import prepare_embeddings
from .rules import measure_arl0
from .statistics import KernelScorer, WitnessModel, mean_similarity, median_bandwidth

__all__ = ["fit_baseline"]

_CHUNK_ROWS = 4096  # progress granularity of the pool's cross terms


def fit_baseline(
    vectors: np.ndarray,
    *,
    times: np.ndarray | None = None,
    config: BaselineConfig | None = None,
    targets: np.ndarray | None = None,
    backend: str = "auto",
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = False,
    source: str | None = None,
    prepared: bool = False,
) -> Baseline:
    """Fit a baseline; ``targets`` are known model-generated embeddings (optional).

    ``prepared=True``: ``vectors`` is what :func:`prepare_embeddings` returned, unchanged
    (float32, unit rows). :class:`.jobs.FitJob` validates before its ledger intent and so
    does not pay for a second normalised copy (0.6 GB at 200k x 768)."""
    config = config or BaselineConfig()
    rows = vectors if prepared else prepare_embeddings(vectors, field="baseline embeddings")
    order = _time_order(times, len(rows))
    if order is not None:
        rows = rows[order]
    split = _split_point(len(rows), config)
    reference, pool = rows[:split], rows[split:]
    for window in config.window_sizes:
        check_pool(len(pool), window, config.block_length_for(window))
    dimension = rows.shape[1]
    target_rows = _prepare_targets(targets, dimension)
    bandwidth = median_bandwidth(reference, sample=config.bandwidth_sample, seed=config.seed)
    cross_backend = make_backend(
        backend, device=device, dimension=dimension, pairs=len(reference) * 256,
        block_rows=block_rows,
    )  # fmt: skip
    window_backend = _window_backend(backend, device, dimension, config, block_rows)
    rng = np.random.default_rng(config.seed)
    total = _work_units(config, len(pool), target_rows is not None)
    with _progress_bar(progress, total, "fitting baseline") as bar:
        xx, xx_method = _reference_term(reference, bandwidth, cross_backend, config, rng)
        witness_split = _split_targets(target_rows, config, rng)
        scorer = KernelScorer(
            reference, bandwidth, cross_backend, xx=xx, window_backend=window_backend,
            targets=None if witness_split is None else witness_split[0],
        )  # fmt: skip
        pool_cross = _chunked(scorer.cross_means, pool, bar)
        pool_witness = None
        if witness_split is not None:
            pool_witness = _chunked(scorer.target_means, pool, bar) - pool_cross
        calibration = _PoolCalibration(scorer, pool, pool_cross, pool_witness, config, rng, bar)
        nulls, sims, witness_means = calibration.nulls()
        witness = _witness_model(scorer, witness_split, pool_witness, witness_means)
        arl0 = calibration.arl0(nulls)
    return Baseline(
        config=config,
        dimension=dimension,
        bandwidth=bandwidth,
        reference=reference,
        xx=xx,
        xx_method=xx_method,
        nulls=nulls,
        similarity_nulls=sims,
        witness=witness,
        targets=None if witness_split is None else witness_split[0],
        arl0=arl0,
        provenance=_provenance(source, rows, times, order, split, cross_backend),
    )


def _time_order(times: np.ndarray | None, rows: int) -> np.ndarray | None:
    if times is None:
        return None
    times = np.asarray(times)
    if times.shape != (rows,):
        raise InputError("times", f"expected one time per row ({rows})", times.shape)
    return np.argsort(times, kind="stable")


def _split_point(rows: int, config: BaselineConfig) -> int:
    split = round(rows * (1.0 - config.calibration_fraction))
    if split < 2 or rows - split < 2:
        raise BaselineError(
            f"{rows} baseline rows are too few to split into a reference and a calibration pool"
        )
    return split


def _prepare_targets(targets: np.ndarray | None, dimension: int) -> np.ndarray | None:
    if targets is None:
        return None
    prepared = prepare_embeddings(targets, dimension=dimension, field="targets")
    if len(prepared) < 4:
        raise InputError("targets", "need at least 4 model-generated examples", len(prepared))
    return prepared


def _window_backend(
    backend: str, device: str, dimension: int, config: BaselineConfig, block_rows: int
) -> KernelBackend:
    largest = max(config.window_sizes)
    return make_backend(
        backend, device=device, dimension=dimension, pairs=largest * largest,
        block_rows=block_rows,
    )  # fmt: skip


def _work_units(config: BaselineConfig, pool_rows: int, with_targets: bool) -> int:
    sizes = len(config.window_sizes)
    cross_passes = 2 if with_targets else 1
    return cross_passes * pool_rows + sizes * (config.null_windows + config.arl_windows)


def _progress_bar(enabled: bool, total: int, label: str):
    if not enabled:
        return nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="step", leave=False)


def _chunked(compute: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, bar) -> np.ndarray:
    parts = []
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        parts.append(compute(chunk))
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(parts)


def _reference_term(
    reference: np.ndarray,
    bandwidth,
    backend: KernelBackend,
    config: BaselineConfig,
    rng: np.random.Generator,
) -> tuple[float, str]:
    """``mean_{i != j} k(x_i, x_j)``: exact, or over a seeded subsample for huge references.

    The subsample's U-statistic is unbiased for the same mean; the constant cancels in z (the
    null carries the same value) and only shifts the reported MMD² by its sampling error.
    """
    rows = len(reference)
    if rows <= config.xx_exact_max_rows:
        sample, method = reference, "exact"
    else:
        take = np.sort(rng.choice(rows, size=config.xx_exact_max_rows, replace=False))
        sample, method = reference[take], f"subsample:{config.xx_exact_max_rows}"
    m = len(sample)
    value = backend.pair_sum(backend.to_device(sample), bandwidth.gamma) / (m * (m - 1))
    return float(value), method


def _split_targets(
    targets: np.ndarray | None, config: BaselineConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Targets for the witness, and a held-out part to measure its mean on model rows."""
    if targets is None:
        return None
    order = rng.permutation(len(targets))
    held = max(2, round(len(targets) * config.target_holdout))
    return targets[np.sort(order[held:])], targets[np.sort(order[:held])]


class _PoolCalibration:
    """Null windows and null streams drawn from the calibration pool."""

    def __init__(
        self,
        scorer: KernelScorer,
        pool: np.ndarray,
        pool_cross: np.ndarray,
        pool_witness: np.ndarray | None,
        config: BaselineConfig,
        rng: np.random.Generator,
        bar,
    ) -> None:
        self.scorer = scorer
        self.pool = pool
        self.pool_cross = pool_cross
        self.pool_witness = pool_witness
        self.config = config
        self.rng = rng
        self.bar = bar

    def statistic(self, indices: np.ndarray) -> tuple[float, float, float]:
        """``(MMD², mean similarity, witness mean)`` of the pool rows at ``indices``."""
        window = self.pool[indices]
        stat, _ = self.scorer.terms(window, cross=self.pool_cross[indices])
        witness = math.nan
        if self.pool_witness is not None:
            witness = float(self.pool_witness[indices].mean())
        return stat.mmd2, mean_similarity(window), witness

    def _tick(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def nulls(self):
        nulls, sims, witness = {}, {}, {}
        for window in self.config.window_sizes:
            values = simulate(
                self.rng,
                pool_rows=len(self.pool),
                window=window,
                block_length=self.config.block_length_for(window),
                count=self.config.null_windows,
                statistic=self.statistic,
                progress=self._tick,
            )
            nulls[window] = NullDistribution.of(window, values[:, 0])
            sims[window] = NullDistribution.of(window, values[:, 1])
            witness[window] = values[:, 2]
        return nulls, sims, witness

    def arl0(self, nulls: dict[int, NullDistribution]) -> dict[int, dict[str, Any]]:
        """False-halt run length of the configured rule on null streams, per window size."""
        result = {}
        for window, null in nulls.items():
            streams = self._streams(window, null)
            estimate = measure_arl0(self.config.halt, streams)
            self._tick(max(0, self.config.arl_windows - estimate.windows))
            entry = estimate.to_json()
            entry["stride"] = self.config.stride_for(window)
            iid = getattr(self.config.halt, "iid_arl0", None)
            entry["iid_model_arl0"] = iid() if iid else None
            result[window] = entry
        return result

    def _streams(self, window: int, null: NullDistribution) -> Iterator[Iterator[float]]:
        budget = self.config.arl_windows
        while budget > 0:
            length = min(budget, self.config.arl_stream_windows)
            budget -= length
            yield self._stream(window, null, length)

    def _stream(self, window: int, null: NullDistribution, length: int) -> Iterator[float]:
        """z of consecutive windows (with the configured stride) over one null row stream."""
        stride = self.config.stride_for(window)
        rows = _BlockStream(self.rng, len(self.pool), self.config.block_length_for(window), window)
        for index in range(length):
            indices = rows.take(index * stride, window)
            self._tick(1)
            yield null.z(self.statistic(indices)[0])


class _BlockStream:
    """An endless row sequence of pool blocks; blocks near each other never overlap.

    Any window of the stream spans at most ``ceil(window/L) + 1`` consecutive blocks, and a
    new block is redrawn until it overlaps none of that many predecessors, so no window
    holds a row twice.
    """

    def __init__(self, rng: np.random.Generator, pool_rows: int, length: int, window: int):
        self.rng = rng
        self.pool_rows = pool_rows
        self.length = length
        self.horizon = math.ceil(window / length) + 1
        self.starts: list[int] = []
        self.offset = 0  # stream position of self.starts[0]

    def take(self, start: int, count: int) -> np.ndarray:
        while (self.offset + len(self.starts) * self.length) < start + count:
            self._append_block()
        first = (start - self.offset) // self.length
        self._forget(first)
        blocks = np.asarray(self.starts)
        rows = (blocks[:, None] + np.arange(self.length)[None, :]).reshape(-1)
        skip = start - self.offset
        return rows[skip : skip + count]

    def _forget(self, first_needed: int) -> None:
        keep_from = max(0, min(first_needed, len(self.starts) - self.horizon))
        if keep_from:
            del self.starts[:keep_from]
            self.offset += keep_from * self.length

    def _append_block(self) -> None:
        recent = self.starts[-self.horizon :]
        for _ in range(1000):
            start = int(self.rng.integers(0, self.pool_rows - self.length + 1))
            if all(abs(start - other) >= self.length for other in recent):
                self.starts.append(start)
                return
        raise BaselineError("calibration pool too small to draw non-overlapping null streams")


def _witness_model(
    scorer: KernelScorer,
    split: tuple[np.ndarray, np.ndarray] | None,
    pool_witness: np.ndarray | None,
    null_witness_means: dict[int, np.ndarray],
) -> WitnessModel | None:
    if split is None or pool_witness is None:
        return None
    _, held_out = split
    model_rows = scorer.target_means(held_out) - scorer.cross_means(held_out)
    row_var = float(np.var(pool_witness, ddof=1))
    inflation = {
        window: float(np.var(means, ddof=1) / (row_var / window)) if row_var > 0 else 1.0
        for window, means in null_witness_means.items()
    }
    largest = inflation[max(inflation)]
    return WitnessModel(
        mu_clean=float(pool_witness.mean()),
        se_clean=math.sqrt(row_var * largest / len(pool_witness)),
        mu_model=float(model_rows.mean()),
        se_model=float(np.std(model_rows, ddof=1) / math.sqrt(len(model_rows))),
        row_var_clean=row_var,
        inflation=inflation,
    )


def _provenance(
    source: str | None,
    rows: np.ndarray,
    times: np.ndarray | None,
    order: np.ndarray | None,
    split: int,
    backend: KernelBackend,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "source": source,
        "rows": len(rows),
        "reference_rows": split,
        "calibration_rows": len(rows) - split,
        "backend": backend.label,
    }
    if times is not None and order is not None:
        ordered = np.asarray(times)[order]
        info["reference_time"] = [rfc3339_ns(ordered[0]), rfc3339_ns(ordered[split - 1])]
        info["calibration_time"] = [rfc3339_ns(ordered[split]), rfc3339_ns(ordered[-1])]
    return info
