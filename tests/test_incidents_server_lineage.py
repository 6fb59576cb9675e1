"""Tier 2 triggers inside the server: OpenLineage events posted to a running server (the
HTTP ingest route, and the real openlineage-python client) that close a re-entry loop into
the policy's lineage node open an incident by themselves; an asset class whose policy has the
trigger off gets none; events posted again, or new events that find nothing new, write no
incident record; a new finding joins the incident; a resolved incident is not reopened by
the same findings. Real server, real signed ledger, Tier 1 ratings drawn in the picture."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from incidents_data import incident_server_config
from lineage_audit.ledger import Ledger
from lineage_data import dataset as ds
from lineage_data import run_event as ev
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from server_fixtures import fit_small_baseline
from test_incidents_server import TOKENS, Served, serving

POLICY = """
[policy]
name = "lineage-test"
version = "1"
[asset_classes.news]
signal = "news-sentiment"
lineage_node = "dataset:deployer:news-inputs"
[asset_classes.news.triggers]
tier2_re_entry = true
tier2_convergence_k = 3
[asset_classes.news.roles]
acknowledge = ["token:mro"]
resolve = ["token:mro"]
[asset_classes.news-quiet]
signal = "news-quiet"
lineage_node = "dataset:deployer:news-inputs"
[asset_classes.news-quiet.triggers]
tier2_re_entry = false
[asset_classes.news-quiet.roles]
acknowledge = ["token:mro"]
resolve = ["token:mro"]
"""
UP, ASSET, MODEL = ("vendor-x", "market-product"), ("deployer", "news-inputs"), ("models", "llm")


def _before_the_loop() -> list[dict]:
    """The deployer's asset from a vendor feed and an own source; its model; the model's
    syndicated output. No finding yet."""
    return [
        ev("vendor-x.build", [ds("raw", "wire")], [ds(*UP)]),
        ev("feed-0.pull", [ds(*UP)], [ds("feeds", "vendor-0")]),
        ev("indep-1", [ds("raw", "own-1")], [ds("feeds", "indep-1")]),
        ev("deployer.ingest", [ds("feeds", "vendor-0"), ds("feeds", "indep-1")], [ds(*ASSET)]),
        ev("deployer.train", [ds(*ASSET)], [ds(*MODEL, model="deployer-llm")]),
        ev("deployer.infer", [ds(*MODEL)], [ds("syndication", "commentary")]),
    ]


def _the_loop() -> list[dict]:
    """The vendor re-ingests the syndicated output; it flows back into the asset and the
    model's next training: a re-entry."""
    return [
        ev("vendor-x.refresh", [ds(*UP), ds("syndication", "commentary")], [ds(*UP)]),
        ev("feed-0.pull", [ds(*UP)], [ds("feeds", "vendor-0")]),
        ev("deployer.ingest", [ds("feeds", "vendor-0")], [ds(*ASSET)]),
        ev("deployer.train", [ds(*ASSET)], [ds(*MODEL)]),
    ]


def _convergence() -> list[dict]:
    """Two more feeds of the same vendor product into the asset: 3 sources converge."""
    feeds = [ev(f"feed-{i}.pull", [ds(*UP)], [ds("feeds", f"vendor-{i}")]) for i in (1, 2)]
    sources = [ds("feeds", f"vendor-{i}") for i in range(3)]
    return [*feeds, ev("deployer.ingest", sources, [ds(*ASSET)])]


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


@pytest.fixture
def served(tmp_path, baseline_dir):
    lineage = '[lineage]\ndb = "lineage.db"\n\n'
    config = incident_server_config(tmp_path, baseline_dir, POLICY, TOKENS, extra=lineage)
    with serving(config) as s:
        yield s


def _post(served: Served, events: list[dict]) -> None:
    status, body = served.http("POST", "/api/v1/lineage/batch", events)
    assert status == 201, body


def _settled(served: Served) -> None:
    """Wait until the Tier 2 checks the posts scheduled have run."""
    running = served.server.running
    asyncio.run_coroutine_threadsafe(running.incidents.settled(), served.server.running_loop
                                     ).result(60)  # fmt: skip


def _incident_records(ledger: Ledger) -> list[dict]:
    return [e.statement()["predicate"] for e in ledger.entries()
            if e.kind == "intent" and e.action.startswith("incident.")]  # fmt: skip


