"""Tier 2 findings on a :class:`LineageGraph`: convergence, recursive re-entry, and Tier 1
confidence carried downstream.

**Convergence.** For a dataset A with at least ``k`` direct sources, an upstream product P
*converges* on A when at least ``k`` of A's sources are P or descend from P. Only the
nearest such P is reported for a given set of sources (its ancestors trivially share them).

**Recursive re-entry.** For a model M: its *outputs* are the dataset versions written by runs
that read any version of M; its *inputs* are the dataset versions read by any run in the
family of a run that wrote a version of M. Re-entry is a version-level path from an output to
an input — the model's output came back as training data, directly or through vendors.
Because the path is over versions, a job that reads and writes one table (MERGE) is not a
loop, and a model's output feeding an *earlier* training run is impossible by construction.

**Confidence.** Each rated source's Tier 1 confidence caps every dataset downstream of it:
``effective(d) = min(own(d), effective of everything upstream)``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from .graph import DatasetKey, LineageGraph

__all__ = ["Convergence", "ReEntry", "convergence", "propagate_confidence", "re_entries"]


def _name(key: DatasetKey) -> str:
    return f"{key[0]}:{key[1]}"


@dataclass(frozen=True)
class Convergence:
    asset: DatasetKey
    upstream: DatasetKey
    sources: tuple[DatasetKey, ...]  # the asset's sources that share it
    k: int

    def to_json(self) -> dict:
        return {"finding": "convergence", "asset": _name(self.asset),
                "upstream": _name(self.upstream), "k": self.k,
                "sources": [_name(s) for s in self.sources]}  # fmt: skip


@dataclass(frozen=True)
class ReEntry:
    model: DatasetKey
    model_id: str
    path: tuple  # nodes from the model's output version to the training input, then the run
    training_run: str  # the first training run that re-ingested the model's output
    training_runs: int = 1  # how many of the model's training runs did

    def to_json(self) -> dict:
        return {
            "finding": "re-entry",
            "model": _name(self.model),
            "model_id": self.model_id,
            "training_run": self.training_run,
            "training_runs": self.training_runs,
            "path": [_node_text(n) for n in self.path],
        }


def _node_text(node) -> str:
    if node[0] == "run":
        return f"run:{node[1]}"
    return f"{node[1]}:{node[2]}@{node[3]}"


def convergence(graph: LineageGraph, k: int = 3) -> list[Convergence]:
    if k < 2:
        raise ValueError(f"k: expected >= 2, got {k}")
    found = []
    ancestors: dict[DatasetKey, set[DatasetKey]] = {}

    def upstream_of(key: DatasetKey) -> set[DatasetKey]:
        if key not in ancestors:
            ancestors[key] = graph.name_ancestors(key)
        return ancestors[key]

    for asset in sorted(graph.datasets()):
        sources = graph.name_sources(asset)
        if len(sources) < k:
            continue
        sharing: dict[DatasetKey, set[DatasetKey]] = {}
        for source in sources:
            for upstream in upstream_of(source) | {source}:
                if upstream != asset:
                    sharing.setdefault(upstream, set()).add(source)
        candidates = {p: frozenset(s) for p, s in sharing.items() if len(s) >= k}
        by_sources: dict[frozenset, list[DatasetKey]] = {}
        for upstream, shared in candidates.items():
            by_sources.setdefault(shared, []).append(upstream)
        for shared, group in by_sources.items():
            for upstream in sorted(group):
                # the nearest: no other candidate with the same sources lies below it
                if not any(o != upstream and upstream in upstream_of(o) for o in group):
                    found.append(Convergence(asset, upstream, tuple(sorted(shared)), k))
    return sorted(found, key=lambda c: (c.asset, c.upstream))


def re_entries(graph: LineageGraph) -> list[ReEntry]:
    """One finding per model: the path for its first training run that re-ingested its own
    output, and how many of its training runs did.

    Reachability from every model's outputs is computed in one pass over the version graph
    in topological order, carrying a bitset of the models whose output reaches each node;
    the path is then read back only for models with a finding."""
    models = sorted(graph.models.items())
    bit = {model: 1 << i for i, (model, _) in enumerate(models)}
    inference, training = _model_runs(graph, bit)
    seeds: dict[object, int] = defaultdict(int)
    for model, runs in inference.items():
        for run in runs:
            for v in run.outputs:
                if (v[1], v[2]) != model:
                    seeds[v] |= bit[model]
    reach = _propagate(graph, seeds)
    found = []
    for model, model_id in models:
        first, affected = None, 0
        for run in training.get(model, ()):
            inputs = {v for rid in graph.family(run.run_id) for v in graph.runs[rid].inputs
                      if (v[1], v[2]) != model}  # fmt: skip
            hits = sorted(i for i in inputs if reach.get(i, 0) & bit[model])
            if hits:
                affected += 1
                first = first or (run, hits[0])
        if first is not None:
            run, hit = first
            path = (*_path_back(graph, hit, bit[model], reach, seeds), ("run", run.run_id))
            found.append(ReEntry(model, model_id, path, run.run_id, affected))
    return found


def _model_runs(graph: LineageGraph, bit: dict) -> tuple[dict, dict]:
    """Runs that read (inference) and write (training) each model, in arrival order."""
    inference: dict[DatasetKey, list] = defaultdict(list)
    training: dict[DatasetKey, list] = defaultdict(list)
    for run in graph.runs.values():
        for model in {(v[1], v[2]) for v in run.inputs} & bit.keys():
            inference[model].append(run)
        for model in {(v[1], v[2]) for v in run.outputs} & bit.keys():
            training[model].append(run)
    return inference, training


def _topological(graph: LineageGraph) -> list:
    nodes = set(graph.succ) | set(graph.pred)
    indegree = {n: len(graph.pred.get(n, ())) for n in nodes}
    queue = deque(n for n, d in indegree.items() if d == 0)
    order = []
    while queue:
        node = queue.popleft()
        order.append(node)
        for nxt in graph.succ.get(node, ()):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                queue.append(nxt)
    return order  # version-level edges never close a cycle (events refuse that)


def _propagate(graph: LineageGraph, seeds: dict) -> dict:
    reach: dict = {}
    for node in _topological(graph):
        mask = seeds.get(node, 0)
        for p in graph.pred.get(node, ()):
            mask |= reach.get(p, 0)
        if mask:
            reach[node] = mask
    return reach


def _path_back(graph: LineageGraph, hit, mask: int, reach: dict, seeds: dict) -> tuple:
    """A path from one of the model's outputs to ``hit``, within the nodes it reaches."""
    came = {hit: None}
    queue = deque([hit])
    while queue:
        node = queue.popleft()
        if seeds.get(node, 0) & mask:
            path = [node]
            while came[path[-1]] is not None:
                path.append(came[path[-1]])
            return tuple(path)
        for p in graph.pred.get(node, ()):
            if p not in came and reach.get(p, 0) & mask:
                came[p] = node
                queue.append(p)
    raise AssertionError("reachability and path search disagree")


def propagate_confidence(
    graph: LineageGraph, ratings: dict[DatasetKey, float]
) -> dict[DatasetKey, float]:
    """Effective confidence of every dataset reachable from a rated source (see module doc)."""
    effective: dict[DatasetKey, float] = {}
    for source, confidence in sorted(ratings.items(), key=lambda kv: kv[1]):
        source = graph.canonical(source)
        effective[source] = min(effective.get(source, 1.0), confidence)
        came = graph.reachable(graph.versions_of(source))
        for node in came:
            if node[0] == "dataset":
                key = (node[1], node[2])
                effective[key] = min(effective.get(key, 1.0), confidence)
    return effective
