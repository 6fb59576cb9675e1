"""The audit artifact of an incident: one JSON document (schema: ``artifact.schema.json``).

It holds the incident, its triggers, the confidence computation step by step, the
evidence of every tier, the timeline and threshold history, the halts, the regulatory
citations of every field, and an evidence bundle of the incident's ledger entries (with
the public keys) so that a stranger can verify it offline::

    lineage-audit verify evidence.bundle.json --pubkeys keys.pub.json
    merkle-verify evidence.bundle.json --keys keys.pub.json
    web/dist/verify.html (opened from disk; drop the bundle and the keys)
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..ledger import Ledger
from ..ledger.records import rfc3339_now
from .errors import IncidentError, TransitionError, UnknownIncident
from .incident import Incident
from .regulatory import CITATIONS, regulatory_json

__all__ = [
    "ARTIFACT_FORMAT",
    "ArtifactShelf",
    "NoArtifact",
    "StaleArtifact",
    "artifact_schema",
    "build_artifact",
    "validate_artifact",
]

ARTIFACT_FORMAT = "lineage-audit/incident-artifact/v1"
VERIFY_COMMANDS = [
    "lineage-audit verify evidence.bundle.json --pubkeys keys.pub.json",
    "merkle-verify evidence.bundle.json --keys keys.pub.json",
]
VERIFY_BROWSER = (
    "Open web/dist/verify.html from disk (no network needed), load keys.pub.json as the keys "
    "to trust, then drop evidence.bundle.json on the page."
)


def build_artifact(incident: Incident, ledger: Ledger, *, sign_checkpoint: bool = True
                   ) -> dict[str, Any]:  # fmt: skip
    """The artifact of ``incident``, with an evidence bundle of its ledger entries.

    ``sign_checkpoint``: sign a checkpoint covering them first (needs the ledger's keys);
    otherwise the latest stored checkpoint must already cover them.
    """
    seqs = sorted({*incident.ledger_seqs, *(t["seq"] for t in incident.evidence.thresholds)})
    if not seqs:
        raise IncidentError("incident.ledger_seqs", "the incident has no ledger entries", [])
    if sign_checkpoint:
        ledger.checkpoint()
    bundle = ledger.evidence_bundle(seqs)
    keys = ledger.public_keys.to_json()
    return {
        "format": ARTIFACT_FORMAT,
        "generated_at": rfc3339_now(),
        "generator": {"name": "lineage-audit", "version": __version__},
        "incident": _incident(incident),
        "triggers": [t.to_json() for t in incident.triggers],
        "confidence": incident.confidence.to_json(),
        "evidence": {**incident.evidence.sections(), "digests": incident.evidence.digests()},
        "timeline": timeline(incident, ledger),
        "halts": incident.halts,
        "ledger": {
            "seqs": seqs,
            "bundle": bundle,
            "public_keys": keys,
            "verify": {"commands": VERIFY_COMMANDS, "browser": VERIFY_BROWSER},
        },
        "regulatory": regulatory_json(),
    }


def _incident(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "asset_class": incident.asset_class,
        "signal": incident.signal,
        "state": incident.state,
        "opened_at": incident.opened_at,
        "opened_by": incident.opened_by,
        "policy": incident.policy,
        "digest": incident.digest(),
    }


def timeline(incident: Incident, ledger: Ledger) -> list[dict[str, Any]]:
    """Every recorded event of the incident, in ledger order: the triggering alerts, the
    opening, joins, state changes and halts (each an intent on the ledger)."""
    items = []
    for seq in sorted(set(incident.ledger_seqs)):
        entry = ledger.entry(seq)
        if entry.kind != "intent":
            continue
        predicate = entry.statement()["predicate"]
        item = {"seq": seq, "at": predicate["requested_at"], "action": entry.action,
                "actor": predicate["actor"]}  # fmt: skip
        outcome = _outcome(ledger, seq)
        if outcome is not None:
            item["outcome"] = outcome
        for name in ("from", "to", "note", "reason", "z", "window", "signal"):
            if predicate.get(name) is not None:
                item[name] = predicate[name]
        items.append(item)
    return items


def _outcome(ledger: Ledger, intent_seq: int) -> dict[str, Any] | None:
    for entry in ledger.entries(intent_seq + 1):
        if entry.kind != "outcome":
            continue
        predicate = entry.statement()["predicate"]
        if predicate["intent"]["seq"] == intent_seq:
            out = {"seq": entry.seq, "status": predicate["status"]}
            if "error" in predicate:
                out["error"] = predicate["error"]["message"]
            return out
    return None


@lru_cache(maxsize=1)
def artifact_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the artifact."""
    text = resources.files(__package__).joinpath("artifact.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_artifact(artifact: dict[str, Any]) -> None:
    """Raise :class:`IncidentError` naming the first failing path; also checks that every
    field the citation table names is present."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(artifact_schema())
    for error in sorted(validator.iter_errors(artifact), key=lambda e: list(e.absolute_path)):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                             for p in error.absolute_path)  # fmt: skip
        raise IncidentError(path, error.message)
    for field in CITATIONS:
        head, _, rest = field.partition(".")
        if head not in artifact or (rest and rest not in artifact[head]):
            raise IncidentError(field, "cited field missing from the artifact")


# --- the latest artifact of each incident, kept (reading a report writes nothing) -----------


class NoArtifact(UnknownIncident):
    """No artifact has been built for the incident yet (HTTP 404)."""


class StaleArtifact(TransitionError):
    """The incident changed after its latest artifact was built (HTTP 409)."""


class ArtifactShelf:
    """The latest artifact per incident, ``<directory>/<incident id>.json`` (replaced whole:
    temp file, fsync, rename). Building one signs a checkpoint; reading one writes nothing."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def build(self, incident: Incident, ledger: Ledger) -> dict[str, Any]:
        """Build (signing a checkpoint), keep and return the artifact of ``incident``."""
        artifact = build_artifact(incident, ledger)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(incident.id)
        staging = path.with_name(f".{path.name}.tmp")
        with staging.open("w", encoding="utf-8") as handle:
            json.dump(artifact, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
        return artifact

    def latest(self, incident: Incident) -> dict[str, Any]:
        """The kept artifact of ``incident``; :class:`NoArtifact` if none was built,
        :class:`StaleArtifact` if the incident has records the artifact does not cite."""
        path = self._path(incident.id)
        if not path.is_file():
            raise NoArtifact("artifact", f"incident {incident.id} has no artifact yet: build "
                             f"one with POST /api/v1/incidents/{incident.id}/artifact (or the "
                             "BuildArtifact RPC)")  # fmt: skip
        artifact = json.loads(path.read_text(encoding="utf-8"))
        missing = sorted(set(incident.ledger_seqs) - set(artifact["ledger"]["seqs"]))
        if missing:
            raise StaleArtifact("artifact", f"incident {incident.id} changed after its latest "
                                f"artifact ({artifact['generated_at']}; ledger seqs {missing} "
                                f"not in it): rebuild it with POST /api/v1/incidents/"
                                f"{incident.id}/artifact")  # fmt: skip
        return artifact

    def _path(self, incident_id: str) -> Path:
        return self.directory / f"{Path(incident_id).name}.json"