def _client_emit(served: Served) -> None:
    """One unrelated event through the real OpenLineage client (HTTP transport)."""
    url = f"http://127.0.0.1:{served.server.running.http_port}"
    http = HttpConfig(url=url, auth=ApiKeyTokenProvider({"apiKey": TOKENS["mro"]}),
                      retry={"total": 0})  # fmt: skip
    OpenLineageClient(transport=HttpTransport(http)).emit(RunEvent(
        eventType=RunState.COMPLETE, eventTime="2026-11-29T10:00:00Z",
        run=Run(runId=str(uuid.uuid4())), job=Job(namespace="etl", name="unrelated"),
        inputs=[InputDataset(namespace="raw", name="other")],
        outputs=[OutputDataset(namespace="mart", name="other")],
        producer="https://github.com/lineage-audit/tests",
    ))  # fmt: skip


def test_a_re_entry_ingested_opens_an_incident_once(served):
    rating = {"source": "feeds:indep-1", "rating": "opaque", "confidence": 0.3,
              "finding": False, "rule": "lineage-audit.tier1.rating/v1",
              "reasons": ["no OpenLineage events, no AIBOM and no C2PA manifest for the source"],
              "checks": [{"check": "openlineage", "state": "absent", "reasons": ["none"],
                          "tool": "lineage-audit", "schema": None, "details": {}}]}  # fmt: skip
    # a source that feeds nothing of the asset's: its rating must not count
    unrelated = {**rating, "source": "feeds:elsewhere"}
    body = {"ratings": [rating, unrelated]}
    assert served.http("POST", "/api/v1/incidents/ratings", body)[0] == 200
    watch = served.watch()
    before, loop = _before_the_loop(), _the_loop()
    _post(served, before)
    _settled(served)
    assert _incident_records(served.ledger) == []  # ingested, checked: nothing found

    _post(served, loop)
    event = next(watch)
    assert (event.kind, event.asset_class) == ("opened", "news"), event
    assert set(event.incident.triggers) == {"tier2.re-entry"}
    assert event.actor == "lineage-audit-server"
    _settled(served)
    records = _incident_records(served.ledger)
    assert [(r["action"], r["asset_class"]) for r in records] == [("incident.open", "news")]
    (opening,) = records
    assert opening["triggers"][0]["detail"]["model"] == "models:llm"
    status, incident = served.http("GET", f"/api/v1/incidents/{event.incident.id}")
    lineage = incident["evidence"]["lineage"]
    assert incident["confidence"]["inputs"]["re_entry"]
    assert incident["confidence"]["inputs"]["opaque_source"]  # the rating, in the evidence
    rated = [r["source"] for r in incident["evidence"]["ratings"]]
    assert rated == ["feeds:indep-1"]  # feeds:elsewhere is not in the asset's lineage
    assert re.search(r"<title>dataset:feeds:indep-1[^<]*</title><rect [^>]*"
                     r'stroke-dasharray="5,3"', lineage["svg"])  # drawn as opaque  # fmt: skip
    quiet = served.http("GET", "/api/v1/incidents?asset_class=news-quiet")[1]
    assert quiet == {"incidents": []}  # its policy has the trigger off

    # the same events again (duplicates: nothing stored), then a new event that changes the
    # graph but not the findings (the real client): checked, nothing written
    _post(served, before[:2] + loop)
    _client_emit(served)
    _settled(served)
    assert len(_incident_records(served.ledger)) == 1

    _post(served, _convergence())  # a new finding joins the incident
    event = next(watch)
    assert (event.kind, event.incident.id) == ("updated", opening["incident_id"])
    _settled(served)
    update = _incident_records(served.ledger)[-1]
    assert update["action"] == "incident.update"
    assert [t["kind"] for t in update["triggers"]] == ["tier2.re-entry", "tier2.convergence"]
    assert json.dumps(update["triggers"][1]["detail"]["sources"]) == json.dumps(
        ["feeds:vendor-0", "feeds:vendor-1", "feeds:vendor-2"]
    )

    incident_id = opening["incident_id"]
    for verb in ("acknowledge", "resolve"):
        status, _ = served.http("POST", f"/api/v1/incidents/{incident_id}/{verb}")
        assert status == 200
    _post(served, [ev("deployer.ingest", [ds("feeds", "indep-1")], [ds(*ASSET)])])
    _settled(served)  # the same findings, held by the resolved incident: no new one
    assert [r["action"] for r in _incident_records(served.ledger)] == [
        "incident.open", "incident.update", "incident.acknowledge", "incident.resolve"]  # fmt: skip
    watch.cancel()
