"""Tier 2: OpenLineage events validated offline, the version-level graph, convergence and
re-entry findings on scenarios no public fixture covers, and lineage path proofs."""

from __future__ import annotations

import base64
import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lineage_audit.ledger import Ledger
from lineage_audit.lineage import schemas
from lineage_audit.lineage.events import EventError, parse_event
from lineage_audit.lineage.findings import convergence, propagate_confidence, re_entries
from lineage_audit.lineage.graph import LineageGraph
from lineage_audit.lineage.proofs import verify_path_proof
from lineage_audit.lineage.service import LineageService
from lineage_audit.lineage.store import SQLiteLineageStore
from lineage_data import dataset as ds
from lineage_data import run_event as ev

CONFORMANCE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance"
OPENLINEAGE = CONFORMANCE / "openlineage"
UPSTREAM = ("vendor-x", "market-product")
ASSET = ("deployer", "news-inputs")
MODEL = ("models", "deployer-llm")


# --- validation against the vendored schemas --------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(OPENLINEAGE.glob("client-python-tests/*.json")), ids=lambda p: p.name
)
def test_every_client_fixture_event_validates(path):
    event = parse_event(path.read_bytes())
    assert event.schema_version in ("1-0-5", "2-0-0", "2-0-2")


@pytest.mark.parametrize(
    "path", sorted((OPENLINEAGE / "spec" / "tests").rglob("*.json")), ids=lambda p: p.parent.name
)
def test_every_spec_fixture_validates(path):
    """Facet fixtures against their facet's schema (the folder names it), as upstream does;
    the full event through the event validator."""
    doc = json.loads(path.read_text())
    if path.name == "example_full_event.json":
        parse_event(doc)
        return
    validator = schemas.facet_document_validator(path.parent.name)
    assert list(validator.iter_errors(doc)) == []


def test_a_facet_that_breaks_its_schema_is_refused_inside_an_event():
    event = ev("job", [ds("ns", "in", symlinks=(("other", "alias"),))], [])
    event["inputs"][0]["facets"]["symlinks"]["identifiers"][0]["name"] = 12
    with pytest.raises(EventError) as info:
        parse_event(event)
    assert info.value.field == "$.inputs[0].facets.symlinks.identifiers[0].name"


def _valid_event() -> dict:
    return ev("job", [ds("ns", "in", version="1")], [ds("ns", "out", version="2")])


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e["run"].pop("runId"), "$.run"),
        (lambda e: e.__setitem__("eventTime", 17), "$.eventTime"),
        (lambda e: e["inputs"][0].pop("namespace"), "$.inputs[0]"),
        (lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"),
         "$.outputs[0].facets.version"),
        (lambda e: e.__setitem__("eventType", "EXPLODED"), "$.eventType"),
    ],
)  # fmt: skip
def test_mutated_events_fail_naming_the_path(mutate, path):
    event = _valid_event()
    mutate(event)
    with pytest.raises(EventError) as info:
        parse_event(event)
    assert info.value.field.startswith(path), info.value


def test_unknown_schema_version_malformed_json_and_oversized_are_refused():
    event = _valid_event()
    event["schemaURL"] = "https://openlineage.io/spec/9-9-9/OpenLineage.json#/$defs/RunEvent"
    with pytest.raises(EventError, match="unknown schema version"):
        parse_event(event)
    with pytest.raises(EventError, match="not valid JSON"):
        parse_event(b'{"eventType": "START",')
    with pytest.raises(EventError, match="exceeds the limit"):
        parse_event(b" " * (1 << 20) + b"{}")


def test_reading_and_writing_one_version_is_a_cycle_and_refused():
    event = ev("merge", [ds("ns", "t", version="7")], [ds("ns", "t", version="7")])
    with pytest.raises(EventError, match="a cycle") as info:
        parse_event(event)
    assert info.value.field == "$.outputs[0]"


# --- scenarios --------------------------------------------------------------------------------


