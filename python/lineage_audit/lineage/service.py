"""The lineage service: ingest (validated, stored, attested), the live graph, reads, findings.

One instance per server. The graph is rebuilt from the store at start (stored events were
validated on the way in, so they are only read) and extended as batches are stored.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from ..ledger import Ledger
from .events import EventError, LineageEvent, read_stored_event
from .findings import convergence, re_entries
from .graph import LineageGraph
from .ingest import Ingestor, IngestQueue, IngestResult, parse_batch
from .proofs import build_path_proof, path_proof_bytes
from .store import LineageStore, SQLiteLineageStore

__all__ = ["LineageService", "NodeError", "events_from_file", "marquez_lineage"]

MAX_DEPTH = 100


class NodeError(EventError):
    """A lineage read naming an unknown or malformed node id."""


class LineageService:
    def __init__(
        self, store: LineageStore, ledger: Ledger | None, executor: Executor, *, actor: str
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.executor = executor
        self.ingestor = _GraphIngestor(self, store, ledger, actor)
        self.queue: IngestQueue | None = None
        self._lock = threading.Lock()
        self.graph = LineageGraph(read_stored_event(e.body) for e in store.events())

    @classmethod
    def open(cls, path: str | Path, ledger: Ledger | None, executor: Executor, *, actor: str):
        return cls(SQLiteLineageStore(path), ledger, executor, actor=actor)

    def start(self) -> None:
        """Start coalescing ingest calls (inside the serving event loop)."""
        self.queue = IngestQueue(self.ingestor, self.executor)
        self.queue.start()

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()
        self.store.close()

    async def ingest(self, raw_events: list[Any], actor: str | None) -> IngestResult:
        """Validate all (raises :class:`EventError` naming the path), store, attest."""
        events = parse_batch(raw_events)
        assert self.queue is not None, "LineageService.start() first"
        return await self.queue.submit(events, actor)

    def ingest_now(self, raw_events: list[Any], actor: str | None = None) -> IngestResult:
        """Synchronous ingest (CLI, file transport): no coalescing."""
        return self.ingestor.ingest(parse_batch(raw_events), actor)

    def _extend(self, events: list[LineageEvent]) -> None:
        with self._lock:
            for event in events:
                self.graph.add(event)

    # --- reads ------------------------------------------------------------------------------

    def lineage(self, node_id: str, depth: int = 20) -> dict[str, Any]:
        with self._lock:
            return marquez_lineage(self.graph, node_id, depth)

    def path_proof(self, node_id: str) -> dict[str, Any]:
        """A lineage path proof bundle of a dataset's ancestry (see :mod:`.proofs`)."""
        if self.ledger is None:
            raise EventError("node_id", "path proofs need a ledger; this server has none")
        with self._lock:
            return build_path_proof(self.graph, self.store, self.ledger, node_id)

    def path_proof_json(self, node_id: str) -> bytes:
        return path_proof_bytes(self.path_proof(node_id))

    def findings(self, k: int = 3) -> list[dict[str, Any]]:
        with self._lock:
            found = [c.to_json() for c in convergence(self.graph, k)]
            return found + [r.to_json() for r in re_entries(self.graph)]


class _GraphIngestor(Ingestor):
    """Ingestor that extends the live graph with every new event it stores."""

    def __init__(self, service: LineageService, *args) -> None:
        super().__init__(*args)
        self.service = service

    def stored(self, events):
        self.service._extend(events)


# --- the Marquez read shape -------------------------------------------------------------------


def _parse_node(node_id: str) -> tuple[str, str, str]:
    kind, _, rest = node_id.partition(":")
    namespace, _, name = rest.partition(":")
    if kind not in ("dataset", "job") or not namespace or not name:
        raise NodeError(
            "nodeId", "expected 'dataset:<namespace>:<name>' or 'job:<namespace>:<name>'", node_id
        )
    return kind, namespace, name


def _name_graph(graph: LineageGraph) -> tuple[dict, dict[str, dict]]:
    """Marquez-level adjacency (dataset <-> job by name) and node data."""
    edges: dict[str, set[str]] = defaultdict(set)
    data: dict[str, dict] = {}
    for run in graph.runs.values():
        if run.job is None:
            continue
        job = f"job:{run.job[0]}:{run.job[1]}"
        data[job] = {"namespace": run.job[0], "name": run.job[1], "latestRun": run.run_id}
        for version in run.inputs:
            edges[_dataset_id(version, data, graph)].add(job)
        for version in run.outputs:
            edges[job].add(_dataset_id(version, data, graph))
    return edges, data


def _dataset_id(version, data: dict, graph: LineageGraph) -> str:
    key = (version[1], version[2])
    node = f"dataset:{key[0]}:{key[1]}"
    entry = data.setdefault(node, {"namespace": key[0], "name": key[1], "versions": 0})
    entry["versions"] = len(graph.by_name.get(key, ()))
    if key in graph.models:
        entry["modelId"] = graph.models[key]
    return node


def marquez_lineage(graph: LineageGraph, node_id: str, depth: int) -> dict[str, Any]:
    """``{"graph": [...]}`` as Marquez's ``GET /api/v1/lineage`` (nodes within ``depth``)."""
    kind, namespace, name = _parse_node(node_id)
    if not 0 <= depth <= MAX_DEPTH:
        raise NodeError("depth", f"expected 0..{MAX_DEPTH}", depth)
    if kind == "dataset":
        key = graph.canonical((namespace, name))
        node_id = f"dataset:{key[0]}:{key[1]}"
    edges, data = _name_graph(graph)
    if node_id not in data:
        raise NodeError("nodeId", "not in the lineage graph", node_id)
    back: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            back[b].add(a)
    seen = {node_id: 0}
    queue = deque([node_id])
    while queue:
        node = queue.popleft()
        if seen[node] >= depth:
            continue
        for nxt in edges.get(node, set()) | back.get(node, set()):
            if nxt not in seen:
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
    named, written = graph.presence()  # Tier 1's presence: what Tier 1 counts is "emitted"
    for node in seen:
        if node.startswith("dataset:"):
            entry = data[node]
            key = graph.canonical((entry["namespace"], entry["name"]))
            entry["openlineage"] = {"events": named[key], "emitted": written[key]}
    return {"graph": [_marquez_node(n, edges, back, data, seen) for n in sorted(seen)]}


def _marquez_node(node, edges, back, data, seen) -> dict[str, Any]:
    def edge_list(pairs):
        return [{"origin": a, "destination": b} for a, b in sorted(pairs)
                if a in seen and b in seen]  # fmt: skip

    return {
        "id": node,
        "type": "DATASET" if node.startswith("dataset:") else "JOB",
        "data": data.get(node, {}),
        "inEdges": edge_list((p, node) for p in back.get(node, ())),
        "outEdges": edge_list((node, s) for s in edges.get(node, ())),
    }


def events_from_file(path: str | Path) -> list[Any]:
    """Events from a file the OpenLineage client's file transport wrote: one JSON event per
    line (append mode), or one event / a JSON array per file."""
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.strip()
    if not stripped:
        raise EventError(str(path), "empty file: no events")
    if stripped.startswith("["):
        return json.loads(stripped)
    try:
        return [json.loads(stripped)]
    except ValueError:
        pass
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                raise EventError(f"{path}:{number}", f"not valid JSON: {exc}") from None
    return events
