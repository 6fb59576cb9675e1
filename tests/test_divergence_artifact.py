"""The baseline artifact: round trip, content-derived version, refusal of any alteration,
and the fit recorded through the ledger's write-ahead API."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from divergence_data import gaussian, model_like
from lineage_audit.divergence import (
    ArtifactError,
    BaselineConfig,
    CusumRule,
    fit_baseline,
    load_baseline,
    save_baseline,
)
from lineage_audit.divergence.inputs import EmbeddingTable
from lineage_audit.divergence.jobs import FitJob, verify_baseline_evidence
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy

CONFIG = BaselineConfig(
    window_sizes=(32,), null_windows=1000, arl_windows=100, encoder_id="enc", halt=CusumRule()
)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    return fit_baseline(
        gaussian(rng, 3000), config=CONFIG, targets=model_like(rng, 100), backend="numpy"
    )


@pytest.fixture
def artifact(fitted, tmp_path):
    return save_baseline(fitted, tmp_path / "bl")


def test_round_trip_preserves_every_score(fitted, artifact):
    loaded = load_baseline(artifact)
    assert loaded.version == fitted.version and loaded.version.startswith("bl-")
    assert loaded.manifest_sha256 == fitted.manifest_sha256
    np.testing.assert_array_equal(loaded.reference, fitted.reference)
    np.testing.assert_array_equal(loaded.nulls[32].statistics, fitted.nulls[32].statistics)
    assert loaded.config == fitted.config and loaded.config.halt.to_json()["kind"] == "cusum"
    assert loaded.witness == fitted.witness and loaded.arl0 == fitted.arl0
    window = gaussian(np.random.default_rng(5), 32)
    a = AssetMonitor("a", fitted, WindowPolicy(32), backend="numpy").evaluate(window)
    b = AssetMonitor("a", loaded, WindowPolicy(32), backend="numpy").evaluate(window)
    assert (a.mmd2, a.z, a.lambda_hat) == (b.mmd2, b.z, b.lambda_hat)


def test_same_inputs_give_the_same_version(fitted, tmp_path):
    rng = np.random.default_rng(0)  # the fixture's data, drawn again
    rows, targets = gaussian(rng, 3000), model_like(rng, 100)
    again = fit_baseline(rows, config=CONFIG, targets=targets, backend="numpy")
    save_baseline(again, tmp_path / "again")
    save_baseline(fitted, tmp_path / "first")
    assert again.version == fitted.version
    other = fit_baseline(rows[:2900], config=CONFIG, targets=targets, backend="numpy")
    save_baseline(other, tmp_path / "other")
    assert other.version != fitted.version


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _flip_byte(d / "reference.arrow", 4000), "reference.arrow: SHA-256"),
        (lambda d: _flip_byte(d / "targets.arrow", 900), "targets.arrow: SHA-256"),
        (
            lambda d: (d / "null.parquet").write_bytes((d / "null.parquet").read_bytes()[:-100]),
            "null.parquet: .* bytes, manifest says",
        ),
        (lambda d: (d / "reference.arrow").unlink(), "reference.arrow: missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json: missing"),
    ],
)
def test_altered_artifacts_are_refused(artifact, mutate, message):
    mutate(artifact)
    with pytest.raises(ArtifactError, match=message):
        load_baseline(artifact)


def test_an_edited_manifest_is_refused_even_with_consistent_files(artifact):
    path = artifact / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["bandwidth"]["sigma"] *= 1.5  # would silently change every score
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest was altered"):
        load_baseline(artifact)


def test_save_refuses_to_overwrite_and_leaves_no_staging(fitted, artifact):
    with pytest.raises(ArtifactError, match="already exists"):
        save_baseline(fitted, artifact)
    assert [p.name for p in artifact.parent.iterdir()] == ["bl"]
    shutil.rmtree(artifact)
    with pytest.raises(ArtifactError, match="not found"):
        load_baseline(artifact)


def test_fit_job_is_a_write_ahead_ledger_action(ledger, tmp_path):
    rng = np.random.default_rng(1)
    source = tmp_path / "emb.npy"
    np.save(source, gaussian(rng, 3000))
    table = EmbeddingTable(np.load(source), None, str(source))
    baseline = FitJob(table, tmp_path / "out", CONFIG).run(ledger, "user:alice")
    intent, outcome = (e.statement() for e in ledger.entries())
    assert intent["predicate"]["action"] == "baseline.fit"
    assert intent["predicate"]["actor"] == "user:alice"
    assert intent["subject"][0]["name"] == "embeddings:emb.npy"
    assert outcome["predicate"]["status"] == "succeeded"
    assert outcome["predicate"]["result"]["version"] == baseline.version
    assert outcome["predicate"]["result"]["manifest_sha256"] == baseline.manifest_sha256
    assert load_baseline(tmp_path / "out").manifest_sha256 == baseline.manifest_sha256
    # The job fits the rows it validated (no second normalised copy): the same baseline as
    # fitting the raw file's rows directly.
    direct = fit_baseline(table.vectors, config=CONFIG, source=str(source))
    np.testing.assert_array_equal(direct.reference, baseline.reference)
    assert (direct.bandwidth, direct.xx) == (baseline.bandwidth, baseline.xx)
    for size, null in baseline.nulls.items():
        np.testing.assert_array_equal(direct.nulls[size].statistics, null.statistics)


def test_artifact_verifies_offline_against_its_ledger_evidence(
    ledger, tmp_path, keyring, other_keyring
):
    rng = np.random.default_rng(3)
    table = EmbeddingTable(gaussian(rng, 3000), None, str(tmp_path / "emb.npy"))
    np.save(tmp_path / "emb.npy", table.vectors)
    baseline = FitJob(table, tmp_path / "out", CONFIG).run(ledger, "user:alice")
    message = verify_baseline_evidence(tmp_path / "out", keyring.public_keys())
    assert f"baseline {baseline.version} matches the signed baseline.fit outcome" in message
    with pytest.raises(ArtifactError, match=r"ledger-evidence\.json: INVALID"):
        verify_baseline_evidence(tmp_path / "out", other_keyring.public_keys())
    manifest = tmp_path / "out" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"asset_class"', '"asset_class" ', 1))
    with pytest.raises(ArtifactError, match="is not the one the ledger recorded at seq 1"):
        verify_baseline_evidence(tmp_path / "out", keyring.public_keys())
    (tmp_path / "out" / "ledger-evidence.json").unlink()
    with pytest.raises(ArtifactError, match="carries no ledger evidence"):
        verify_baseline_evidence(tmp_path / "out", keyring.public_keys())


def test_fit_job_with_bad_input_writes_nothing(ledger, tmp_path):
    bad = gaussian(np.random.default_rng(2), 3000)
    bad[1234, 5] = np.inf
    table = EmbeddingTable(bad, None, "mem")
    with pytest.raises(Exception, match=r"input\[1234\]\[5\]: not a finite number"):
        FitJob(table, tmp_path / "out", CONFIG).run(ledger, "user:alice")
    assert ledger.size == 0 and not (tmp_path / "out").exists()
    tiny = EmbeddingTable(gaussian(np.random.default_rng(2), 100), None, "mem")
    with pytest.raises(Exception, match="calibration pool has 30 rows"):
        fit_baseline(tiny.vectors, config=CONFIG)


def test_a_fit_on_real_event_times_saves_with_its_time_ranges(tmp_path):
    """Event times in ns since the epoch exceed 2^53; the manifest (hashed as RFC 8785 JSON)
    records the reference and calibration ranges as RFC 3339 text instead."""
    rng = np.random.default_rng(3)
    start = 1_794_657_645_736_992_458  # 2026-11-14T12:00:45.736992458Z
    times = start + np.arange(3000, dtype=np.int64) * 1_000_000_000
    fitted = fit_baseline(gaussian(rng, 3000), times=times, config=CONFIG, backend="numpy")
    manifest = json.loads((save_baseline(fitted, tmp_path / "bl") / "manifest.json").read_text())
    ranges = json.dumps(manifest)
    assert "2026-11-14T12:00:45.736992458Z" in ranges
    assert str(start) not in ranges
