"""The audit artifact and its HTML report, from real records: a Tier 3 monitor halting on a
real baseline, a Tier 2 lineage graph with a re-entry, a Tier 4 results file, Tier 1
ratings. The artifact validates against its JSON Schema, its evidence bundle verifies, and
the page opened in Debian's headless Chromium makes no network request (screenshot kept in
tests/output/ for a person to look at)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from divergence_data import gaussian, model_like
from incidents_data import policy_text
from lineage_audit.attribution.job import result_schema
from lineage_audit.divergence import BaselineConfig, fit_baseline, load_baseline, save_baseline
from lineage_audit.divergence.monitor import Monitor, WindowPolicy
from lineage_audit.divergence.series import SeriesWriter
from lineage_audit.incidents import (
    AlertTriggers,
    Evidence,
    IncidentError,
    IncidentManager,
    IncidentStore,
    attribution_evidence,
    divergence_evidence,
    lineage_evidence,
    parse_policy,
    rating_evidence,
    threshold_history,
    trigger_from_attribution,
    triggers_from_lineage,
)
from lineage_audit.incidents.artifact import build_artifact, validate_artifact
from lineage_audit.incidents.regulatory import CITATIONS
from lineage_audit.incidents.report import render_html, render_pdf
from lineage_audit.ledger import verify_bundle
from lineage_audit.lineage.service import LineageService
from lineage_audit.lineage.store import SQLiteLineageStore
from lineage_audit.provenance.model import CheckResult, combine
from lineage_data import dataset as ds
from lineage_data import run_event as ev

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path(__file__).resolve().parent / "output"
N = 32


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    rng = np.random.default_rng(7)
    config = BaselineConfig(window_sizes=(N,), null_windows=2000, arl_windows=200,
                            encoder_id="enc-a")  # fmt: skip
    fitted = fit_baseline(gaussian(rng, 6000), config=config, targets=model_like(rng, 200),
                          backend="numpy")  # fmt: skip
    path = tmp_path_factory.mktemp("bl") / "baseline"
    save_baseline(fitted, path)
    return load_baseline(path)


def _lineage_events() -> list[dict]:
    """Three vendor feeds from one upstream product, the deployer's asset from them, its
    model, whose syndicated output the upstream product's refresh re-ingests."""
    up, asset, model = (
        ("vendor-x", "market-product"),
        ("deployer", "news-inputs"),
        ("models", "deployer-llm"),
    )
    events = [ev("vendor-x.build", [ds("raw", "wire")], [ds(*up)])]
    events += [ev(f"feed-{i}.pull", [ds(*up)], [ds("feeds", f"vendor-{i}")]) for i in range(3)]
    events.append(ev("indep-1", [ds("raw", "own-1")], [ds("feeds", "indep-1")]))
    sources = [ds("feeds", f"vendor-{i}") for i in range(3)] + [ds("feeds", "indep-1")]
    events.append(ev("deployer.ingest", sources, [ds(*asset)]))
    events.append(ev("deployer.train", [ds(*asset)], [ds(*model, model="deployer-llm")]))
    events.append(ev("deployer.infer", [ds(*model)], [ds("syndication", "commentary")]))
    events.append(ev("vendor-x.refresh", [ds(*up), ds("syndication", "commentary")], [ds(*up)]))
    events.append(ev("feed-0.pull", [ds(*up)], [ds("feeds", "vendor-0")]))
    events.append(ev("deployer.ingest", [ds("feeds", "vendor-0")], [ds(*asset)]))
    events.append(ev("deployer.train", [ds(*asset)], [ds(*model)]))
    return events  # fmt: skip


