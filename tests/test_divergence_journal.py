"""The stream row journal: acknowledged rows of an incomplete window survive a crash and are
replayed into the resumed stream; torn writes are dropped, damage is refused, compaction
keeps exactly the rows a restart needs, a baseline switch's dropped rows never come back."""

from __future__ import annotations

import numpy as np
import pytest
from lineage_audit.divergence import load_baseline
from lineage_audit.divergence.journal import (
    JOURNAL_DIR,
    AssetJournal,
    JournalError,
    RowJournal,
)
from lineage_audit.divergence.monitor import Monitor, WindowPolicy
from lineage_audit.divergence.series import SeriesWriter, read_series
from lineage_audit.server.resume import replay_journals, resume_streams
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, shifted_rows

DIM = 8


def _rows(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


# --- the file format ------------------------------------------------------------------------


def test_records_round_trip_with_times_actor_and_cuts(tmp_path) -> None:
    journal = RowJournal(tmp_path).stream("news/eu")  # a name that is not a file name
    journal.add(0, _rows(1, 5), None, "token:a")
    journal.add(5, _rows(2, 3), np.arange(3, dtype=np.int64) * 10, None)
    journal.cut(4)
    journal.commit()
    contents = RowJournal(tmp_path).stream("news/eu").read()
    assert contents.cut == 4 and contents.torn_bytes == 0
    first, second = contents.records
    np.testing.assert_array_equal(first.rows, _rows(1, 5))
    assert (first.start_row, first.times, first.actor) == (0, None, "token:a")
    assert second.start_row == 5 and second.actor is None
    np.testing.assert_array_equal(second.times, [0, 10, 20])
    assert [p.name for p in tmp_path.iterdir()] == ["news%2Feu.journal"]  # one file, quoted


def test_a_torn_last_record_is_dropped_and_the_file_stays_usable(tmp_path) -> None:
    """A crash mid-write leaves part of the last record (never acknowledged: the sync comes
    before the reply). Reading drops it, says how many bytes, and truncates the file so
    later appends follow the last whole record."""
    journal = RowJournal(tmp_path).stream("news")
    journal.add(0, _rows(1, 4), None, "a")
    journal.commit()
    whole = journal.path.stat().st_size
    journal.add(4, _rows(2, 4), None, "a")
    journal.commit()
    journal.close()
    with journal.path.open("r+b") as handle:  # the second record cut short
        handle.truncate(whole + 40)
    contents = journal.read()
    assert [r.start_row for r in contents.records] == [0]
    assert contents.torn_bytes == 40
    assert journal.path.stat().st_size == whole
    journal.add(4, _rows(3, 2), None, "b")
    journal.commit()
    again = journal.read()
    assert [(r.start_row, r.actor) for r in again.records] == [(0, "a"), (4, "b")]
    # Zero-filled blocks at the end (a crash after the size grew) are torn too.
    journal.close()
    with journal.path.open("ab") as handle:
        handle.write(b"\0" * 4096)
    assert len(journal.read().records) == 2 and journal.path.stat().st_size < 4096 + whole * 2


class FailingWrites:
    """A journal file whose next ``writelines`` writes part of its data, then fails as a
    full disk does."""

    def __init__(self, handle, fail: list[bool]) -> None:
        self.handle, self.fail = handle, fail

    def writelines(self, records) -> None:
        if self.fail[0]:
            self.fail[0] = False
            self.handle.write(b"".join(records)[:100])
            self.handle.flush()
            raise OSError(28, "No space left on device")
        self.handle.writelines(records)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


def test_a_failed_write_leaves_no_garbage_and_is_retried(tmp_path, monkeypatch) -> None:
    """A write that fails halfway (disk full) is cut off again and its records kept for the
    next commit: the file never holds garbage before later records, nothing is lost."""
    journal = RowJournal(tmp_path).stream("news")
    journal.add(0, _rows(1, 4), None, "a")
    journal.commit()
    size = journal.path.stat().st_size
    fail = [True]
    handle = journal._handle
    monkeypatch.setattr(journal, "_handle", lambda: FailingWrites(handle(), fail))
    journal.add(4, _rows(2, 4), None, "b")
    with pytest.raises(OSError, match="No space left"):
        journal.commit()
    assert journal.path.stat().st_size == size  # the half-written part is gone
    journal.add(8, _rows(3, 4), None, "c")
    journal.commit()  # space again: the kept record first, then the new one
    contents = RowJournal(tmp_path).stream("news").read()
    assert [(r.start_row, r.actor) for r in contents.records] == [(0, "a"), (4, "b"), (8, "c")]
    np.testing.assert_array_equal(contents.records[1].rows, _rows(2, 4))


def test_damage_before_the_end_is_refused_and_the_file_left_alone(tmp_path) -> None:
    journal = RowJournal(tmp_path).stream("news")
    journal.add(0, _rows(1, 4), None, "a")
    journal.add(4, _rows(2, 4), None, "a")
    journal.commit()
    journal.close()
    blob = bytearray(journal.path.read_bytes())
    blob[60] ^= 0x01  # a bit flipped inside the first record's rows
    journal.path.write_bytes(bytes(blob))
    with pytest.raises(JournalError, match=r"record at byte 0 is damaged .* valid records"):
        journal.read()
    assert journal.path.read_bytes() == bytes(blob)  # nothing truncated or rewritten


def test_compaction_keeps_the_rows_a_restart_needs(tmp_path) -> None:
    journal = RowJournal(tmp_path, compact_bytes=2000).stream("news")
    for start in range(0, 60, 6):
        journal.add(start, _rows(start, 6), None, f"actor-{start}")
        journal.commit(keep_from=start // 10 * 10)  # windows of 10 rows so far
    contents = journal.read()
    assert journal.path.stat().st_size < 3000
    kept_from = contents.records[0].start_row
    assert contents.cut == kept_from > 0
    # From the kept start on, every row is there once, in order, with its actor.
    rows = np.concatenate([r.rows for r in contents.records])
    expected = np.concatenate([_rows(s, 6) for s in range(0, 60, 6)])[kept_from:]
    np.testing.assert_array_equal(rows, expected)
    assert contents.records[-1].actor == "actor-54"


# --- replay into a resumed stream ----------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return load_baseline(fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline"))


def _monitor(folder, baseline, *, journal: bool = True, policy=None) -> Monitor:
    series = folder / "series"
    monitor = Monitor(series=SeriesWriter(series),
                      journal=RowJournal(series / JOURNAL_DIR) if journal else None)  # fmt: skip
    monitor.add_asset("news", baseline, policy or WindowPolicy(N), backend="numpy")
    return monitor


def _restart(folder, baseline, **options) -> tuple[Monitor, dict]:
    """A fresh monitor on the same directories, as a restarted server builds it."""
    monitor = _monitor(folder, baseline, **options)
    resume_streams(monitor, folder / "series")
    return monitor, replay_journals(monitor)


def _batches(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [clean_rows(rng, 20), shifted_rows(rng, 20), clean_rows(rng, 20), shifted_rows(rng, 9)]


def test_acknowledged_rows_of_an_incomplete_window_survive_a_crash(tmp_path, baseline) -> None:
    """Rows acknowledged (observe returned) but not yet in a window are replayed after a
    crash: the windows after the restart are the ones an uninterrupted stream gives."""
    batches = _batches(1)
    straight = _monitor(tmp_path / "straight", baseline, journal=False)
    expected = [w for b in batches for w in straight.observe("news", b, encoder_id=ENCODER)]

    crashed = _monitor(tmp_path / "crashed", baseline)
    got = [w for b in batches[:3] for w in crashed.observe("news", b, encoder_id=ENCODER)]
    assert crashed.assets["news"].pending_rows == 60 - N  # acknowledged, not yet scored
    del crashed  # no close, no flush: as after kill -9

    again, replayed = _restart(tmp_path / "crashed", baseline)
    assert replayed["news"]["replayed_rows"] == 60 - N
    assert replayed["news"]["windows_completed"] == 0
    # The journal was rewritten at the restart to hold just the pending rows.
    contents = again.journal.stream("news").read()
    assert [(r.start_row, r.end_row) for r in contents.records] == [(N, 40), (40, 60)]
    got += again.observe("news", batches[3], encoder_id=ENCODER)
    assert [(w.window, w.start_row, w.end_row) for w in got] == [
        (w.window, w.start_row, w.end_row) for w in expected
    ]
    for a, b in zip(got, expected, strict=True):
        assert a.mmd2 == pytest.approx(b.mmd2, rel=1e-6)
    on_disk = read_series(tmp_path / "crashed" / "series").to_pylist()
    assert [r["window"] for r in on_disk] == [0, 1]


def test_a_window_completed_only_by_replayed_rows_is_scored_at_restart(tmp_path, baseline):
    """Rows journaled but whose window never reached the series (the process died between
    the two) complete it at restart, with the actor that sent them."""
    monitor = _monitor(tmp_path, baseline)
    rng = np.random.default_rng(2)
    journal = monitor.journal.stream("news")
    journal.add(0, shifted_rows(rng, N + 3), None, "token:sender")
    journal.commit()
    again, replayed = _restart(tmp_path, baseline)
    assert replayed["news"]["windows_completed"] == 1
    (row,) = read_series(tmp_path / "series").to_pylist()
    assert (row["window"], row["end_row"]) == (0, N)
    assert again.assets["news"].pending_rows == 3


def test_rows_dropped_by_a_baseline_switch_do_not_come_back(tmp_path, baseline) -> None:
    monitor = _monitor(tmp_path, baseline)
    rng = np.random.default_rng(3)
    monitor.observe("news", clean_rows(rng, N + 10), encoder_id=ENCODER)
    monitor.switch_baseline("news", baseline, actor="token:mro", reason="test")
    monitor.observe("news", clean_rows(rng, 5), encoder_id=ENCODER)
    again, replayed = _restart(tmp_path, baseline)
    # The 10 rows of the window the switch dropped are skipped; the 5 after it replayed.
    assert replayed["news"]["replayed_rows"] == 5
    assert again.assets["news"].rows_seen == N + 15
    assert again.assets["news"].pending_rows == 5


def test_time_window_rows_replay_with_their_times(tmp_path, baseline) -> None:
    policy = WindowPolicy(N, duration_ns=1_000)
    monitor = _monitor(tmp_path, baseline, policy=policy)
    rng = np.random.default_rng(4)
    times = np.arange(40, dtype=np.int64) * 20  # 0 .. 780: one open window
    monitor.observe("news", clean_rows(rng, 40), times, encoder_id=ENCODER)
    again, replayed = _restart(tmp_path, baseline, policy=policy)
    assert replayed["news"]["replayed_rows"] == 40
    (window,) = again.observe("news", clean_rows(rng, 1), [1_000], encoder_id=ENCODER)
    assert (window.start_row, window.end_row, window.rows) == (0, 40, 40)


def test_journaled_rows_that_do_not_follow_on_are_reported_not_replayed(tmp_path, baseline):
    monitor = _monitor(tmp_path, baseline)
    journal = monitor.journal.stream("news")
    journal.add(7, _rows(1, 5), None, None)  # a gap: the stream is at row 0
    journal.commit()
    again, replayed = _restart(tmp_path, baseline)
    assert replayed["news"]["replayed_rows"] == 0
    assert replayed["news"]["left_out"]["rows"] == 5
    assert "gap" in replayed["news"]["left_out"]["why"]
    assert again.assets["news"].rows_seen == 0


def test_count_window_rows_are_not_replayed_into_time_windows(tmp_path, baseline) -> None:
    """The asset's config changed from count to time windows across the restart: rows
    journaled without times are reported, not replayed."""
    monitor = _monitor(tmp_path, baseline)
    monitor.observe("news", clean_rows(np.random.default_rng(5), 10), encoder_id=ENCODER)
    again, replayed = _restart(tmp_path, baseline, policy=WindowPolicy(N, duration_ns=1_000))
    assert replayed["news"]["replayed_rows"] == 0
    left_out = replayed["news"]["left_out"]
    assert left_out["why"] == "rows without times, the asset now uses time windows"
    assert left_out["rows"] == 10
    assert again.assets["news"].rows_seen == 0
    # The rows are kept aside, not deleted; the journal itself starts clean, so rows that
    # arrive now are replayed after the next restart.
    kept = again.journal.stream("news").path.with_name(left_out["kept_in"])
    assert [len(r.rows) for r in AssetJournal(kept, 1 << 20).read().records] == [10]
    times = np.arange(3, dtype=np.int64)
    again.observe("news", clean_rows(np.random.default_rng(6), 3), times, encoder_id=ENCODER)
    _, replayed = _restart(tmp_path, baseline, policy=WindowPolicy(N, duration_ns=1_000))
    assert replayed["news"]["replayed_rows"] == 3 and "left_out" not in replayed["news"]


WRITER = """
import sys
import numpy as np
from lineage_audit.divergence.journal import RowJournal

journal = RowJournal(sys.argv[1]).stream("news")
rows = np.ones((512, 256), dtype=np.float32)
start = 0
while True:
    for _ in range(4):
        journal.add(start, rows * start, None, "writer")
        start += len(rows)
    journal.commit()
"""


def test_a_writer_killed_mid_append_leaves_whole_records(tmp_path) -> None:
    """SIGKILL a process appending 2 MB commits as fast as it can: what is on disk reads
    back as whole records, contiguous from row 0, each with its own rows."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    path = RowJournal(tmp_path).stream("news").path
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 16 << 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    child.kill()
    child.wait()
    contents = RowJournal(tmp_path).stream("news").read()
    assert len(contents.records) >= 8
    for index, record in enumerate(contents.records):
        assert record.start_row == index * 512
        assert record.rows.shape == (512, 256)
        assert float(record.rows[0, 0]) == record.start_row and record.actor == "writer"
    print(f"\n{len(contents.records)} whole records, torn tail {contents.torn_bytes} bytes")


def _window_keys(windows) -> list[tuple]:
    return [(w.window, w.start_row, w.end_row, w.start_time_ns, w.rows) for w in windows]


@pytest.mark.parametrize(
    "policy",
    [WindowPolicy(N, stride=N // 2), WindowPolicy(N, duration_ns=1_000, stride_ns=500)],
    ids=["count", "time"],
)
def test_overlapping_windows_resume_exactly(tmp_path, baseline, policy) -> None:
    """With windows that overlap, the next window after a restart shares rows with the last
    one on disk: they are taken again from the journal, so every window — its rows, its
    bounds, its statistic — is the one an uninterrupted stream gives."""
    rng = np.random.default_rng(7)
    rows = np.concatenate([clean_rows(rng, 40), shifted_rows(rng, 41)])
    times = np.append(np.arange(80, dtype=np.int64) * 20, 2_000)  # the last row closes all
    pieces = [slice(0, 20), slice(20, 60), slice(60, 81)]

    def feed(monitor, part):
        stamps = times[part] if policy.by_time else None
        return monitor.observe("news", rows[part], stamps, encoder_id=ENCODER)

    straight = _monitor(tmp_path / "straight", baseline, journal=False, policy=policy)
    expected = [w for part in pieces for w in feed(straight, part)]
    crashed = _monitor(tmp_path / "crashed", baseline, policy=policy)
    got = [w for part in pieces[:2] for w in feed(crashed, part)]
    del crashed
    again, replayed = _restart(tmp_path / "crashed", baseline, policy=policy)
    assert replayed["news"]["shared_with_last_window"] > 0
    got += feed(again, pieces[2])
    assert len(expected) >= 3
    assert _window_keys(got) == _window_keys(expected)
    assert [w.status for w in got] == [w.status for w in expected]
    np.testing.assert_allclose([w.mmd2 for w in got], [w.mmd2 for w in expected], rtol=1e-6,
                               atol=1e-9, equal_nan=True)  # fmt: skip
