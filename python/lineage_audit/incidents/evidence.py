"""Evidence gathered for an incident, from what the other tiers recorded.

Each section is plain JSON with a SHA-256 digest (of its RFC 8785 form) that goes into the
incident's ledger subject, so the artifact's evidence can be checked against the signed
record:

- ``lineage`` (Tier 2): the subgraph of the affected asset — every run and dataset version
  on its ancestry, plus the runs that read the asset (so a loop closing at the asset, i.e.
  a re-entry, is inside it) — its findings, and its SVG picture;
- ``divergence`` (Tier 3): the window series of the asset class with its watch and halt
  thresholds, and the digests of the Parquet parts it was read from;
- ``attribution`` (Tier 4): per batch job, its summary and the most model-like rows;
- ``thresholds``: the threshold history, read from the ledger (every alert transition with
  the rules in force, every baseline switch);
- ``ratings`` (Tier 1): the sources' ratings.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ledger import Ledger
from ..ledger.records import canonical_json
from .confidence import ConfidenceInputs
from .errors import IncidentError

__all__ = [
    "Evidence",
    "attribution_evidence",
    "divergence_evidence",
    "lineage_evidence",
    "rating_evidence",
    "threshold_history",
]

DEFAULT_WATCH_Z, DEFAULT_HALT_Z = 2.0, 3.0
OPAQUE_RATINGS = ("opaque", "unverifiable")


def digest(obj: Any) -> str:
    """SHA-256 hex of the RFC 8785 serialisation of ``obj``."""
    return hashlib.sha256(canonical_json(obj, "evidence")).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Evidence:
    """Everything an incident's confidence and artifact are computed from."""

    asset_class: str
    lineage: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None
    attribution: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    ratings: list[dict[str, Any]] = field(default_factory=list)

    def sections(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "divergence": self.divergence,
            "attribution": self.attribution,
            "thresholds": self.thresholds,
            "ratings": self.ratings,
        }

    def to_json(self) -> dict[str, Any]:
        return {"asset_class": self.asset_class, **self.sections()}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Evidence:
        return cls(obj["asset_class"], obj.get("lineage"), obj.get("divergence"),
                   list(obj.get("attribution", [])), list(obj.get("thresholds", [])),
                   list(obj.get("ratings", [])))  # fmt: skip

    def digests(self) -> dict[str, str]:
        """``{section: sha256}`` of the sections present."""
        return {k: digest(v) for k, v in self.sections().items() if v}

    def confidence_inputs(self) -> ConfidenceInputs:
        """What the confidence rule reads from this evidence (see :mod:`.confidence`)."""
        windows = (self.divergence or {}).get("windows", [])
        watch = (self.divergence or {}).get("watch_z", DEFAULT_WATCH_Z)
        p3 = [w["p"] for w in windows if _finite(w.get("z")) and w["z"] >= watch
              and _finite(w.get("p")) and w["p"] > 0]  # fmt: skip
        q4 = [b["min_q"] for b in self.attribution if _finite(b.get("min_q")) and b["min_q"] > 0]
        findings = (self.lineage or {}).get("findings", [])
        ratings = [r.get("rating") for r in self.ratings]
        return ConfidenceInputs(
            tier3_window_p=tuple(p3),
            tier4_batch_min_q=tuple(q4),
            re_entry=any(f.get("finding") == "re-entry" for f in findings),
            convergence=any(f.get("finding") == "convergence" for f in findings),
            invalid_source="invalid" in ratings,
            opaque_source=any(r in OPAQUE_RATINGS for r in ratings),
        )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- Tier 2 ---------------------------------------------------------------------------------


