"""``lineage-audit baseline fit|show`` and ``lineage-audit score`` on real files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from divergence_data import gaussian, model_like
from lineage_audit.divergence import InputError, load_embeddings
from lineage_audit.divergence.series import read_series
from lineage_audit.ledger import Ledger


def _table(vectors, times=None):
    flat = pa.array(vectors.reshape(-1))
    columns = {"embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}
    if times is not None:
        columns["event_time"] = pa.array(times.astype("datetime64[ns]"))
    return pa.table(columns)


@pytest.fixture
def workdir(tmp_path, keys_dir):
    rng = np.random.default_rng(0)
    base = gaussian(rng, 4000)
    times = np.arange(4000, dtype=np.int64) * 10**9
    pq.write_table(_table(base, times[::-1].copy()), tmp_path / "base.parquet")  # unordered
    np.save(tmp_path / "targets.npy", model_like(rng, 200))
    stream = np.concatenate([gaussian(rng, 32 * 4), model_like(rng, 32 * 4)])
    with pa.OSFile(str(tmp_path / "stream.arrow"), "wb") as sink:
        table = _table(stream, np.arange(len(stream), dtype=np.int64) * 10**9)
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return tmp_path


def _fit(cli, workdir, keys_dir, *extra):
    return cli(
        "baseline", "fit", workdir / "base.parquet", "--out", workdir / "bl",
        "--window-size", "32", "--null-windows", "1000", "--arl-windows", "100",
        "--targets", workdir / "targets.npy", "--encoder-id", "enc",
        "--db", workdir / "l.db", "--keys", keys_dir, "--actor", "user:alice", *extra,
    )  # fmt: skip


def test_fit_show_and_score(cli, workdir, keys_dir):
    code, out, err = _fit(cli, workdir, keys_dir)
    assert code == 0, err
    assert "baseline bl-" in out and "ARL0 of consecutive(n=3, z=3.0)" in out
    pub = workdir / "keys.pub.json"
    assert cli("keys", "export", "--dir", keys_dir, "-o", pub)[0] == 0
    code, out, _ = cli("baseline", "show", workdir / "bl", "--json", "--pubkeys", pub)
    summary = json.loads(out)
    assert "matches the signed baseline.fit outcome at seq 1" in summary["ledger_evidence"]
    assert summary["window_sizes"] == [32] and summary["encoder_id"] == "enc"
    assert summary["witness"] is True and summary["reference_rows"] == 2800
    code, out, err = cli(
        "score", workdir / "stream.arrow", "--baseline", workdir / "bl", "--series",
        workdir / "series", "--encoder-id", "enc", "--db", workdir / "l.db", "--keys", keys_dir,
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[:5] == ["window", "rows", "n", "MMD2", "z"]
    assert "8 windows; watch 2, halt 2" in lines[-1]
    assert "ok -> watch at window 4" in err and "watch -> halt at window 6" in err
    series = read_series(workdir / "series")
    assert series.column("level").to_pylist() == ["ok"] * 4 + ["watch"] * 2 + ["halt"] * 2
    with Ledger.open(workdir / "l.db") as ledger:
        actions = [e.statement()["predicate"]["action"] for e in ledger.entries()]
    assert actions == ["baseline.fit"] * 2 + ["alert.watch"] * 2 + ["alert.halt"] * 2
    assert (workdir / "bl" / "ledger-evidence.json").exists()


def test_time_windows_from_the_cli(cli, workdir, keys_dir):
    assert _fit(cli, workdir, keys_dir)[0] == 0
    code, out, err = cli(
        "score", workdir / "stream.arrow", "--baseline", workdir / "bl", "--json",
        "--window-duration", "40s", "--db", workdir / "l.db", "--keys", keys_dir,
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["rows"] for r in rows] == [40] * 6 + [16]
    assert [r["scored_rows"] for r in rows] == [32] * 6 + [0]
    assert rows[-1]["status"] == "insufficient" and rows[-1]["z"] is None


def test_cli_errors_are_clear_and_write_nothing(cli, workdir, keys_dir):
    bad = gaussian(np.random.default_rng(1), 4000)
    bad[17, 2] = np.nan
    np.save(workdir / "bad.npy", bad)
    code, _, err = cli(
        "baseline", "fit", workdir / "bad.npy", "--out", workdir / "x", "--db", workdir / "l.db",
        "--keys", keys_dir, "--null-windows", "1000",
    )  # fmt: skip
    assert code == 2 and "error: input[17][2]: not a finite number" in err
    assert not (workdir / "l.db").exists() and not (workdir / "x").exists()
    assert _fit(cli, workdir, keys_dir)[0] == 0
    with Ledger.open(workdir / "l.db") as ledger:
        size = ledger.size
    np.save(workdir / "wide.npy", gaussian(np.random.default_rng(2), 64, dim=20))
    code, _, err = cli(
        "score", workdir / "wide.npy", "--baseline", workdir / "bl", "--db", workdir / "l.db",
        "--keys", keys_dir,
    )  # fmt: skip
    assert code == 2 and "dimension 20, baseline bl-" in err
    code, _, err = cli(
        "score", workdir / "stream.arrow", "--baseline", workdir / "bl", "--encoder-id", "other",
        "--db", workdir / "l.db", "--keys", keys_dir, "--series", workdir / "s",
    )  # fmt: skip
    assert code == 2 and "encoder 'other'" in err and not (workdir / "s").exists()
    (workdir / "bl" / "null.parquet").write_bytes(b"garbage")
    code, _, err = cli(
        "score", workdir / "stream.arrow", "--baseline", workdir / "bl", "--db", workdir / "l.db",
        "--keys", keys_dir,
    )  # fmt: skip
    assert code == 2 and "null.parquet" in err
    with Ledger.open(workdir / "l.db") as ledger:
        assert ledger.size == size
    code, _, err = _fit(cli, workdir, keys_dir, "--halt", "sometimes")
    assert code == 2 and "consecutive:N" in err


def test_loading_formats_and_their_errors(tmp_path):
    rows = gaussian(np.random.default_rng(3), 10)
    np.save(tmp_path / "a.npy", rows)
    pq.write_table(_table(rows), tmp_path / "a.parquet")
    assert load_embeddings(tmp_path / "a.npy").vectors.shape == (10, 16)
    loaded = load_embeddings(tmp_path / "a.parquet")
    np.testing.assert_array_equal(loaded.vectors, rows)
    assert loaded.times is None
    ragged = pa.table({"embedding": pa.array([[1.0, 2.0], [1.0]])})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(InputError, match=r"embedding\[1\]: rows differ in dimension"):
        load_embeddings(tmp_path / "ragged.parquet")
    (tmp_path / "trunc.parquet").write_bytes((tmp_path / "a.parquet").read_bytes()[:50])
    with pytest.raises(InputError, match="cannot read table"):
        load_embeddings(tmp_path / "trunc.parquet")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="unknown format"):
        load_embeddings(tmp_path / "x.csv")
    with pytest.raises(InputError, match="no embedding column"):
        pq.write_table(pa.table({"v": [1.0]}), tmp_path / "nocol.parquet")
        load_embeddings(tmp_path / "nocol.parquet")
