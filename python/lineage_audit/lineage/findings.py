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
    output, and how many of its training runs did."""
    found = []
    for model, model_id in sorted(graph.models.items()):
        versions = set(graph.versions_of(model))
        inference = [r for r in graph.runs.values() if not r.inputs.isdisjoint(versions)]
        training = [r for r in graph.runs.values() if not r.outputs.isdisjoint(versions)]
        outputs = {v for r in inference for v in r.outputs if v not in versions}
        if not outputs or not training:
            continue
        came = graph.reachable(outputs)
        first, affected = None, 0
        for run in training:
            members = graph.family(run.run_id)
            inputs = {v for rid in members for v in graph.runs[rid].inputs if v not in versions}
            hits = sorted(i for i in inputs if i in came)
            if hits:
                affected += 1
                first = first or (run, hits[0])
        if first is not None:
            run, hit = first
            path = (*_path_to(came, hit), ("run", run.run_id))
            found.append(ReEntry(model, model_id, path, run.run_id, affected))
    return found


def _path_to(came: dict, node) -> tuple:
    path = [node]
    while came[path[-1]] is not None:
        path.append(came[path[-1]])
    return tuple(reversed(path))


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
