"""One Ledger shared by many threads: group commit, write-ahead order, failure of a group."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from lineage_audit.ledger import AppendError, Ledger, RecordSpec, SQLiteStore, verify_ledger
from lineage_audit.ledger.store import PendingEntry, StoredEntry


class SlowDiskStore(SQLiteStore):
    """A store whose commits take a little longer (sleeping releases the GIL like fsync)."""

    def append(self, pending: Sequence[PendingEntry]) -> list[StoredEntry]:
        time.sleep(0.002)
        return super().append(pending)


class GatedStore(SQLiteStore):
    """The first append waits inside the store until ``release`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, pending: Sequence[PendingEntry]) -> list[StoredEntry]:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return super().append(pending)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _run(targets: list[Callable[[], object]]) -> list[object]:
    """Run each target in its own thread; results (or the exception raised) in order."""
    results: list[object] = [None] * len(targets)

    def run(i: int) -> None:
        try:
            results[i] = targets[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("engine", ["python", "rust"])
def test_threads_share_one_ledger(db_path: Path, keyring, pubkeys_file, engine: str) -> None:
    n_threads, per_thread = 4, 12
    ledger = Ledger.from_store(SlowDiskStore(db_path), keyring)

    def writer(n: int) -> list[tuple[object, object]]:
        pairs = []
        for i in range(per_thread):
            with ledger.action("conc.step", actor=f"t{n}", step=i) as act:
                act.result = {"thread": n, "i": i}
            pairs.append((act.intent, act.outcome))
        return pairs

    results = _run([lambda n=n: writer(n) for n in range(n_threads)])
    assert not [r for r in results if isinstance(r, Exception)], results
    pairs = [pair for result in results for pair in result]  # type: ignore[union-attr]
    assert len(pairs) == n_threads * per_thread
    for intent, outcome in pairs:
        assert intent.seq < outcome.seq
        predicate = outcome.statement()["predicate"]
        assert predicate["intent"] == intent.ref()
        assert predicate["result"]["i"] == intent.statement()["predicate"]["step"]
        assert outcome.statement()["predicate"]["actor"] == intent.statement()["predicate"]["actor"]
    seqs = sorted(e.seq for pair in pairs for e in pair)
    assert seqs == list(range(2 * n_threads * per_thread))  # every record, once, contiguous
    stats = ledger.store.stats()
    assert stats.records == len(seqs)
    assert stats.commits < stats.records  # groups of more than one record formed
    ledger.checkpoint()
    ledger.close()
    report = verify_ledger(db_path, pubkeys_file, engine=engine)
    assert report.valid and report.entries == len(seqs), report


def test_concurrent_appends_share_one_transaction(db_path: Path, keyring, pubkeys_file) -> None:
    store = GatedStore(db_path)
    ledger = Ledger.from_store(store, keyring)
    leader = threading.Thread(target=ledger.append, args=("record", "lead", "a"))
    leader.start()
    assert store.entered.wait(30)  # the leader's commit is in progress
    results: list[object] = [None] * 3
    followers = []
    for k in range(3):  # queue three callers, in a known order, behind it

        def follow(k: int = k) -> None:
            results[k] = ledger.append_many(
                [RecordSpec("record", f"follow{k}", "b", [], {"j": j}) for j in range(k + 1)]
            )

        followers.append(threading.Thread(target=follow))
        followers[-1].start()
        _wait_until(lambda k=k: ledger._commit.queued() == k + 1)
    assert store.stats().commits == 0
    store.release.set()
    for t in [leader, *followers]:
        t.join(60)
    assert [[e.seq for e in r] for r in results] == [[1], [2, 3], [4, 5, 6]]  # type: ignore[union-attr]
    assert [e.action for r in results for e in r] == ["follow0", *["follow1"] * 2, *["follow2"] * 3]  # type: ignore[union-attr]
    assert store.stats().commits == 2 and store.stats().records == 7
    ledger.close()
    assert verify_ledger(db_path, pubkeys_file).valid


def test_failed_group_fails_every_caller(db_path: Path, keyring, pubkeys_file) -> None:
    store = GatedStore(db_path)
    ledger = Ledger.from_store(store, keyring)
    leader = threading.Thread(target=ledger.append, args=("record", "lead", "a"))
    leader.start()
    assert store.entered.wait(30)
    bad = dataclasses.replace(
        ledger._pending(RecordSpec("record", "bad", "c")),
        envelope=None,  # NOT NULL fails
    )
    calls: list[Callable[[], object]] = [
        lambda: ledger.append("record", "good.before", "b"),
        lambda: ledger._commit.append([bad]),
        lambda: ledger.append_many([RecordSpec("record", "good.after", "d")] * 2),
    ]
    results: list[object] = [None] * len(calls)
    threads = []
    for k, call in enumerate(calls):

        def run(k: int = k, call: Callable[[], object] = call) -> None:
            try:
                results[k] = call()
            except Exception as exc:
                results[k] = exc

        threads.append(threading.Thread(target=run))
        threads[-1].start()
        _wait_until(lambda k=k: ledger._commit.queued() == k + 1)
    store.release.set()
    for t in [leader, *threads]:
        t.join(60)
    assert all(isinstance(r, AppendError) for r in results), results
    assert all(r is results[0] for r in results)  # the group's one error, for every caller
    assert "nothing written" in str(results[0]) and "NOT NULL" in str(results[0])
    assert ledger.size == 1 and [e.action for e in ledger.entries()] == ["lead"]
    assert store.stats().commits == 1 and store.stats().records == 1
    assert verify_ledger(db_path, pubkeys_file).valid
    later = _run([lambda: ledger.append("record", "later", "e")] * 2)  # a later group commits
    assert sorted(e.seq for e in later) == [1, 2]  # type: ignore[union-attr]
    ledger.close()
    report = verify_ledger(db_path, pubkeys_file)
    assert report.valid and report.entries == 3, report


def test_lone_append_does_not_wait(ledger: Ledger) -> None:
    for i in range(3):
        assert ledger.append("record", "alone", "a", [], {"i": i}).seq == i
    assert ledger.store.stats().commits == 3 and ledger._commit.queued() == 0
    assert ledger.append_many([]) == []
