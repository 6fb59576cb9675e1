"""Dynamic micro-batching: concurrent scoring calls of one asset class become one kernel call.

Each asset class has one :class:`AssetBatcher`: a bounded queue and one consumer task. The
consumer takes the first waiting job, waits up to ``max_wait`` for company (unless
``max_rows`` are already queued, or the last call had no company: a lone caller is not
charged the wait on every request), takes jobs in arrival order up to ``max_rows`` and runs them
in the engine thread pool as one call: one-off windows through
:meth:`AssetMonitor.evaluate_many`, stream batches through :meth:`Monitor.observe_many`. One
consumer per asset also serialises everything that touches the asset's window state, so no
lock is needed. With batching off every job is its own kernel call (the same path otherwise,
so the two are comparable).

A full queue answers RESOURCE_EXHAUSTED at once (back-pressure instead of unbounded memory);
a job whose deadline passed while queued is answered DEADLINE_EXCEEDED and never scored; a
job whose caller went away (cancelled) is skipped if it has not started.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import grpc

from ..divergence.monitor import Monitor
from .codec import Batch
from .errors import RequestError
from .metrics import ServerMetrics

__all__ = ["AssetBatcher", "BatchSettings", "Job"]


@dataclass(frozen=True)
class BatchSettings:
    enabled: bool = True
    max_rows: int = 8192  # rows per coalesced kernel call
    max_wait: float = 0.002  # seconds the first job waits for company
    max_queue_rows: int = 65_536  # rows waiting per asset; beyond: RESOURCE_EXHAUSTED


@dataclass(eq=False)
class Job:
    """One call's work: ``kind`` "score" (one-off window), "observe" (stream batch) or "call"
    (a function run in order with the scoring, e.g. a baseline switch)."""

    kind: str
    batch: Batch | None = None
    actor: str | None = None
    deadline: float | None = None  # loop.time() by which it must start, or None
    call: Callable[[], Any] | None = None
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def rows(self) -> int:
        return 0 if self.batch is None else len(self.batch.rows)


class AssetBatcher:
    def __init__(
        self,
        asset: str,
        monitor: Monitor,
        executor: Executor,
        settings: BatchSettings,
        metrics: ServerMetrics,
    ) -> None:
        self.asset = asset
        self.monitor = monitor
        self.executor = executor
        self.settings = settings
        self.metrics = metrics
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._last_size = 2  # jobs in the last kernel call (start by waiting for company)

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name=f"batcher:{self.asset}")

    async def submit(self, job: Job) -> Any:
        """Queue ``job`` and wait for its result (or its error)."""
        if self._closing:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry")
        limit = self.settings.max_queue_rows
        if self._queue and self._queued_rows + job.rows > limit:
            self.metrics.rejected(self.asset, "queue_full")
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"scoring queue of asset class {self.asset!r} is full ({self._queued_rows} rows "
                f"waiting, limit {limit}); retry with backoff",
            )
        self._queue.append(job)
        self._queued_rows += job.rows
        self._report_depth()
        self._arrived.set()
        return await job.future  # cancelled with the call: the job is then skipped if queued

    async def close(self) -> None:
        """Refuse new jobs, finish the queued ones, stop the consumer."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    # --- consumer ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            settings = self.settings
            # Wait for company only when the last call had some: a lone caller is not
            # charged max_wait per request, concurrent callers still coalesce.
            wait = settings.enabled and settings.max_wait > 0 and self._last_size > 1
            if wait and not self._closing and self._queued_rows < settings.max_rows:
                await asyncio.sleep(settings.max_wait)
            jobs = self._take(loop.time())
            if not jobs:
                continue
            self._last_size = len(jobs)
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self.executor, self._execute, jobs)
            except Exception as exc:  # the whole call failed (e.g. the ledger): tell each job
                outcomes = [exc] * len(jobs)
            self.metrics.batch_scored(
                self.asset, len(jobs), sum(j.rows for j in jobs), time.perf_counter() - started
            )
            for job, outcome in zip(jobs, outcomes, strict=True):
                _settle(job.future, outcome)

    def _take(self, now: float) -> list[Job]:
        """Jobs for one kernel call, in arrival order; expired or abandoned ones answered."""
        jobs: list[Job] = []
        rows = 0
        limit = self.settings.max_rows if self.settings.enabled else 0
        while self._queue:
            job = self._queue[0]
            if jobs and (rows + job.rows > limit or job.kind != jobs[0].kind):
                break
            self._queue.popleft()
            self._queued_rows -= job.rows
            if job.future.done():  # the caller went away
                continue
            if job.deadline is not None and now > job.deadline:
                self.metrics.rejected(self.asset, "deadline")
                job.future.set_exception(
                    RequestError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"deadline passed while queued behind {self._queued_rows} rows of "
                        f"asset class {self.asset!r}; nothing was scored",
                    )
                )
                continue
            jobs.append(job)
            rows += job.rows
            if job.kind == "call":
                break  # calls run alone
        self._report_depth()
        return jobs

    def _report_depth(self) -> None:
        self.metrics.queue_depth(self.asset, len(self._queue), self._queued_rows)

    # --- engine thread ----------------------------------------------------------------------

    def _execute(self, jobs: list[Job]) -> list[Any]:
        """Results or exceptions, one per job (runs in the engine pool)."""
        kind = jobs[0].kind
        if kind == "call":
            assert jobs[0].call is not None
            return [_attempt(jobs[0].call)]
        if kind == "score":
            return self._score(jobs)
        return self._observe(jobs)

    def _score(self, jobs: list[Job]) -> list[Any]:
        asset = self.monitor.assets[self.asset]
        checked: list[Any] = []
        for job in jobs:
            assert job.batch is not None
            checked.append(_attempt(asset.check_one_off, job.batch.rows, job.batch.encoder_id))
        good = [rows for rows in checked if not isinstance(rows, Exception)]
        results = iter(asset.evaluate_many(good) if good else [])
        return [c if isinstance(c, Exception) else next(results) for c in checked]

    def _observe(self, jobs: list[Job]) -> list[Any]:
        batches = []
        for job in jobs:
            assert job.batch is not None
            b = job.batch
            batches.append((b.rows, b.times, b.encoder_id, job.actor))
        outcomes = self.monitor.observe_many(self.asset, batches)
        for outcome in outcomes:
            for window in outcome.windows:
                self.metrics.window_scored(self.asset, window.level, window.z)
        if self.monitor.ledger is not None and any(o.windows for o in outcomes):
            self.metrics.ledger_size(self.monitor.ledger.size)  # alerts may have grown it
        return [o.error if o.error is not None else o for o in outcomes]


def _attempt(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # handed to the one caller it concerns
        return exc


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
