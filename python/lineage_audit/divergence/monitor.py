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
from .journal import JournalRecord, RowJournal, why_not_following
from .rules import AlertState, HaltRule, Level, Transition, WatchRule
from .series import SeriesWriter, WindowResult
from .statistics import KernelScorer, mean_similarity

__all__ = ["AlertEvent", "AssetMonitor", "Monitor", "ObserveOutcome", "WindowPolicy"]


@dataclass(frozen=True)
class AlertEvent:
    """What a listener is told about an alert transition, after its intent is on the ledger.

    ``ledger_seq`` is the sequence number of the intent record (None without a ledger);
    ``result`` is the window that caused it (None for a manual reset).
    """

    transition: Transition
    result: WindowResult | None
    actor: str
    baseline_version: str
    ledger_seq: int | None = None


Listener = Callable[[AlertEvent], None]


@dataclass(frozen=True)
class ObserveOutcome:
    """One batch of :meth:`Monitor.observe_many`: the windows it completed, or its error.

    ``pending_rows`` counts the stream's rows after the end of the last window completed up
    to and including this batch (rows still waiting for a window)."""

    windows: list[WindowResult]
    pending_rows: int
    error: Exception | None = None


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
        self.resumed_next_start: int | None = None  # where a restarted stream's window began
        self._last_time: int | None = None
        self.windows = 0
        self.last_window_end = 0  # stream row after the last window scored
        self.options = {"backend": backend, "device": device, "block_rows": block_rows}

    def resume(
        self, *, windows: int, stream_row: int, level: Level, next_start: int | None = None,
        window_start_ns: int | None = None,
    ) -> None:  # fmt: skip
        """Continue a stream recorded earlier (a restart): next window index, stream position
        after the last window, and the alert level then; where the next window starts (count
        windows: ``next_start``, the last one's start plus the stride; time windows:
        ``window_start_ns``). Only before any row is added.

        A next window that starts before ``stream_row`` (overlapping windows) needs the rows
        it shares with the last one: :meth:`rewind` takes them again (from the row journal);
        until then the stream continues at ``stream_row`` and the next window starts there."""
        if self.rows_seen or self.windows:
            raise InputError("resume", "the stream has already started", self.rows_seen)
        self.windows = windows
        self._offset = self._next_start = self.last_window_end = stream_row
        if next_start is not None and next_start > stream_row:  # stride > size: a gap
            self._next_start = next_start
        self.resumed_next_start = next_start
        self._window_start_ns = window_start_ns
        self.alerts.level = level

    def rewind(self, stream_row: int) -> None:
        """Take the stream again from ``stream_row``, before the resumed position: the rows
        an overlapping next window shares with the last one, replayed from the row journal.
        Only right after :meth:`resume`, with no rows buffered."""
        if len(self._rows) or not 0 <= stream_row <= self.rows_seen:
            raise InputError("rewind", f"the stream has rows up to {self.rows_seen}", stream_row)
        self._offset = stream_row
        if not self.policy.by_time:
            self._next_start = stream_row

    @property
    def next_window_start_ns(self) -> int | None:
        """Time windows: when the next window starts (None until the first row)."""
        return self._window_start_ns

    @property
    def first_needed_row(self) -> int:
        """The first stream row a later window may still use (rows before it never are)."""
        return self._offset

    def skip_to(self, stream_row: int) -> None:
        """Continue the stream at ``stream_row`` (after rows that were dropped, e.g. by a
        baseline switch); only while no rows are buffered."""
        if len(self._rows) or stream_row < self.rows_seen:
            raise InputError("skip_to", f"the stream has rows up to {self.rows_seen}", stream_row)
        self._offset = self._next_start = self.last_window_end = stream_row
        self.resumed_next_start = None

    def successor(self, baseline: Baseline) -> AssetMonitor:
        """A monitor of the same asset on another baseline, continuing this one's stream: the
        window count, the stream position and the alert level carry over (a latched halt stays
        latched); rows of a window not yet complete are dropped, since they would be scored
        against two baselines."""
        policy = self.policy
        if not policy.by_time and policy.size not in baseline.window_sizes:
            policy = WindowPolicy(baseline.window_sizes[0])
        new = AssetMonitor(self.asset, baseline, policy, **self.options)
        new.alerts.level = self.alerts.level
        new.windows = self.windows
        new._offset = new._next_start = new.last_window_end = self.rows_seen
        new._last_time = self._last_time
        return new

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
        return self.evaluate_many([self.check_one_off(vectors, encoder_id)])[0]

    def check_one_off(self, vectors: Any, encoder_id: str | None = None) -> np.ndarray:
        """Validated unit rows of a one-off window (a calibrated size), or an error."""
        rows, _ = self.validate_rows(vectors, encoder_id)
        if not self.policy.by_time and len(rows) != self.policy.size:
            self.baseline.null_for(len(rows))  # refuse a size without a null
        return rows

    def evaluate_many(self, batches: Sequence[np.ndarray]) -> list[WindowResult]:
        """One-off windows of checked rows (:meth:`check_one_off`), scored in one kernel call."""
        windows = [
            (rows, {"start_row": 0, "end_row": len(rows), "start_time_ns": None,
                    "end_time_ns": None}, -1, len(rows))
            for rows in batches
        ]  # fmt: skip
        return self._score_many(windows)

    def validate_rows(self, vectors: Any, encoder_id: str | None) -> tuple[np.ndarray, None]:
        array = np.asarray(vectors)
        if array.ndim == 2:
            self.baseline.check_encoder(encoder_id, array.shape[1])
        rows = prepare_embeddings(array, dimension=self.baseline.dimension, field="embeddings")
        return rows, None

    def score(self, rows: np.ndarray, placement: dict[str, Any]) -> WindowResult:
        """Score the next window of the stream (rows already validated)."""
        return self.score_windows([(rows, placement)])[0]

    def score_windows(
        self, windows: Sequence[tuple[np.ndarray, dict[str, Any]]]
    ) -> list[WindowResult]:
        """Score the next windows of the stream (rows already validated), in one kernel call."""
        numbered = []
        for rows, placement in windows:
            numbered.append((rows, placement, self.windows, self._scoring_size(len(rows))))
            self.windows += 1
            self.last_window_end = placement["end_row"]
        return self._score_many(numbered)

    def _score_many(self, windows: list[tuple[np.ndarray, dict[str, Any], int, int | None]]):
        """Cross terms of every window from one backend call over the stacked rows (the
        micro-batching the server relies on); the small within-window terms per window."""
        thinned = [_thin(rows, size) for rows, _, _, size in windows]
        scored = [rows for rows, (_, _, _, size) in zip(thinned, windows, strict=True) if size]
        cross = self._split(self.scorer.cross_means, scored)
        witness = self.baseline.witness is not None and self.baseline.targets is not None
        targets = self._split(self.scorer.target_means, scored) if witness else None
        out, k = [], 0
        for rows, (_, placement, index, size) in zip(thinned, windows, strict=True):
            if size is None:
                out.append(self._result(index, rows, placement, status="insufficient"))
                continue
            target = None if targets is None else targets[k]
            out.append(self._scored(rows, placement, index, cross[k], target))
            k += 1
        return out

    @staticmethod
    def _split(means, batches: list[np.ndarray]) -> list[np.ndarray]:
        if not batches:
            return []
        if len(batches) == 1:
            return [means(batches[0])]
        stacked = means(np.concatenate(batches))
        return np.split(stacked, np.cumsum([len(b) for b in batches])[:-1])

    def _scored(self, rows, placement, index, cross, target) -> WindowResult:
        size = len(rows)
        stat, _ = self.scorer.terms(rows, cross)
        mmd2 = stat.mmd2
        null = self.baseline.null_for(size)
        similarity = mean_similarity(rows)
        lam, lam_se = math.nan, math.nan
        if target is not None:
            assert self.baseline.witness is not None
            lam, lam_se = self.baseline.witness.estimate(target - cross)
        return self._result(
            index, rows, placement, status="scored", scored=size, mmd2=mmd2, p=null.p_value(mmd2),
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


def _thin(rows: np.ndarray, size: int | None) -> np.ndarray:
    """A time window thinned evenly to a calibrated size (unchanged if it already fits)."""
    if size is None or size >= len(rows):
        return rows
    return rows[np.linspace(0, len(rows) - 1, size).round().astype(np.int64)]


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
        journal: RowJournal | None = None,
    ) -> None:
        self.ledger = ledger
        self.actor = actor
        self.series = series
        self.journal = journal  # stream rows durable before observe_many returns
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

    def switch_baseline(
        self, asset: str, baseline: Baseline, *, actor: str, reason: str
    ) -> tuple[AssetMonitor, int | None]:
        """Make ``baseline`` the one that scores ``asset`` (see :meth:`AssetMonitor.successor`),
        as a write-ahead ledger action by ``actor``; returns the new monitor and the intent's
        sequence number (None without a ledger)."""
        old = self._asset(asset)
        if baseline.dimension != old.baseline.dimension:
            raise InputError(
                "baseline", f"dimension {baseline.dimension} differs from the asset's "
                f"{old.baseline.dimension}", baseline.version,
            )  # fmt: skip
        new = old.successor(baseline)
        if self.ledger is None:
            self._cut_journal(asset, new.rows_seen)
            self.assets[asset] = new
            return new, None
        subject = [
            (f"baseline:{baseline.version}", baseline.manifest_sha256),
            (f"baseline:{old.baseline.version}", old.baseline.manifest_sha256),
        ]
        with self.ledger.action(
            "baseline.activate", actor=actor, subject=subject, asset=asset, reason=reason,
            previous=old.baseline.version, version=baseline.version,
            dropped_rows=old.rows_seen - old.last_window_end,
        ) as act:  # fmt: skip
            assert act.intent is not None
            self._cut_journal(asset, new.rows_seen)
            self.assets[asset] = new
            act.result = {"windows": new.windows, "stream_row": new.rows_seen}
        return new, act.intent.seq

    def _cut_journal(self, asset: str, row: int) -> None:
        """Rows before ``row`` (the incomplete window a switch drops) never come back."""
        if self.journal is not None:
            journal = self.journal.stream(asset)
            journal.cut(row)
            journal.commit()

    def _asset(self, asset: str) -> AssetMonitor:
        if asset not in self.assets:
            raise InputError("asset", f"unknown asset class; known: {sorted(self.assets)}", asset)
        return self.assets[asset]

    def observe(
        self, asset: str, vectors: Any, times: Any = None, *, encoder_id: str | None = None
    ) -> list[WindowResult]:
        """Add a batch of rows; score, record and return the windows it completes."""
        (outcome,) = self.observe_many(asset, [(vectors, times, encoder_id, None)])
        if outcome.error is not None:
            raise outcome.error
        return outcome.windows

    def observe_many(
        self, asset: str, batches: Sequence[tuple[Any, Any, str | None, str | None]]
    ) -> list[ObserveOutcome]:
        """Several batches ``(vectors, times, encoder_id, actor)`` appended in order, their
        windows scored together in one kernel call (the server's micro-batching).

        Each batch is validated whole before it is appended: a bad one gets its error in its
        outcome and changes nothing, the others go on. Alerts are recorded with the actor of
        the batch that completed the window (``None``: this monitor's actor). Equivalent to
        calling :meth:`observe` once per batch in the same order.
        """
        monitor = self._asset(asset)
        journal = self.journal.stream(asset) if self.journal is not None else None
        owners: list[tuple[int, str]] = []  # (batch index, actor) per window, in stream order
        windows: list[tuple[np.ndarray, dict[str, Any]]] = []
        marks: list[tuple[int, int | None, Exception | None]] = []
        last_end = monitor.last_window_end
        for i, (vectors, times, encoder_id, actor) in enumerate(batches):
            try:
                rows, stamps = monitor.validate(vectors, times, encoder_id)
            except Exception as exc:  # refused whole; the other batches go on
                marks.append((len(windows), None, exc))
                continue
            if journal is not None:
                journal.add(monitor.rows_seen, rows, stamps, actor)
            monitor.add(rows, stamps)
            ready = monitor.ready_windows()
            windows += ready
            owners += [(i, actor or self.actor)] * len(ready)
            last_end = ready[-1][1]["end_row"] if ready else last_end
            marks.append((len(windows), monitor.rows_seen - last_end, None))
        results = self._process_journaled(monitor, journal, windows,
                                          [actor for _, actor in owners])  # fmt: skip
        return _outcomes(marks, results)

    def replay(self, asset: str, records: Sequence[JournalRecord]) -> list[WindowResult]:
        """Append journaled rows (validated when they first arrived) to a resumed stream,
        in order from its current row, and score the windows they complete; the journal is
        not written (the rows are already in it)."""
        monitor = self._asset(asset)
        owners: list[str] = []
        windows: list[tuple[np.ndarray, dict[str, Any]]] = []
        for record in records:
            why = why_not_following(record, monitor.rows_seen, monitor.baseline.dimension,
                                    monitor.policy.by_time)  # fmt: skip
            if why is not None:
                raise InputError("journal", why, asset)
            monitor.add(record.rows, record.times if monitor.policy.by_time else None)
            ready = monitor.ready_windows()
            windows += ready
            owners += [record.actor or self.actor] * len(ready)
        return self._process(monitor, windows, owners)

    def flush(self, asset: str) -> list[WindowResult]:
        """Close an asset's open time window (end of input); count windows need no flush."""
        monitor = self._asset(asset)
        if not monitor.policy.by_time:
            return []
        windows = monitor.ready_windows(final=True)
        return self._process(monitor, windows, [self.actor] * len(windows))

    def reset(self, asset: str, *, actor: str, reason: str) -> Transition | None:
        """Clear a latched halt (a person's decision, recorded with their identity)."""
        monitor = self._asset(asset)
        transition = monitor.alerts.reset(monitor.windows, reason)
        if transition is not None:
            self._record(monitor, transition, None, actor=actor)
        return transition

    def _process(self, monitor: AssetMonitor, windows, actors: Sequence[str]) -> list[WindowResult]:
        results: list[WindowResult] = []
        try:
            scored = monitor.score_windows(windows)
            for result, actor in zip(scored, actors, strict=True):
                transition = None
                if result.status == "scored":
                    transition = monitor.alerts.step(result.window, result.z, result.effect)
                    result = _with_level(result, monitor.alerts.level)
                results.append(result)
                if transition is not None:
                    self._record(monitor, transition, result, actor=actor)
        finally:  # windows already scored reach the series even if a listener or append fails
            if self.series is not None:
                self.series.write(results)
        return results

    def _process_journaled(self, monitor: AssetMonitor, journal, windows,
                           actors: Sequence[str]) -> list[WindowResult]:  # fmt: skip
        """:meth:`_process`, then the journal's records of this call made durable (before
        any caller is answered), compacted on success to the rows a later window may use."""
        if journal is None:
            return self._process(monitor, windows, actors)
        try:
            results = self._process(monitor, windows, actors)
        except BaseException:
            journal.commit()  # the rows are in the stream either way
            raise
        journal.commit(keep_from=monitor.first_needed_row)
        return results

    def _record(
        self, monitor: AssetMonitor, transition: Transition, result: WindowResult | None,
        *, actor: str,
    ) -> None:  # fmt: skip
        version = monitor.baseline.version
        if self.ledger is None:
            self._notify(AlertEvent(transition, result, actor, version))
            return
        subject = [(f"baseline:{version}", monitor.baseline.manifest_sha256)]
        fields = _transition_fields(transition, result, monitor)
        with self.ledger.action(
            f"alert.{transition.after.value}", actor=actor, subject=subject, **fields
        ) as act:
            assert act.intent is not None
            self._notify(AlertEvent(transition, result, actor, version, act.intent.seq))
            act.result = {"listeners": len(self.listeners)}

    def _notify(self, event: AlertEvent) -> None:
        for listener in self.listeners:
            listener(event)


def _outcomes(marks, results: list[WindowResult]) -> list[ObserveOutcome]:
    """Split the windows of :meth:`Monitor.observe_many` back to the batches that completed
    them; ``marks`` holds (windows so far, pending rows, error) per batch."""
    out, start = [], 0
    for end, pending, error in marks:
        if error is not None:
            out.append(ObserveOutcome([], 0, error))
            continue
        out.append(ObserveOutcome(results[start:end], pending or 0))
        start = end
    return out


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
