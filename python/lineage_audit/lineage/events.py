"""OpenLineage events: validated offline against the vendored schemas, then read into the
few fields the lineage graph needs.

Validation honours the event's own ``schemaURL``: an openlineage.io core URL selects that
version (and the event kind its fragment names, ``RunEvent`` / ``DatasetEvent`` /
``JobEvent``); an openlineage.io URL of a version not vendored is refused ("unknown schema
version"); any other URL (a producer's own, a test URL) is validated against the latest
vendored core and says so. Each facet whose ``_schemaURL`` names a vendored facet schema is
validated against it too; facets of other producers (custom facets) are kept unvalidated, as
the spec allows. Errors name the JSON path of the first failure (``$.run.runId: ...``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from jsonschema.exceptions import ValidationError

from ..errors import FieldError
from . import schemas

__all__ = [
    "MAX_EVENT_BYTES",
    "MODEL_FACET",
    "DatasetRef",
    "EventError",
    "LineageEvent",
    "parse_event",
    "read_stored_event",
    "validate_event",
    "validate_facet",
    "validate_facets",
]

MAX_EVENT_BYTES = 1 << 20  # one event; bigger is refused (413 over HTTP)
# Models are datasets carrying this facet (DESIGN §6: "a project-prefixed facet").
MODEL_FACET = "lineageAudit_model"
_KINDS = ("RunEvent", "DatasetEvent", "JobEvent")


class EventError(FieldError):
    """An event that is not valid OpenLineage (``field`` is the JSON path)."""


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as an event names it: namespace, name, declared version, aliases, model id."""

    namespace: str
    name: str
    version: str | None = None  # DatasetVersionDatasetFacet.datasetVersion
    aliases: tuple[tuple[str, str], ...] = ()  # SymlinksDatasetFacet identifiers
    sources: tuple[tuple[str, str], ...] = ()  # LineageFacet (explicit) dataset-level inputs
    model: str | None = None  # lineageAudit_model.modelId: this dataset is a model

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class LineageEvent:
    """What the graph reads from one event; ``body`` is the canonical JSON (RFC 8785)."""

    event_type: str
    event_time: str
    run_id: str | None
    job: tuple[str, str] | None
    parent_run: str | None
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]
    schema_version: str
    body: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def validate_event(event: Any) -> str:
    """Check ``event`` against its schema; returns the core version used, or raises."""
    if not isinstance(event, dict):
        raise EventError(
            "$", "expected a JSON object (one OpenLineage event)", type(event).__name__
        )
    url = event.get("schemaURL")
    if not isinstance(url, str) or not url:
        raise EventError("$.schemaURL", "missing: every OpenLineage event names its schema")
    version, kind = _schema_of(url)
    _check(schemas.checker_for(f"{schemas.core_schema_url(version)}#/$defs/{kind}"), event, "$")
    for path, facet in _facets(event):
        validate_facet(facet, path)
    return version


def validate_facet(facet: Any, path: str) -> bool:
    """Check one facet against the vendored schema its ``_schemaURL`` names; returns whether
    it was checked (facets of other producers are kept unvalidated)."""
    facet_url = facet.get("_schemaURL") if isinstance(facet, dict) else None
    if not (isinstance(facet_url, str) and schemas.is_openlineage_url(facet_url)):
        return False
    try:
        validator = schemas.facet_checker(facet_url, path.rsplit(".", 1)[-1])
    except KeyError:
        raise EventError(f"{path}._schemaURL", "unknown facet schema",
                         facet_url) from None  # fmt: skip
    if validator is None:
        return False
    _check(validator, facet, path)
    return True


def validate_facets(document: dict[str, Any], path: str = "$") -> int:
    """Check a ``{name: facet}`` document (the spec's facet fixtures); returns how many
    facets were checked against a vendored schema."""
    return sum(validate_facet(facet, f"{path}.{name}") for name, facet in document.items())


def _schema_of(url: str) -> tuple[str, str]:
    """(core version, event kind) for a schemaURL."""
    base, _, fragment = url.partition("#")
    kind = fragment.rstrip("/").rsplit("/", 1)[-1] if fragment else "RunEvent"
    if kind not in _KINDS:
        raise EventError("$.schemaURL", f"names no event kind ({', '.join(_KINDS)})", url)
    if not schemas.is_openlineage_url(base):
        return schemas.LATEST_CORE, kind  # a producer's own URL: checked against the latest
    version = schemas.schema_version(base)
    if version is None or version not in schemas.CORE_VERSIONS:
        raise EventError(
            "$.schemaURL",
            f"unknown schema version; vendored: {', '.join(schemas.CORE_VERSIONS)}",
            url,
        )
    return version, kind