def _vendor_scenario(*, refresh_reads_commentary: bool = True) -> list[dict]:
    """Four vendor feeds built from one upstream product, three independent ones, a deployer
    asset from all seven, its model, the model's syndicated commentary, and a quarterly
    refresh of the upstream product that (optionally) retrains on that commentary."""
    events = [ev("vendor-x.build", [ds("raw", "wire")], [ds(*UPSTREAM)])]
    events += [ev(f"feed-{i}.pull", [ds(*UPSTREAM)], [ds("feeds", f"vendor-{i}")])
               for i in range(4)]  # fmt: skip
    events += [ev(f"indep-{i}", [ds("raw", f"own-{i}")], [ds("feeds", f"indep-{i}")])
               for i in range(3)]  # fmt: skip
    sources = [ds("feeds", f"vendor-{i}") for i in range(4)]
    sources += [ds("feeds", f"indep-{i}") for i in range(3)]
    events.append(ev("deployer.ingest", sources, [ds(*ASSET)]))
    events.append(ev("deployer.train", [ds(*ASSET)], [ds(*MODEL, model="deployer-llm")]))
    events.append(ev("deployer.infer", [ds(*MODEL)], [ds("syndication", "commentary")]))
    refresh_in = [ds(*UPSTREAM)]
    if refresh_reads_commentary:
        refresh_in.append(ds("syndication", "commentary"))
    events.append(ev("vendor-x.quarterly-refresh", refresh_in, [ds(*UPSTREAM)]))
    events.append(ev("feed-0.pull", [ds(*UPSTREAM)], [ds("feeds", "vendor-0")]))
    events.append(ev("deployer.ingest", [ds("feeds", "vendor-0")], [ds(*ASSET)]))
    events.append(ev("deployer.train", [ds(*ASSET)], [ds(*MODEL)]))
    return events


def _graph(events) -> LineageGraph:
    return LineageGraph(parse_event(e) for e in events)


def test_vendor_feeds_converging_on_one_upstream_product():
    graph = _graph(_vendor_scenario())
    found = convergence(graph, k=3)
    assert [(c.asset, c.upstream) for c in found] == [(ASSET, UPSTREAM)]
    assert found[0].sources == tuple(("feeds", f"vendor-{i}") for i in range(4))
    assert convergence(graph, k=5) == []  # only four sources share it


def test_convergence_found_when_the_consumer_reports_sources_before_their_producers():
    """The deployer's ingest names the feeds before the vendor and the feeds emit anything,
    and a re-entry loop runs through the feeds: the loop is cut at the model's training edge,
    not at the edge from the vendor's product to the feeds."""
    events = _vendor_scenario()
    ingest = next(e for e in events if e["job"]["name"] == "deployer.ingest")
    events.remove(ingest)
    graph = _graph([ingest, *events])
    assert re_entries(graph), "the loop through the model is still a re-entry"
    found = convergence(graph, k=3)
    assert [(c.asset, c.upstream) for c in found] == [(ASSET, UPSTREAM)]
    assert found[0].sources == tuple(("feeds", f"vendor-{i}") for i in range(4))


def test_re_entry_through_a_vendors_quarterly_refresh_at_version_level():
    graph = _graph(_vendor_scenario())
    (found,) = re_entries(graph)
    assert found.model == MODEL and found.model_id == "deployer-llm"
    text = [n if n[0] == "run" else (n[1], n[2]) for n in found.path]
    names = [t for t in text if t[0] != "run"]
    assert names == [("syndication", "commentary"), UPSTREAM, ("feeds", "vendor-0"), ASSET]
    # without the refresh reading the commentary there is no loop
    assert re_entries(_graph(_vendor_scenario(refresh_reads_commentary=False))) == []


