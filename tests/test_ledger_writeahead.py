"""The write-ahead flow: durable signed intent, then the action, then the outcome (DESIGN §4.1)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from lineage_audit.ledger import (
    AppendError,
    KeyMismatchError,
    Ledger,
    LedgerError,
    SQLiteStore,
    StoreError,
    verify_ledger,
)
from lineage_audit.ledger.merkle import leaf_hash


def _rows(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT seq, predicate_type, action FROM entries ORDER BY seq"
        ).fetchall()


def test_append_returns_committed_entry(ledger: Ledger, db_path: Path, helpers) -> None:
    entry = ledger.append("alert", "divergence.alert", "engine", [("w1", helpers.sha_hex("w"))],
                          {"sigma": 4.5})  # fmt: skip
    assert entry.seq == 0 and entry.leaf_hash == leaf_hash(entry.leaf_input)
    assert entry.kind == "alert" and entry.statement()["predicate"]["sigma"] == 4.5
    assert _rows(db_path) == [
        (0, "https://lineage-audit.dev/predicate/alert/v1", "divergence.alert")
    ]
    second = ledger.append("record", "x", "y")
    assert second.leaf_input[30:62] == entry.leaf_hash  # chained
    assert [e.seq for e in ledger.entries()] == [0, 1]


def test_intent_is_durable_before_the_body_runs(ledger: Ledger, db_path: Path, helpers) -> None:
    seen = {}
    with ledger.action("baseline.fit", actor="alice", subject=[("corpus", helpers.sha_hex("c"))],
                       window="1h") as act:  # fmt: skip
        # A second, independent connection sees the committed intent (and nothing else).
        seen["rows"] = _rows(db_path)
        seen["intent"] = act.intent
        act.result = {"mean": 0.25}
    assert seen["rows"] == [(0, "https://lineage-audit.dev/predicate/intent/v1", "baseline.fit")]
    assert seen["intent"].seq == 0
    outcome = act.outcome
    assert outcome is not None and outcome.seq == 1
    predicate = outcome.statement()["predicate"]
    assert predicate["status"] == "succeeded"
    assert predicate["intent"] == {"seq": 0, "leaf_hash": act.intent.leaf_hash.hex()}
    assert predicate["result"] == {"mean": 0.25}
    assert act.intent.statement()["predicate"]["window"] == "1h"
    assert outcome.statement()["subject"] == act.intent.statement()["subject"]


def test_failure_outcome_recorded_and_exception_reraised(ledger: Ledger) -> None:
    class BoomError(RuntimeError):
        pass

    with pytest.raises(BoomError, match="kaboom"), ledger.action("model.deploy", actor="ci") as act:
        raise BoomError("kaboom")
    predicate = act.outcome.statement()["predicate"]
    assert predicate["status"] == "failed"
    assert predicate["error"]["message"] == "kaboom"
    assert predicate["error"]["type"].endswith("BoomError")
    assert predicate["intent"]["seq"] == act.intent.seq
    assert "result" not in predicate
    with pytest.raises(KeyError), ledger.action("x", actor="y"):
        raise KeyError("k")
    assert ledger.entry(3).statement()["predicate"]["error"]["type"] == "KeyError"


def test_read_only_ledger_never_runs_the_body(db_path: Path, keyring) -> None:
    with Ledger.open(db_path, keyring) as ledger:
        ledger.append("record", "setup", "t")
    ran = []
    with Ledger.open(db_path, keyring, read_only=True) as ro:
        with pytest.raises(StoreError), ro.action("x", actor="y"):
            ran.append(True)
        assert ro.size == 1
    assert ran == []
    assert len(_rows(db_path)) == 1


class FailingStore(SQLiteStore):
    """A real SQLite store whose appends fail after ``ok`` successful ones."""

    def __init__(self, path: Path, ok: int = 0) -> None:
        super().__init__(path)
        self.ok = ok

    def append(self, pending):
        if self.ok <= 0:
            raise AppendError(f"{self.path}: simulated disk full")
        self.ok -= 1
        return super().append(pending)


def test_failing_store_never_runs_the_body(db_path: Path, keyring) -> None:
    ledger = Ledger.from_store(FailingStore(db_path), keyring)
    ran = []
    with pytest.raises(AppendError, match="disk full"), ledger.action("x", actor="y"):
        ran.append(True)
    assert ran == [] and ledger.size == 0
    ledger.close()


def test_outcome_failure_after_body_failure_keeps_the_body_exception(db_path, keyring) -> None:
    ledger = Ledger.from_store(FailingStore(db_path, ok=1), keyring)
    with pytest.raises(ValueError, match="body") as info, ledger.action("x", actor="y"):
        raise ValueError("body")
    assert any("could not be recorded" in note for note in info.value.__notes__)
    with pytest.raises(AppendError):  # body succeeded, outcome append failed: say so
        ledger.store.ok = 1
        with ledger.action("x", actor="y"):
            pass
    ledger.close()


def test_unserialisable_result_is_reported(ledger: Ledger) -> None:
    with (
        pytest.raises(LedgerError, match=r"predicate\.result"),
        ledger.action("x", actor="y") as act,
    ):
        act.result = {"when": object()}
    assert ledger.size == 1  # the intent stays, with no outcome: visible in the log


def test_bad_input_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match=r"digest\.sha256"):
        ledger.append("record", "x", "y", [("n", "not-hex")])
    with pytest.raises(LedgerError, match="kind"):
        ledger.append("bogus", "x", "y")
    assert ledger.size == 0


def test_opening_with_other_keys_is_refused(db_path: Path, keyring, other_keyring) -> None:
    with Ledger.open(db_path, keyring) as ledger:
        ledger.append("record", "x", "y")
    with pytest.raises(KeyMismatchError, match="not the keys this ledger was created with"):
        Ledger.open(db_path, other_keyring)
    with Ledger.open(db_path) as unsigned:
        assert unsigned.public_keys == keyring.public_keys()
        with pytest.raises(LedgerError, match="without signing keys"):
            unsigned.append("record", "x", "y")


def test_concurrent_writers_keep_one_chain(db_path: Path, keyring, pubkeys_file) -> None:
    Ledger.open(db_path, keyring).close()
    errors = []

    def writer(n: int) -> None:
        try:
            with Ledger.open(db_path, keyring) as mine:
                for i in range(8):
                    mine.append("record", f"w{n}", "thread", [], {"i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = verify_ledger(db_path, pubkeys_file)
    assert report.valid and report.entries == 24, report


def test_append_only_triggers_from_python(ledger: Ledger, db_path: Path) -> None:
    ledger.append("record", "x", "y")
    ledger.checkpoint()
    with sqlite3.connect(db_path) as conn:
        for sql in (
            "UPDATE entries SET action = 'z'",
            "DELETE FROM entries",
            "UPDATE nodes SET hash = zeroblob(32)",
            "DELETE FROM nodes",
            "DELETE FROM checkpoints",
            "UPDATE meta SET value = 'x'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="ledger tables are append-only"):
                conn.execute(sql)
    pragmas = sqlite3.connect(db_path)
    assert pragmas.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    pragmas.close()
    assert ledger.store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert json.loads(ledger.store.get_meta("public_keys"))["format"].endswith("public-keys/v1")


def test_entries_of_reads_by_action_name_and_prefix(ledger: Ledger, monkeypatch) -> None:
    """The indexed read returns exactly what a filter over every entry would, across read
    chunks, and a prefix is a prefix (``alert.`` does not match ``alerts.x`` or ``alert``)."""
    import lineage_audit.ledger.store as store_module

    monkeypatch.setattr(store_module, "_READ_CHUNK", 3)  # several chunks for 11 records
    actions = ["alert.watch", "baseline.fit", "alerts.x", "alert", "baseline.activate",
               "alert.halt", "alert.ok", "server.run", "baseline.activated", "alert.watch",
               "baseline.activate"]  # fmt: skip
    for action in actions:
        ledger.append("record", action, "engine")
    got = [(e.seq, e.action) for e in ledger.entries_of(["baseline.activate"], ["alert."])]
    wanted = [(e.seq, e.action) for e in ledger.entries()
              if e.action == "baseline.activate" or e.action.startswith("alert.")]  # fmt: skip
    assert got == wanted and [a for _, a in got] == [
        "alert.watch", "baseline.activate", "alert.halt", "alert.ok", "alert.watch",
        "baseline.activate",
    ]  # fmt: skip
    assert list(ledger.entries_of()) == []
