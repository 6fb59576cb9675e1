"""The gRPC LedgerService on loopback, over a real signed SQLite ledger.

Every proof a client fetches is verified by the independent Python verifier and by the Rust
extension against a checkpoint the client fetched and checked itself; bundles go through the
`merkle-verify` binary and `lineage-audit verify`. Bad requests get the documented status
code with a message naming the field, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import rfc8785
from lineage_audit import _merkle_verify as ext
from lineage_audit._generated.lineage_audit.v1 import ledger_pb2, ledger_pb2_grpc
from lineage_audit.ledger import (
    CheckpointError,
    ConsistencyError,
    FormatError,
    KeyMismatchError,
    Ledger,
    LedgerError,
    ProofError,
    SignatureError,
    SignerError,
    StoreError,
    _vcore,
    verify_bundle_file,
    verify_checkpoint,
    verify_tlog_proof,
)
from lineage_audit.ledger.errors import CheckpointConflict
from lineage_audit.ledger.keys import spki_der
from lineage_audit.server.errors import RequestError
from lineage_audit.server.ledger_service import LedgerServicer, add_ledger_service, ledger_status

ROOT = Path(__file__).resolve().parent.parent
MERKLE_VERIFY = os.environ.get("MERKLE_VERIFY_BIN", str(ROOT / "target/release/merkle-verify"))
Code = grpc.StatusCode


class LedgerServer:
    """A grpc.aio server with only the LedgerService, on its own event loop in a thread."""

    def __init__(self, ledger: Ledger, **servicer_options) -> None:
        self.ledger = ledger
        self.options = servicer_options
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="test-ledger-service")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: grpc.aio.Server | None = None

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> int:
        self.server = grpc.aio.server()
        if self.options:
            servicer = LedgerServicer(self.ledger, self.executor, **self.options)
            ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, self.server)
            self.service_name = None
        else:
            self.service_name = add_ledger_service(self.server, self.ledger, self.executor)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def __enter__(self) -> LedgerServer:
        self.thread.start()
        try:
            port = self._run(self._start())
        except BaseException:
            self._stop_loop()
            raise
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        self._run(self.server.stop(None))
        self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
        self.executor.shutdown(wait=True)


@pytest.fixture
def served(ledger: Ledger):
    with LedgerServer(ledger) as server:
        yield server


def stock(ledger: Ledger, helpers, actions: int = 4, records: int = 3) -> None:
    """Write-ahead actions (intent + outcome each), then plain records."""
    for i in range(actions):
        subject = [(f"input-{i}", helpers.sha_hex(f"input-{i}"))]
        with ledger.action("test.step", actor="tester", subject=subject) as act:
            act.result = {"step": i}
    helpers.fill(ledger, records)


@pytest.fixture
def two_checkpoints(ledger: Ledger, served: LedgerServer, helpers):
    """Checkpoints of sizes 11 and 17, signed over gRPC; the client keeps both."""
    stock(ledger, helpers)
    first = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(create=True), timeout=30)
    helpers.fill(ledger, 6)
    second = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(create=True), timeout=30)
    assert (first.tree_size, second.tree_size) == (11, 17)
    return first, second


def trusted_root(checkpoint: ledger_pb2.Checkpoint, keyring) -> bytes:
    """The root of a fetched checkpoint, after both verifiers accepted its signatures."""
    parsed = verify_checkpoint(checkpoint.signed_note, keyring.public_keys())
    cp = keyring.checkpoint
    origin, size, root = ext.verify_checkpoint(
        checkpoint.signed_note,
        cp.name,
        spki_der(cp.ecdsa.public_key()),
        cp.mldsa.public_key().public_bytes_raw(),
    )
    assert (parsed.size, parsed.root) == (size, root)
    assert (origin, size, root) == (cp.name, checkpoint.tree_size, checkpoint.root_hash)
    return root


def refused(method, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        reply = method(request, timeout=30)
        if isinstance(reply, grpc.Call):  # a server stream: its status arrives when read
            list(reply)
    return info.value.code(), info.value.details()


def merkle_verify(path: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MERKLE_VERIFY, str(path), "--keys", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- checkpoints ------------------------------------------------------------------------------


def test_get_checkpoint_signs_only_when_the_tree_grew(ledger, served, helpers, keyring) -> None:
    assert served.service_name == "lineage_audit.v1.LedgerService"
    stub = served.stub
    code, details = refused(stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(create=True))
    assert code == Code.FAILED_PRECONDITION and "empty" in details, details
    stock(ledger, helpers)
    code, details = refused(stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest())
    assert code == Code.NOT_FOUND and "create=true" in details, details

    made = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(create=True), timeout=30)
    assert made.tree_size == ledger.size == 11
    assert trusted_root(made, keyring) == ledger.root(11)
    assert made.signed_note == ledger.latest_checkpoint().note
    again = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(create=True), timeout=30)
    assert again == made and len(ledger.checkpoints()) == 1  # no growth, no new signature
    assert stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=30) == made

    helpers.fill(ledger, 1)
    latest = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=30)
    assert latest == made  # without create, the stored one even though the tree grew
    grown = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(create=True), timeout=30)
    assert grown.tree_size == 12 and trusted_root(grown, keyring) == ledger.root(12)
    assert [cp.size for cp in ledger.checkpoints()] == [11, 12]


# --- proofs -----------------------------------------------------------------------------------


def test_inclusion_proofs_verify_in_python_and_rust(
    ledger, served, two_checkpoints, keyring, pubkeys_file
) -> None:
    first, second = two_checkpoints
    roots = {cp.tree_size: trusted_root(cp, keyring) for cp in two_checkpoints}
    keys_json = pubkeys_file.read_bytes()
    for seq in range(second.tree_size):
        for asked in (0, first.tree_size) if seq < first.tree_size else (0,):
            request = ledger_pb2.GetInclusionProofRequest(seq=seq, tree_size=asked)
            proof = served.stub.GetInclusionProof(request, timeout=30)
            size = proof.tree_size
            assert (proof.seq, size) == (seq, asked or second.tree_size)
            assert proof.leaf_hash == ledger.entry(seq).leaf_hash
            hashes, root = list(proof.hashes), roots[size]
            assert _vcore.verify_inclusion(seq, size, proof.leaf_hash, hashes, root)
            assert ext.verify_inclusion(proof.leaf_hash, seq, size, hashes, root)
            py = verify_tlog_proof(proof.tlog_proof, pubkeys_file)
            assert py.valid and py.seqs == (seq,) and py.tree_size == size, py.message
            rs = ext.verify_tlog_proof(proof.tlog_proof, keys_json)
            assert rs["valid"] and rs["tree_size"] == size, rs["message"]
    # The verifiers are not vacuous: the last proof fails for another leaf position.
    wrong = (seq + 1) % size
    assert not _vcore.verify_inclusion(wrong, size, proof.leaf_hash, hashes, root)
    assert not ext.verify_inclusion(proof.leaf_hash, wrong, size, hashes, root)


def test_consistency_proof_verifies_in_python_and_rust(served, two_checkpoints, keyring) -> None:
    first, second = two_checkpoints
    old_root, new_root = trusted_root(first, keyring), trusted_root(second, keyring)
    request = ledger_pb2.GetConsistencyProofRequest(old_size=first.tree_size)
    proof = served.stub.GetConsistencyProof(request, timeout=30)
    assert (proof.old_size, proof.new_size) == (first.tree_size, second.tree_size)
    hashes = list(proof.hashes)
    assert hashes, "11 -> 17 needs a non-empty proof"
    args = (first.tree_size, second.tree_size, hashes, old_root, new_root)
    assert _vcore.verify_consistency(*args)
    assert ext.verify_consistency(*args)
    swapped = (first.tree_size, second.tree_size, hashes, new_root, old_root)
    assert not _vcore.verify_consistency(*swapped)
    assert not ext.verify_consistency(*swapped)

    same = ledger_pb2.GetConsistencyProofRequest(old_size=17, new_size=17)
    equal = served.stub.GetConsistencyProof(same, timeout=30)
    assert (equal.old_size, equal.new_size, list(equal.hashes)) == (17, 17, [])
    assert _vcore.verify_consistency(17, 17, [], new_root, new_root)


# --- entries ----------------------------------------------------------------------------------


def test_get_entries_streams_the_exact_envelopes_in_order(ledger, served, helpers) -> None:
    stock(ledger, helpers)
    everything = list(served.stub.GetEntries(ledger_pb2.GetEntriesRequest(), timeout=30))
    assert [e.seq for e in everything] == list(range(ledger.size)) == list(range(11))
    for got in everything:
        stored = ledger.entry(got.seq)
        assert (got.leaf_hash, got.envelope, got.kind) == (
            stored.leaf_hash,
            stored.envelope,
            stored.kind,
        )
    assert [e.kind for e in everything[:2]] == ["intent", "outcome"]
    part = list(served.stub.GetEntries(ledger_pb2.GetEntriesRequest(start=3, end=7), timeout=30))
    assert part == everything[3:7]
    empty = ledger_pb2.GetEntriesRequest(start=5, end=5)
    assert list(served.stub.GetEntries(empty, timeout=30)) == []


def test_get_entries_reads_the_ledger_in_chunks(ledger, helpers, monkeypatch) -> None:
    helpers.fill(ledger, 16)
    reads: list[tuple[int, int | None]] = []
    real = ledger.entries

    def spy(start: int = 0, end: int | None = None):
        reads.append((start, end))
        return real(start, end)

    monkeypatch.setattr(ledger, "entries", spy)
    with LedgerServer(ledger, entries_chunk=4) as server:
        request = ledger_pb2.GetEntriesRequest(start=3)
        got = list(server.stub.GetEntries(request, timeout=30))
    assert [e.seq for e in got] == list(range(3, 16))
    assert [e.leaf_hash for e in got] == [ledger.entry(s).leaf_hash for s in range(3, 16)]
    assert reads == [(3, 7), (7, 11), (11, 15), (15, 16)]


# --- evidence bundles -------------------------------------------------------------------------


def _bundle(served: LedgerServer, seqs: list[int], since: int = 0) -> bytes:
    request = ledger_pb2.GetEvidenceBundleRequest(seqs=seqs, since=since)
    return served.stub.GetEvidenceBundle(request, timeout=30).json


def test_evidence_bundle_verifies_with_merkle_verify_and_python(
    ledger, served, two_checkpoints, tmp_path, pubkeys_file, cli
) -> None:
    first, second = two_checkpoints
    data = _bundle(served, [16, 0, 5], since=first.tree_size)
    assert rfc8785.dumps(json.loads(data)) == data  # canonical JSON, as sent
    assert json.loads(data) == ledger.evidence_bundle([0, 5, 16], second.tree_size, 11)
    doc = json.loads(data)
    assert doc["checkpoint"] == second.signed_note
    assert doc["consistency"]["old_checkpoint"] == first.signed_note
    path = tmp_path / "entries.bundle.json"
    path.write_bytes(data)

    result = merkle_verify(path, pubkeys_file)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("VALID entries=3 tree_size=17"), result.stdout
    verdict = verify_bundle_file(path, pubkeys_file)
    assert verdict.valid and verdict.seqs == (0, 5, 16), verdict.message
    code, out, _ = cli("verify", path, "--pubkeys", pubkeys_file)
    assert code == 0 and out.startswith("VALID"), out


def test_a_bundle_with_one_payload_byte_flipped_fails(
    served, two_checkpoints, tmp_path, pubkeys_file, cli
) -> None:
    doc = json.loads(_bundle(served, [2, 9]))
    envelope = doc["entries"][1]["envelope"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[payload.index(b"test.step")] ^= 0x01  # 't' -> 'u': still JSON, no longer signed
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    path = tmp_path / "tampered.bundle.json"
    path.write_bytes(rfc8785.dumps(doc))

    result = merkle_verify(path, pubkeys_file)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout.startswith("INVALID envelope_signature seq=9"), result.stdout
    verdict = verify_bundle_file(path, pubkeys_file)
    assert (verdict.valid, verdict.reason, verdict.seq) == (False, "envelope_signature", 9)
    code, out, _ = cli("verify", path, "--pubkeys", pubkeys_file)
    assert code == 1 and out.startswith("INVALID envelope_signature seq=9"), out


# --- refusals ---------------------------------------------------------------------------------

LEDGER_HAS = "the ledger has 17 entries"
INVALID = {
    "inclusion_seq": (
        "GetInclusionProof",
        ledger_pb2.GetInclusionProofRequest(seq=17),
        ("seq 17", LEDGER_HAS),
    ),
    "inclusion_tree_size": (
        "GetInclusionProof",
        ledger_pb2.GetInclusionProofRequest(seq=0, tree_size=18),
        ("tree_size 18", LEDGER_HAS),
    ),
    "inclusion_seq_outside_tree_size": (
        "GetInclusionProof",
        ledger_pb2.GetInclusionProofRequest(seq=12, tree_size=11),
        ("seq 12", "tree of size 11", LEDGER_HAS),
    ),
    "consistency_old_after_new": (
        "GetConsistencyProof",
        ledger_pb2.GetConsistencyProofRequest(old_size=17, new_size=11),
        ("old_size 17", "new_size 11", LEDGER_HAS),
    ),
    "consistency_old_zero": (
        "GetConsistencyProof",
        ledger_pb2.GetConsistencyProofRequest(old_size=0),
        ("old_size 0", LEDGER_HAS),
    ),
    "consistency_new_size": (
        "GetConsistencyProof",
        ledger_pb2.GetConsistencyProofRequest(old_size=11, new_size=40),
        ("new_size 40", LEDGER_HAS),
    ),
    "entries_end": (
        "GetEntries",
        ledger_pb2.GetEntriesRequest(start=0, end=18),
        ("end 18", LEDGER_HAS),
    ),
    "entries_start": (
        "GetEntries",
        ledger_pb2.GetEntriesRequest(start=20),
        ("start 20", LEDGER_HAS),
    ),
    "bundle_seq": (
        "GetEvidenceBundle",
        ledger_pb2.GetEvidenceBundleRequest(seqs=[1, 17]),
        ("seqs[1] 17", LEDGER_HAS),
    ),
    "bundle_empty": (
        "GetEvidenceBundle",
        ledger_pb2.GetEvidenceBundleRequest(),
        ("seqs", "empty"),
    ),
    "bundle_since": (
        "GetEvidenceBundle",
        ledger_pb2.GetEvidenceBundleRequest(seqs=[1], since=30),
        ("since 30", LEDGER_HAS),
    ),
}


def _keeps_serving(served: LedgerServer) -> None:
    latest = served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=30)
    assert latest.tree_size == 17


@pytest.mark.parametrize("case", sorted(INVALID))
def test_out_of_range_is_invalid_argument_naming_the_field(served, two_checkpoints, case) -> None:
    method, request, needles = INVALID[case]
    code, details = refused(getattr(served.stub, method), request)
    assert code == Code.INVALID_ARGUMENT, details
    for needle in needles:
        assert needle in details, (needle, details)
    _keeps_serving(served)


NOT_COVERED = {
    "inclusion_tree_size_unsigned": (
        "GetInclusionProof",
        ledger_pb2.GetInclusionProofRequest(seq=2, tree_size=5),
        ("tree_size 5", "no checkpoint of that size"),
    ),
    "inclusion_after_latest": (
        "GetInclusionProof",
        ledger_pb2.GetInclusionProofRequest(seq=18),
        ("seq 18", "latest checkpoint", "the ledger has 20 entries"),
    ),
    "consistency_old_unsigned": (
        "GetConsistencyProof",
        ledger_pb2.GetConsistencyProofRequest(old_size=3),
        ("old_size 3", "no checkpoint of that size"),
    ),
    "bundle_after_latest": (
        "GetEvidenceBundle",
        ledger_pb2.GetEvidenceBundleRequest(seqs=[0, 19]),
        ("seqs[1] 19", "latest checkpoint (size 17"),
    ),
    "bundle_since_unsigned": (
        "GetEvidenceBundle",
        ledger_pb2.GetEvidenceBundleRequest(seqs=[0], since=4),
        ("since 4", "no checkpoint of that size"),
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_COVERED))
def test_sizes_no_checkpoint_covers_are_not_found(
    ledger, served, two_checkpoints, helpers, case
) -> None:
    helpers.fill(ledger, 3)  # entries 17..19, not covered by any checkpoint
    method, request, needles = NOT_COVERED[case]
    code, details = refused(getattr(served.stub, method), request)
    assert code == Code.NOT_FOUND, details
    for needle in needles:
        assert needle in details, (needle, details)
    _keeps_serving(served)


def test_without_any_checkpoint_every_proof_is_not_found(ledger, served, helpers) -> None:
    stock(ledger, helpers)
    stub = served.stub
    requests = [
        (stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest()),
        (stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(seq=0)),
        (stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest(old_size=1)),
        (stub.GetEvidenceBundle, ledger_pb2.GetEvidenceBundleRequest(seqs=[0])),
    ]
    for method, request in requests:
        code, details = refused(method, request)
        assert code == Code.NOT_FOUND, details
        assert "create=true" in details, details
    assert len(list(stub.GetEntries(ledger_pb2.GetEntriesRequest(), timeout=30))) == 11


def test_too_many_bundle_entries_is_resource_exhausted(ledger, helpers) -> None:
    helpers.fill(ledger, 3)
    ledger.checkpoint()
    with LedgerServer(ledger, max_bundle_entries=2) as server:
        request = ledger_pb2.GetEvidenceBundleRequest(seqs=[0, 1, 2])
        code, details = refused(server.stub.GetEvidenceBundle, request)
        assert code == Code.RESOURCE_EXHAUSTED and "limit is 2" in details, details
        request = ledger_pb2.GetEvidenceBundleRequest(seqs=[0, 2])
        assert json.loads(server.stub.GetEvidenceBundle(request, timeout=30).json)["entries"]


def test_unexpected_errors_are_internal_with_the_type_only(
    ledger, served, helpers, monkeypatch
) -> None:
    helpers.fill(ledger, 2)
    ledger.checkpoint()

    def broken(seq: int):
        raise RuntimeError("/srv/secret/ledger.db is on fire")

    monkeypatch.setattr(ledger, "entry", broken)
    request = ledger_pb2.GetInclusionProofRequest(seq=1)
    code, details = refused(served.stub.GetInclusionProof, request)
    assert code == Code.INTERNAL, details
    assert "RuntimeError" in details and "secret" not in details and "Traceback" not in details

    def inconsistent():
        raise ConsistencyError("checkpoint: the tree of size 3 is not consistent; refusing")

    monkeypatch.setattr(ledger, "checkpoint", inconsistent)
    helpers.fill(ledger, 1)
    code, details = refused(served.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(create=True))
    assert code == Code.DATA_LOSS and details.startswith("checkpoint: the tree of size 3"), details
    assert served.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=30).tree_size == 2


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (FormatError("seqs", "at least one entry is needed"), Code.INVALID_ARGUMENT),
        (ProofError("seq 9: not in a tree of size 3"), Code.INVALID_ARGUMENT),
        (ConsistencyError("checkpoint: inconsistent"), Code.DATA_LOSS),
        (SignatureError("checkpoint: ECDSA P-256 signature does not verify"), Code.DATA_LOSS),
        (CheckpointConflict("checkpoint: another writer"), Code.ABORTED),
        (CheckpointError("checkpoint: too many writers"), Code.FAILED_PRECONDITION),
        (SignerError("signer: the worker is gone"), Code.UNAVAILABLE),
        (StoreError("store: database is locked"), Code.UNAVAILABLE),
        (KeyMismatchError("keys: not the keys of this ledger"), Code.FAILED_PRECONDITION),
        (LedgerError("keys: opened without signing keys"), Code.FAILED_PRECONDITION),
        (RequestError(Code.NOT_FOUND, "tree_size 4: none"), Code.NOT_FOUND),
    ],
)
def test_ledger_status_keeps_ledger_messages(exc, code) -> None:
    assert ledger_status(exc) == (code, str(exc))


def test_ledger_status_hides_unexpected_messages() -> None:
    assert ledger_status(KeyError("/secret")) == (Code.INTERNAL, "internal error: KeyError")


def test_a_slow_ledger_call_does_not_block_other_rpcs(ledger, helpers, monkeypatch) -> None:
    helpers.fill(ledger, 5)
    started, release = threading.Event(), threading.Event()
    real = ledger.checkpoint

    def slow_checkpoint():
        started.set()
        if not release.wait(timeout=60):
            raise TimeoutError("the test never released the checkpoint")
        return real()

    monkeypatch.setattr(ledger, "checkpoint", slow_checkpoint)
    with LedgerServer(ledger) as server:
        request = ledger_pb2.GetCheckpointRequest(create=True)
        pending = server.stub.GetCheckpoint.future(request, timeout=60)
        try:
            assert started.wait(timeout=30), "the checkpoint RPC never reached the ledger"
            entries = list(server.stub.GetEntries(ledger_pb2.GetEntriesRequest(), timeout=30))
            assert [e.seq for e in entries] == [0, 1, 2, 3, 4]
            assert not pending.done()  # still inside the ledger call while entries were served
        finally:
            release.set()
        assert pending.result(timeout=60).tree_size == 5
