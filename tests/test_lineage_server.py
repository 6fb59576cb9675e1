"""OpenLineage ingest on a running server: the real `openlineage-python` client (HTTP
transport, and its file transport) posts events that round-trip through the Marquez-shaped
read API and gRPC; bad input is refused with its path and stores nothing."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from lineage_audit._generated.lineage_audit.v1 import lineage_pb2, lineage_pb2_grpc
from lineage_audit.ledger import Ledger
from lineage_audit.lineage.proofs import verify_path_proof
from lineage_audit.server import ServerConfig, ServerThread
from lineage_audit.server.auth import hash_token
from lineage_data import dataset as ds
from lineage_data import run_event as ev
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import dataset_version_dataset
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

TOKEN = "ingest-token-0123456789abcdef"


@pytest.fixture
def server(tmp_path, keyring):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "vendor-bridge"\nsha256 = "{hash_token(TOKEN)}"\n')
    (tmp_path / "server.toml").write_text(
        '[server]\nport = 0\nhttp_port = 0\n[lineage]\ndb = "lineage.db"\n'
        '[auth]\nrequired = true\ntokens = "tokens.toml"\n'
    )
    config = ServerConfig.from_toml(tmp_path / "server.toml")
    ledger = Ledger.open(tmp_path / "ledger.db", keyring)
    with ServerThread(config, ledger=ledger) as running:
        yield running
    ledger.close()


def _url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.running.http_port}{path}"


def _client(server, **config) -> OpenLineageClient:
    http = HttpConfig(url=_url(server, ""), auth=ApiKeyTokenProvider({"apiKey": TOKEN}),
                      retry={"total": 0}, **config)  # fmt: skip
    return OpenLineageClient(transport=HttpTransport(http))


def _client_event(job: str, inputs, outputs) -> RunEvent:
    def dataset(cls, name, version):
        facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(version)}
        return cls(namespace="warehouse", name=name, facets=facets)

    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-29T10:00:00Z",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="etl", name=job),
        inputs=[dataset(InputDataset, n, v) for n, v in inputs],
        outputs=[dataset(OutputDataset, n, v) for n, v in outputs],
        producer="https://github.com/lineage-audit/tests",
    )


def _get(server, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
    request = urllib.request.Request(_url(server, path))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post(server, path: str, body: bytes, token: str | None = TOKEN, **headers):
    request = urllib.request.Request(_url(server, path), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    for key, value in headers.items():
        request.add_header(key.replace("_", "-"), value)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_real_client_posts_events_that_round_trip(server):
    client = _client(server)
    client.emit(_client_event("extract", [("raw", "1")], [("staging", "1")]))
    _client(server, compression="gzip").emit(
        _client_event("load", [("staging", "1")], [("mart", "1")])
    )
    status, body = _get(server, "/api/v1/lineage?nodeId=dataset:warehouse:mart&depth=10")
    assert status == 200
    nodes = {n["id"]: n for n in body["graph"]}
    assert {"dataset:warehouse:raw", "job:etl:extract", "dataset:warehouse:staging",
            "job:etl:load", "dataset:warehouse:mart"} <= set(nodes)  # fmt: skip
    assert {"origin": "job:etl:load", "destination": "dataset:warehouse:mart"} in nodes[
        "dataset:warehouse:mart"
    ]["inEdges"]
    assert nodes["dataset:warehouse:mart"]["type"] == "DATASET"
    # Tier 1's presence: staging is named by both events and written by one (its producer's)
    assert nodes["dataset:warehouse:staging"]["data"]["openlineage"] == {"events": 2, "emitted": 1}
    assert nodes["dataset:warehouse:raw"]["data"]["openlineage"] == {"events": 1, "emitted": 0}
    status, shallow = _get(server, "/api/v1/lineage?nodeId=dataset:warehouse:mart&depth=1")
    assert {n["id"] for n in shallow["graph"]} == {"dataset:warehouse:mart", "job:etl:load"}
    with Ledger.open(server.running.monitor.ledger.store.path, read_only=True) as ledger:
        ingests = [e.statement()["predicate"] for e in ledger.entries()
                   if e.statement()["predicate"]["action"] == "lineage.ingest"]  # fmt: skip
    assert len(ingests) == 4  # two events, each attested by an intent and its outcome
    assert {p["actor"] for p in ingests} == {"token:vendor-bridge"}  # the caller is the actor


def test_bad_events_are_refused_with_the_path_and_nothing_is_stored(server):
    store = server.running.lineage.store
    good = ev("job", [ds("ns", "a", version="1")], [ds("ns", "b", version="1")])
    bad = json.loads(json.dumps(good))
    bad["run"]["runId"] = 7
    status, body = _post(server, "/api/v1/lineage", json.dumps(bad).encode())
    assert (status, body["path"]) == (400, "$.run.runId"), body
    status, body = _post(server, "/api/v1/lineage", b'{"eventType": ')
    assert status == 400 and "not valid JSON" in body["error"]
    bad["run"]["runId"] = str(uuid.uuid4())
    bad["schemaURL"] = "https://openlineage.io/spec/3-0-0/OpenLineage.json#/$defs/RunEvent"
    status, body = _post(server, "/api/v1/lineage", json.dumps(bad).encode())
    assert status == 400 and "unknown schema version" in body["error"]
    status, body = _post(server, "/api/v1/lineage/batch", json.dumps([good, bad]).encode())
    assert status == 400 and body["path"] == "[1]$.schemaURL"
    status, body = _post(server, "/api/v1/lineage", b" " * (2 << 20))
    assert status == 413, body
    status, body = _post(server, "/api/v1/lineage", gzip.compress(json.dumps(good).encode()),
                         Content_Encoding="gzip", token="wrong-token-000000000000")  # fmt: skip
    assert status == 401 and "wrong-token" not in body["error"]
    ingests = [e for e in server.running.monitor.ledger.entries()
               if e.statement()["predicate"]["action"] == "lineage.ingest"]  # fmt: skip
    assert store.count() == 0 and ingests == []
    status, body = _post(server, "/api/v1/lineage/batch", json.dumps([good]).encode())
    assert status == 201 and body["accepted"] == 1 and store.count() == 1


def test_grpc_reads_findings_and_a_path_proof_that_merkle_verify_accepts(
    server, tmp_path, keyring, merkle_verify_bin
):
    events = [ev("vendor.build", [ds("raw", "wire")], [ds("vendor", "product")])]
    events += [ev(f"feed-{i}", [ds("vendor", "product")], [ds("feeds", f"f{i}")])
               for i in range(3)]  # fmt: skip
    events.append(ev("ingest", [ds("feeds", f"f{i}") for i in range(3)], [ds("me", "asset")]))
    status, _ = _post(server, "/api/v1/lineage/batch", json.dumps(events).encode())
    assert status == 201
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(server.address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        graph = stub.GetLineage(
            lineage_pb2.GetLineageRequest(node_id="dataset:me:asset"), metadata=metadata
        )
        assert "dataset:vendor:product" in {n.id for n in graph.graph}
        findings = stub.GetFindings(lineage_pb2.GetFindingsRequest(k=3), metadata=metadata)
        (finding,) = findings.findings
        assert finding["finding"] == "convergence" and finding["upstream"] == "vendor:product"
        with pytest.raises(grpc.RpcError) as info:
            stub.GetLineage(lineage_pb2.GetLineageRequest(node_id="dataset:no:such"),
                            metadata=metadata)  # fmt: skip
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.GetFindings(lineage_pb2.GetFindingsRequest(k=3))  # no token
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        proof = stub.GetPathProof(
            lineage_pb2.GetPathProofRequest(node_id="dataset:me:asset"), metadata=metadata
        )
    bundle = json.loads(proof.json)
    assert verify_path_proof(bundle, keyring.public_keys()).valid
    path = tmp_path / "path.bundle.json"
    path.write_bytes(proof.json)
    pub = tmp_path / "keys.pub.json"
    pub.write_text(json.dumps(keyring.public_keys().to_json()))
    done = subprocess.run([merkle_verify_bin, str(path), "--keys", str(pub)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 lineage events proved in their attested batches" in done.stdout
    tampered = json.loads(proof.json)
    event = json.loads(base64.b64decode(tampered["events"][0]["event"]))
    event["job"]["name"] = "someone-else"
    tampered["events"][0]["event"] = base64.b64encode(json.dumps(event).encode()).decode()
    path.write_text(json.dumps(tampered))
    done = subprocess.run([merkle_verify_bin, str(path), "--keys", str(pub)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and "INVALID lineage_event" in done.stdout, done.stdout


def test_events_written_by_the_clients_file_transport_ingest_from_the_cli(
    tmp_path, run_cli, keyring
):
    log = tmp_path / "events.jsonl"
    client = OpenLineageClient(transport=FileTransport(FileConfig(str(log), append=True)))
    client.emit(_client_event("extract", [("raw", "1")], [("staging", "1")]))
    client.emit(_client_event("load", [("staging", "1")], [("mart", "1")]))
    result = run_cli("lineage", "ingest", str(log), "--db", str(tmp_path / "lineage.db"))
    assert result.returncode == 0, result.stderr
    assert "2 events" in result.stdout
    log.write_text(log.read_text() + "{not json\n")
    result = run_cli("lineage", "ingest", str(log), "--db", str(tmp_path / "lineage.db"))
    assert result.returncode == 2 and f"{log}:3" in result.stderr
