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
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..durable import fsync_directory
from ..ledger import Ledger
from ..ledger.records import canonical_json, rfc3339_ns
from .confidence import ConfidenceInputs
from .errors import IncidentError

__all__ = [
    "AttributionShelf",
    "Evidence",
    "RatingShelf",
    "attribution_evidence",
    "attribution_upload",
    "check_ratings",
    "divergence_evidence",
    "lineage_evidence",
    "lineage_findings",
    "lineage_section",
    "lineage_subgraph",
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
                     ratings: Sequence[Mapping[str, Any]] = (),
                     lock=None) -> dict[str, Any]:  # fmt: skip
    """The lineage subgraph of ``node_id`` (``dataset:<ns>:<name>``) with findings and picture.

    ``graph``/``store``: a :class:`~lineage_audit.lineage.graph.LineageGraph` and the
    :class:`~lineage_audit.lineage.store.LineageStore` holding its events (e.g. a
    ``LineageService``'s ``graph`` and ``store``). ``ratings``: Tier 1 rating JSON; a source
    named ``<namespace>:<name>`` rated opaque is drawn as opaque. ``lock``: held while the live
    graph is walked (a service's ingest extends it meanwhile), not while the store is read.
    """
    sub, wanted = lineage_subgraph(graph, store, node_id, lock=lock)
    return lineage_section(node_id, sub, wanted, k=k, ratings=ratings)


def lineage_subgraph(graph, store, node_id: str, *, lock=None):
    """``(subgraph, event digests)`` of ``node_id``: its version-level ancestry plus the runs
    that read it, rebuilt from the stored events (see :func:`lineage_evidence`)."""
    from ..lineage.events import read_stored_event
    from ..lineage.graph import LineageGraph

    key = _dataset_key(node_id)
    with lock if lock is not None else nullcontext():
        versions = graph.versions_of(key)
        if not versions:
            raise IncidentError("lineage_node", "not in the lineage graph", node_id)
        came = graph.reachable(versions, forward=False)
        runs = {n[1] for n in came if n[0] == "run"}
        runs |= {r.run_id for r in graph.runs.values() if not r.inputs.isdisjoint(versions)}
        wanted: set[str] = set()
        for node in [*came, *(("run", r) for r in runs)]:
            wanted |= graph.sources_of.get(node, set())
    # Events stored after the walk are not in ``wanted``: the subgraph is the walk's.
    events = [read_stored_event(e.body) for e in store.by_digests(sorted(wanted))]
    return LineageGraph(events), wanted


def lineage_findings(sub, k: int = 3) -> list[dict[str, Any]]:
    """Convergence (of >= ``k`` sources) and re-entry findings of a subgraph, as JSON."""
    from ..lineage.findings import convergence, re_entries

    return [c.to_json() for c in convergence(sub, k)] + [r.to_json() for r in re_entries(sub)]


