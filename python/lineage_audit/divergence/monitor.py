"""The monitor (DESIGN §5.3): windows per asset class, scores, alert rules, ledger records.

Rows arrive in batches per asset class. Count windows take ``size`` rows and advance by
``stride`` rows; time windows take the rows with event time in ``[t, t + duration)`` and
advance ``t`` by ``stride``; a time window closes when a later row arrives (or on
:meth:`Monitor.flush`) and is thinned evenly to the largest calibrated size it can fill.
Each scored window gives T (MMD²), p, z, effect, λ̂ and the similarity signal; the asset's
:class:`AlertState` turns z into levels, and every level change is a write-ahead ledger
action whose body notifies the listeners — the record exists before anyone is told.

A batch is validated whole (dimension, encoder, finiteness, time order) before any state
changes, so a bad batch is refused with nothing scored, stored or recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ledger import Ledger
from .backends import DEFAULT_BLOCK_ROWS, make_backend
from .baseline import Baseline
from .errors import InputError
from .inputs import prepare_embeddings
from .rules import AlertState, HaltRule, Level, Transition, WatchRule
from .series import SeriesWriter, WindowResult
from .statistics import KernelScorer, mean_similarity

__all__ = ["AssetMonitor", "Monitor", "WindowPolicy"]

Listener = Callable[[Transition, WindowResult | None], None]


@dataclass(frozen=True)
class WindowPolicy:
    """How an asset's rows become windows: by count (default) or by event time."""

    size: int
    stride: int | None = None
    duration_ns: int | None = None
    stride_ns: int | None = None

    def __post_init__(self) -> None:
        if self.size < 2:
            raise InputError("window.size", "expected >= 2", self.size)
        if self.stride is not None and self.stride < 1:
            raise InputError("window.stride", "expected >= 1", self.stride)
        if self.duration_ns is not None and self.duration_ns <= 0:
            raise InputError("window.duration", "expected > 0", self.duration_ns)
        if self.stride_ns is not None and self.stride_ns <= 0:
            raise InputError("window.stride", "expected a positive duration", self.stride_ns)

    @property
    def by_time(self) -> bool:
        return self.duration_ns is not None

    @property
    def row_stride(self) -> int:
        return self.stride or self.size

    @property
    def time_stride(self) -> int:
        return self.stride_ns or int(self.duration_ns or 0)