def test_a_merge_loop_is_not_flagged_even_next_to_a_model():
    events = [
        ev("train", [ds("warehouse", "facts")], [ds(*MODEL, model="m")]),
        *(ev("nightly.merge", [ds("warehouse", "facts"), ds("raw", "delta")],
             [ds("warehouse", "facts")]) for _ in range(3)),
        ev("infer", [ds(*MODEL), ds("warehouse", "facts")], [ds("warehouse", "facts")]),
        ev("nightly.merge", [ds("warehouse", "facts")], [ds("warehouse", "facts")]),
    ]  # fmt: skip
    graph = _graph(events)
    assert re_entries(graph) == []
    assert len(graph.versions_of(("warehouse", "facts"))) == 6  # initial + 5 writes


def test_aliases_are_one_dataset_and_parent_runs_are_followed():
    """The refresh writes the upstream under an alias; training runs as a child of a parent
    run whose other child read the contaminated asset."""
    events = _vendor_scenario(refresh_reads_commentary=False)[:-3]
    alias = ("s3://vendor-x", "products/market")
    events.append(ev("vendor-x.quarterly-refresh",
                     [ds(*UPSTREAM), ds("syndication", "commentary")],
                     [ds(*alias, symlinks=(UPSTREAM,))]))  # fmt: skip
    events.append(ev("feed-0.pull", [ds(*UPSTREAM)], [ds("feeds", "vendor-0")]))
    events.append(ev("deployer.ingest", [ds("feeds", "vendor-0")], [ds(*ASSET)]))
    parent = "0f6f6f0e-0000-4000-8000-000000000001"
    events.append(ev("retrain", [], [], run_id=parent, event_type="START"))
    events.append(ev("retrain.prepare", [ds(*ASSET)], [ds("scratch", "shards")],
                     parent=(parent, "retrain")))  # fmt: skip
    events.append(ev("retrain.fit", [ds("registry", "tokenizer")], [ds(*MODEL)],
                     parent=(parent, "retrain")))  # fmt: skip
    graph = _graph(events)
    assert graph.canonical(alias) == graph.canonical(UPSTREAM)
    (found,) = re_entries(graph)
    assert ("dataset", *ASSET) in [n[:3] for n in found.path]


def test_opaque_sources_degrade_confidence_downstream():
    from lineage_audit.provenance import rate_source

    graph = _graph(_vendor_scenario())
    assert graph.openlineage_events(("feeds", "indep-1")) == 2  # written once, read once
    rating = rate_source("feeds:indep-1", openlineage_events=0)  # nothing but the name
    assert rating.rating == "opaque" and rating.confidence == 0.3
    present = rate_source(
        "feeds:indep-2", openlineage_events=graph.openlineage_events(("feeds", "indep-2"))
    )
    assert present.rating == "valid"  # OpenLineage events alone make a source not opaque
    effective = propagate_confidence(graph, {("feeds", "indep-1"): 0.3, UPSTREAM: 0.8})
    assert effective[("feeds", "indep-1")] == 0.3
    assert effective[ASSET] == 0.3 and effective[MODEL] == 0.3
    assert effective[("feeds", "vendor-2")] == 0.8
    assert ("feeds", "indep-0") not in effective  # not downstream of a rated source


# --- store, ledger and path proofs ------------------------------------------------------------


@pytest.fixture
def service(tmp_path, keyring):
    ledger = Ledger.open(tmp_path / "ledger.db", keyring)
    with ThreadPoolExecutor(2) as pool:
        svc = LineageService(SQLiteLineageStore(tmp_path / "lineage.db"), ledger, pool,
                             actor="test:ingest")  # fmt: skip
        yield svc
        svc.store.close()
    ledger.close()


def test_ingest_is_all_or_nothing_and_attested_in_batches(service):
    events = _vendor_scenario()
    bad = copy.deepcopy(events[3])
    bad["run"]["runId"] = 12
    with pytest.raises(EventError) as info:
        service.ingest_now([*events[:3], bad])
    assert info.value.field == "[3]$.run.runId"
    assert service.store.count() == 0 and service.ledger.size == 0
    first = service.ingest_now(events[:6])
    again = service.ingest_now(events[:6])  # a client retry: acknowledged, not stored twice
    assert (first.stored, again.stored, again.duplicates) == (6, 0, 6)
    assert service.store.count() == 6 and service.ledger.size == 2  # one intent + outcome
    intent = service.ledger.entry(first.record_seq).statement()
    assert intent["subject"][0]["name"] == "openlineage-batch:6"


