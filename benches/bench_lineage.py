"""Tier 2 benchmark: OpenLineage ingest over HTTP with the real client, and findings on a
large graph. One JSON line.

Ingest: `lineage-audit serve` (a real server process, SQLite event store, signed ledger) and
C worker processes, each emitting events with `openlineage-python`'s HTTP transport (one
event per request, as the client sends them) for a fixed time; then, against the same
server, a light aiohttp load generator (32 concurrent POSTs of pre-serialised events) for
the server's own capacity, since the real client costs ~1.4 ms of CPU per event here.
Every accepted event must be stored and attested by a ledger record; the ledger is verified
after the run. Quoted against the in-process validation rate of the same events measured in
this run (the machine's limit for the validating step), with the server and the clients
sharing the machine's cores.

Findings: a synthetic graph of N events (vendors, feeds, assets, models, syndication loops)
is built and convergence + re-entry computed; events/s of the build and seconds of each.

    python benches/bench_lineage.py            # README figures (100k-event graph)
    python benches/bench_lineage.py --quick    # smoke size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine

FULL = {"seconds": 10.0, "clients": 16, "graph_events": 100_000}
QUICK = {"seconds": 1.5, "clients": 2, "graph_events": 2_000}
PRODUCER = "https://github.com/lineage-audit/benches"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION = "https://openlineage.io/spec/facets/1-0-0/DatasetVersionDatasetFacet.json"


def _event(job: str, inputs, outputs) -> dict:
    def dataset(ns_name, version=None):
        facets = {}
        if version is not None:
            facets["version"] = {"_producer": PRODUCER, "_schemaURL": VERSION,
                                 "datasetVersion": version}  # fmt: skip
        return {"namespace": ns_name[0], "name": ns_name[1], "facets": facets}

    return {
        "eventType": "COMPLETE", "eventTime": "2026-11-29T10:00:00Z",
        "run": {"runId": str(uuid.uuid4()), "facets": {}},
        "job": {"namespace": "bench", "name": job, "facets": {}},
        "inputs": [dataset(d) for d in inputs], "outputs": [dataset(d) for d in outputs],
        "producer": PRODUCER, "schemaURL": CORE,
    }  # fmt: skip


# --- ingest over HTTP ---------------------------------------------------------------------------


def _client(url: str, token: str, seconds: float, seed: int, out, ready, go) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    config = HttpConfig(url=url, auth=ApiKeyTokenProvider({"apiKey": token}),
                        retry={"total": 0}, timeout=30)  # fmt: skip
    client = OpenLineageClient(transport=HttpTransport(config))
    rng = random.Random(seed)
    sent, errors, latencies = 0, 0, []
    ready.put(seed)
    go.wait()  # every client imported and connected: the measured window starts together
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        event = RunEvent(
            eventType=RunState.COMPLETE, eventTime="2026-11-29T10:00:00Z",
            run=Run(runId=str(uuid.uuid4())), job=Job(namespace="bench", name=f"job-{seed}"),
            inputs=[InputDataset(namespace="src", name=f"t{rng.randrange(500)}")],
            outputs=[OutputDataset(namespace="dst", name=f"t{rng.randrange(500)}")],
            producer=PRODUCER,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            client.emit(event)
            latencies.append(time.perf_counter() - started)
            sent += 1
        except Exception:
            errors += 1
    out.put((sent, errors, latencies))


async def _raw_load(url: str, token: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """A light load generator (aiohttp, pre-serialised events): the server's own capacity,
    with the clients' CPU cost kept small."""
    import aiohttp

    bodies = [json.dumps(_event("raw", [("src", f"t{i % 500}")], [("dst", f"r{i}")])).encode()
              for i in range(20_000)]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent, errors = [0], [0]
    stop = time.perf_counter() + seconds

    async def worker(session, k):
        i = k
        while time.perf_counter() < stop:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                await r.read()
                if r.status == 201:
                    sent[0] += 1
                else:
                    errors[0] += 1
            i += concurrency

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
    return sent[0], errors[0]


def _validation_rate(n: int = 2000) -> float:
    from lineage_audit.lineage.events import parse_event

    bodies = [json.dumps(_event("v", [("src", "a")], [("dst", f"b{i}")])).encode()
              for i in range(n)]  # fmt: skip
    parse_event(bodies[0])
    started = time.perf_counter()
    for body in bodies:
        parse_event(body)
    return n / (time.perf_counter() - started)


