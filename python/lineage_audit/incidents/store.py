"""Incident state on disk (SQLite): the queue's current view, next to the ledger.

The ledger is the record; this store is what the queue reads. Every write happens inside
the body of the ledger action that records it, so a store write that fails leaves a
``failed`` outcome (and no changed state), and a change in the store always has its
signed intent before it. Writes are compare-and-set on the state, so two people
acknowledging at once cannot both succeed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .errors import TransitionError, UnknownIncident
from .incident import Incident

__all__ = ["IncidentStore", "Suspension"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    asset_class TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_asset ON incidents (asset_class, state);
CREATE TABLE IF NOT EXISTS suspensions (
    signal TEXT PRIMARY KEY,
    asset_class TEXT NOT NULL,
    incident_id TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    ledger_seq INTEGER NOT NULL
);
"""

Suspension = dict[str, Any]


class IncidentStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- incidents ------------------------------------------------------------------------

    def add(self, incident: Incident) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO incidents (id, asset_class, state, opened_at, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (incident.id, incident.asset_class, incident.state, incident.opened_at,
                 json.dumps(incident.to_json(), sort_keys=True)),
            )  # fmt: skip

    def replace(self, incident: Incident, *, expected_state: str) -> None:
        """Store ``incident`` if its stored state is still ``expected_state``."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE incidents SET state = ?, doc = ? WHERE id = ? AND state = ?",
                (incident.state, json.dumps(incident.to_json(), sort_keys=True), incident.id,
                 expected_state),
            )  # fmt: skip
        if cursor.rowcount != 1:
            raise TransitionError(
                "state", f"incident {incident.id}: changed by someone else meanwhile "
                f"(expected {expected_state})",
            )  # fmt: skip

    def get(self, incident_id: str) -> Incident:
        with self._lock:
            row = self._db.execute("SELECT doc FROM incidents WHERE id = ?",
                                   (incident_id,)).fetchone()  # fmt: skip
        if row is None:
            raise UnknownIncident("incident_id", "no such incident", incident_id)
        return Incident.from_json(json.loads(row[0]))

    def list(self, *, state: str | None = None, asset_class: str | None = None) -> list[Incident]:
        query, args = "SELECT doc FROM incidents WHERE 1=1", []
        if state is not None:
            query, args = query + " AND state = ?", [*args, state]
        if asset_class is not None:
            query, args = query + " AND asset_class = ?", [*args, asset_class]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY opened_at, id", args).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def active_for(self, asset_class: str) -> Incident | None:
        found = [i for i in self.list(asset_class=asset_class) if i.active]
        return found[-1] if found else None

    # --- suspensions (the halt hook) ------------------------------------------------------

    def suspend(self, suspension: Suspension) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO suspensions (signal, asset_class, incident_id, actor, "
                "at, ledger_seq) VALUES (:signal, :asset_class, :incident_id, :actor, :at, "
                ":ledger_seq)", suspension,
            )  # fmt: skip

    def lift(self, signal: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM suspensions WHERE signal = ?", (signal,))
        return cursor.rowcount == 1

    def suspensions(self) -> dict[str, Suspension]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT signal, asset_class, incident_id, actor, at, ledger_seq FROM suspensions"
            )
            names = [d[0] for d in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
