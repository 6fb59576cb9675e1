"""The AIBOMs the cooperating sources of ATLAS-FX supply: CycloneDX 1.6 JSON ML-BOMs.

Each describes the source as a ``data`` component; the four FXWire feeds also list the
vendor's summariser as a ``machine-learning-model`` component with a model card. Like the
vendor's first lineage, the model card names only the licensed news as training data: the
AIBOM is valid, and incomplete — which Tier 1 cannot know and Tier 2 later shows. Opaque
sources (and every source when vendors do not cooperate) supply none.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from .atlas_fx import VENDOR_LICENSED, VENDOR_MODEL, Scenario, Source

__all__ = ["aibom_document", "write_aiboms"]


def _data_component(source: Source) -> dict:
    return {
        "type": "data",
        "bom-ref": source.id,
        "name": source.name,
        "version": "d0",
        "data": [
            {
                "type": "dataset",
                "name": source.name,
                "classification": "public news",
                "description": f"news published by {source.name}, from {source.upstream}",
                "governance": {"owners": [{"organization": {"name": f"{source.name} publishing"}}]},
            }
        ],
    }


def _vendor_model() -> dict:
    licensed = ":".join(VENDOR_LICENSED)
    return {
        "type": "machine-learning-model",
        "bom-ref": ":".join(VENDOR_MODEL),
        "name": VENDOR_MODEL[1],
        "version": "2026Q4",
        "supplier": {"name": "FXWire"},
        "modelCard": {
            "modelParameters": {
                "task": "summarization",
                "architectureFamily": "transformer",
                "datasets": [{"type": "dataset", "name": licensed}],
            },
            "considerations": {"useCases": ["summaries of FX news for the fx-digest product"]},
        },
    }


def aibom_document(scenario: Scenario, source: Source) -> dict:
    """One source's CycloneDX 1.6 ML-BOM (deterministic in the seed)."""
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"atlas-fx/{scenario.seed}/aibom/{source.id}")
    components = [_vendor_model()] if source.via_vendor else []
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": scenario.rfc3339(0),
            "component": _data_component(source),
        },
        "components": components,
        "dependencies": [{"ref": source.id, "dependsOn": [c["bom-ref"] for c in components]}],
    }


def write_aiboms(scenario: Scenario, directory: Path) -> dict[str, Path]:
    """Write the AIBOM of every cooperating source; ``{source id: path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for source in scenario.sources:
        if scenario.cooperates(source):
            path = directory / f"{source.name}.cdx.json"
            doc = aibom_document(scenario, source)
            path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            written[source.id] = path
    return written