def _ingest(p: dict, folder: Path) -> dict:
    from lineage_audit.ledger import Ledger, generate_keys, verify_ledger
    from lineage_audit.lineage.store import SQLiteLineageStore
    from lineage_audit.server.auth import hash_token
    from lineage_audit.server.process import ServerProcess

    token = "bench-token-0123456789abcdef"
    keyring = generate_keys(folder / "keys", name="bench.lineage-audit.local/ledger")
    (folder / "tokens.toml").write_text(
        f'[[token]]\nname = "bench"\nsha256 = "{hash_token(token)}"\n'
    )
    (folder / "server.toml").write_text(
        '[server]\nport = 0\nhttp_port = 0\n[ledger]\ndb = "ledger.db"\nkeys = "keys"\n'
        '[lineage]\ndb = "lineage.db"\n[auth]\nrequired = true\ntokens = "tokens.toml"\n'
    )
    queue: mp.Queue = mp.Queue()
    ready: mp.Queue = mp.Queue()
    go = mp.Event()
    with ServerProcess(folder / "server.toml", log=folder / "server.log") as server:
        workers = [
            mp.Process(target=_client,
                       args=(server.http_url, token, p["seconds"], i, queue, ready, go))
            for i in range(p["clients"])
        ]  # fmt: skip
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=120)
        go.set()
        results = [queue.get(timeout=p["seconds"] + 120) for _ in workers]
        elapsed = p["seconds"]
        for w in workers:
            w.join()
        raw_sent, raw_errors = asyncio.run(
            _raw_load(f"{server.http_url}/api/v1/lineage", token, p["seconds"], 32)
        )
    sent = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    store = SQLiteLineageStore(folder / "lineage.db")
    attested = sum(1 for e in store.events() if e.record_seq is not None)  # both loads
    stored = store.count()
    store.close()
    with Ledger.open(folder / "ledger.db", read_only=True) as ledger:
        records = ledger.size
    valid = verify_ledger(folder / "ledger.db", keyring.public_keys()).valid
    return {
        "events_per_s": round(sent / elapsed, 1),
        "clients": p["clients"],
        "sent": sent,
        "errors": sum(r[1] for r in results),
        "stored": stored,
        "attested": attested,
        "ledger_records": records,
        "events_per_ledger_record": round(stored / max(records / 2, 1), 1),
        "ledger_valid": valid,
        "light_client_events_per_s": round(raw_sent / p["seconds"], 1),
        "light_client_errors": raw_errors,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
    }


# --- findings on a large graph ------------------------------------------------------------------


def _synthetic(n: int, seed: int) -> list[dict]:
    """Vendors publish products; feeds pull from one vendor each; each asset ingests 11 fixed
    feeds; models train on assets and their outputs are syndicated; some vendor refreshes
    read that commentary. Repeated refreshes, pulls, ingests, trainings until n events."""
    rng = random.Random(seed)
    vendors = [("vendor", f"product-{i}") for i in range(max(4, n // 10_000))]
    feeds = [(("feeds", f"feed-{i}"), rng.choice(vendors)) for i in range(max(12, n // 100))]
    assets = [("deployer", f"asset-{i}") for i in range(max(2, n // 2000))]
    sources = {a: rng.sample(feeds, 11) for a in assets}
    models = {a: ("models", f"model-{i}") for i, a in enumerate(assets)}
    events = [_event("seed", [("raw", f"wire-{i}")], [v]) for i, v in enumerate(vendors)]
    while len(events) < n:
        roll = rng.random()
        if roll < 0.50:
            feed, vendor = rng.choice(feeds)
            events.append(_event("pull", [vendor], [feed]))
        elif roll < 0.75:
            asset = rng.choice(assets)
            events.append(_event("ingest", [f for f, _ in sources[asset]], [asset]))
        elif roll < 0.85:
            asset = rng.choice(assets)
            events.append(_event("train", [asset], [models[asset]]))
        elif roll < 0.95:
            asset = rng.choice(assets)
            events.append(_event("infer", [models[asset]], [("syndication", asset[1])]))
        else:
            vendor = rng.choice(vendors)
            reads = [vendor]
            if rng.random() < 0.3:
                reads.append(("syndication", rng.choice(assets)[1]))
            events.append(_event("refresh", reads, [vendor]))
    for model in models.values():  # models carry the facet on their first training output
        for event in events:
            out = event["outputs"][0] if event["outputs"] else None
            if out and (out["namespace"], out["name"]) == model:
                out["facets"]["lineageAudit_model"] = {
                    "_producer": PRODUCER, "_schemaURL": PRODUCER + "/model.json",
                    "modelId": model[1]}  # fmt: skip
                break
    return events[:n]


def _findings(p: dict, seed: int) -> dict:
    from lineage_audit.lineage.events import parse_event
    from lineage_audit.lineage.findings import convergence, re_entries
    from lineage_audit.lineage.graph import LineageGraph

    events = [parse_event(e) for e in _synthetic(p["graph_events"], seed)]
    started = time.perf_counter()
    graph = LineageGraph(events)
    built = time.perf_counter() - started
    started = time.perf_counter()
    found_c = convergence(graph, 3)
    conv_s = time.perf_counter() - started
    started = time.perf_counter()
    found_r = re_entries(graph)
    reentry_s = time.perf_counter() - started
    return {
        "graph_events": len(events),
        "graph_build_events_per_s": round(len(events) / built, 1),
        "convergence_seconds": round(conv_s, 3),
        "re_entry_seconds": round(reentry_s, 3),
        "convergence_findings": len(found_c),
        "re_entry_findings": len(found_r),
        "datasets": len(graph.datasets()),
        "runs": len(graph.runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    p = QUICK if args.quick else FULL
    env = machine.environment()
    validate = _validation_rate(500 if args.quick else 3000)
    with tempfile.TemporaryDirectory(prefix="bench-lineage-") as tmp:
        ingest = _ingest(p, Path(tmp))
    findings = _findings(p, args.seed)
    machine.emit({
        "bench": "lineage",
        "quick": args.quick,
        "seed": args.seed,
        "environment": env,
        "ingest": ingest,
        "events_per_s": ingest["events_per_s"],
        "validation_events_per_s": round(validate, 1),
        "fraction_of_validation_rate": round(ingest["events_per_s"] / validate, 3),
        "findings": findings,
    })  # fmt: skip


if __name__ == "__main__":
    main()
