"""The incident queue on a running server: a halting stream opens an incident (per the
[incidents] policy) that the model risk officer sees over HTTP, gRPC and the CLI; changes
and halts carry the bearer token's identity; out-of-order changes write nothing; refusals
are recorded. Real server, real signed ledger, real webhook receiver on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager

import grpc
import numpy as np
import pytest
from incidents_data import incident_server_config, receiver
from lineage_audit._generated.lineage_audit.v1 import incidents_pb2, incidents_pb2_grpc
from lineage_audit.client import Client
from lineage_audit.incidents import PolicyError, parse_policy, verify_halt_envelope
from lineage_audit.incidents.artifact import validate_artifact
from lineage_audit.ledger import Ledger, verify_bundle, verify_ledger
from lineage_audit.server import ServerConfig, ServerThread
from lineage_audit.server.config import ConfigError
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, shifted_rows

TOKENS = {name: f"{name}-token-0123456789abcdef" for name in ("mro", "analyst", "stranger")}
POLICY = """
[policy]
name = "server-test"
version = "1"
[asset_classes.news]
signal = "news-sentiment"
[asset_classes.news.roles]
acknowledge = ["token:analyst", "token:mro"]
resolve = ["token:mro"]
[asset_classes.news.halt]
enabled = true
authorised = ["token:mro"]
webhook = "{webhook}"
timeout_s = 10
"""


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


@pytest.fixture
def hook_receiver():
    with receiver() as got:
        yield got


@pytest.fixture
def config(baseline_dir, tmp_path, hook_receiver):
    policy = POLICY.replace("{webhook}", hook_receiver.url)
    return incident_server_config(tmp_path, baseline_dir, policy, TOKENS)


class Served:
    """A running server, its ledger, a gRPC stub and an HTTP helper, tokens by name."""

    def __init__(self, server: ServerThread, ledger: Ledger) -> None:
        self.server, self.ledger = server, ledger
        self.channel = grpc.insecure_channel(server.address)
        self.stub = incidents_pb2_grpc.IncidentServiceStub(self.channel)

    def grpc(self, method: str, request, who: str = "mro", **kw):
        auth = (("authorization", f"Bearer {TOKENS[who]}"),)
        return getattr(self.stub, method)(request, metadata=auth, timeout=60, **kw)

    def http(self, method: str, path: str, body: dict | None = None, who: str | None = "mro"):
        """(status, parsed JSON or text) of one HTTP request."""
        url = f"http://127.0.0.1:{self.server.running.http_port}{path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if who is not None:
            request.add_header("Authorization", f"Bearer {TOKENS[who]}")
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                status, raw, kind = reply.status, reply.read(), reply.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
        return status, json.loads(raw) if kind == "application/json" else raw.decode()

    def watch(self):
        """A WatchIncidents stream, returned once the server has subscribed it."""
        call = self.grpc("WatchIncidents", incidents_pb2.WatchIncidentsRequest())
        call.initial_metadata()
        return call

    def halt_stream(self) -> None:
        """Stream clean windows, then model-like ones until the monitor halts."""
        rng = np.random.default_rng(5)
        with Client(self.server.address, token=TOKENS["mro"]) as client:
            batches = [clean_rows(rng, N) for _ in range(3)]
            batches += [shifted_rows(rng, N) for _ in range(4)]
            levels = [w.level for r in client.stream("news", batches, encoder_id=ENCODER)
                      for w in r.windows]  # fmt: skip
        assert "halt" in levels, levels


@contextmanager
def serving(config: ServerConfig):
    """A server on the config's ledger, as :class:`Served` (channel and ledger closed after)."""
    ledger = Ledger.open(config.ledger_db, config.ledger_keys)
    try:
        with ServerThread(config, ledger=ledger) as server:
            s = Served(server, ledger)
            try:
                yield s
            finally:
                s.channel.close()
    finally:
        ledger.close()


@pytest.fixture
def served(config):
    with serving(config) as s:
        yield s


def _opened(served: Served) -> incidents_pb2.IncidentEvent:
    """Halt the stream with a watch open; the watch's ``opened`` event."""
    watch = served.watch()
    served.halt_stream()
    event = next(watch)  # the first event this test causes is the opening
    watch.cancel()
    assert event.kind == "opened", event
    return event


def _last_two(ledger: Ledger) -> tuple[dict, dict]:
    """The predicates of the ledger's last intent and its outcome."""
    intent, outcome = (ledger.entry(ledger.size - k).statement()["predicate"] for k in (2, 1))
    assert outcome["intent"]["seq"] == ledger.size - 2
    return intent, outcome