def test_path_proof_proves_the_ancestry_and_reveals_nothing_else(service, keyring):
    events = _vendor_scenario()
    for event in events:
        service.ingest_now([event])
    bundle = service.path_proof("dataset:deployer:news-inputs")
    verdict = verify_path_proof(bundle, keyring.public_keys())
    assert verdict.valid, verdict.line()
    assert ("feeds:vendor-0", "deployer:news-inputs") in verdict.edges
    text = json.dumps(bundle)
    proved = {json.loads(base64.b64decode(e["event"]))["job"]["name"] for e in bundle["events"]}
    assert "deployer.infer" in proved and "vendor-x.quarterly-refresh" in proved
    assert "deployer.train" in {json.loads(e)["job"]["name"] for e in map(json.dumps, events)}
    # the latest training run is downstream of the asset: not part of its ancestry
    last_train = events[-1]["run"]["runId"]
    assert last_train not in text

    tampered = copy.deepcopy(bundle)
    body = json.loads(base64.b64decode(tampered["events"][0]["event"]))
    body["job"]["name"] = "someone-else"
    tampered["events"][0]["event"] = base64.b64encode(json.dumps(body).encode()).decode()
    verdict = verify_path_proof(tampered, keyring.public_keys())
    assert not verdict.valid and verdict.reason == "lineage_event", verdict.line()


def test_the_picture_highlights_opaque_sources_convergence_and_the_re_entry_path(tmp_path):
    import cairosvg
    from lineage_audit.lineage.picture import render_svg

    graph = _graph(_vendor_scenario())
    opaque = {("feeds", "indep-1")}
    svg = render_svg(graph, convergence(graph, 3), re_entries(graph),
                     propagate_confidence(graph, {("feeds", "indep-1"): 0.3}),
                     opaque=opaque)  # fmt: skip
    assert svg.count('marker-end="url(#hot)"') == 7  # the re-entry path's edges
    assert 'stroke-dasharray="5,3"/><text x' in svg and ">feeds:indep-1<" in svg
    assert ">vendor-x:market-product<" in svg and "#e08a00" in svg
    assert "re-entry: output of model deployer-llm returns as its training input" in svg
    out = Path(__file__).resolve().parent / "output"
    out.mkdir(exist_ok=True)
    png = out / "lineage-scenario.png"  # looked at by a person when the drawing changes
    cairosvg.svg2png(bytestring=svg.encode(), write_to=str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_lineage_cli_ingests_finds_proves_verifies_and_draws(tmp_path, run_cli):
    from lineage_audit.ledger import generate_keys

    keyring = generate_keys(tmp_path / "keys", name="cli.lineage-audit.test/log")
    pub = tmp_path / "keys.pub.json"
    pub.write_text(json.dumps(keyring.public_keys().to_json()))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _vendor_scenario()))
    store = ["--db", tmp_path / "lineage.db", "--ledger", tmp_path / "audit.db",
             "--keys", tmp_path / "keys"]  # fmt: skip
    done = run_cli("lineage", "ingest", events, *store)
    assert done.returncode == 0 and "15 events (15 new" in done.stdout, done.stderr
    done = run_cli("lineage", "findings", "--db", tmp_path / "lineage.db")
    assert "convergence: 4 sources of deployer:news-inputs share vendor-x:market-product" in (
        done.stdout
    )
    assert "re-entry: output of model models:deployer-llm" in done.stdout
    proof = tmp_path / "news.path.json"
    done = run_cli("lineage", "prove", *store, "--node", "dataset:deployer:news-inputs",
                   "-o", proof)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_cli("lineage", "verify", proof, "--pubkeys", pub)
    assert done.returncode == 0 and "feeds:vendor-0 -> deployer:news-inputs" in done.stdout
    done = run_cli("verify", proof, "--pubkeys", pub)  # the ledger's own bundle verifier
    assert done.returncode == 0 and "lineage events proved" in done.stdout, done.stdout
    bundle = json.loads(proof.read_text())
    bundle["events"][0]["index"] += 1
    proof.write_text(json.dumps(bundle))
    done = run_cli("lineage", "verify", proof, "--pubkeys", pub)
    assert done.returncode == 1 and "INVALID lineage_event" in done.stdout
    ratings = tmp_path / "ratings.json"
    ratings.write_text(json.dumps({"feeds:indep-1": 0.3}))
    svg = tmp_path / "graph.svg"
    done = run_cli("lineage", "show", "--db", tmp_path / "lineage.db", "-o", svg,
                   "--ratings", ratings)  # fmt: skip
    assert done.returncode == 0 and 'marker-end="url(#hot)"' in svg.read_text()
    done = run_cli("lineage", "prove", *store, "--node", "dataset:no:such", "-o", proof)
    assert done.returncode == 2 and "not in the lineage graph" in done.stderr


