"""The monitor end to end with a real ledger: windows, series, alert records, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from divergence_data import DIM, gaussian, model_like
from lineage_audit.divergence import (
    BaselineConfig,
    EncoderMismatch,
    InputError,
    Level,
    fit_baseline,
    load_baseline,
    save_baseline,
)
from lineage_audit.divergence.monitor import Monitor, WindowPolicy
from lineage_audit.divergence.series import SeriesWriter, read_series
from lineage_audit.ledger import verify_ledger

N = 32


@pytest.fixture(scope="module")
def saved_baseline(tmp_path_factory):
    rng = np.random.default_rng(7)
    config = BaselineConfig(
        window_sizes=(N, 48), null_windows=2000, arl_windows=200, encoder_id="enc-a"
    )
    baseline = fit_baseline(
        gaussian(rng, 6000), config=config, targets=model_like(rng, 200), backend="numpy"
    )
    path = tmp_path_factory.mktemp("bl") / "baseline"
    save_baseline(baseline, path)
    return load_baseline(path)


def _stream(rng, clean_windows, shifted_windows):
    return np.concatenate([gaussian(rng, N * clean_windows), model_like(rng, N * shifted_windows)])


def test_sustained_shift_halts_after_n_windows_and_every_transition_is_recorded(
    saved_baseline, ledger, db_path, tmp_path, keyring
):
    seen_sizes = []

    def listener(event):
        # write-ahead: the intent of this alert is already durable when listeners run
        seen_sizes.append(ledger.size)
        last = list(ledger.entries())[-1]
        assert last.seq == event.ledger_seq and event.actor in ("svc:test", "user:risk-officer")
        assert last.statement()["predicate"]["action"] == f"alert.{event.transition.after.value}"

    monitor = Monitor(ledger=ledger, actor="svc:test", series=SeriesWriter(tmp_path / "s"),
                      listeners=[listener])  # fmt: skip
    monitor.add_asset("news", saved_baseline, WindowPolicy(N), backend="numpy")
    rng = np.random.default_rng(1)
    results = monitor.observe("news", _stream(rng, 4, 4)[: N * 8 - 5], encoder_id="enc-a")
    results += monitor.observe("news", model_like(rng, 5 + N))  # completes windows 7 and 8
    levels = [r.level for r in results]
    assert levels[:4] == ["ok"] * 4
    assert levels[4:7] == ["watch", "watch", "halt"]  # halt exactly at the 3rd shifted window
    assert levels[7:] == ["halt", "halt"]
    actions = [e.statement()["predicate"]["action"] for e in ledger.entries()]
    assert actions == ["alert.watch", "alert.watch", "alert.halt", "alert.halt"]  # intent+outcome
    intent = list(ledger.entries())[2].statement()["predicate"]
    assert intent["actor"] == "svc:test"
    assert intent["asset"] == "news" and intent["to"] == "halt"
    assert intent["baseline_version"] == saved_baseline.version
    subject = list(ledger.entries())[2].statement()["subject"][0]
    assert subject["digest"]["sha256"] == saved_baseline.manifest_sha256
    assert seen_sizes == [1, 3]
    series = read_series(tmp_path / "s")
    assert series.num_rows == 9 and series.column("level").to_pylist() == levels
    assert set(series.column("baseline_version").to_pylist()) == {saved_baseline.version}
    assert all(v == saved_baseline.bandwidth.id for v in series.column("bandwidth_id").to_pylist())
    reset = monitor.reset("news", actor="user:risk-officer", reason="reviewed")
    assert reset.after is Level.OK and ledger.size == 6
    assert verify_ledger(db_path, keyring.public_keys()).valid


def test_strided_and_time_windows(saved_baseline):
    monitor = Monitor()
    monitor.add_asset("a", saved_baseline, WindowPolicy(N, stride=16), backend="numpy")
    rng = np.random.default_rng(2)
    results = monitor.observe("a", gaussian(rng, 100))
    assert [(r.start_row, r.end_row) for r in results] == [(0, 32), (16, 48), (32, 64),
                                                            (48, 80), (64, 96)]  # fmt: skip
    sparse_windows = Monitor()
    sparse_windows.add_asset("g", saved_baseline, WindowPolicy(N, stride=50), backend="numpy")
    got = sparse_windows.observe("g", gaussian(rng, 60)) + sparse_windows.observe(
        "g", gaussian(rng, 60)
    )  # stride > size: rows between windows are skipped, positions stay true
    assert [(r.start_row, r.end_row) for r in got] == [(0, 32), (50, 82)]
    assert sparse_windows.observe("g", gaussian(rng, 12))[0].start_row == 100
    timed = Monitor()
    timed.add_asset("t", saved_baseline, WindowPolicy(N, duration_ns=100, stride_ns=100))
    times = np.arange(0, 400, 2)  # 50 rows per 100 ns
    out = timed.observe("t", gaussian(rng, 150), times[:150])
    assert [(r.start_time_ns, r.rows, r.scored_rows) for r in out] == [(0, 50, 48), (100, 50, 48)]
    out = timed.observe("t", gaussian(rng, 50), times[150:]) + timed.flush("t")
    assert [(r.start_time_ns, r.rows) for r in out] == [(200, 50), (300, 50)]
    sparse = timed.observe("t", gaussian(rng, 3), [1000, 1010, 1020]) + timed.flush("t")
    assert [r.status for r in sparse] == ["insufficient"] * len(sparse)


def test_bad_batches_change_nothing(saved_baseline, ledger, tmp_path):
    monitor = Monitor(ledger=ledger, series=SeriesWriter(tmp_path / "s"))
    asset = monitor.add_asset("a", saved_baseline, WindowPolicy(N), backend="numpy")
    rng = np.random.default_rng(3)
    monitor.observe("a", gaussian(rng, 20))
    before = (ledger.size, asset._offset, len(asset._rows), asset.windows)
    bad = gaussian(rng, 40)
    bad[7, 3] = np.nan
    cases = [
        (bad, InputError, r"embeddings\[7\]\[3\]: not a finite number"),
        (gaussian(rng, 40, dim=DIM + 1), EncoderMismatch, "dimension 17"),
        (np.zeros((0, DIM)), InputError, "empty"),
        (np.zeros((5, DIM)), InputError, r"embeddings\[0\]: zero vector"),
        (gaussian(rng, 40)[0], InputError, "2-D"),
    ]
    for batch, error, message in cases:
        with pytest.raises(error, match=message):
            monitor.observe("a", batch)
    with pytest.raises(EncoderMismatch, match="'enc-b'"):
        monitor.observe("a", gaussian(rng, 40), encoder_id="enc-b")
    with pytest.raises(InputError, match="unknown asset class"):
        monitor.observe("nope", gaussian(rng, 40))
    assert (ledger.size, asset._offset, len(asset._rows), asset.windows) == before
    assert list((tmp_path / "s").glob("part-*")) == []


def test_time_order_and_uncalibrated_sizes_are_refused(saved_baseline):
    timed = Monitor()
    timed.add_asset("t", saved_baseline, WindowPolicy(N, duration_ns=10))
    with pytest.raises(InputError, match=r"times\[2\]: earlier"):
        timed.observe("t", gaussian(np.random.default_rng(0), 3), [5, 6, 4])
    with pytest.raises(InputError, match="times required"):
        timed.observe("t", gaussian(np.random.default_rng(0), 3))
    with pytest.raises(Exception, match=r"calibrated for \[32, 48\]"):
        Monitor().add_asset("c", saved_baseline, WindowPolicy(40))


def test_series_parts_are_complete_parquet_files(saved_baseline, tmp_path):
    monitor = Monitor(series=SeriesWriter(tmp_path / "s"))
    monitor.add_asset("a", saved_baseline, WindowPolicy(N), backend="numpy")
    rng = np.random.default_rng(4)
    for _ in range(3):
        monitor.observe("a", gaussian(rng, N))
    parts = sorted((tmp_path / "s").glob("part-*.parquet"))
    assert len(parts) == 3 and not list((tmp_path / "s").glob(".*tmp"))
    table = pq.read_table(parts[0])
    for column in ("mmd2", "z", "p", "effect", "lambda_hat", "bandwidth_id", "baseline_version"):
        assert column in table.column_names
    assert json.loads(json.dumps(table.to_pylist()[0], default=str))["asset"] == "a"


def test_a_failing_listener_is_recorded_and_scored_windows_still_reach_the_series(
    saved_baseline, ledger, tmp_path
):
    def refuse(event):
        raise RuntimeError("pager unreachable")

    monitor = Monitor(ledger=ledger, series=SeriesWriter(tmp_path / "s"), listeners=[refuse])
    monitor.add_asset("a", saved_baseline, WindowPolicy(N), backend="numpy")
    rng = np.random.default_rng(9)
    with pytest.raises(RuntimeError, match="pager unreachable"):
        monitor.observe("a", np.concatenate([gaussian(rng, N), model_like(rng, N)]))
    outcome = list(ledger.entries())[-1].statement()["predicate"]
    assert outcome["status"] == "failed" and "pager unreachable" in outcome["error"]["message"]
    assert read_series(tmp_path / "s").column("level").to_pylist() == ["ok", "watch"]