def lineage_section(node_id: str, sub, wanted: set[str], *, k: int = 3,
                    ratings: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """The ``lineage`` evidence section of a subgraph from :func:`lineage_subgraph`."""
    from ..lineage.findings import convergence, propagate_confidence, re_entries
    from ..lineage.picture import render_svg

    levels = {_source_key(r["source"]): r for r in ratings if _source_key(r.get("source", ""))}
    confidence = {key: float(r["confidence"]) for key, r in levels.items()}
    opaque = {key for key, r in levels.items() if r.get("rating") in (*OPAQUE_RATINGS, "invalid")}
    converging, loops = convergence(sub, k), re_entries(sub)
    svg = render_svg(sub, converging, loops, propagate_confidence(sub, confidence),
                     opaque=opaque)  # fmt: skip
    return {
        "node": node_id,
        "k": k,
        "events": sorted(wanted),
        "datasets": sorted(f"{ns}:{name}" for ns, name in sub.datasets()),
        "runs": len(sub.runs),
        "findings": [c.to_json() for c in converging] + [r.to_json() for r in loops],
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
    keep = ("window", "z", "p", "effect", "lambda_hat", "level", "baseline_version")
    windows = [{**{k: _json_number(r[k]) for k in keep}, **_window_times(r)}
               for r in rows[-max_windows:]]  # fmt: skip
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


def _window_times(row: Mapping[str, Any]) -> dict[str, str]:
    # RFC 3339 text, not ns counts: those exceed 2^53 and cannot be hashed as RFC 8785 JSON.
    return {name: rfc3339_ns(row[f"{name}_ns"]) for name in ("start_time", "end_time")
            if row.get(f"{name}_ns") is not None}  # fmt: skip


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


def attribution_upload(summary_json: bytes, results: bytes) -> tuple[dict[str, Any], str]:
    """Check an uploaded finished job (its summary.json and results.parquet bytes); returns
    the summary and the job's name (``job-`` + 16 hex of ``results_sha256``). Raises
    :class:`IncidentError` naming the field; nothing is read from disk."""
    summary = _json_object(summary_json, "summary_json")
    expected = summary.get("results_sha256")
    if not isinstance(expected, str) or not _HEX64.fullmatch(expected):
        raise IncidentError("summary.results_sha256", "expected 64 lowercase hex digits",
                            expected)  # fmt: skip
    actual = hashlib.sha256(results).hexdigest()
    if actual != expected:
        raise IncidentError("results_parquet", f"SHA-256 is {actual}, the summary's "
                            f"results_sha256 is {expected}: not the job's results")  # fmt: skip
    table = _results_table(results)
    rows = summary.get("rows")
    if rows != table.num_rows or not table.num_rows:
        raise IncidentError("summary.rows", f"results_parquet holds {table.num_rows} rows", rows)
    found = sum(bool(d) for d in table.column("discovery").to_pylist())
    if summary.get("discoveries") != found:
        raise IncidentError("summary.discoveries", f"results_parquet has {found} discoveries",
                            summary.get("discoveries"))  # fmt: skip
    return summary, f"job-{expected[:16]}"


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _json_object(raw: bytes, field: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncidentError(field, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise IncidentError(field, "expected a JSON object", type(obj).__name__)
    return obj


def _results_table(results: bytes):
    """results.parquet bytes as a table with every column of the job's final schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..attribution.job import result_schema

    try:
        table = pq.read_table(pa.BufferReader(results))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise IncidentError("results_parquet", f"not a readable Parquet file ({exc})") from None
    for wanted in result_schema(final=True):
        got = table.schema.field(wanted.name).type if wanted.name in table.schema.names else None
        if got != wanted.type:
            problem = "missing" if got is None else f"has type {got}, expected {wanted.type}"
            raise IncidentError("results_parquet", f"column {wanted.name!r} {problem}: not "
                                "the results of a finished attribution job")  # fmt: skip
    return table


class AttributionShelf:
    """Finished Tier 4 jobs per asset class, ``root/<asset class>/<job>/`` holding
    summary.json and results.parquet; each job is written whole (temp dir, fsync, rename)
    and never changed, so its evidence is read once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._read: dict[Path, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, asset_class: str, job: str, summary_json: bytes, results: bytes) -> bool:
        """Store a checked job (:func:`attribution_upload`); False if it was stored before."""
        target = self.folder(asset_class) / job
        if target.is_dir():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{job}.", dir=target.parent))
        try:
            _write_synced(staging / "summary.json", summary_json)
            _write_synced(staging / "results.parquet", results)
            try:
                staging.rename(target)
            except OSError:  # stored meanwhile by another call: the same bytes
                if target.is_dir():
                    return False
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        fsync_directory(target.parent)
        return True

    def evidence(self, asset_class: str) -> list[dict[str, Any]]:
        """:func:`attribution_evidence` of every stored job of ``asset_class``, by name."""
        folder = self.folder(asset_class)
        jobs = sorted(p for p in folder.glob("job-*") if p.is_dir()) if folder.is_dir() else []
        return [self._evidence(job) for job in jobs]

    def _evidence(self, job: Path) -> dict[str, Any]:
        with self._lock:
            found = self._read.get(job)
        if found is None:
            found = attribution_evidence(job)
            with self._lock:
                self._read[job] = found
        return found

    def folder(self, asset_class: str) -> Path:
        """Where the jobs of ``asset_class`` are kept (a name unusable as a folder: error)."""
        if not _SAFE_NAME.fullmatch(asset_class) or asset_class in (".", ".."):
            raise IncidentError("asset_class", "cannot name a folder (letters, digits, . _ -)",
                                asset_class)  # fmt: skip
        return self.root / asset_class


_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# --- ledger: threshold history --------------------------------------------------------------


def threshold_history(ledger: Ledger, asset_class: str) -> list[dict[str, Any]]:
    """Every alert transition and baseline switch of ``asset_class``, from the ledger.

    Reads intents only (an alert's intent carries the rules in force and the window); each
    item keeps its ledger seq so the artifact's evidence bundle can prove it.
    """
    history = []
    for entry in ledger.entries_of(["baseline.activate"], prefixes=["alert."]):
        if entry.kind != "intent":
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


RATING_KEYS = ("source", "rating", "confidence", "finding", "rule", "reasons", "checks")
CHECK_KEYS = ("check", "state", "reasons", "tool", "schema", "details")


def check_ratings(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Tier 1 ratings as ``provenance check --json`` prints them, each checked against the
    provenance model: its fields, its checks, and that its rating and confidence follow from
    its checks by the rating rule. Raises :class:`IncidentError` naming ``ratings[i]....``."""
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise IncidentError("ratings", "expected a non-empty list of Tier 1 ratings", items)
    ratings = rating_evidence(items)
    seen: dict[str, int] = {}
    for i, rating in enumerate(ratings):
        _check_rating(rating, f"ratings[{i}]")
        first = seen.setdefault(rating["source"], i)
        if first != i:
            raise IncidentError(f"ratings[{i}].source", f"also rated by ratings[{first}]: give "
                                "one rating per source", rating["source"])  # fmt: skip
    return ratings


def _check_rating(rating: dict[str, Any], where: str) -> None:
    from ..provenance.errors import ProvenanceInputError
    from ..provenance.model import CONFIDENCE, RATING_RULE, combine

    _keys(rating, RATING_KEYS, ("ledger",), where)
    if rating["rule"] != RATING_RULE:
        raise IncidentError(f"{where}.rule", f"expected {RATING_RULE}", rating["rule"])
    _strings(rating["reasons"], f"{where}.reasons")
    if not isinstance(rating["checks"], list):
        raise IncidentError(f"{where}.checks", "expected a list of checks", rating["checks"])
    checks = [_check_result(c, f"{where}.checks[{j}]") for j, c in enumerate(rating["checks"])]
    try:
        rule_says = combine(rating["source"], checks)
    except ProvenanceInputError as exc:
        raise IncidentError(f"{where}.{exc.field}", exc.problem, exc.value) from None
    if rating["rating"] != rule_says.rating:
        raise IncidentError(f"{where}.rating", f"does not follow from its checks by {RATING_RULE} "
                            f"(they give {rule_says.rating!r})", rating["rating"])  # fmt: skip
    if rating["confidence"] != CONFIDENCE[rule_says.rating]:
        raise IncidentError(f"{where}.confidence", f"expected {CONFIDENCE[rule_says.rating]} "
                            f"for {rule_says.rating!r}", rating["confidence"])  # fmt: skip
    if rating["finding"] is not rule_says.finding:
        raise IncidentError(f"{where}.finding", f"expected {rule_says.finding}", rating["finding"])


def _check_result(obj: Any, where: str):
    from ..provenance.errors import ProvenanceInputError
    from ..provenance.model import CheckResult

    if not isinstance(obj, Mapping):
        raise IncidentError(where, "expected a check object", obj)
    _keys(obj, CHECK_KEYS, (), where)
    _strings(obj["reasons"], f"{where}.reasons")
    if not isinstance(obj["tool"], str) or not (obj["schema"] is None
                                               or isinstance(obj["schema"], str)):  # fmt: skip
        raise IncidentError(f"{where}.tool", "expected tool a string, schema a string or null")
    if not isinstance(obj["details"], Mapping):
        raise IncidentError(f"{where}.details", "expected an object", obj["details"])
    try:
        return CheckResult(obj["check"], obj["state"], tuple(obj["reasons"]), obj["tool"],
                           obj["schema"], dict(obj["details"]))  # fmt: skip
    except ProvenanceInputError as exc:
        raise IncidentError(f"{where}.{exc.field.rpartition('.')[2]}", exc.problem,
                            exc.value) from None  # fmt: skip


def _keys(obj: Mapping[str, Any], required: Sequence[str], optional: Sequence[str],
          where: str) -> None:  # fmt: skip
    for key in required:
        if key not in obj:
            raise IncidentError(f"{where}.{key}", "missing")
    for key in obj:
        if key not in required and key not in optional:
            raise IncidentError(f"{where}.{key}", "unknown key (allowed: "
                                f"{', '.join([*required, *optional])})")  # fmt: skip


def _strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise IncidentError(where, "expected a list of strings", value)


class RatingShelf:
    """The latest Tier 1 rating per source, in one JSON file replaced whole (temp file,
    fsync, rename), so a crash leaves the previous file or the new one."""

    FORMAT = "lineage-audit/ratings/v1"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ratings: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        doc = _json_object(self.path.read_bytes(), str(self.path))
        if doc.get("format") != self.FORMAT:
            raise IncidentError(str(self.path), f"expected format {self.FORMAT}",
                                doc.get("format"))  # fmt: skip
        return dict(doc["ratings"])

    def put(self, ratings: Sequence[Mapping[str, Any]]) -> int:
        """Keep ``ratings`` (checked by :func:`check_ratings`); returns how many sources
        are held."""
        with self._lock:
            merged = {**self._ratings, **{r["source"]: dict(r) for r in ratings}}
            body = json.dumps({"format": self.FORMAT, "ratings": merged}, indent=1,
                              sort_keys=True).encode()  # fmt: skip
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging = self.path.with_name(f".{self.path.name}.tmp")
            _write_synced(staging, body)
            os.replace(staging, self.path)
            fsync_directory(self.path.parent)
            self._ratings = merged
            return len(merged)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._ratings[source] for source in sorted(self._ratings)]