def _attribution_job(directory: Path) -> Path:
    """A finished Tier 4 job's files (results.parquet in the job's schema, summary.json)."""
    directory.mkdir()
    p = [0.001, 0.002, 0.004, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    q = [0.01, 0.01, 0.0133, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    rows = [{"row": i, "id": f"text-{i}", "p": p[i], "attribution": 1 - p[i], "q_value": q[i],
             "discovery": q[i] <= 0.05} for i in range(10)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows, schema=result_schema(final=True)),
                   directory / "results.parquet")  # fmt: skip
    summary = {
        "model_id": "deployer-llm",
        "fdr_q": 0.05,
        "primary_score": "min_k_pp",
        "results_sha256": "0" * 64,
        "note": "membership inference is evidence, not proof",
    }
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def incident_and_ledger(baseline, ledger, tmp_path, keyring):
    # Tier 3: a real monitor halts; the alert listener queues triggers.
    triggers = AlertTriggers()
    monitor = Monitor(ledger=ledger, actor="svc:scoring", series=SeriesWriter(tmp_path / "s"),
                      listeners=[triggers])  # fmt: skip
    monitor.add_asset("fx-news", baseline, WindowPolicy(N), backend="numpy")
    rng = np.random.default_rng(1)
    stream = np.concatenate([gaussian(rng, N * 6), model_like(rng, N * 5)])
    monitor.observe("fx-news", stream, encoder_id="enc-a")
    # Tier 2: the lineage graph, ingested through the ledger.
    with ThreadPoolExecutor(1) as pool:
        service = LineageService(SQLiteLineageStore(tmp_path / "lineage.db"), ledger, pool,
                                 actor="svc:ingest")  # fmt: skip
        service.ingest_now(_lineage_events())
        # Tier 1: one source with nothing to show for itself.
        opaque = combine("feeds:indep-1", [CheckResult("openlineage", "absent", ("none",), "t",
                                                       None)])  # fmt: skip
        ratings = rating_evidence([opaque])
        history = threshold_history(ledger, "fx-news")
        lineage = lineage_evidence(service.graph, service.store, "dataset:deployer:news-inputs",
                                   ratings=ratings)  # fmt: skip
        service.store.close()
    batch = attribution_evidence(_attribution_job(tmp_path / "attr-job"))
    evidence = Evidence("fx-news", lineage=lineage,
                        divergence=divergence_evidence(tmp_path / "s", "fx-news",
                                                       thresholds=history),
                        attribution=[batch], thresholds=history, ratings=ratings)  # fmt: skip
    store = IncidentStore(tmp_path / "incidents.db")
    manager = IncidentManager(ledger, store, parse_policy(policy_text()))
    found = [*triggers.take(), *triggers_from_lineage(lineage, "fx-news"),
             trigger_from_attribution(batch, "fx-news")]  # fmt: skip
    incident = manager.consider(found, evidence, actor="svc:incidents")
    manager.acknowledge(incident.id, actor="token:analyst", note="on it")
    yield manager.get(incident.id), ledger, manager
    store.close()


def test_the_artifact_validates_and_its_evidence_bundle_verifies(incident_and_ledger, keyring):
    incident, ledger, _ = incident_and_ledger
    # the policy opens on tier3 "halt": the watch alerts before it are evidence, not triggers
    assert {t.kind for t in incident.triggers} == {
        "tier3.halt",
        "tier2.re-entry",
        "tier2.convergence",
        "tier4.discoveries",
    }
    inputs = incident.confidence.inputs
    assert inputs.re_entry and inputs.convergence and inputs.opaque_source
    assert inputs.tier4_batch_min_q == (0.01,) and len(inputs.tier3_window_p) >= 3
    artifact = build_artifact(incident, ledger)
    validate_artifact(artifact)
    verdict = verify_bundle(artifact["ledger"]["bundle"], keyring.public_keys())
    assert verdict.valid, verdict.line()
    actions = [t["action"] for t in artifact["timeline"]]
    assert actions[:2] == ["alert.halt", "incident.open"]
    assert actions[-1] == "incident.acknowledge"
    assert {t["action"] for t in artifact["evidence"]["thresholds"]} == {
        "alert.watch",
        "alert.halt",
    }
    assert set(artifact["regulatory"]["citations"]) == set(CITATIONS)

    broken = copy.deepcopy(artifact)
    broken["confidence"]["band"] = "certain"
    with pytest.raises(IncidentError) as info:
        validate_artifact(broken)
    assert info.value.field == "$.confidence.band"
    del broken["confidence"]["band"]
    broken.pop("halts")
    with pytest.raises(IncidentError, match="'halts' is a required property"):
        validate_artifact(broken)


def test_the_report_in_headless_chromium_makes_no_request(incident_and_ledger, tmp_path):
    incident, ledger, _ = incident_and_ledger
    node, chromium = shutil.which("node"), Path("/usr/bin/chromium")
    if node is None or not chromium.exists() or not (ROOT / "web/node_modules").is_dir():
        pytest.skip("needs node, Debian's chromium and web/node_modules (make setup)")
    html = render_html(build_artifact(incident, ledger))
    OUTPUT.mkdir(exist_ok=True)
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    (OUTPUT / "incident-report.html").write_text(html, encoding="utf-8")
    shot = OUTPUT / "incident-report.png"  # looked at by a person when the report changes
    done = subprocess.run([node, str(ROOT / "tests/incidents_report_browser.mjs"), str(page),
                           str(shot), str(ROOT / "web")], capture_output=True, text=True,
                          timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["requests"] == [page.resolve().as_uri()]  # the page itself, nothing else
    assert seen["problems"] == []  # no CSP violation, no error
    assert seen["styleApplied"] == "solid"  # the stylesheet's hash matches its CSP
    assert seen["state"] == "acknowledged" and seen["confidence"].startswith("confidence 0.99")
    assert seen["svgs"] >= 2 and seen["lineageNodes"] > 8 and seen["divergencePoints"] == 11
    assert set(seen["cites"]) == set(CITATIONS)
    assert seen["bundleEntries"] == len(build_artifact(incident, ledger)["ledger"]["seqs"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and seen["height"] > 2000

    pdf = render_pdf(page, OUTPUT / "incident-report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