def _check(checker: schemas.Checker, instance: Any, path: str) -> None:
    error = checker.first_error(instance)
    if error is not None:
        raise EventError(_join(path, error), _problem(error))


def _join(prefix: str, error: ValidationError) -> str:
    return prefix + error.json_path.removeprefix("$")


def _problem(error: ValidationError) -> str:
    message = error.message
    return message if len(message) <= 300 else message[:297] + "..."


def _facets(event: dict[str, Any]):
    """(json path, facet) of every facet in the event."""
    for owner in ("run", "job"):
        facets = (event.get(owner) or {}).get("facets") or {}
        for name, facet in facets.items():
            yield f"$.{owner}.facets.{name}", facet
    if isinstance(event.get("dataset"), dict):
        for name, facet in (event["dataset"].get("facets") or {}).items():
            yield f"$.dataset.facets.{name}", facet
    for side in ("inputs", "outputs"):
        for i, dataset in enumerate(event.get(side) or []):
            for group in ("facets", "inputFacets", "outputFacets"):
                for name, facet in (dataset.get(group) or {}).items():
                    yield f"$.{side}[{i}].{group}.{name}", facet


def parse_event(raw: bytes | str | dict[str, Any]) -> LineageEvent:
    """Validate one event and read it; ``raw`` is JSON text/bytes or an already parsed dict."""
    if isinstance(raw, bytes | str):
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > MAX_EVENT_BYTES:
            raise EventError("$", f"event of {size} bytes exceeds the limit of {MAX_EVENT_BYTES}")
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError("$", f"not valid JSON: {exc}") from None
    else:
        event = raw
    version = validate_event(event)
    out = _read(event, version, rfc8785.dumps(event))
    _refuse_version_self_loop(out)
    return out


def read_stored_event(body: bytes) -> LineageEvent:
    """An event read back from the store: validated when it was accepted, so only parsed."""
    event = json.loads(body)
    try:
        version = _schema_of(event.get("schemaURL", ""))[0]
    except EventError:
        version = schemas.LATEST_CORE
    return _read(event, version, body)  # stored bodies are canonical already


def _read(event: dict[str, Any], version: str, body: bytes) -> LineageEvent:
    run = event.get("run") or {}
    job = event.get("job")
    parent = ((run.get("facets") or {}).get("parent") or {}).get("run") or {}
    refs = [_dataset(d) for d in event.get("inputs") or []]
    outs = [_dataset(d) for d in event.get("outputs") or []]
    if isinstance(event.get("dataset"), dict):  # a DatasetEvent: static metadata only
        outs = [_dataset(event["dataset"])]
    return LineageEvent(
        event_type=str(event.get("eventType") or "OTHER"),
        event_time=str(event.get("eventTime", "")),
        run_id=run.get("runId"),
        job=(job["namespace"], job["name"]) if isinstance(job, dict) else None,
        parent_run=parent.get("runId"),
        inputs=tuple(refs),
        outputs=tuple(outs),
        schema_version=version,
        body=body,
    )


def _dataset(obj: dict[str, Any]) -> DatasetRef:
    facets = obj.get("facets") or {}
    version = (facets.get("version") or {}).get("datasetVersion")
    aliases = tuple(
        (i["namespace"], i["name"]) for i in (facets.get("symlinks") or {}).get("identifiers", [])
    )
    sources = tuple(
        (i["namespace"], i["name"])
        for i in (facets.get("lineage") or {}).get("inputs", [])
        if isinstance(i, dict) and "namespace" in i and "name" in i
    )
    model = (facets.get(MODEL_FACET) or {}).get("modelId")
    return DatasetRef(obj["namespace"], obj["name"], version, aliases, sources, model)


def _refuse_version_self_loop(event: LineageEvent) -> None:
    """A run cannot write the very version it reads: that is a cycle, not a MERGE."""
    read = {(d.key, d.version) for d in event.inputs if d.version is not None}
    for i, out in enumerate(event.outputs):
        if out.version is not None and (out.key, out.version) in read:
            raise EventError(
                f"$.outputs[{i}]",
                f"dataset {out.namespace}:{out.name} version {out.version!r} is also an input "
                "at the same version: a cycle (a run that reads and writes a dataset must "
                "write a new version)",
            )
