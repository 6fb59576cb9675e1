"""The halt hook on a running server: scoring replies say when a halt has suspended reliance
on an asset class's signal (scoring goes on), lifting over gRPC, HTTP and the CLI with the
same authorisation as firing (refusals recorded, a lift with nothing to lift writes
nothing), and a slow webhook receiver holding up no incident change. Real server, real
signed ledger, real receivers on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from aiohttp import web
from incidents_data import incident_server_config, receiver
from lineage_audit._generated.lineage_audit.v1 import (
    incidents_pb2,
    scoring_pb2,
    scoring_pb2_grpc,
)
from lineage_audit.client import Client, encode_embeddings
from lineage_audit.incidents import verify_halt_envelope
from lineage_audit.ledger import Ledger
from lineage_audit.server import ServerThread
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline
from test_incidents_server import POLICY as SERVER_POLICY
from test_incidents_server import TOKENS, Served, _last_two, _opened

# The server tests' policy, renamed, with a second asset class that has no halt hook.
POLICY = (
    SERVER_POLICY.replace('name = "server-test"', 'name = "halt-test"')
    + """\
[asset_classes.bonds]
signal = "bonds-curve"
[asset_classes.bonds.roles]
acknowledge = ["token:mro"]
resolve = ["token:mro"]
"""
)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


def _served(folder, baseline_dir, webhook: str):
    bonds = f'[assets.bonds]\nbaseline = "{baseline_dir}"\nwindow = {N}\nbackend = "numpy"\n\n'
    policy = POLICY.replace("{webhook}", webhook)
    config = incident_server_config(folder, baseline_dir, policy, TOKENS, extra=bonds)
    ledger = Ledger.open(config.ledger_db, config.ledger_keys)
    return config, ledger


@pytest.fixture
def hook_receiver():
    with receiver() as got:
        yield got


@pytest.fixture
def served(tmp_path, baseline_dir, hook_receiver):
    config, ledger = _served(tmp_path, baseline_dir, hook_receiver.url)
    with ServerThread(config, ledger=ledger) as server:
        s = Served(server, ledger)
        s.config = config
        yield s
        s.channel.close()
    ledger.close()


def _score(served: Served, asset: str, rng) -> scoring_pb2.ScoreResponse:
    stub = scoring_pb2_grpc.ScoringServiceStub(served.channel)
    request = scoring_pb2.ScoreRequest(
        asset_class=asset, embeddings=encode_embeddings(clean_rows(rng, N), encoder_id=ENCODER)
    )
    auth = (("authorization", f"Bearer {TOKENS['analyst']}"),)
    return stub.Score(request, metadata=auth, timeout=60)


def _reliance(reply) -> tuple[str, str, int]:
    assert reply.HasField("reliance"), reply
    return reply.reliance.state, reply.reliance.signal, reply.reliance.halt_ledger_seq


def test_a_halt_suspends_reliance_in_the_scoring_replies_and_a_lift_restores_it(
    served, hook_receiver
):
    rng = np.random.default_rng(3)
    assert _reliance(_score(served, "news", rng)) == ("relied-on", "news-sentiment", 0)
    watch = served.watch()
    request = incidents_pb2.FireHaltRequest(asset_class="news", reason="vendor loop")
    fired = served.grpc("FireHalt", request)
    assert fired.action == "halt.fire" and fired.delivered

    reply = _score(served, "news", rng)  # scoring goes on; only reliance is suspended
    assert _reliance(reply) == ("suspended", "news-sentiment", fired.intent_seq)
    assert reply.result.status == "scored" and np.isfinite(reply.result.z)
    assert _reliance(_score(served, "bonds", rng)) == ("relied-on", "bonds-curve", 0)
    with Client(served.server.address, token=TOKENS["analyst"]) as client:
        replies = list(client.scoring.StreamScore(iter([scoring_pb2.ScoreRequest(
            asset_class="news", embeddings=encode_embeddings(clean_rows(rng, N),
                                                             encoder_id=ENCODER))]),
            metadata=client.metadata))  # fmt: skip
        window, reliance = client.score_with_reliance("news", clean_rows(rng, N),
                                                      encoder_id=ENCODER)  # fmt: skip
    assert len(replies[0].windows) == 1 and replies[0].windows[0].status == "scored"
    assert _reliance(replies[0]) == ("suspended", "news-sentiment", fired.intent_seq)
    assert window.status == "scored" and reliance["state"] == "suspended"

    size = served.ledger.size
    with pytest.raises(grpc.RpcError) as info:  # may not fire, so may not lift
        served.grpc("LiftHalt", incidents_pb2.LiftHaltRequest(asset_class="news", reason="x"),
                    who="analyst")  # fmt: skip
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    intent, outcome = _last_two(served.ledger)
    assert (intent["action"], intent["actor"], outcome["status"]) == (
        "halt.lift", "token:analyst", "failed")  # fmt: skip
    assert served.ledger.size == size + 2 and len(hook_receiver.bodies) == 1  # nothing sent
    assert _reliance(_score(served, "news", rng))[0] == "suspended"

    request = incidents_pb2.LiftHaltRequest(asset_class="news", reason="feed replaced")
    lifted = served.grpc("LiftHalt", request)
    assert (lifted.action, lifted.actor, lifted.delivered) == ("halt.lift", "token:mro", True)
    assert _reliance(_score(served, "news", rng)) == ("relied-on", "news-sentiment", 0)
    payload = verify_halt_envelope(hook_receiver.bodies[-1], served.ledger.public_keys)
    assert (payload["action"], payload["reliance"]) == ("halt.lift", "relied-on")
    events = [next(watch), next(watch)]
    watch.cancel()
    assert [(e.kind, e.asset_class) for e in events] == [("halt.fired", "news"),
                                                         ("halt.lifted", "news")]  # fmt: skip
    assert json.loads(events[1].detail)["reason"] == "feed replaced"

    size = served.ledger.size
    with pytest.raises(grpc.RpcError) as info:
        served.grpc("LiftHalt", incidents_pb2.LiftHaltRequest(asset_class="news", reason="x"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not suspended" in info.value.details() and served.ledger.size == size


def test_lifting_over_http_and_the_cli(served, hook_receiver, cli):
    incident_id = _opened(served).incident.id
    lift = "/api/v1/halt/news/lift"
    assert served.http("POST", lift, {"reason": "nothing to lift"})[0] == 409
    fire = {"reason": "vendor loop", "incident_id": incident_id}
    status, body = served.http("POST", "/api/v1/halt/news", fire)
    assert status == 200 and body["action"] == "halt.fire"
    size = served.ledger.size
    assert served.http("POST", lift, {"reason": ""})[0] == 400
    assert served.http("POST", lift, {"reason": "x", "why": "y"})[0] == 400
    assert served.http("POST", "/api/v1/halt/gilts/lift", {"reason": "x"})[0] == 404
    assert served.http("POST", lift, {"reason": "x"}, who=None)[0] == 401
    assert served.ledger.size == size  # none of it written
    status, body = served.http("POST", lift, {"reason": "x"}, who="stranger")
    assert status == 403 and body["field"] == "actor"
    assert _last_two(served.ledger)[1]["status"] == "failed"

    status, body = served.http("POST", lift, {"reason": "vendor fixed",
                                              "incident_id": incident_id})  # fmt: skip
    assert status == 200 and (body["action"], body["delivered"]) == ("halt.lift", True)
    status, whole = served.http("GET", f"/api/v1/incidents/{incident_id}")
    assert [h["action"] for h in whole["halts"]] == ["halt.fire", "halt.lift"]
    assert not served.grpc("GetIncident", incidents_pb2.GetIncidentRequest(
        id=incident_id)).incident.halted  # fmt: skip

    # the CLI, on the running server's store and ledger: the scoring replies see it
    config = served.config
    local = ["--db", config.incidents_db, "--ledger", config.ledger_db, "--keys",
             config.ledger_keys, "--policy", config.incidents_policy,
             "--actor", "token:mro"]  # fmt: skip
    code, out, err = cli("incident", "halt", "news", *local, "--reason", "from the shell")
    assert code == 0, err
    assert _reliance(_score(served, "news", np.random.default_rng(1)))[0] == "suspended"
    code, out, err = cli("incident", "lift", "news", *local, "--reason", "shell says ok")
    assert code == 0 and "halt.lift news: signal news-sentiment relied on again" in out, err
    assert _reliance(_score(served, "news", np.random.default_rng(2)))[0] == "relied-on"
    code, _, err = cli("incident", "lift", "news", *local, "--reason", "again")
    assert code == 2 and "is not suspended" in err


class SlowReceiver:
    """A webhook receiver (aiohttp, loopback) that holds each POST until released."""

    def __init__(self) -> None:
        self.got = threading.Event()
        self.release = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.got.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return web.Response(status=200)

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/halt", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self.runner.addresses[0][1]

    def __enter__(self) -> SlowReceiver:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        self.url = f"http://127.0.0.1:{port}/halt"
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_an_acknowledge_proceeds_while_a_slow_webhook_is_being_delivered(tmp_path, baseline_dir):
    with SlowReceiver() as slow:
        config, ledger = _served(tmp_path, baseline_dir, slow.url)
        with ServerThread(config, ledger=ledger) as server, ThreadPoolExecutor(1) as pool:
            served = Served(server, ledger)
            incident_id = _opened(served).incident.id
            request = incidents_pb2.FireHaltRequest(asset_class="news", reason="loop",
                                                    incident_id=incident_id)  # fmt: skip
            halting = pool.submit(served.grpc, "FireHalt", request)
            assert slow.got.wait(60)  # the receiver holds the delivery from here on
            status, body = served.http("POST", f"/api/v1/incidents/{incident_id}/acknowledge",
                                       {"note": "during delivery"}, who="analyst")  # fmt: skip
            slow.release.set()
            reply = halting.result(60)
            served.channel.close()
        ledger.close()
    assert status == 200 and body["incident"]["state"] == "acknowledged"
    # write-ahead order kept: halt intent, the acknowledge (both records), then the halt's
    # outcome with the delivery result
    change = body["change"]
    assert reply.intent_seq < change["intent_seq"] < change["outcome_seq"] < reply.outcome_seq
    assert reply.delivered and reply.webhook_status == 200
    with Ledger.open(config.ledger_db, read_only=True) as ledger:
        outcome = ledger.entry(reply.outcome_seq).statement()["predicate"]
    assert outcome["result"]["webhook"]["delivered"] and outcome["result"]["suspended"] == [
        "news-sentiment"
    ]
