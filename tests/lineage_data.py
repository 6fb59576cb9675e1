"""OpenLineage events for the Tier 2 tests, built as a producer would emit them (spec 2-0-2)."""

from __future__ import annotations

import itertools
import uuid

from lineage_audit.lineage.events import MODEL_FACET

PRODUCER = "https://github.com/lineage-audit/tests"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACETS = "https://openlineage.io/spec/facets/1-0-0"
_clock = itertools.count()


def _facet(kind: str, **body) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": f"{FACETS}/{kind}.json#/$defs/{kind}", **body}


def dataset(
    namespace: str,
    name: str,
    *,
    version: str | None = None,
    symlinks: tuple[tuple[str, str], ...] = (),
    model: str | None = None,
    sources: tuple[tuple[str, str], ...] = (),
) -> dict:
    facets: dict = {}
    if version is not None:
        facets["version"] = _facet("DatasetVersionDatasetFacet", datasetVersion=version)
    if symlinks:
        facets["symlinks"] = _facet(
            "SymlinksDatasetFacet",
            identifiers=[{"namespace": ns, "name": n, "type": "TABLE"} for ns, n in symlinks],
        )
    if sources:
        facets["lineage"] = _facet(
            "LineageFacet", inputs=[{"namespace": ns, "name": n} for ns, n in sources]
        )
        facets["lineage"]["_schemaURL"] = f"{FACETS}/LineageFacet.json#/$defs/LineageDatasetFacet"
    if model is not None:
        facets[MODEL_FACET] = {
            "_producer": PRODUCER,
            "_schemaURL": "https://lineage-audit.dev/spec/facets/1-0-0/ModelDatasetFacet.json",
            "modelId": model,
        }
    return {"namespace": namespace, "name": name, "facets": facets}


def run_event(
    job: str,
    inputs: list[dict],
    outputs: list[dict],
    *,
    namespace: str = "tests",
    run_id: str | None = None,
    event_type: str = "COMPLETE",
    parent: tuple[str, str] | None = None,  # (parent run id, parent job name)
) -> dict:
    run: dict = {"runId": run_id or str(uuid.uuid4()), "facets": {}}
    if parent is not None:
        run["facets"]["parent"] = {
            "_producer": PRODUCER,
            "_schemaURL": f"{FACETS}/ParentRunFacet.json#/$defs/ParentRunFacet",
            "run": {"runId": parent[0]},
            "job": {"namespace": namespace, "name": parent[1]},
        }
    tick = next(_clock)
    day, hour, minute = 1 + tick // 1440 % 28, tick // 60 % 24, tick % 60
    return {
        "eventType": event_type,
        "eventTime": f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00Z",
        "run": run,
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": inputs,
        "outputs": outputs,
        "producer": PRODUCER,
        "schemaURL": CORE,
    }