class AssetMonitor:
    """Window state, scorer and alert state of one asset class."""

    def __init__(
        self,
        asset: str,
        baseline: Baseline,
        policy: WindowPolicy,
        *,
        watch: WatchRule | None = None,
        halt: HaltRule | None = None,
        backend: str = "auto",
        device: str = "auto",
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        if not policy.by_time:
            baseline.null_for(policy.size)  # refuse an uncalibrated count window now
        self.asset = asset
        self.baseline = baseline
        self.policy = policy
        self.alerts = AlertState(
            asset, watch or baseline.config.watch, halt or baseline.config.halt
        )
        cross = make_backend(
            backend, device=device, dimension=baseline.dimension,
            pairs=len(baseline.reference) * policy.size, block_rows=block_rows,
        )  # fmt: skip
        self.window_backend = make_backend(
            backend, device=device, dimension=baseline.dimension,
            pairs=policy.size * policy.size, block_rows=block_rows,
        )  # fmt: skip
        self.scorer = KernelScorer(
            baseline.reference, baseline.bandwidth, cross, xx=baseline.xx,
            targets=baseline.targets, window_backend=self.window_backend,
        )  # fmt: skip
        self._rows = np.zeros((0, baseline.dimension), dtype=np.float32)
        self._times: np.ndarray | None = None
        self._offset = 0  # stream row index of self._rows[0]
        self._next_start = 0  # count windows: stream row where the next window starts
        self._window_start_ns: int | None = None  # time windows: start of the next window
        self._last_time: int | None = None
        self.windows = 0
        self.last_window_end = 0  # stream row after the last window scored

    # --- input ------------------------------------------------------------------------------

    def validate(
        self, vectors: Any, times: Any = None, encoder_id: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The batch as unit float32 rows and int64 times, or an error; changes nothing."""
        rows, _ = self.validate_rows(vectors, encoder_id)
        if not self.policy.by_time:
            return rows, None
        if times is None:
            raise InputError("times", f"asset {self.asset!r} uses time windows; times required")
        stamps = np.asarray(times, dtype=np.int64)
        if stamps.shape != (len(rows),):
            raise InputError("times", f"expected one time per row ({len(rows)})", stamps.shape)
        _check_time_order(stamps, self._last_time)
        return rows, stamps

    @property
    def rows_seen(self) -> int:
        """Rows added to the stream so far."""
        return self._offset + len(self._rows)

    @property
    def pending_rows(self) -> int:
        """Rows received since the end of the last window scored."""
        return self.rows_seen - self.last_window_end

    def add(self, rows: np.ndarray, times: np.ndarray | None) -> None:
        self._rows = np.concatenate([self._rows, rows]) if len(self._rows) else rows
        if times is not None:
            self._times = times if self._times is None else np.concatenate([self._times, times])
            self._last_time = int(times[-1])
            if self._window_start_ns is None:
                self._window_start_ns = int(times[0])

    # --- windows ----------------------------------------------------------------------------

    def ready_windows(self, *, final: bool = False) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Windows complete now, as ``(rows, placement)``; consumes rows no longer needed."""
        return self._time_windows(final) if self.policy.by_time else self._count_windows()

    def _count_windows(self) -> list[tuple[np.ndarray, dict[str, Any]]]:
        size, out = self.policy.size, []
        while self._next_start + size <= self._offset + len(self._rows):
            local = self._next_start - self._offset
            out.append((self._rows[local : local + size], self._placement(local, local + size)))
            self._next_start += self.policy.row_stride
        # With stride > size the next window may start beyond the rows seen so far: drop only
        # what is buffered, so later rows keep their true stream positions.
        self._drop_before(min(self._next_start - self._offset, len(self._rows)))
        return out

    def _time_windows(self, final: bool) -> list[tuple[np.ndarray, dict[str, Any]]]:
        out = []
        assert self.policy.duration_ns is not None
        while self._times is not None and self._window_start_ns is not None:
            start, end = self._window_start_ns, self._window_start_ns + self.policy.duration_ns
            if not final and (self._last_time is None or self._last_time < end):
                break  # window still open: a later row may yet fall into it
            if final and not len(self._times):
                break
            lo, hi = np.searchsorted(self._times, [start, end], side="left")
            out.append((self._rows[lo:hi], self._placement(int(lo), int(hi), start, end)))
            self._window_start_ns = start + self.policy.time_stride
            if final and hi >= len(self._times):
                self._window_start_ns = None
                break
            self._drop_before(int(np.searchsorted(self._times, self._window_start_ns)))
        return out

    def _placement(self, lo: int, hi: int, t0: int | None = None, t1: int | None = None):
        return {
            "start_row": self._offset + lo,
            "end_row": self._offset + hi,
            "start_time_ns": t0,
            "end_time_ns": t1,
        }

    def _drop_before(self, local: int) -> None:
        if local <= 0:
            return
        self._rows = self._rows[local:]
        if self._times is not None:
            self._times = self._times[local:]
        self._offset += local

    # --- scoring ----------------------------------------------------------------------------

    def evaluate(self, vectors: Any, *, encoder_id: str | None = None) -> WindowResult:
        """Score one batch as one window, outside the stream: no window state, no alerts."""
        rows, _ = self.validate_rows(vectors, encoder_id)
        placement = {"start_row": 0, "end_row": len(rows), "start_time_ns": None,
                     "end_time_ns": None}  # fmt: skip
        if not self.policy.by_time and len(rows) != self.policy.size:
            self.baseline.null_for(len(rows))  # refuse a size without a null
        return self._score(rows, placement, index=-1, size=len(rows))

    def validate_rows(self, vectors: Any, encoder_id: str | None) -> tuple[np.ndarray, None]:
        array = np.asarray(vectors)
        if array.ndim == 2:
            self.baseline.check_encoder(encoder_id, array.shape[1])
        rows = prepare_embeddings(array, dimension=self.baseline.dimension, field="embeddings")
        return rows, None

    def score(self, rows: np.ndarray, placement: dict[str, Any]) -> WindowResult:
        """Score the next window of the stream (rows already validated)."""
        index = self.windows
        self.windows += 1
        self.last_window_end = placement["end_row"]
        return self._score(rows, placement, index=index, size=self._scoring_size(len(rows)))

    def _score(
        self, rows: np.ndarray, placement: dict[str, Any], *, index: int, size: int | None
    ) -> WindowResult:
        if size is None:
            return self._result(index, rows, placement, status="insufficient")
        if size < len(rows):  # thin a time window evenly to a calibrated size
            rows = rows[np.linspace(0, len(rows) - 1, size).round().astype(np.int64)]
        stat, cross = self.scorer.terms(rows)
        mmd2 = stat.mmd2
        null = self.baseline.null_for(size)
        p = null.p_value(mmd2)
        similarity = mean_similarity(rows)
        lam, lam_se = math.nan, math.nan
        if self.baseline.witness is not None and self.baseline.targets is not None:
            lam, lam_se = self.baseline.witness.estimate(self.scorer.target_means(rows) - cross)
        return self._result(
            index, rows, placement, status="scored", scored=size, mmd2=mmd2, p=p,
            z=null.z(mmd2), similarity=similarity,
            z_similarity=self.baseline.similarity_nulls[size].z(similarity),
            lam=lam, lam_se=lam_se,
        )  # fmt: skip

    def _scoring_size(self, rows: int) -> int | None:
        if not self.policy.by_time:
            return self.policy.size
        fitting = [n for n in self.baseline.window_sizes if n <= rows]
        return max(fitting) if fitting else None

    def _result(self, index, rows, placement, *, status, scored=0, mmd2=math.nan, p=math.nan,
                z=math.nan, similarity=math.nan, z_similarity=math.nan, lam=math.nan,
                lam_se=math.nan) -> WindowResult:  # fmt: skip
        return WindowResult(
            asset=self.asset,
            window=index,
            status=status,
            rows=placement["end_row"] - placement["start_row"],
            scored_rows=scored,
            **placement,
            mmd2=mmd2,
            effect=math.sqrt(max(mmd2, 0.0)) if status == "scored" else math.nan,
            p=p,
            z=z,
            lambda_hat=lam,
            lambda_se=lam_se,
            mean_similarity=similarity,
            z_similarity=z_similarity,
            level=self.alerts.level.value,
            bandwidth_id=self.baseline.bandwidth.id,
            baseline_version=self.baseline.version,
            backend=self.scorer.backend.label,
        )


def _check_time_order(stamps: np.ndarray, last: int | None) -> None:
    if len(stamps) > 1 and (np.diff(stamps) < 0).any():
        row = int(np.flatnonzero(np.diff(stamps) < 0)[0]) + 1
        raise InputError(f"times[{row}]", "earlier than the row before it", int(stamps[row]))
    if last is not None and len(stamps) and stamps[0] < last:
        raise InputError("times[0]", f"earlier than the last row already seen ({last})", stamps[0])


class Monitor:
    """Asset monitors, the series writer, the ledger and the alert listeners together."""

    def __init__(
        self,
        *,
        ledger: Ledger | None = None,
        actor: str = "lineage-audit",
        series: SeriesWriter | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.ledger = ledger
        self.actor = actor
        self.series = series
        self.listeners = list(listeners)
        self.assets: dict[str, AssetMonitor] = {}

    def add_asset(self, asset: str, baseline: Baseline, policy: WindowPolicy | None = None,
                  **options: Any) -> AssetMonitor:  # fmt: skip
        if asset in self.assets:
            raise InputError("asset", "already monitored", asset)
        if self.ledger is not None and not baseline.manifest_sha256:
            raise InputError("baseline", "save the baseline before monitoring with a ledger")
        policy = policy or WindowPolicy(baseline.window_sizes[0])
        monitor = AssetMonitor(asset, baseline, policy, **options)
        self.assets[asset] = monitor
        return monitor

    def _asset(self, asset: str) -> AssetMonitor:
        if asset not in self.assets:
            raise InputError("asset", f"unknown asset class; known: {sorted(self.assets)}", asset)
        return self.assets[asset]

    def observe(
        self, asset: str, vectors: Any, times: Any = None, *, encoder_id: str | None = None
    ) -> list[WindowResult]:
        """Add a batch of rows; score, record and return the windows it completes."""
        monitor = self._asset(asset)
        rows, stamps = monitor.validate(vectors, times, encoder_id)
        monitor.add(rows, stamps)
        return self._process(monitor, monitor.ready_windows())

    def flush(self, asset: str) -> list[WindowResult]:
        """Close an asset's open time window (end of input); count windows need no flush."""
        monitor = self._asset(asset)
        if not monitor.policy.by_time:
            return []
        return self._process(monitor, monitor.ready_windows(final=True))

    def reset(self, asset: str, *, actor: str, reason: str) -> Transition | None:
        """Clear a latched halt (a person's decision, recorded with their identity)."""
        monitor = self._asset(asset)
        transition = monitor.alerts.reset(monitor.windows, reason)
        if transition is not None:
            self._record(monitor, transition, None, actor=actor)
        return transition

    def _process(self, monitor: AssetMonitor, windows) -> list[WindowResult]:
        results: list[WindowResult] = []
        try:
            for rows, placement in windows:
                result = monitor.score(rows, placement)
                transition = None
                if result.status == "scored":
                    transition = monitor.alerts.step(result.window, result.z, result.effect)
                    result = _with_level(result, monitor.alerts.level)
                results.append(result)
                if transition is not None:
                    self._record(monitor, transition, result, actor=self.actor)
        finally:  # windows already scored reach the series even if a listener or append fails
            if self.series is not None:
                self.series.write(results)
        return results

    def _record(
        self, monitor: AssetMonitor, transition: Transition, result: WindowResult | None,
        *, actor: str,
    ) -> None:  # fmt: skip
        if self.ledger is None:
            self._notify(transition, result)
            return
        baseline = monitor.baseline
        subject = [(f"baseline:{baseline.version}", baseline.manifest_sha256)]
        fields = _transition_fields(transition, result, monitor)
        with self.ledger.action(
            f"alert.{transition.after.value}", actor=actor, subject=subject, **fields
        ) as act:
            self._notify(transition, result)
            act.result = {"listeners": len(self.listeners)}

    def _notify(self, transition: Transition, result: WindowResult | None) -> None:
        for listener in self.listeners:
            listener(transition, result)


def _with_level(result: WindowResult, level: Level) -> WindowResult:
    from dataclasses import replace

    return replace(result, level=level.value)


def _finite(value: float) -> float | None:
    return value if isinstance(value, float) and math.isfinite(value) else None


def _transition_fields(
    transition: Transition, result: WindowResult | None, monitor: AssetMonitor
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "asset": transition.asset,
        "from": transition.before.value,
        "to": transition.after.value,
        "window": transition.window,
        "reason": transition.reason,
        "watch_rule": monitor.alerts.watch.to_json(),
        "halt_rule": monitor.alerts.halt.to_json(),
        "baseline_version": monitor.baseline.version,
        "bandwidth_id": monitor.baseline.bandwidth.id,
    }
    if result is not None:
        fields.update(
            z=_finite(result.z),
            p=_finite(result.p),
            mmd2=_finite(result.mmd2),
            effect=_finite(result.effect),
            lambda_hat=_finite(result.lambda_hat),
            rows=[result.start_row, result.end_row],
        )
    return fields
