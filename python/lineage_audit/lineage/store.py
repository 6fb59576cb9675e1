"""Durable storage of accepted OpenLineage events (SQLite by default).

Each stored event keeps its canonical JSON (RFC 8785) and where the ledger attests it: the
sequence number of the ``lineage.ingest`` intent whose subject is the RFC 9162 root over its
batch, and the event's index in that batch (see :mod:`.ingest`). Like the ledger's store,
the table is append-only (triggers refuse UPDATE and DELETE), WAL with ``synchronous=FULL``.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LineageStore", "SQLiteLineageStore", "StoredEvent"]


@dataclass(frozen=True)
class StoredEvent:
    id: int
    sha256: str
    body: bytes
    record_seq: int | None  # ledger seq of the lineage.ingest intent (None: no ledger)
    batch_index: int
    batch_size: int
    received_ns: int


class LineageStore(ABC):
    @abstractmethod
    def add(
        self, events: Sequence[tuple[str, bytes]], *, record_seq: int | None, received_ns: int
    ) -> tuple[int, int]:
        """Store ``(sha256, body)`` pairs of one batch in one transaction; returns (stored,
        duplicates). An event already stored (same digest) is not stored twice."""

    @abstractmethod
    def known(self, digests: Sequence[str]) -> set[str]:
        """The digests among ``digests`` already stored."""

    @abstractmethod
    def events(self, after: int = 0) -> Iterator[StoredEvent]:
        """Every stored event with id > ``after``, in arrival order."""

    @abstractmethod
    def by_digests(self, digests: Sequence[str]) -> list[StoredEvent]:
        """The stored events among ``digests``, in arrival order (an index lookup: no scan)."""

    @abstractmethod
    def batch(self, record_seq: int) -> list[StoredEvent]:
        """The events of one ingest record, in batch order."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS lineage_events (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    record_seq INTEGER,
    batch_index INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lineage_events_record ON lineage_events(record_seq, batch_index);
CREATE TRIGGER IF NOT EXISTS lineage_events_no_update BEFORE UPDATE ON lineage_events
BEGIN SELECT RAISE(ABORT, 'lineage_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS lineage_events_no_delete BEFORE DELETE ON lineage_events
BEGIN SELECT RAISE(ABORT, 'lineage_events is append-only'); END;
"""


_EVENT_COLUMNS = "id, sha256, body, record_seq, batch_index, batch_size, received_ns"
# Digests per "IN (...)" query: well under SQLite's default limit of bound parameters.
_IN_CHUNK = 500


class SQLiteLineageStore(LineageStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def add(self, events, *, record_seq, received_ns):
        rows = [
            (digest, body, record_seq, i, len(events), received_ns)
            for i, (digest, body) in enumerate(events)
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO lineage_events (sha256, body, record_seq, batch_index,"
                    " batch_size, received_ns) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                stored = self._conn.total_changes - before
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return stored, len(rows) - stored

    def known(self, digests):
        with self._lock:
            return {row[0] for row in self._with_digests("sha256", digests)}

    def events(self, after: int = 0) -> Iterator[StoredEvent]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM lineage_events WHERE id > ? ORDER BY id",
                (after,),
            ).fetchall()
        return (StoredEvent(*row) for row in rows)

    def by_digests(self, digests: Sequence[str]) -> list[StoredEvent]:
        with self._lock:
            found = [StoredEvent(*row) for row in self._with_digests(_EVENT_COLUMNS, digests)]
        return sorted(found, key=lambda e: e.id)

    def _with_digests(self, columns: str, digests: Sequence[str]) -> Iterator[tuple]:
        """``columns`` of the stored rows among ``digests``, through the sha256 index, in
        chunks of :data:`_IN_CHUNK` (call with the lock held)."""
        digests = list(digests)
        for start in range(0, len(digests), _IN_CHUNK):
            chunk = digests[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from self._conn.execute(
                f"SELECT {columns} FROM lineage_events WHERE sha256 IN ({marks})", chunk
            )

    def batch(self, record_seq: int) -> list[StoredEvent]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM lineage_events WHERE record_seq = ?"
                " ORDER BY batch_index",
                (record_seq,),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM lineage_events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
