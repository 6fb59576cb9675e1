"""The lineage graph (DESIGN §6, Tier 2): dataset versions and runs, from OpenLineage events.

Built in event arrival order:

- **Aliases first.** Dataset names joined by a ``symlinks`` facet are one dataset; the
  canonical name is the smallest ``namespace:name`` of the group, so the result does not
  depend on which alias an event used.
- **Versions.** A dataset version is the event's ``version`` facet when given; otherwise
  every run that writes a dataset makes a new version (``run:<runId>``), and a run reads the
  latest version written before it (``initial`` if none was). So a job that reads and
  writes one table (a MERGE) reads version *n* and writes *n + 1*: no cycle, nothing flagged.
- **Edges.** input version -> run -> output version; an explicit ``lineage`` facet adds
  source (latest version) -> dataset version. Runs of FAIL and ABORT events write nothing.
- **Parent runs.** Runs that share a root parent (``parent`` facet, followed to the top)
  are one family: a model trained by one child of a family run is trained on what any
  member of the family read.
- **Models** are datasets whose events carry the ``lineageAudit_model`` facet.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import DatasetRef, LineageEvent

__all__ = ["DatasetKey", "LineageGraph", "VersionNode"]

DatasetKey = tuple[str, str]  # (namespace, name), canonical
VersionNode = tuple[str, str, str, str]  # ("dataset", namespace, name, version)
RunNode = tuple[str, str]  # ("run", run_id)
INITIAL = "initial"


class _Aliases:
    """Union-find over dataset names; canonical = smallest ``namespace:name``."""

    def __init__(self) -> None:
        self.parent: dict[DatasetKey, DatasetKey] = {}

    def find(self, key: DatasetKey) -> DatasetKey:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: DatasetKey, b: DatasetKey) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            low, high = sorted((ra, rb))
            self.parent[high] = low


@dataclass
class RunInfo:
    run_id: str
    job: tuple[str, str] | None
    parent: str | None
    inputs: set = field(default_factory=set)  # version nodes read
    outputs: set = field(default_factory=set)  # version nodes written
    event_time: str = ""


class LineageGraph:
    def __init__(self, events: Iterable[LineageEvent] = ()) -> None:
        self.aliases = _Aliases()
        self.runs: dict[str, RunInfo] = {}
        self.models: dict[DatasetKey, str] = {}  # canonical dataset -> model id
        self.latest: dict[DatasetKey, str] = {}  # dataset -> latest version written
        self.succ: dict[object, set] = defaultdict(set)  # node -> successors
        self.pred: dict[object, set] = defaultdict(set)
        self.by_name: dict[DatasetKey, set] = defaultdict(set)  # dataset -> its versions
        self.mentions: Counter[DatasetKey] = Counter()  # events naming each dataset
        self.emitted: Counter[DatasetKey] = Counter()  # events writing it: its own emission
        # Which events made which nodes (digests), for lineage path proofs.
        self.sources_of: dict[object, set[str]] = defaultdict(set)
        self.events = 0
        self._roots: dict[str, str] | None = None
        self._names: dict[DatasetKey, set[DatasetKey]] | None = None
        for event in events:
            self.add(event)

    # --- building ---------------------------------------------------------------------------

    def add(self, event: LineageEvent) -> None:
        """Add one event (aliases of all its datasets are learned before any edge)."""
        self.events += 1
        self._roots = None
        self._names = None
        for ref in (*event.inputs, *event.outputs):
            for alias in ref.aliases:
                self.aliases.union(ref.key, alias)
            if ref.model:
                self.models[self.aliases.find(ref.key)] = ref.model
        for key in {self.canonical(ref) for ref in (*event.inputs, *event.outputs)}:
            self.mentions[key] += 1
        if event.event_type not in ("FAIL", "ABORT"):
            for key in {self.canonical(ref) for ref in event.outputs}:
                self.emitted[key] += 1
        if event.run_id is None:  # DatasetEvent / JobEvent: metadata, explicit lineage only
            for ref in event.outputs:
                version = self._version_of(ref, written_by=None)
                self._explicit_sources(ref, version)
                self.sources_of[version].add(event.sha256)
            return
        run = self.runs.get(event.run_id)
        if run is None:
            run = self.runs[event.run_id] = RunInfo(event.run_id, event.job, event.parent_run)
        run.parent = run.parent or event.parent_run
        run.event_time = event.event_time
        node: RunNode = ("run", event.run_id)
        self.sources_of[node].add(event.sha256)
        for ref in event.inputs:
            version = self._read_version(ref)
            run.inputs.add(version)
            self._edge(version, node)
        if event.event_type in ("FAIL", "ABORT"):
            return
        for ref in event.outputs:
            version = self._version_of(ref, written_by=event.run_id)
            if version in run.outputs:
                continue
            run.outputs.add(version)
            self._edge(node, version)
            self._explicit_sources(ref, version)
            if ref.sources:
                self.sources_of[version].add(event.sha256)

    def _edge(self, a, b) -> None:
        self.succ[a].add(b)
        self.pred[b].add(a)
        for node in (a, b):
            if node[0] == "dataset":
                self.by_name[(node[1], node[2])].add(node)

    def canonical(self, ref: DatasetRef | DatasetKey) -> DatasetKey:
        key = ref.key if isinstance(ref, DatasetRef) else ref
        return self.aliases.find(key)

    def _read_version(self, ref: DatasetRef) -> VersionNode:
        key = self.canonical(ref)
        version = ref.version or self.latest.get(key, INITIAL)
        return ("dataset", key[0], key[1], version)

    def _version_of(self, ref: DatasetRef, *, written_by: str | None) -> VersionNode:
        key = self.canonical(ref)
        version = ref.version or (f"run:{written_by}" if written_by else
                                  self.latest.get(key, INITIAL))  # fmt: skip
        if written_by:
            self.latest[key] = version
        return ("dataset", key[0], key[1], version)

    def _explicit_sources(self, ref: DatasetRef, target: VersionNode) -> None:
        for source in ref.sources:
            key = self.canonical(source)
            self._edge(("dataset", key[0], key[1], self.latest.get(key, INITIAL)), target)

    # --- queries ----------------------------------------------------------------------------

    def openlineage_events(self, key: DatasetKey) -> int:
        """Events that named this dataset (under any alias), as input or output."""
        return self.presence()[0][self.canonical(key)]

    def emissions(self, key: DatasetKey) -> int:
        """Events that wrote this dataset (under any alias): its producer's own lineage. Tier 1
        counts these as a source's OpenLineage presence: a source that only appears as some
        consumer's input has told nobody where it comes from."""
        return self.presence()[1][self.canonical(key)]

    def presence(self) -> tuple[Counter[DatasetKey], Counter[DatasetKey]]:
        """Events naming and events writing each canonical dataset, summed over its aliases
        (counted per alias as events arrive; an alias learned later merges them here)."""
        named: Counter[DatasetKey] = Counter()
        written: Counter[DatasetKey] = Counter()
        for counts, into in ((self.mentions, named), (self.emitted, written)):
            for key, n in counts.items():
                into[self.canonical(key)] += n
        return named, written

    def datasets(self) -> set[DatasetKey]:
        return set(self.by_name)

    def versions_of(self, key: DatasetKey) -> list[VersionNode]:
        return sorted(self.by_name.get(self.canonical(key), ()))

    def family(self, run_id: str) -> set[str]:
        """Runs sharing ``run_id``'s root parent (itself included)."""
        if self._roots is None:
            self._roots = {rid: self._root(rid) for rid in self.runs}
            self._members: dict[str, set[str]] = defaultdict(set)
            for rid, root in self._roots.items():
                self._members[root].add(rid)
        return set(self._members.get(self._roots.get(run_id, run_id), {run_id}))

    def _root(self, run_id: str) -> str:
        seen = set()
        while run_id in self.runs and self.runs[run_id].parent and run_id not in seen:
            seen.add(run_id)
            run_id = self.runs[run_id].parent  # type: ignore[assignment]
        return run_id

    def reachable(self, starts: Iterable, *, forward: bool = True) -> dict:
        """Breadth-first: every node reachable from ``starts`` -> the node it was reached from
        (None for a start), so paths can be read back."""
        edges = self.succ if forward else self.pred
        came: dict = {s: None for s in starts}
        queue = deque(came)
        while queue:
            node = queue.popleft()
            for nxt in edges.get(node, ()):
                if nxt not in came:
                    came[nxt] = node
                    queue.append(nxt)
        return came

    def _name_pred(self) -> dict[DatasetKey, set[DatasetKey]]:
        """Dataset -> the datasets (by name) feeding it directly, with loops cut (cached).

        At name level a re-entry is a loop, and ancestry around a loop would make everything
        on it upstream of everything else. A re-entry loop closes where a model is trained
        on data downstream of itself, so that training edge is cut first; an edge on a loop
        that remains (one without a model) is kept only if it points forward in the order
        names first appeared. Edges on no loop are always kept, whatever order the emitters'
        events arrived in (a consumer often reports a source before its producer does)."""
        if self._names is None:
            order: dict[DatasetKey, int] = {}
            edges: set[tuple[DatasetKey, DatasetKey]] = set()
            for run in self.runs.values():
                ins = sorted({(v[1], v[2]) for v in run.inputs})
                outs = sorted({(v[1], v[2]) for v in run.outputs})
                for key in (*ins, *outs):
                    order.setdefault(key, len(order))
                edges |= {(a, b) for a in ins for b in outs if a != b}
            for node, feeders in self.pred.items():  # explicit lineage facets
                if node[0] == "dataset":
                    here = (node[1], node[2])
                    edges |= {((p[1], p[2]), here) for p in feeders
                              if p[0] == "dataset" and (p[1], p[2]) != here}  # fmt: skip
            edges -= _training_edges_closing_loops(edges, set(self.models))
            component = _strong_components(edges)
            last = len(order)
            pred: dict[DatasetKey, set[DatasetKey]] = defaultdict(set)
            for a, b in edges:
                if component[a] != component[b] or order.get(a, last) <= order.get(b, last):
                    pred[b].add(a)
            self._names = pred
        return self._names

    def name_sources(self, key: DatasetKey) -> set[DatasetKey]:
        """Datasets (by name) that feed any version of ``key`` directly."""
        return set(self._name_pred().get(self.canonical(key), ()))

    def name_ancestors(self, key: DatasetKey) -> set[DatasetKey]:
        """Every dataset (by name) upstream of ``key`` over the name-level graph of
        :meth:`_name_pred` (structure, not time: what convergence asks)."""
        pred = self._name_pred()
        start = self.canonical(key)
        seen: set[DatasetKey] = set()
        queue = deque(pred.get(start, ()))
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            queue.extend(pred.get(name, ()))
        seen.discard(start)
        return seen


def _successors(edges: Iterable[tuple[DatasetKey, DatasetKey]]) -> dict[DatasetKey, set]:
    succ: dict[DatasetKey, set[DatasetKey]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    return succ


def _training_edges_closing_loops(edges: set, models: set) -> set:
    """Edges ``x -> model`` where ``x`` is downstream of that model: where re-entry closes."""
    succ = _successors(edges)
    closing = set()
    for model in models:
        seen: set[DatasetKey] = set()
        queue = deque(succ.get(model, ()))
        while queue:
            node = queue.popleft()
            if node not in seen:
                seen.add(node)
                queue.extend(succ.get(node, ()))
        closing |= {(x, model) for x in seen if (x, model) in edges}
    return closing


def _strong_components(edges: set) -> dict[DatasetKey, int]:
    """Strongly connected component id of every node (Tarjan, iterative)."""
    succ = _successors(edges)
    nodes = sorted({n for e in edges for n in e})
    index: dict[DatasetKey, int] = {}
    low: dict[DatasetKey, int] = {}
    component: dict[DatasetKey, int] = {}
    stack: list[DatasetKey] = []
    on_stack: set[DatasetKey] = set()
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(succ.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component[member] = index[node]
                        if member == node:
                            break
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(succ.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return component
