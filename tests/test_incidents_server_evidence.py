"""Tier 4 jobs and Tier 1 ratings handed to a running server: a real attribution job (the
tiny GPT-2 trained in-test, `lineage-audit attribute calibrate` and `run`) and real
`provenance check --json` ratings, checked before anything is written, recorded with the
caller as actor, refused and recorded for callers the policy does not list, kept next to the
incident store (across a restart) and in every later evidence gather; a new job opens an
incident under the policy's Tier 4 trigger."""

from __future__ import annotations

import base64
import hashlib
import json

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from incidents_data import incident_server_config
from lineage_audit._generated.lineage_audit.v1 import incidents_pb2
from lineage_audit.client import Client
from lineage_audit.ledger import Ledger
from lineage_audit.server import ServerConfig, ServerThread
from server_fixtures import fit_small_baseline
from test_incidents_server import TOKENS, Served, _last_two

pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="the realtext extra is not installed")

POLICY = """
[policy]
name = "evidence-test"
version = "1"
[asset_classes.news]
signal = "news-sentiment"
[asset_classes.news.triggers]
tier4_discovery_fraction = 0.2
[asset_classes.news.roles]
acknowledge = ["token:analyst", "token:mro"]
resolve = ["token:mro"]
submit = ["token:mro"]
[asset_classes.bonds]
signal = "bonds-curve"
[asset_classes.bonds.roles]
acknowledge = ["token:analyst", "token:mro"]
resolve = ["token:mro"]
"""


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    """A finished attribution job, made with the CLI as a deployer would."""
    from attribution_models import save_model, torch_threads, trained_tiny
    from lineage_audit.cli import main
    from lineage_audit.ledger.keys import generate_keyring, write_keyring

    root = tmp_path_factory.mktemp("job")
    tiny = trained_tiny()
    model = save_model(tiny.model, tiny.tokenizer, root / "tiny-gpt2")
    (root / "human.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in tiny.human))
    texts = tiny.members[:40] + tiny.nonmembers[:40]
    rows = [{"id": f"doc-{i:03d}", "text": t} for i, t in enumerate(texts)]
    pq.write_table(pa.Table.from_pylist(rows), root / "input.parquet")
    write_keyring(generate_keyring("lineage-audit.test/job"), root / "keys")
    recorded = ["--db", str(root / "job.db"), "--keys", str(root / "keys"), "--actor", "tester"]
    with torch_threads(1):
        assert main(["attribute", "calibrate", str(root / "human.jsonl"), "--out",
                     str(root / "ref.json"), "--version", "t-1", "--model", str(model),
                     "--device", "cpu", "--quiet", *recorded]) == 0  # fmt: skip
        assert main(["attribute", "run", str(root / "input.parquet"), "--reference",
                     str(root / "ref.json"), "--out", str(root / "out"), "--model", str(model),
                     "--device", "cpu", "--quiet", *recorded]) == 0  # fmt: skip
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["discoveries"] / summary["rows"] >= 0.2  # the policy's trigger will fire
    return root / "out"


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


@pytest.fixture
def config(tmp_path, baseline_dir):
    return incident_server_config(tmp_path, baseline_dir, POLICY, TOKENS)


class _Server:
    """Start (and restart) a server on the config's store and ledger."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ledger = Ledger.open(config.ledger_db, config.ledger_keys)
        self.served: Served | None = None

    def start(self) -> Served:
        self.served = Served(ServerThread(self.config, ledger=self.ledger).start(), self.ledger)
        return self.served

    def stop(self) -> None:
        if self.served is not None:
            self.served.channel.close()
            self.served.server.stop()
            self.served = None


@pytest.fixture
def server(config):
    s = _Server(config)
    s.start()
    yield s
    s.stop()
    s.ledger.close()


def _actions(ledger: Ledger, action: str) -> list[dict]:
    return [e.statement()["predicate"] for e in ledger.entries() if e.action == action]


def _submit(served: Served, summary: bytes, results: bytes, asset="news", who="mro"):
    request = incidents_pb2.SubmitAttributionRequest(asset_class=asset, summary_json=summary,
                                                     results_parquet=results)  # fmt: skip
    return served.grpc("SubmitAttribution", request, who=who)


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_bad_attribution_uploads_are_refused_by_field_and_write_nothing(server, job_dir, tmp_path):
    served = server.served
    summary = (job_dir / "summary.json").read_bytes()
    results = (job_dir / "results.parquet").read_bytes()
    columns = tmp_path / "columns.parquet"
    pq.write_table(pq.read_table(job_dir / "results.parquet").drop_columns(["q_value"]), columns)
    fake_sha = hashlib.sha256(columns.read_bytes()).hexdigest()
    doc = json.loads(summary)
    cases = [
        (summary, results[:-1], "results_parquet: SHA-256 is"),
        (b"{not json", results, "summary_json: not valid JSON"),
        (b"[1]", results, "summary_json: expected a JSON object"),
        (json.dumps({**doc, "results_sha256": "x"}).encode(), results,
         "summary.results_sha256: expected 64 lowercase hex digits"),
        (json.dumps({**doc, "results_sha256": fake_sha}).encode(), columns.read_bytes(),
         "results_parquet: column 'q_value' missing"),
        (json.dumps({**doc, "rows": doc["rows"] + 1}).encode(), results,
         f"summary.rows: results_parquet holds {doc['rows']} rows"),
        (json.dumps({**doc, "discoveries": 0}).encode(), results,
         f"summary.discoveries: results_parquet has {doc['discoveries']} discoveries"),
    ]  # fmt: skip
    size = served.ledger.size
    for bad_summary, bad_results, message in cases:
        error = _refused(lambda: _submit(served, bad_summary, bad_results))  # noqa: B023
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details().startswith(message), (message, error.details())
    error = _refused(lambda: _submit(served, summary, results, asset="gilts"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "['bonds', 'news']" in error.details()
    route = "/api/v1/incidents/attribution/news"
    for body, field in [
        ({"summary": doc, "results_parquet_b64": "%%%"}, "results_parquet_b64"),
        ({"summary": "x", "results_parquet_b64": "AAAA"}, "summary"),
        ({"summary": doc}, "results_parquet_b64"),
        ({"summary": doc, "results": "AAAA"}, "results"),
    ]:
        status, reply = served.http("POST", route, body)
        assert (status, reply["field"]) == (400, field), reply
    assert served.ledger.size == size  # nothing recorded
    assert not (server.config.incidents_db.parent / "attribution").exists()  # nothing stored

    error = _refused(lambda: _submit(served, summary, results, who="analyst"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "roles.submit" in error.details()
    intent, outcome = _last_two(served.ledger)
    assert (intent["action"], intent["actor"], outcome["status"]) == (
        "attribution.submit", "token:analyst", "failed")  # fmt: skip
    assert not (server.config.incidents_db.parent / "attribution").exists()


def test_a_submitted_job_opens_an_incident_and_stays_in_its_evidence(server, job_dir, cli):
    served = server.served
    watch = served.watch()
    with Client(served.server.address, token=TOKENS["mro"]) as client:
        reply = client.submit_attribution("news", job_dir)
    summary = json.loads((job_dir / "summary.json").read_text())
    assert reply.stored and reply.job == f"job-{summary['results_sha256'][:16]}"
    assert (reply.rows, reply.discoveries) == (summary["rows"], summary["discoveries"])
    assert reply.HasField("incident") and list(reply.incident.triggers) == ["tier4.discoveries"]
    event = next(watch)
    assert (event.kind, event.incident.id) == ("opened", reply.incident.id)
    submitted = served.ledger.entry(reply.intent_seq).statement()["predicate"]
    assert (submitted["action"], submitted["actor"], submitted["job"]) == (
        "attribution.submit", "token:mro", reply.job)  # fmt: skip
    kept = server.config.incidents_db.parent / "attribution" / "news" / reply.job
    assert (kept / "results.parquet").read_bytes() == (job_dir / "results.parquet").read_bytes()

    incident = json.loads(served.grpc("GetIncident", incidents_pb2.GetIncidentRequest(
        id=reply.incident.id)).json)  # fmt: skip
    (trigger,) = incident["triggers"]
    assert trigger["ledger_seq"] == reply.intent_seq and trigger["detail"]["job"] == reply.job
    (batch,) = incident["evidence"]["attribution"]
    inputs = incident["confidence"]["inputs"]
    assert inputs["tier4_batch_min_q"] == [batch["min_q"]] and batch["min_q"] < 0.05
    assert incident["confidence"]["confidence"] > 0.9

    served.halt_stream()  # a Tier 3 halt joins it: the later gather still holds the job
    event = next(watch)
    assert (event.kind, event.incident.id) == ("updated", reply.incident.id)
    incident = json.loads(served.grpc("GetIncident", incidents_pb2.GetIncidentRequest(
        id=reply.incident.id)).json)  # fmt: skip
    assert [b["job"] for b in incident["evidence"]["attribution"]] == [reply.job]
    inputs = incident["confidence"]["inputs"]
    assert inputs["tier4_batch_min_q"] == [batch["min_q"]] and inputs["tier3_window_p"]

    # the same job again (CLI, HTTP): kept once, recorded, no new trigger or update
    updates = len(_actions(served.ledger, "incident.update"))
    common = ["--server", served.server.address, "--asset-class", "news"]
    code, out, err = cli("incident", "submit-attribution", *common, job_dir)
    assert code == 2 and "UNAUTHENTICATED" in err  # no token given
    token = job_dir.parent / "mro.token"
    token.write_text(TOKENS["mro"] + "\n")
    code, out, err = cli("incident", "submit-attribution", *common, "--token-file", token,
                         job_dir)  # fmt: skip
    assert code == 0 and f"{reply.job}: already stored for news" in out, err
    body = {"summary": summary, "results_parquet_b64": base64.b64encode(
        (job_dir / "results.parquet").read_bytes()).decode()}  # fmt: skip
    status, again = served.http("POST", "/api/v1/incidents/attribution/news", body)
    assert status == 200 and (again["job"], again["stored"]) == (reply.job, False)
    assert again["incident"] is None
    assert len(_actions(served.ledger, "incident.update")) == updates

    # bonds: submit defaults to its acknowledge role; it has no Tier 4 trigger
    status, bonds = served.http("POST", "/api/v1/incidents/attribution/bonds", body,
                                who="analyst")  # fmt: skip
    assert status == 200 and bonds["stored"] and bonds["incident"] is None
    assert served.grpc("ListIncidents", incidents_pb2.ListIncidentsRequest(
        asset_class="bonds")).incidents == []  # fmt: skip
    watch.cancel()


def _rating(cli, *args: str) -> dict:
    code, out, err = cli("provenance", "check", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_ratings_are_checked_kept_across_a_restart_and_in_later_evidence(server, job_dir, cli):
    served = server.served
    opaque = _rating(cli, "--source", "feeds:indep-1")
    valid = _rating(cli, "--source", "feeds:vendor-0", "--openlineage-events", "3")
    assert (opaque["rating"], valid["rating"]) == ("opaque", "valid")

    def submit(items, who="mro"):
        raw = [i if isinstance(i, bytes) else json.dumps(i).encode() for i in items]
        request = incidents_pb2.SubmitRatingsRequest(ratings=raw)
        return served.grpc("SubmitRatings", request, who=who)

    checks = [{**opaque["checks"][0], "state": "lost"}]
    size = served.ledger.size
    for items, message in [
        ([{**opaque, "rating": "trusted"}], "ratings[0].rating: does not follow from its "
                                            "checks by lineage-audit.tier1.rating/v1 "
                                            "(they give 'opaque')"),
        ([valid, {**opaque, "confidence": 0.9}], "ratings[1].confidence: expected 0.3"),
        ([{**opaque, "score": 1}], "ratings[0].score: unknown key"),
        ([opaque, opaque], "ratings[1].source: also rated by ratings[0]"),
        ([{**opaque, "checks": checks}], "ratings[0].checks[0].state: expected one of"),
        ([{k: v for k, v in opaque.items() if k != "rule"}], "ratings[0].rule: missing"),
        ([b"{nope"], "ratings[0]: not valid JSON"),
        ([], "ratings: expected a non-empty list"),
    ]:  # fmt: skip
        error = _refused(lambda: submit(items))  # noqa: B023
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details().startswith(message), (message, error.details())
    status, body = served.http("POST", "/api/v1/incidents/ratings", {"ratings": "x"})
    assert (status, body["field"]) == (400, "ratings")
    ratings_file = server.config.incidents_db.parent / "ratings.json"
    assert served.ledger.size == size and not ratings_file.exists()

    error = _refused(lambda: submit([opaque], who="analyst"))  # news's submit role is mro only
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "'news'" in error.details()
    intent, outcome = _last_two(served.ledger)
    assert (intent["action"], intent["actor"], outcome["status"]) == (
        "ratings.submit", "token:analyst", "failed")  # fmt: skip
    assert not ratings_file.exists()

    with Client(served.server.address, token=TOKENS["mro"]) as client:
        reply = client.submit_ratings([opaque, {**valid, "ledger": {"intent_seq": 1}}])
    assert list(reply.sources) == ["feeds:indep-1", "feeds:vendor-0"] and reply.held == 2
    recorded = served.ledger.entry(reply.intent_seq).statement()["predicate"]
    assert recorded["ratings"] == {"feeds:indep-1": "opaque", "feeds:vendor-0": "valid"}
    newer = _rating(cli, "--source", "feeds:indep-1", "--openlineage-events", "1")
    status, body = served.http("POST", "/api/v1/incidents/ratings", {"ratings": [newer]})
    assert status == 200 and body["held"] == 2  # the latest per source
    newest = _rating(cli, "--source", "feeds:indep-1")  # opaque again, kept from here on
    status, body = served.http("POST", "/api/v1/incidents/ratings", {"ratings": [newest]})
    assert status == 200

    server.stop()  # kept across a restart
    served = server.start()
    with Client(served.server.address, token=TOKENS["mro"]) as client:
        opened = client.submit_attribution("news", job_dir).incident
        incident = client.get_incident(opened.id)
    held = {r["source"]: r["rating"] for r in incident["evidence"]["ratings"]}
    assert held == {"feeds:indep-1": "opaque", "feeds:vendor-0": "valid"}
    inputs = incident["confidence"]["inputs"]
    assert inputs["opaque_source"] and inputs["tier4_batch_min_q"]
    steps = [s["name"] for s in incident["confidence"]["steps"]]
    assert any("opaque" in name for name in steps), steps
