"""The Tier 4 batch job and its CLI, with the tiny GPT-2 saved as a model directory, a real
signed SQLite ledger, Parquet/JSONL inputs: end to end, recomputing scores from the results
file, resuming after a failure and after a SIGKILL with no lost or duplicated row, and every
bad input answered with ``error: ...`` (exit 2) and nothing recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from attribution_models import save_model, torch_threads, trained_tiny
from lineage_audit.attribution import (
    AttributionJob,
    ReferenceSet,
    TextSource,
    compute_scores,
    evidence_from_row,
    read_results,
)
from lineage_audit.attribution.calibration import bucket_of
from lineage_audit.ledger import Ledger
from lineage_audit.ledger.verify_db import verify_ledger

pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="the realtext extra is not installed")
from attribution_server import LogprobServer  # needs torch
from lineage_audit.attribution.local import TransformersScorer

SCORES = ("loss", "zlib", "min_k", "min_k_plus_plus", "recall")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return trained_tiny()


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    """A model directory, human texts, a ReCaLL prefix file and a reference set built with
    the CLI (its own ledger), shared by the module's tests."""
    root = tmp_path_factory.mktemp("attribution")
    model_dir = save_model(tiny.model, tiny.tokenizer, root / "tiny-gpt2")
    human = _jsonl(root / "human.jsonl", [{"text": t} for t in tiny.human])
    prefix = _jsonl(root / "prefix.jsonl", [{"text": t} for t in tiny.prefix])
    texts = tiny.members[:40] + tiny.nonmembers[:40]
    rows = [{"id": f"doc-{i:03d}", "text": t} for i, t in enumerate(texts)]
    pq.write_table(pa.Table.from_pylist(rows), root / "input.parquet")
    return {"root": root, "model": model_dir, "human": human, "prefix": prefix, "texts": texts}


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    from lineage_audit.cli import main
    from lineage_audit.ledger.keys import generate_keyring, write_keyring

    root = setup["root"]
    write_keyring(generate_keyring("lineage-audit.test/log"), root / "calib-keys")
    code = main([
        "attribute", "calibrate", str(setup["human"]), "--out", str(root / "ref.json"),
        "--version", "synthetic-2026.11", "--model", str(setup["model"]), "--device", "cpu",
        "--recall-prefix", str(setup["prefix"]), "--db", str(root / "calib.db"),
        "--keys", str(root / "calib-keys"), "--actor", "tester",
    ])  # fmt: skip
    assert code == 0
    return root / "ref.json"


def _run_args(setup, reference, out, db, keys, *extra):
    return (
        "attribute", "run", setup["root"] / "input.parquet", "--reference", reference,
        "--out", out, "--model", setup["model"], "--device", "cpu", "--db", db, "--keys", keys,
        "--actor", "tester", *extra,
    )  # fmt: skip


def _actions(db: Path) -> list[tuple[str, str]]:
    with Ledger.open(db) as ledger:
        return [(e.kind, e.statement()["predicate"]["action"]) for e in ledger.entries()]


# --- calibrate and show ---------------------------------------------------------------------


