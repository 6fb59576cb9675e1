"""Ingest: validated OpenLineage events into the store, attested by the ledger.

Signing one ledger record per event would cap ingest at the signing rate (~1 ms of ML-DSA-65
per record here). Instead events are attested in **batches**: the events of one ingest call
(or of several concurrent calls, coalesced by :class:`IngestQueue`) are the leaves of an RFC
9162 tree — leaf ``i`` is ``SHA-256(0x00 || canonical event JSON)`` — and one write-ahead
``lineage.ingest`` action records its root as the intent's subject before the events are
stored. Every event is therefore covered by a signed ledger entry, and a lineage path proof
(:mod:`.proofs`) shows an event's membership with an inclusion path of sibling hashes only:
nothing else of the batch or the graph is revealed.

A batch is all or nothing: one invalid event refuses the whole call, naming its index and
JSON path, and nothing is stored or recorded. An event already stored (same canonical
digest: a client retry) is acknowledged and not stored or attested twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ..ledger import Ledger
from ..ledger.merkle import EMPTY_ROOT, inclusion_proof, leaf_hash, node_hash, root_hash
from .events import EventError, LineageEvent, parse_event
from .store import LineageStore

__all__ = [
    "IngestQueue",
    "IngestResult",
    "Ingestor",
    "ShuttingDown",
    "batch_inclusion",
    "batch_root",
    "event_leaf_hash",
    "parse_batch",
]

MAX_BATCH_EVENTS = 10_000


def event_leaf_hash(body: bytes) -> bytes:
    """RFC 9162 leaf hash of an event's canonical JSON."""
    return leaf_hash(body)


def _nodes(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of the batch tree, keyed (level, index) as the ledger's store."""
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    level, width = 0, len(leaves)
    while width > 1:
        for i in range(width // 2):
            nodes[(level + 1, i)] = node_hash(nodes[(level, 2 * i)], nodes[(level, 2 * i + 1)])
        level, width = level + 1, width // 2
    return nodes


def batch_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    nodes = _nodes(leaves)
    return root_hash(len(leaves), lambda keys: {k: nodes[k] for k in keys})


def batch_inclusion(leaves: Sequence[bytes], index: int) -> list[bytes]:
    nodes = _nodes(leaves)
    return inclusion_proof(index, len(leaves), lambda keys: {k: nodes[k] for k in keys})


def parse_batch(raw_events: Sequence[Any]) -> list[LineageEvent]:
    """Validate every event; the first invalid one refuses the batch (``[i].$.path``)."""
    if not raw_events:
        raise EventError("$", "empty batch: no events")
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise EventError("$", f"{len(raw_events)} events exceed the batch limit of "
                         f"{MAX_BATCH_EVENTS}")  # fmt: skip
    parsed = []
    for i, raw in enumerate(raw_events):
        try:
            parsed.append(parse_event(raw))
        except EventError as exc:
            if len(raw_events) == 1:
                raise
            raise EventError(f"[{i}]{exc.field}", exc.problem, exc.value) from None
    return parsed


@dataclass(frozen=True)
class IngestResult:
    accepted: int  # events in the call
    # Over the whole (possibly coalesced) batch: new events stored, and events already
    # stored before (acknowledged, not stored twice).
    stored: int
    duplicates: int
    record_seq: int | None  # ledger seq of the lineage.ingest intent (None: nothing new)


class Ingestor:
    """Stores validated events and records each batch through the write-ahead API."""

    def __init__(self, store: LineageStore, ledger: Ledger | None, actor: str) -> None:
        self.store = store
        self.ledger = ledger
        self.actor = actor

    def ingest(self, events: Sequence[LineageEvent], actor: str | None = None) -> IngestResult:
        unique: dict[str, LineageEvent] = {}
        for event in events:
            unique.setdefault(event.sha256, event)
        known = self.store.known(list(unique))
        new = [e for digest, e in unique.items() if digest not in known]
        if not new:
            return IngestResult(len(events), 0, len(events), None)
        rows = [(e.sha256, e.body) for e in new]
        root = batch_root([event_leaf_hash(e.body) for e in new])
        received = time.time_ns()
        if self.ledger is None:
            stored, _ = self.store.add(rows, record_seq=None, received_ns=received)
            self.stored(new)
            return IngestResult(len(events), stored, len(events) - stored, None)
        with self.ledger.action(
            "lineage.ingest", actor=actor or self.actor,
            subject=[(f"openlineage-batch:{len(new)}", root.hex())],
            events=len(new), schema_versions=sorted({e.schema_version for e in new}),
            leaf="sha256(0x00 || RFC 8785 event JSON), RFC 9162 tree in batch order",
        ) as act:  # fmt: skip
            assert act.intent is not None
            stored, _ = self.store.add(rows, record_seq=act.intent.seq, received_ns=received)
            act.result = {"stored": stored}
        self.stored(new)
        return IngestResult(len(events), stored, len(events) - stored, act.intent.seq)

    def stored(self, events: Sequence[LineageEvent]) -> None:
        """Called with the new events once they are stored (each once, in batch order)."""


class ShuttingDown(RuntimeError):
    """The server is stopping: the call was not queued (HTTP 503; retry elsewhere/later)."""


@dataclass(eq=False)
class _Call:
    events: list[LineageEvent]
    actor: str | None
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IngestQueue:
    """Coalesces concurrent ingest calls (same actor) into one ledger record (event loop).

    One consumer runs the :class:`Ingestor` in the executor; calls that arrive while it works
    are attested together by the next record. Each call is answered once its events are
    stored (after the intent is durable)."""

    def __init__(
        self,
        ingestor: Ingestor,
        executor: Executor,
        *,
        max_events: int = 4096,
        max_wait: float = 0.002,
    ) -> None:
        self.ingestor = ingestor
        self.executor = executor
        self.max_events = max_events
        self.max_wait = max_wait
        self._last_size = 1
        self._calls: list[_Call] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="lineage-ingest")

    async def submit(self, events: list[LineageEvent], actor: str | None) -> IngestResult:
        if self._closing:
            raise ShuttingDown("the server is shutting down; nothing was stored")
        call = _Call(events, actor)
        self._calls.append(call)
        self._wake.set()
        return await call.future

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._calls:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._last_size > 1 and self.max_wait > 0 and not self._closing:
                await asyncio.sleep(self.max_wait)  # callers are concurrent: gather more
            group = self._take()
            self._last_size = len(group)
            events = [e for call in group for e in call.events]
            try:
                result = await loop.run_in_executor(
                    self.executor, self.ingestor.ingest, events, group[0].actor
                )
            except Exception as exc:  # e.g. the ledger refused: every call in the group fails
                for call in group:
                    if not call.future.done():
                        call.future.set_exception(exc)
                continue
            for call in group:
                if not call.future.done():
                    call.future.set_result(
                        IngestResult(
                            len(call.events), result.stored, result.duplicates, result.record_seq
                        )
                    )

    def _take(self) -> list[_Call]:
        """Calls of the first call's actor, in order, up to ``max_events`` events."""
        first = self._calls[0]
        group, rest, count = [], [], 0
        for call in self._calls:
            fits = call.actor == first.actor and (not group or count + len(call.events)
                                                    <= self.max_events)  # fmt: skip
            if fits and not rest:
                group.append(call)
                count += len(call.events)
            else:
                rest.append(call)
        self._calls = rest
        return group
