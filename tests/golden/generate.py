"""Regenerate the golden files: valid bundles, their mutations, and the verdict table.

Run from the repository root (only when the formats change; the outputs are committed):

    .venv/bin/python tests/golden/generate.py

Every verifier (pure Python, the Rust crate and extension, `merkle-verify`, and the browser
page's modules in web/) must reach the verdict that `verdicts.json` lists for each file. The private
keys in `keys/` and `other-keys/` are TEST KEYS, public on purpose: never trust them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python"))

from lineage_audit.ledger import Ledger, generate_keys, load_keyring  # noqa: E402
from lineage_audit.ledger.checkpoint import sign_checkpoint  # noqa: E402
from lineage_audit.ledger.keys import KeyRing  # noqa: E402
from lineage_audit.ledger.leaf import LeafInput, leaf_input_for  # noqa: E402
from lineage_audit.ledger.merkle import (  # noqa: E402
    inclusion_proof,
    leaf_hash,
    root_hash,
)
from lineage_audit.ledger.records import canonical_json, make_record, sign_envelope  # noqa: E402

Bundle = dict[str, Any]
ORIGIN = "golden.lineage-audit.test/log"
OTHER_ORIGIN = "golden.lineage-audit.test/other"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def keyring(directory: Path, name: str) -> KeyRing:
    if not directory.exists():
        generate_keys(directory, name=name)
    return load_keyring(directory)


def write_public(ring: KeyRing, path: Path) -> None:
    path.write_text(json.dumps(ring.public_keys().to_json(), indent=2) + "\n")


def dump(name: str, bundle: Bundle) -> None:
    (HERE / name).write_text(json.dumps(bundle, indent=2) + "\n")


# --- a real log, written by the ledger --------------------------------------------------


def real_log(ring: KeyRing, workdir: Path) -> Ledger:
    """8 records (4 write-ahead pairs), checkpoints at sizes 4 and 8."""
    ledger = Ledger.open(workdir / "golden.db", ring)
    for i in range(4):
        digest = hashlib.sha256(f"artefact {i}".encode()).hexdigest()
        with ledger.action("golden.step", actor="golden:writer", subject=[(f"a{i}", digest)]):
            pass
        if i == 1:
            ledger.checkpoint()
    ledger.checkpoint()
    return ledger


# --- a hand-built log, for mutations the writer would never produce ----------------------


def fetcher(leaves: list[bytes]) -> Callable:
    """A node fetcher over an in-memory list of leaf hashes (complete subtrees only)."""

    def node(level: int, index: int) -> bytes:
        if level == 0:
            return leaves[index]
        left, right = node(level - 1, 2 * index), node(level - 1, 2 * index + 1)
        return hashlib.sha256(b"\x01" + left + right).digest()

    return lambda keys: {key: node(*key) for key in keys}


def crafted_log(ring: KeyRing, size: int, leaf_patch: Callable[[int, LeafInput], LeafInput]):
    """Validly signed records whose leaf inputs pass through `leaf_patch` before hashing."""
    envelopes, leaf_inputs, prev = [], [], bytes(32)
    for seq in range(size):
        rec = make_record(
            "record", "golden.crafted", "golden:writer", [(f"c{seq}", "00" * 32)], None, ring.record
        )
        leaf = leaf_patch(
            seq, leaf_input_for(seq, prev, rec.envelope, rec.ecdsa_sig, rec.mldsa_sig)
        )
        encoded = leaf.encode()
        envelopes.append(json.loads(rec.envelope.raw))
        leaf_inputs.append(encoded)
        prev = leaf_hash(encoded)
    leaves = [leaf_hash(x) for x in leaf_inputs]
    fetch = fetcher(leaves)
    note = sign_checkpoint(size, root_hash(size, fetch), ring.checkpoint)
    entries = [
        {
            "seq": seq,
            "leaf_input": b64(leaf_inputs[seq]),
            "envelope": envelopes[seq],
            "inclusion_proof": [b64(h) for h in inclusion_proof(seq, size, fetch)],
        }
        for seq in range(size)
    ]
    return {
        "format": "lineage-audit/evidence-bundle/v1",
        "kind": "evidence",
        "checkpoint": note,
        "keys": ring.public_keys().to_json(with_format=False),
        "entries": entries,
        "consistency": None,
    }


# --- a lineage path proof (docs/formats.md §6.1) -----------------------------------------


def lineage_events(n: int) -> list[bytes]:
    """n OpenLineage-shaped events in canonical JSON: a chain of jobs, each reading the last."""
    events = []
    for i in range(n):
        event = {
            "eventType": "COMPLETE",
            "eventTime": f"2026-01-0{i + 1}T00:00:00Z",
            "job": {"namespace": "golden", "name": f"step{i}"},
            "run": {"runId": f"00000000-0000-4000-8000-00000000000{i}"},
            "inputs": [{"namespace": "golden", "name": f"d{i}"}],
            "outputs": [{"namespace": "golden", "name": f"d{i + 1}"}],
            "producer": "https://lineage-audit.dev/golden",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        }
        events.append(canonical_json(event))
    return events


def lineage_path(ring: KeyRing, workdir: Path) -> Bundle:
    """A lineage-path bundle: one ingest intent signing a 5-event batch, 2 events proved."""
    events = lineage_events(5)
    fetch = fetcher([leaf_hash(e) for e in events])
    root = root_hash(len(events), fetch)
    ledger = Ledger.open(workdir / "lineage.db", ring)
    subject = [(f"openlineage-batch:{len(events)}", root.hex())]
    with ledger.action("lineage.ingest", actor="golden:lineage", subject=subject, events=5):
        pass
    ledger.checkpoint()
    bundle = ledger.evidence_bundle([0], kind="lineage-path")
    ledger.close()
    bundle["node"] = "dataset:golden:d3"
    bundle["events"] = [
        {
            "record_seq": 0,
            "index": i,
            "size": len(events),
            "event": b64(events[i]),
            "path": [b64(h) for h in inclusion_proof(i, len(events), fetch)],
        }
        for i in (1, 2)
    ]
    return bundle


# --- mutations ------------------------------------------------------------------------------


def entry(bundle: Bundle, seq: int) -> dict[str, Any]:
    return next(e for e in bundle["entries"] if e["seq"] == seq)


def flip_payload_bit(bundle: Bundle, seq: int) -> Bundle:
    out = copy.deepcopy(bundle)
    env = entry(out, seq)["envelope"]
    payload = bytearray(unb64(env["payload"]))
    payload[10] ^= 0x01
    env["payload"] = b64(bytes(payload))
    return out


def strip_signature(bundle: Bundle, seq: int, prefix: str) -> Bundle:
    out = copy.deepcopy(bundle)
    env = entry(out, seq)["envelope"]
    env["signatures"] = [s for s in env["signatures"] if not s["keyid"].startswith(prefix)]
    return out


def resign_with(bundle: Bundle, seq: int, other: KeyRing) -> Bundle:
    """Same key ids, signatures made with another key pair (a forger's keys)."""
    out = copy.deepcopy(bundle)
    env = entry(out, seq)["envelope"]
    forged = sign_envelope(unb64(env["payload"]), other.record)
    by_alg = {s.keyid.split(":")[0]: s.sig for s in forged.signatures}
    for sig in env["signatures"]:
        sig["sig"] = b64(by_alg[sig["keyid"].split(":")[0]])
    return out


def resign_checkpoint(bundle: Bundle, ring: KeyRing, size_delta: int) -> Bundle:
    out = copy.deepcopy(bundle)
    origin, size, root = out["checkpoint"].split("\n")[:3]
    assert origin == ring.checkpoint.name
    out["checkpoint"] = sign_checkpoint(int(size) + size_delta, unb64(root), ring.checkpoint)
    return out


def tamper_checkpoint_root(bundle: Bundle) -> Bundle:
    out = copy.deepcopy(bundle)
    lines = out["checkpoint"].split("\n")
    root = bytearray(unb64(lines[2]))
    root[0] ^= 0x80
    lines[2] = b64(bytes(root))
    out["checkpoint"] = "\n".join(lines)
    return out


def flip_consistency(bundle: Bundle) -> Bundle:
    out = copy.deepcopy(bundle)
    proof = out["consistency"]["proof"]
    first = bytearray(unb64(proof[0]))
    first[31] ^= 0x01
    proof[0] = b64(bytes(first))
    return out


def tamper_event(bundle: Bundle, item: int) -> Bundle:
    out = copy.deepcopy(bundle)
    event = unb64(out["events"][item]["event"]).replace(b"step", b"stop", 1)
    out["events"][item]["event"] = b64(event)
    return out


def change_event_size(bundle: Bundle, item: int, delta: int) -> Bundle:
    out = copy.deepcopy(bundle)
    out["events"][item]["size"] += delta
    return out


def change_tlog_index(text: str, new_index: int) -> str:
    lines = text.split("\n")
    assert lines[2].startswith("index ")
    lines[2] = f"index {new_index}"
    return "\n".join(lines)


def tamper_tlog_checkpoint(text: str) -> str:
    head, note = text.split("\n\n", 1)
    note_lines = note.split("\n")
    root = bytearray(unb64(note_lines[2]))
    root[5] ^= 0x04
    note_lines[2] = b64(bytes(root))
    return head + "\n\n" + "\n".join(note_lines)


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    ring = keyring(HERE / "keys", ORIGIN)
    other = keyring(HERE / "other-keys", OTHER_ORIGIN)
    write_public(ring, HERE / "keys.pub.json")
    write_public(other, HERE / "other-keys.pub.json")
    for old in [*HERE.glob("*.bundle.json"), *HERE.glob("*.tlog-proof"), *HERE.glob("*.txt")]:
        old.unlink()

    rows: list[dict[str, Any]] = []

    def row(file: str, valid: bool, reason: str | None, seq: int | None, **kw: Any) -> None:
        rows.append(
            {
                "file": file,
                "pubkeys": kw.get("pubkeys", "keys.pub.json"),
                "valid": valid,
                "reason": reason,
                "seq": seq,
                "what": kw["what"],
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        ledger = real_log(ring, Path(tmp))
        single = ledger.evidence_bundle([2])
        ranged = ledger.evidence_bundle(range(8), since=4)
        tlog = ledger.tlog_proof(3)
        ledger.close()
        lineage = lineage_path(ring, Path(tmp))

    dump("valid-single.bundle.json", single)
    row("valid-single.bundle.json", True, None, None, what="one entry, pinned keys")
    dump("valid-range.bundle.json", ranged)
    row("valid-range.bundle.json", True, None, None, what="8 chained entries + consistency 4->8")
    row(
        "valid-range.bundle.json",
        True,
        None,
        None,
        pubkeys=None,
        what="same, keys not pinned (bundle's own keys)",
    )
    row(
        "valid-range.bundle.json",
        False,
        "checkpoint_signature",
        None,
        pubkeys="other-keys.pub.json",
        what="verifier pins a different key set",
    )

    dump("payload-bit-flip.bundle.json", flip_payload_bit(ranged, 3))
    row(
        "payload-bit-flip.bundle.json",
        False,
        "envelope_signature",
        3,
        what="one payload bit flipped at seq 3",
    )
    dump("stripped-signature.bundle.json", strip_signature(ranged, 2, "ml-dsa-65:"))
    row(
        "stripped-signature.bundle.json",
        False,
        "signature_missing",
        2,
        what="ML-DSA-65 signature removed at seq 2",
    )
    dump("wrong-key.bundle.json", resign_with(ranged, 5, other))
    row(
        "wrong-key.bundle.json",
        False,
        "envelope_signature",
        5,
        what="seq 5 re-signed with another key pair under the same key ids",
    )
    dump("wrong-tree-size.bundle.json", resign_checkpoint(ranged, ring, +1))
    row(
        "wrong-tree-size.bundle.json",
        False,
        "inclusion",
        0,
        what="checkpoint properly signed but claims size 9 for the 8-leaf root",
    )
    dump("tampered-checkpoint.bundle.json", tamper_checkpoint_root(ranged))
    row(
        "tampered-checkpoint.bundle.json",
        False,
        "checkpoint_signature",
        None,
        what="checkpoint root changed without re-signing",
    )
    dump("bad-consistency.bundle.json", flip_consistency(ranged))
    row(
        "bad-consistency.bundle.json",
        False,
        "consistency",
        None,
        what="one bit of the consistency proof flipped",
    )

    def broken_link(seq: int, leaf: LeafInput) -> LeafInput:
        if seq != 4:
            return leaf
        return replace(leaf, prev_leaf_hash=hashlib.sha256(b"not the previous leaf").digest())

    dump("broken-chain-link.bundle.json", crafted_log(ring, 6, broken_link))
    row(
        "broken-chain-link.bundle.json",
        False,
        "chain",
        4,
        what="seq 4's prev_leaf_hash is wrong; tree and checkpoint re-made over it",
    )

    def unbound_leaf(seq: int, leaf: LeafInput) -> LeafInput:
        if seq != 3:
            return leaf
        return replace(leaf, ecdsa_sig_hash=hashlib.sha256(b"another signature").digest())

    dump("leaf-mismatch.bundle.json", crafted_log(ring, 5, unbound_leaf))
    row(
        "leaf-mismatch.bundle.json",
        False,
        "leaf_mismatch",
        3,
        what="seq 3's leaf commits to a different ECDSA signature",
    )

    dump("valid-lineage-path.bundle.json", lineage)
    row(
        "valid-lineage-path.bundle.json",
        True,
        None,
        None,
        what="lineage path proof: 2 events proved in the batch an ingest intent signs",
    )
    dump("lineage-event-tampered.bundle.json", tamper_event(lineage, 1))
    row(
        "lineage-event-tampered.bundle.json",
        False,
        "lineage_event",
        0,
        what="the second proved event's JSON changed; its batch root is signed at seq 0",
    )
    dump("lineage-event-wrong-size.bundle.json", change_event_size(lineage, 0, +1))
    row(
        "lineage-event-wrong-size.bundle.json",
        False,
        "lineage_event",
        0,
        what="an event claims a batch of 6 where the intent signs 5",
    )

    text = json.dumps(ranged, indent=2)
    (HERE / "truncated.bundle.json").write_text(text[: len(text) // 3])
    row("truncated.bundle.json", False, "malformed", None, what="file cut to a third")

    (HERE / "valid.tlog-proof").write_text(tlog)
    row("valid.tlog-proof", True, None, None, what="inclusion of seq 3 (c2sp.org/tlog-proof@v1)")
    (HERE / "wrong-index.tlog-proof").write_text(change_tlog_index(tlog, 2))
    row(
        "wrong-index.tlog-proof",
        False,
        "leaf_mismatch",
        2,
        what="index line says 2 for the leaf of seq 3",
    )
    (HERE / "tampered-checkpoint.tlog-proof").write_text(tamper_tlog_checkpoint(tlog))
    row(
        "tampered-checkpoint.tlog-proof",
        False,
        "checkpoint_signature",
        None,
        what="checkpoint root changed without re-signing",
    )

    table = {
        "about": "Expected verdict of every golden file (docs/formats.md §6). 'pubkeys' is the "
        "keys file to pin, or null to verify with the bundle's own keys. Generated by "
        "tests/golden/generate.py.",
        "cases": rows,
    }
    (HERE / "verdicts.json").write_text(json.dumps(table, indent=2) + "\n")
    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)
    print(f"wrote {len(rows)} cases to {HERE / 'verdicts.json'}")


if __name__ == "__main__":
    main()