def test_calibrate_records_the_reference_set_in_the_ledger(setup, reference, cli) -> None:
    ref = ReferenceSet.load(reference)
    (model_id,) = ref.models
    assert model_id.startswith("tiny-gpt2@sha256:") and ref.version == "synthetic-2026.11"
    assert set(ref.models[model_id].scores) == set(SCORES)
    assert ref.models[model_id].score_config.recall_prefix == trained_tiny().prefix
    with Ledger.open(setup["root"] / "calib.db") as ledger:
        outcome = list(ledger.entries())[-1].statement()["predicate"]
    assert outcome["action"] == "attribution.calibrate" and outcome["status"] == "succeeded"
    assert outcome["result"]["reference_sha256"] == ref.sha256
    code, out, err = cli("attribute", "show", reference, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sha256"] == ref.sha256 and summary["texts"] == len(trained_tiny().human)
    assert summary["models"][model_id]["score_config"]["recall_prefix"] == 2


# --- the run ----------------------------------------------------------------------------------


def test_run_end_to_end(setup, reference, cli, tmp_path, keys_dir, pubkeys_file) -> None:
    db = tmp_path / "l.db"
    code, out, err = cli(*_run_args(setup, reference, tmp_path / "out", db, keys_dir,
                                    "--fdr", "0.1", "--part-rows", "16"))  # fmt: skip
    assert code == 0, err
    assert "attributed 80 rows (80 scored now, 0 from earlier runs)" in out
    assert "note: Membership inference is evidence, not proof" in out
    assert "at most 1% false positives" in out
    table = read_results(tmp_path / "out")
    rows = table.to_pylist()
    ref = ReferenceSet.load(reference)
    assert [r["row"] for r in rows] == list(range(80))
    assert [r["id"] for r in rows] == [f"doc-{i:03d}" for i in range(80)]
    assert {r["reference_sha256"] for r in rows} == {ref.sha256}
    # Members (rows 0-39) are flagged, non-members rarely.
    flagged = [r["row"] for r in rows if r["discovery"]]
    assert sum(r < 40 for r in flagged) >= 30 and sum(r >= 40 for r in flagged) <= 4
    assert all(r["attribution"] == pytest.approx(1 - r["p_min_k_plus_plus"]) for r in rows)
    # Every score recomputes from the stored per-token evidence alone.
    config = ref.models[rows[0]["model_id"]].score_config
    for r in rows[:10]:
        again = compute_scores(evidence_from_row(r), config)
        for name in SCORES:
            assert again[name] == pytest.approx(r[name], rel=1e-12), name
        assert r["bucket"] == ref.bucket_names[int(bucket_of(r["n_scored"], ref.bucket_edges))]
    metadata = pq.read_schema(tmp_path / "out" / "results.parquet").metadata
    assert b"evidence, not proof" in metadata[b"lineage-audit.note"]
    # The ledger: one write-ahead action whose outcome is the summary; it verifies.
    assert _actions(db) == [("intent", "attribution.run"), ("outcome", "attribution.run")]
    with Ledger.open(db) as ledger:
        result = list(ledger.entries())[-1].statement()["predicate"]["result"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result == summary and summary["discoveries"] == len(flagged)
    assert verify_ledger(db, pubkeys_file).valid
    # Running again on a finished directory does nothing.
    code, out, _ = cli(*_run_args(setup, reference, tmp_path / "out", db, keys_dir,
                                  "--fdr", "0.1", "--part-rows", "16"))  # fmt: skip
    assert code == 0 and len(_actions(db)) == 2


def _job(setup, reference, out: Path, **extra) -> AttributionJob:
    scorer = TransformersScorer.from_pretrained(setup["model"], device="cpu")
    source = TextSource(setup["root"] / "input.parquet")
    return AttributionJob(source, scorer, ReferenceSet.load(reference), out, part_rows=8, **extra)


def test_resume_after_a_failure_loses_and_repeats_nothing(setup, reference, tmp_path, keyring):
    with Ledger.open(tmp_path / "clean.db", keyring) as ledger:
        _job(setup, reference, tmp_path / "clean").run(ledger, "tester")
    clean = read_results(tmp_path / "clean")

    def interrupt(done: int) -> None:
        if done >= 24:
            raise RuntimeError("simulated crash after 3 parts")

    with Ledger.open(tmp_path / "l.db", keyring) as ledger:
        with pytest.raises(RuntimeError, match="simulated crash"):
            _job(setup, reference, tmp_path / "out", after_part=interrupt).run(ledger, "tester")
        assert len(list((tmp_path / "out" / "parts").glob("part-*.parquet"))) == 3
        assert not (tmp_path / "out" / "results.parquet").exists()
        summary = _job(setup, reference, tmp_path / "out").run(ledger, "tester")
        entries = [e.statement()["predicate"] for e in ledger.entries()]
    assert summary["resumed_rows"] == 24 and summary["scored_this_run"] == 56
    assert [(e["action"], e.get("status")) for e in entries] == [
        ("attribution.run", None), ("attribution.run", "failed"),
        ("attribution.run", None), ("attribution.run", "succeeded"),
    ]  # fmt: skip
    assert entries[1]["error"]["message"] == "simulated crash after 3 parts"
    assert entries[2]["resumed_rows"] == 24
    resumed = read_results(tmp_path / "out")
    assert resumed.column("row").to_pylist() == list(range(80))
    for name in (*SCORES, "p", "q_value"):
        np.testing.assert_allclose(resumed.column(name).to_numpy(), clean.column(name).to_numpy())
    assert resumed.column("discovery").to_pylist() == clean.column("discovery").to_pylist()


def test_sigkill_mid_job_then_resume(setup, reference, tiny, tmp_path, keys_dir, cli, helpers):
    big = [{"id": i, "text": t} for i, t in enumerate(tiny.chain.texts(1200, seed=21))]
    _jsonl(tmp_path / "big.jsonl", big)
    out, db = tmp_path / "out", tmp_path / "l.db"
    args = [
        "attribute", "run", str(tmp_path / "big.jsonl"), "--reference", str(reference),
        "--out", str(out), "--model", str(setup["model"]), "--device", "cpu",
        "--part-rows", "8", "--db", str(db), "--keys", str(keys_dir), "--quiet",
    ]  # fmt: skip
    env = {**helpers.cli_env(), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "lineage_audit", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while len(list((out / "parts").glob("part-*.parquet"))) < 3:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no part files written"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "results.parquet").exists(), "the job finished before the kill"
    done_before = sum(pq.read_metadata(p).num_rows for p in (out / "parts").glob("part-*.parquet"))
    assert 0 < done_before < 1200
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert f"{done_before} from earlier runs" in stdout
    table = read_results(out)
    assert table.column("row").to_pylist() == list(range(1200))
    assert table.column("id").to_pylist() == [str(i) for i in range(1200)]
    assert not list((out / "parts").glob(".*.tmp"))
    # The killed run's intent has no outcome; the resumed run's does; the ledger verifies.
    assert _actions(db) == [("intent", "attribution.run")] * 2 + [("outcome", "attribution.run")]
    # Spot-check: rows scored before and after the kill equal a fresh scoring.
    scorer = TransformersScorer.from_pretrained(setup["model"], device="cpu")
    from lineage_audit.attribution import score_texts

    config = ReferenceSet.load(reference).models[scorer.model_id].score_config
    picks = [0, done_before - 1, done_before, 1199]
    fresh = score_texts(scorer, [big[i]["text"] for i in picks], config)
    stored = table.take(picks).to_pylist()
    for item, row in zip(fresh, stored, strict=True):
        assert item.scores["min_k"] == pytest.approx(row["min_k"], abs=1e-6)


def test_an_openai_compatible_server_as_the_model(setup, tiny, tmp_path, keys_dir, cli) -> None:
    with LogprobServer(tiny.model, tiny.tokenizer) as server:
        common = ("--endpoint", server.url, "--served-model", "tiny-gpt2", "--db",
                  tmp_path / "l.db", "--keys", keys_dir)  # fmt: skip
        code, out, err = cli("attribute", "calibrate", setup["human"], "--out",
                             tmp_path / "ref.json", "--version", "http-1", *common)  # fmt: skip
        assert code == 0, err
        code, out, err = cli("attribute", "run", setup["root"] / "input.parquet", "--reference",
                             tmp_path / "ref.json", "--out", tmp_path / "out", "--json",
                             *common)  # fmt: skip
        assert code == 0, err
    summary = json.loads(out)
    assert summary["model_id"] == "http:tiny-gpt2" and summary["primary_score"] == "min_k"
    assert summary["scores"] == ["loss", "zlib", "min_k"]
    assert summary["discoveries"] >= 30
    table = read_results(tmp_path / "out")
    assert table.column("token_mu").null_count == 80  # not available over HTTP
    assert table.column("tokens").null_count == 0


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_before_anything_is_recorded(
    setup, reference, tmp_path, keys_dir, cli
):
    db = tmp_path / "l.db"

    def run(input_path, *extra, ref=reference, out=tmp_path / "out"):
        return cli("attribute", "run", input_path, "--reference", ref, "--out", out,
                   "--model", setup["model"], "--device", "cpu", "--db", db, "--keys",
                   keys_dir, *extra)  # fmt: skip

    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": "kalo mi"}, {"text": "ne ru"}, {"text": " "}])
    code, _, err = run(bad)
    assert code == 2 and "error: bad.jsonl line 3.text: empty text: nothing to score" in err
    dup = _jsonl(
        tmp_path / "dup.jsonl", [{"id": "a", "text": "kalo mi"}, {"id": "a", "text": "x y"}]
    )
    code, _, err = run(dup)
    assert code == 2 and "error: dup.jsonl row 1.id: duplicate id (also row 0)" in err
    (tmp_path / "notjson.jsonl").write_text('{"text": "a b"}\n{not json\n')
    code, _, err = run(tmp_path / "notjson.jsonl")
    assert code == 2 and "error: notjson.jsonl line 2: not valid JSON" in err
    code, _, err = run(setup["root"] / "input.parquet", "--text-column", "body")
    assert code == 2 and "error: --text-column: no such column in input.parquet" in err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(
        reference.read_bytes().replace(b'"version":"synthetic', b'"version":"Synthetic')
    )
    code, _, err = run(setup["root"] / "input.parquet", ref=corrupt)
    assert code == 2 and "content_sha256: does not match the content" in err
    code, _, err = run(setup["root"] / "input.parquet", "--primary", "ref_diff")
    assert code == 2 and "error: primary: not available here" in err
    code, _, err = cli("attribute", "run", setup["root"] / "input.parquet", "--reference",
                       reference, "--out", tmp_path / "o", "--db", db,
                       "--keys", keys_dir)  # fmt: skip
    assert code == 2 and "error: --model: give exactly one of --model and --endpoint" in err
    assert not db.exists()  # nothing above opened (or created) the ledger
    # A finished or interrupted job's directory only resumes with the same settings.
    _job(setup, reference, tmp_path / "out2", primary="min_k").validate()
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "job.json").write_text(json.dumps({"reference_sha256": "0" * 64}))
    code, _, err = run(setup["root"] / "input.parquet", out=tmp_path / "out2")
    assert code == 2 and "error: --out: holds a job with a different input_sha256" in err
    with TransformersScorer.from_pretrained(setup["model"], device="cpu") as scorer:
        assert scorer.model_id in ReferenceSet.load(reference).models