def test_ingest_after_shutdown_is_refused_and_stores_nothing(service):
    import asyncio

    from lineage_audit.lineage.ingest import IngestQueue, ShuttingDown, parse_batch

    events = parse_batch(_vendor_scenario()[:1])

    async def scenario():
        queue = IngestQueue(service.ingestor, service.executor)
        queue.start()
        first = await queue.submit(events, None)
        await queue.close()
        with pytest.raises(ShuttingDown, match="nothing was stored"):
            await queue.submit(parse_batch(_vendor_scenario()[1:2]), None)
        return first

    assert asyncio.run(scenario()).stored == 1
    assert service.store.count() == 1


def test_strong_components_agree_with_mutual_reachability():
    """The iterative Tarjan behind the loop cut, against the definition on random graphs."""
    import random

    from lineage_audit.lineage.graph import _strong_components

    rng = random.Random(7)
    for _ in range(200):
        names = [("ns", f"d{i}") for i in range(rng.randint(2, 9))]
        edges = {(a, b) for a in names for b in names if a != b and rng.random() < 0.25}
        if not edges:
            continue
        nodes = {n for e in edges for n in e}
        reach = {n: {n} for n in nodes}
        for _ in nodes:  # transitive closure by repeated relaxation (tiny graphs)
            for a, b in edges:
                reach[a] |= reach[b]
        component = _strong_components(edges)
        assert set(component) == nodes
        for a in nodes:
            for b in nodes:
                same = b in reach[a] and a in reach[b]
                assert (component[a] == component[b]) == same, (edges, a, b)


def test_store_finds_events_by_digest_through_its_index(tmp_path):
    store = SQLiteLineageStore(tmp_path / "lineage.db")
    bodies = [(f"{i:064x}", f'{{"n": {i}}}'.encode()) for i in range(1200)]
    store.add(bodies[:700], record_seq=3, received_ns=1)
    store.add(bodies[700:], record_seq=4, received_ns=2)
    wanted = [bodies[i][0] for i in (1100, 5, 699, 700)] + ["f" * 64]  # one never stored
    found = store.by_digests(wanted)
    assert [e.body for e in found] == [bodies[i][1] for i in (5, 699, 700, 1100)]  # arrival
    assert [(e.record_seq, e.batch_index) for e in found] == [(3, 5), (3, 699), (4, 0), (4, 400)]
    # more digests than one IN (...) query takes: every stored one comes back, once
    everything = store.by_digests([d for d, _ in reversed(bodies)])
    assert [e.sha256 for e in everything] == [d for d, _ in bodies]
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT body FROM lineage_events WHERE sha256 IN (?)", (wanted[0],)
    ).fetchall()
    assert any("USING INDEX" in row[-1] for row in plan), plan  # no table scan
    store.close()