def _ledger_size(path) -> int:
    with Ledger.open(path, read_only=True) as ledger:
        return ledger.size


def test_a_halting_stream_opens_an_incident_seen_over_grpc_and_http(served):
    event = _opened(served)
    incident = event.incident
    assert (incident.asset_class, incident.signal, incident.state) == ("news", "news-sentiment",
                                                                       "open")  # fmt: skip
    assert list(incident.triggers) == ["tier3.halt"] and event.actor == "lineage-audit-server"
    opening = served.ledger.entry(event.ledger_seq).statement()["predicate"]
    assert opening["action"] == "incident.open" and opening["incident_id"] == incident.id

    status, listed = served.http("GET", "/api/v1/incidents?state=open")
    assert status == 200 and [i["id"] for i in listed["incidents"]] == [incident.id]
    status, whole = served.http("GET", f"/api/v1/incidents/{incident.id}", who="analyst")
    assert status == 200
    # evidence read after the halting batch finished: its windows are in the series
    windows = whole["evidence"]["divergence"]["windows"]
    assert [w["level"] for w in windows][-1] == "halt"
    assert {t["action"] for t in whole["evidence"]["thresholds"]} >= {"alert.halt"}
    assert whole["confidence"]["inputs"]["tier3_window_p"]

    reply = served.grpc("ListIncidents", incidents_pb2.ListIncidentsRequest(asset_class="news"))
    assert [i.id for i in reply.incidents] == [incident.id]
    detail = served.grpc("GetIncident", incidents_pb2.GetIncidentRequest(id=incident.id))
    assert json.loads(detail.json)["id"] == incident.id and detail.incident.band == incident.band

    assert served.http("GET", "/api/v1/incidents", who=None)[0] == 401
    assert served.http("GET", "/api/v1/incidents/INC-nope")[0] == 404
    assert served.http("GET", "/api/v1/incidents?state=closed")[0] == 400
    with pytest.raises(grpc.RpcError) as info:
        served.grpc("GetIncident", incidents_pb2.GetIncidentRequest(id="INC-nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    unknown = incidents_pb2.WatchIncidentsRequest(asset_classes=["bonds"])
    with pytest.raises(grpc.RpcError) as info:
        next(served.grpc("WatchIncidents", unknown))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "['news']" in info.value.details()


def test_changes_carry_the_callers_identity_and_out_of_order_writes_nothing(served):
    incident_id = _opened(served).incident.id
    watch = served.watch()
    base = f"/api/v1/incidents/{incident_id}"
    size = served.ledger.size
    status, body = served.http("POST", f"{base}/resolve", {"note": "too early"})
    assert status == 409 and "next step is acknowledge" in body["error"]
    assert served.ledger.size == size  # nothing written

    status, body = served.http("POST", f"{base}/acknowledge", {"note": "on it"}, who="analyst")
    assert status == 200 and body["incident"]["state"] == "acknowledged"
    change = body["change"]
    assert (change["actor"], change["note"]) == ("token:analyst", "on it")
    intent = served.ledger.entry(change["intent_seq"]).statement()["predicate"]
    assert (intent["action"], intent["actor"]) == ("incident.acknowledge", "token:analyst")

    size = served.ledger.size
    with pytest.raises(grpc.RpcError) as info:
        served.grpc("Acknowledge", incidents_pb2.TransitionRequest(id=incident_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already acknowledged" in info.value.details() and served.ledger.size == size

    status, body = served.http("POST", f"{base}/resolve", {"note": "mine"}, who="analyst")
    assert status == 403 and body["field"] == "actor"  # the policy: only the MRO resolves
    intent, outcome = _last_two(served.ledger)
    assert (intent["action"], intent["actor"], outcome["status"]) == (
        "incident.resolve", "token:analyst", "failed")  # fmt: skip
    assert served.http("POST", f"{base}/resolve", {"note": 3})[0] == 400

    request = incidents_pb2.TransitionRequest(id=incident_id, note="feed replaced")
    resolved = served.grpc("Resolve", request)
    assert resolved.state == "resolved"
    kinds = [(e.kind, e.actor) for e in (next(watch), next(watch))]
    watch.cancel()
    assert kinds == [("acknowledged", "token:analyst"), ("resolved", "token:mro")]


def test_halts_need_the_policys_actor_and_refusals_are_recorded(served, hook_receiver):
    incident_id = _opened(served).incident.id
    status, body = served.http("POST", "/api/v1/halt/news", {"reason": "x"}, who="stranger")
    assert status == 403 and "halt.authorised" in body["error"]
    intent, outcome = _last_two(served.ledger)
    assert (intent["action"], intent["actor"], outcome["status"]) == (
        "halt.fire", "token:stranger", "failed")  # fmt: skip
    with pytest.raises(grpc.RpcError) as info:
        served.grpc("FireHalt", incidents_pb2.FireHaltRequest(asset_class="news", reason="x"),
                    who="analyst")  # fmt: skip
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _last_two(served.ledger)[0]["actor"] == "token:analyst"
    size = served.ledger.size
    assert served.http("POST", "/api/v1/halt/news", {"reason": "x"}, who=None)[0] == 401
    assert served.http("POST", "/api/v1/halt/bonds", {"reason": "x"})[0] == 404
    assert served.http("POST", "/api/v1/halt/news", {"reason": ""})[0] == 400
    assert served.http("POST", "/api/v1/halt/news", {"why": "x"})[0] == 400
    assert served.ledger.size == size and hook_receiver.bodies == []  # none of it sent

    watch = served.watch()
    request = incidents_pb2.FireHaltRequest(asset_class="news", reason="vendor feed is model "
                                            "output", incident_id=incident_id)  # fmt: skip
    reply = served.grpc("FireHalt", request)
    assert reply.delivered and reply.webhook_status == 200 and reply.actor == "token:mro"
    (body,) = hook_receiver.bodies
    payload = verify_halt_envelope(body, served.ledger.public_keys)
    assert (payload["signal"], payload["reliance"], payload["actor"]) == (
        "news-sentiment", "suspended", "token:mro")  # fmt: skip
    event = next(watch)
    watch.cancel()
    assert event.kind == "halt.fired" and event.incident.halted
    assert json.loads(event.detail)["incident_id"] == incident_id


def test_reading_a_report_writes_nothing_building_the_artifact_is_a_post(served):
    incident_id = _opened(served).incident.id
    base = f"/api/v1/incidents/{incident_id}"
    size, signed = served.ledger.size, len(served.ledger.checkpoints())
    for path in (f"{base}/report", f"{base}/artifact"):
        status, body = served.http("GET", path)
        assert status == 404 and body["field"] == "artifact", body
        assert f"POST {base}/artifact" in body["error"]
    assert (served.ledger.size, len(served.ledger.checkpoints())) == (size, signed)

    status, artifact = served.http("POST", f"{base}/artifact", who="analyst")
    assert status == 200 and artifact["incident"]["id"] == incident_id
    validate_artifact(artifact)
    assert len(served.ledger.checkpoints()) == signed + 1  # the POST signed one
    status, html = served.http("GET", f"{base}/report")
    assert status == 200 and html.startswith("<!DOCTYPE html>") and incident_id in html
    assert served.http("GET", f"{base}/artifact") == (200, artifact)
    assert (served.ledger.size, len(served.ledger.checkpoints())) == (size, signed + 1)
    assert served.http("GET", f"{base}/report", who=None)[0] == 401
    assert served.http("POST", "/api/v1/incidents/INC-nope/artifact")[0] == 404

    served.http("POST", f"{base}/acknowledge", {"note": "seen"})
    status, body = served.http("GET", f"{base}/report")  # the kept one misses the change
    assert status == 409 and f"POST {base}/artifact" in body["error"], body
    with Client(served.server.address, token=TOKENS["mro"]) as client:
        fresh = client.incident_artifact(incident_id)  # gRPC BuildArtifact
    validate_artifact(fresh)
    assert [t["action"] for t in fresh["timeline"]][-1] == "incident.acknowledge"
    assert verify_bundle(fresh["ledger"]["bundle"], served.ledger.public_keys).valid
    status, html = served.http("GET", f"{base}/report")
    assert status == 200 and "incident.acknowledge" in html


def test_the_cli_works_the_same_queue_as_the_running_server(config, served, tmp_path, cli):
    incident_id = _opened(served).incident.id
    store = ["--db", config.incidents_db]
    ledger = ["--ledger", config.ledger_db, "--keys", config.ledger_keys]
    code, out, _ = cli("incident", "list", *store, "--state", "open")
    assert code == 0 and out.startswith(incident_id) and "tier3.halt" in out
    change = ["--policy", config.incidents_policy, "--actor", "token:analyst"]
    code, out, _ = cli("incident", "ack", incident_id, *store, *ledger, *change, "--note", "cli")
    assert code == 0 and "open -> acknowledged by token:analyst" in out
    size = _ledger_size(config.ledger_db)
    code, _, err = cli("incident", "ack", incident_id, *store, *ledger, *change)
    assert code == 2 and err.startswith("error: state: incident") and "already acknowledged" in err
    assert _ledger_size(config.ledger_db) == size  # out of order: nothing written
    code, _, err = cli("incident", "show", "INC-nope", *store)
    assert code == 2 and "incident_id: no such incident" in err
    code, _, err = cli("incident", "list", "--db", tmp_path / "missing.db")
    assert code == 2 and "incident store not found" in err

    html, artifact = tmp_path / "report.html", tmp_path / "artifact.json"
    code, out, _ = cli("incident", "report", incident_id, *store, *ledger, "-o", html,
                       "--json", artifact)  # fmt: skip
    assert code == 0 and incident_id in html.read_text()
    validate_artifact(json.loads(artifact.read_text()))
    code, out, _ = cli("incident", "show", incident_id, *store)
    assert code == 0 and "open -> acknowledged by token:analyst: cli" in out

    # the server sees the CLI's change, and its next change extends the same ledger
    status, body = served.http("POST", f"/api/v1/incidents/{incident_id}/resolve")
    assert status == 200 and body["change"]["from"] == "acknowledged"
    served.server.stop()
    report = verify_ledger(config.ledger_db, served.ledger.public_keys)
    assert report.valid and report.entries == served.ledger.size, report


def test_the_cli_works_the_queue_through_the_server_as_the_token_holder(
    served, tmp_path, cli, monkeypatch, hook_receiver
):
    """--server instead of the local files: the caller's token is the actor; the server's
    refusals come back as ``error: CODE: message`` with exit 2."""
    incident_id = _opened(served).incident.id
    remote = ["--server", served.server.address]
    monkeypatch.setenv("LINEAGE_AUDIT_TOKEN", TOKENS["analyst"])
    code, out, _ = cli("incident", "list", *remote, "--state", "open")
    assert code == 0 and out.startswith(incident_id) and "tier3.halt" in out
    code, out, _ = cli("incident", "ack", incident_id, *remote, "--note", "over gRPC")
    assert code == 0 and "open -> acknowledged by token:analyst" in out
    code, _, err = cli("incident", "halt", "news", *remote, "--reason", "analyst tries")
    assert code == 2 and err.startswith("error: PERMISSION_DENIED: ") and not hook_receiver.bodies
    code, _, err = cli("incident", "show", "INC-nope", *remote)
    assert code == 2 and err.startswith("error: NOT_FOUND: ")
    code, _, err = cli("incident", "ack", incident_id)  # neither --server nor the files
    assert (
        code == 2 and "--db, --ledger, --keys, --policy, --actor required without --server" in err
    )

    monkeypatch.setenv("LINEAGE_AUDIT_TOKEN", TOKENS["mro"])
    code, out, _ = cli("incident", "halt", "news", *remote, "--reason", "from the shell",
                       "--incident", incident_id)  # fmt: skip
    assert code == 0 and "signal news-sentiment suspended; webhook delivered" in out
    code, out, _ = cli("incident", "lift", "news", *remote, "--reason", "checked")
    assert code == 0 and "relied on again" in out
    html = tmp_path / "report.html"
    code, out, _ = cli("incident", "report", incident_id, *remote, "-o", html)
    assert code == 0 and incident_id in html.read_text()
    code, out, _ = cli("incident", "show", incident_id, *remote)
    assert code == 0 and "open -> acknowledged by token:analyst: over gRPC" in out
    assert "halt.fire by token:mro" in out


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"db": "incidents.db"}, "incidents.policy"),
        ({"policy": "policy.toml"}, "incidents.db"),
        ({"db": "i.db", "policy": "p.toml", "webhook": "x"}, "incidents.webhook"),
    ],
)
def test_the_incidents_table_names_what_is_wrong(table, field):
    with pytest.raises(ConfigError) as info:
        ServerConfig.from_mapping({"incidents": table})
    assert info.value.field == field


def test_the_submit_role_defaults_to_acknowledge_and_is_checked_by_key():
    text = POLICY.replace("{webhook}", "http://127.0.0.1:9/halt")
    assert parse_policy(text).asset("news").submit == ("token:analyst", "token:mro")
    given = text.replace('resolve = ["token:mro"]\n', 'resolve = ["token:mro"]\nsubmit = ["x"]\n')
    assert parse_policy(given).asset("news").to_json()["roles"]["submit"] == ["x"]
    with pytest.raises(PolicyError) as info:
        parse_policy(given.replace('submit = ["x"]', "submit = []"))
    assert info.value.field == "asset_classes.news.roles.submit"


def test_incidents_need_a_ledger(config):
    from dataclasses import replace

    with pytest.raises(ConfigError, match="incidents: needs a \\[ledger\\]"):
        ServerThread(replace(config, ledger_db=None, ledger_keys=None)).start()