def lineage_evidence(graph, store, node_id: str, *, k: int = 3,
                     ratings: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """The lineage subgraph of ``node_id`` (``dataset:<ns>:<name>``) with findings and picture.

    ``graph``/``store``: a :class:`~lineage_audit.lineage.graph.LineageGraph` and the
    :class:`~lineage_audit.lineage.store.LineageStore` holding its events (e.g. a
    ``LineageService``'s ``graph`` and ``store``). ``ratings``: Tier 1 rating JSON; a source
    named ``<namespace>:<name>`` rated opaque is drawn as opaque.
    """
    from ..lineage.events import read_stored_event
    from ..lineage.findings import convergence, propagate_confidence, re_entries
    from ..lineage.graph import LineageGraph
    from ..lineage.picture import render_svg

    key = _dataset_key(node_id)
    versions = graph.versions_of(key)
    if not versions:
        raise IncidentError("lineage_node", "not in the lineage graph", node_id)
    came = graph.reachable(versions, forward=False)
    runs = {n[1] for n in came if n[0] == "run"}
    runs |= {r.run_id for r in graph.runs.values() if not r.inputs.isdisjoint(versions)}
    wanted: set[str] = set()
    for node in [*came, *(("run", r) for r in runs)]:
        wanted |= graph.sources_of.get(node, set())
    events = [read_stored_event(e.body) for e in store.events() if e.sha256 in wanted]
    sub = LineageGraph(events)
    found = [c.to_json() for c in convergence(sub, k)] + [r.to_json() for r in re_entries(sub)]
    levels = {_source_key(r["source"]): r for r in ratings if _source_key(r.get("source", ""))}
    confidence = {key: float(r["confidence"]) for key, r in levels.items()}
    opaque = {key for key, r in levels.items() if r.get("rating") in (*OPAQUE_RATINGS, "invalid")}
    svg = render_svg(sub, convergence(sub, k), re_entries(sub),
                     propagate_confidence(sub, confidence), opaque=opaque)  # fmt: skip
    return {
        "node": node_id,
        "k": k,
        "events": sorted(wanted),
        "datasets": sorted(f"{ns}:{name}" for ns, name in sub.datasets()),
        "runs": len(sub.runs),
        "findings": found,
        "svg": svg,
    }


def _dataset_key(node_id: str) -> tuple[str, str]:
    kind, _, rest = node_id.partition(":")
    namespace, _, name = rest.partition(":")
    if kind != "dataset" or not namespace or not name:
        raise IncidentError("lineage_node", "expected 'dataset:<namespace>:<name>'", node_id)
    return namespace, name


def _source_key(source: str) -> tuple[str, str] | None:
    namespace, sep, name = source.partition(":")
    return (namespace, name) if sep and namespace and name else None


# --- Tier 3 ---------------------------------------------------------------------------------


def divergence_evidence(series_dir: str | Path, asset_class: str, *,
                        thresholds: Sequence[Mapping[str, Any]] = (),
                        max_windows: int = 5000) -> dict[str, Any]:  # fmt: skip
    """The asset class's window series (the last ``max_windows`` scored windows).

    Watch and halt z thresholds are the latest recorded in ``thresholds`` (the history from
    :func:`threshold_history`), else the defaults 2 and 3 (DESIGN §5.3).
    """
    from ..divergence.series import read_series

    directory = Path(series_dir)
    if not directory.is_dir():
        raise IncidentError("series", "not a directory", str(directory))
    rows = [r for r in read_series(directory).to_pylist()
            if r["asset"] == asset_class and r["status"] == "scored"]  # fmt: skip
    if not rows:
        raise IncidentError("series", f"no scored windows of asset class {asset_class!r}",
                            str(directory))  # fmt: skip
    watch_z, halt_z, halt_rule = DEFAULT_WATCH_Z, DEFAULT_HALT_Z, None
    for item in thresholds:
        if item.get("watch_rule"):
            watch_z = float(item["watch_rule"]["z"])
        if item.get("halt_rule"):
            halt_rule = item["halt_rule"]
            halt_z = float(halt_rule.get("z", halt_z))
    keep = ("window", "z", "p", "effect", "lambda_hat", "level", "start_time_ns",
            "end_time_ns", "baseline_version")  # fmt: skip
    windows = [{k: _json_number(r[k]) for k in keep} for r in rows[-max_windows:]]
    parts = sorted(directory.glob("part-*.parquet"))
    return {
        "asset_class": asset_class,
        "watch_z": watch_z,
        "halt_z": halt_z,
        "halt_rule": halt_rule,
        "windows": windows,
        "windows_total": len(rows),
        "files": [{"name": p.name, "sha256": _file_sha256(p)} for p in parts],
    }


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- Tier 4 ---------------------------------------------------------------------------------


def attribution_evidence(job_dir: str | Path, *, top: int = 20) -> dict[str, Any]:
    """One finished attribution job: its summary, smallest q-value and most model-like rows."""
    from ..attribution.job import read_results

    directory = Path(job_dir)
    summary_path = directory / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncidentError("attribution", f"cannot read {summary_path} ({exc})") from None
    rows = (
        read_results(directory)
        .select(["id", "p", "attribution", "q_value", "discovery"])
        .to_pylist()
    )
    q_values = [r["q_value"] for r in rows if _finite(r["q_value"])]
    ranked = sorted((r for r in rows if _finite(r["attribution"])),
                    key=lambda r: (-r["attribution"], r["id"]))  # fmt: skip
    discoveries = sum(bool(r["discovery"]) for r in rows)
    return {
        "job": directory.name,
        "model_id": summary.get("model_id"),
        "reference": summary.get("reference"),
        "primary_score": summary.get("primary_score"),
        "fdr_q": summary.get("fdr_q"),
        "rows": len(rows),
        "discoveries": discoveries,
        "discovery_fraction": discoveries / len(rows) if rows else 0.0,
        "min_q": min(q_values, default=None),
        "top": [{k: _json_number(r[k]) for k in ("id", "p", "attribution", "q_value",
                                                  "discovery")} for r in ranked[:top]],
        "results_sha256": summary.get("results_sha256"),
        "note": summary.get("note"),
    }  # fmt: skip


# --- ledger: threshold history --------------------------------------------------------------


def threshold_history(ledger: Ledger, asset_class: str) -> list[dict[str, Any]]:
    """Every alert transition and baseline switch of ``asset_class``, from the ledger.

    Reads intents only (an alert's intent carries the rules in force and the window); each
    item keeps its ledger seq so the artifact's evidence bundle can prove it.
    """
    history = []
    for entry in ledger.entries():
        if entry.kind != "intent" or not (entry.action.startswith("alert.")
                                          or entry.action == "baseline.activate"):  # fmt: skip
            continue
        predicate = entry.statement()["predicate"]
        if predicate.get("asset") != asset_class:
            continue
        item = {"seq": entry.seq, "action": entry.action, "actor": predicate["actor"],
                "at": predicate["requested_at"]}  # fmt: skip
        for name in ("from", "to", "window", "z", "p", "reason", "watch_rule", "halt_rule",
                     "baseline_version", "previous", "version"):  # fmt: skip
            if name in predicate:
                item[name] = predicate[name]
        history.append(item)
    return history


# --- Tier 1 ---------------------------------------------------------------------------------


def rating_evidence(ratings: Iterable[Any]) -> list[dict[str, Any]]:
    """Tier 1 ratings as JSON (``SourceRating`` objects or their ``to_json`` dicts)."""
    out = []
    for i, rating in enumerate(ratings):
        obj = rating.to_json() if hasattr(rating, "to_json") else rating
        if not isinstance(obj, Mapping) or "source" not in obj or "rating" not in obj:
            raise IncidentError(f"ratings[{i}]", "expected a Tier 1 rating", obj)
        out.append(dict(obj))
    return out
