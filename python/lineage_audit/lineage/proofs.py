"""Lineage path proofs (DESIGN §4.4): one input's ancestry, proved, and nothing else.

A path proof is an evidence bundle of kind ``lineage-path`` whose ledger entries are the
``lineage.ingest`` intents that attest the events on the input's ancestry, plus an
``events`` member: each ancestry event's canonical JSON with its RFC 9162 inclusion path in
its batch (leaf = ``SHA-256(0x00 || event)``; the batch root is the intent's subject
digest, named ``openlineage-batch:<size>``). The other events of those batches appear only
as sibling hashes; the rest of the graph not at all.

Verification (:func:`verify_path_proof`, ``lineage-audit verify`` and ``merkle-verify``):
the bundle as any evidence bundle (signatures, leaf binding, inclusion in the signed
checkpoint, chain, consistency), then step 8: every event's batch inclusion against the root
its intent signs (reason ``lineage_event``; docs/formats.md §6.1).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ..ledger import Ledger, verify_bundle
from ..ledger.keys import PublicKeys
from ..ledger.records import canonical_json
from .events import EventError
from .graph import LineageGraph
from .ingest import batch_inclusion, event_leaf_hash
from .store import LineageStore

__all__ = ["PathVerdict", "build_path_proof", "verify_path_proof"]


def ancestry_events(graph: LineageGraph, node_id: str) -> set[str]:
    """Digests of the events that made the ancestry of ``dataset:<ns>:<name>``."""
    kind, _, rest = node_id.partition(":")
    namespace, _, name = rest.partition(":")
    if kind != "dataset" or not namespace or not name:
        raise EventError("node_id", "expected 'dataset:<namespace>:<name>'", node_id)
    versions = graph.versions_of((namespace, name))
    if not versions:
        raise EventError("node_id", "not in the lineage graph", node_id)
    came = graph.reachable([max(versions, key=_written_last(graph))], forward=False)
    return {digest for node in came for digest in graph.sources_of.get(node, ())}


def _written_last(graph: LineageGraph):
    order = {v: i for i, v in enumerate(graph.latest.values())}
    return lambda node: (node[3] == graph.latest.get((node[1], node[2])), order.get(node[3], -1))


def build_path_proof(
    graph: LineageGraph, store: LineageStore, ledger: Ledger, node_id: str
) -> dict[str, Any]:
    digests = ancestry_events(graph, node_id)
    stored = store.by_digests(sorted(digests))
    missing = [e for e in stored if e.record_seq is None]
    if missing:
        raise EventError("node_id", "some ancestry events were stored without a ledger", node_id)
    checkpoint = ledger.latest_checkpoint()
    seqs = sorted({e.record_seq for e in stored})
    if checkpoint is None or checkpoint.size <= seqs[-1]:
        ledger.checkpoint()
    batches: dict[int, list[bytes]] = {}
    items = []
    for event in sorted(stored, key=lambda e: (e.record_seq, e.batch_index)):
        leaves = batches.get(event.record_seq)
        if leaves is None:
            batch = store.batch(event.record_seq)
            leaves = batches[event.record_seq] = [event_leaf_hash(e.body) for e in batch]
        items.append({
            "record_seq": event.record_seq,
            "index": event.batch_index,
            "size": event.batch_size,
            "event": base64.b64encode(event.body).decode(),
            "path": [base64.b64encode(h).decode()
                     for h in batch_inclusion(leaves, event.batch_index)],
        })  # fmt: skip
    bundle = ledger.evidence_bundle(seqs, kind="lineage-path")
    bundle["events"] = items
    bundle["node"] = node_id
    return bundle


def path_proof_bytes(bundle: dict[str, Any]) -> bytes:
    return canonical_json(bundle)


@dataclass(frozen=True)
class PathVerdict:
    valid: bool
    reason: str | None
    message: str
    edges: tuple[tuple[str, str], ...] = ()  # (input, output) dataset names the events prove

    def line(self) -> str:
        if self.valid:
            return f"VALID {self.message}"
        return f"INVALID {self.reason}: {self.message}"


def verify_path_proof(bundle: dict[str, Any], keys: PublicKeys | None = None) -> PathVerdict:
    """The bundle verified as any evidence bundle, its events (step 8) included; ``edges``
    are the dataset-to-dataset edges the proved events state."""
    verdict = verify_bundle(bundle, keys)
    if not verdict.valid:
        return PathVerdict(False, verdict.reason, verdict.message)
    edges: set[tuple[str, str]] = set()
    for item in bundle.get("events") or []:
        edges.update(_edges(json.loads(base64.b64decode(item["event"]))))
    return PathVerdict(True, None, verdict.message, tuple(sorted(edges)))


def _edges(event: dict[str, Any]) -> set[tuple[str, str]]:
    ins = [f"{d['namespace']}:{d['name']}" for d in event.get("inputs") or []]
    outs = [f"{d['namespace']}:{d['name']}" for d in event.get("outputs") or []]
    return {(a, b) for a in ins for b in outs}
