"""SIGKILL in the middle of appending: the ledger reopens valid, with no partial entry."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from lineage_audit.ledger import Ledger, verify_ledger

CHILD = """
import sys
from lineage_audit.ledger import Ledger, RecordSpec

ledger = Ledger.open(sys.argv[1], sys.argv[2])
i = 0
while True:
    if i % 3 == 2:  # a multi-entry transaction now and then
        specs = [RecordSpec("record", "crash.batch", "child", [], {"i": i, "j": j})
                 for j in range(5)]
        last = ledger.append_many(specs)[-1]
    else:
        last = ledger.append("record", "crash.one", "child", [], {"i": i})
    print(last.seq, flush=True)
    i += 1
"""


def _counts(db: Path) -> tuple[int, int, list[tuple[int, int]]]:
    # closing(): a CPython sqlite3 connection that is merely dropped lingers until the
    # garbage collector runs, and an open connection would hide WAL recovery.
    with closing(sqlite3.connect(db)) as conn:
        entries = conn.execute("SELECT count(*), coalesce(max(seq) + 1, 0) FROM entries").fetchone()
        per_level = conn.execute("SELECT level, count(*) FROM nodes GROUP BY level ORDER BY level")
        return entries[0], entries[1], per_level.fetchall()


def _reap(child: subprocess.Popen[str]) -> None:
    """Make sure the child is dead and close its pipes."""
    child.kill()
    child.wait(timeout=30)
    child.stdout.close()
    child.stderr.close()


def _assert_recovered(db: Path, pubkeys_file: Path, acknowledged: int) -> int:
    """After a SIGKILL: contiguous entries incl. every acknowledged one, whole tree, valid."""
    count, size, per_level = _counts(db)
    assert count == size > acknowledged  # contiguous; every acknowledged append is there
    assert per_level == [(lvl, size >> lvl) for lvl in range(size.bit_length())]
    report = verify_ledger(db, pubkeys_file)
    assert report.valid and report.entries == size, report
    return size


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_stream(tmp_path: Path, keys_dir: Path, pubkeys_file: Path, helpers) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(os.getpid())
    acknowledged = -1
    for _round in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), str(db), str(keys_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helpers.cli_env(),
        )  # fmt: skip
        try:
            target = rng.randint(3, 12)
            for _ in range(target):
                line = child.stdout.readline()
                assert line, child.stderr.read()
                acknowledged = int(line)
            time.sleep(rng.uniform(0, 0.02))  # somewhere inside the next append
            os.kill(child.pid, signal.SIGKILL)
        finally:
            _reap(child)
        assert child.returncode == -signal.SIGKILL  # killed by us, not exited by itself

        size = _assert_recovered(db, pubkeys_file, acknowledged)

        with Ledger.open(db, keys_dir) as ledger:  # appending continues after the crash
            entry = ledger.append("record", "after.crash", "parent")
            assert entry.seq == size
            ledger.checkpoint()
    assert verify_ledger(db, pubkeys_file).valid


THREADED_CHILD = """
import sys, threading
from lineage_audit.ledger import Ledger, RecordSpec

ledger = Ledger.open(sys.argv[1], sys.argv[2])  # one Ledger shared by every thread
RUN = int(sys.argv[3])
out = threading.Lock()

def writer(n):
    i = 0
    while True:
        if i % 2:  # a caller's multi-record batch, inside someone's group
            batch = [RUN, n, i]
            specs = [RecordSpec("record", "crash.batch", f"t{n}", [], {"batch": batch, "j": j})
                     for j in range(3)]
            seq = ledger.append_many(specs)[-1].seq
        else:
            with ledger.action("crash.step", actor=f"t{n}", i=i) as act:
                pass
            seq = act.outcome.seq
        with out:
            print(seq, flush=True)
        i += 1

for n in range(4):
    threading.Thread(target=writer, args=(n,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_with_threads_sharing_a_ledger(
    tmp_path: Path, keys_dir: Path, pubkeys_file: Path, helpers
) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "child.py"
    script.write_text(THREADED_CHILD)
    rng = random.Random(os.getpid())
    for run in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), str(db), str(keys_dir), str(run)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helpers.cli_env(),
        )  # fmt: skip
        acknowledged = -1
        try:
            for _ in range(rng.randint(10, 30)):
                line = child.stdout.readline()
                assert line, child.stderr.read()
                acknowledged = max(acknowledged, int(line))
            os.kill(child.pid, signal.SIGKILL)  # other threads are signing and committing
        finally:
            _reap(child)
        assert child.returncode == -signal.SIGKILL  # killed by us, not exited by itself

        size = _assert_recovered(db, pubkeys_file, acknowledged)

        with Ledger.open(db, keys_dir) as ledger:
            batches: dict[tuple[int, ...], list[int]] = {}
            for entry in ledger.entries():
                predicate = entry.statement()["predicate"]
                if entry.action == "crash.batch":  # whole batches only: no partial group
                    batches.setdefault(tuple(predicate["batch"]), []).append(predicate["j"])
                if entry.kind == "outcome":  # its intent is earlier, and is its own
                    intent = ledger.entry(predicate["intent"]["seq"])
                    assert intent.seq < entry.seq and intent.kind == "intent"
                    assert predicate["intent"]["leaf_hash"] == intent.leaf_hash_hex
                    assert intent.statement()["predicate"]["actor"] == predicate["actor"]
            assert all(sorted(js) == [0, 1, 2] for js in batches.values()), batches
            assert ledger.append("record", "after.crash", "parent").seq == size
    assert verify_ledger(db, pubkeys_file).valid
