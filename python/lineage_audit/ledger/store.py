"""Ledger storage: the backend interface and the embedded SQLite implementation.

A store keeps three append-only tables: ``entries`` (one row per record), ``nodes`` (every
complete Merkle subtree ``(level, idx, hash)``) and ``checkpoints``. An append writes the
entries and all the nodes they complete in one transaction under a single-writer lock, so
after any crash the tables describe a valid prefix of the log. Tamper evidence does not rest
on the database (an owner can drop the triggers); :mod:`.verify_db` catches what they miss.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AppendError, CheckpointConflict, StoreError
from .leaf import ZERO_HASH, LeafInput
from .merkle import NodeKey, leaf_hash, nodes_for_append

__all__ = [
    "APPEND_ONLY_MESSAGE",
    "LEDGER_TABLES",
    "SCHEMA_VERSION",
    "LedgerStore",
    "PendingEntry",
    "SQLiteStore",
    "StoreStats",
    "StoredCheckpoint",
    "StoredEntry",
    "plan_append",
]

SCHEMA_VERSION = "1"
LEDGER_TABLES = ("meta", "entries", "nodes", "checkpoints")
APPEND_ONLY_MESSAGE = "ledger tables are append-only"
_READ_CHUNK = 1024
_KEY_CHUNK = 64


@dataclass(frozen=True)
class PendingEntry:
    """A signed envelope waiting for its sequence number."""

    envelope: bytes
    pae_hash: bytes
    ecdsa_sig_hash: bytes
    mldsa_sig_hash: bytes
    predicate_type: str
    action: str
    created_at: str


@dataclass(frozen=True)
class StoredEntry:
    """One row of the ``entries`` table."""

    seq: int
    leaf_input: bytes
    leaf_hash: bytes
    envelope: bytes
    predicate_type: str
    action: str
    created_at: str


@dataclass(frozen=True)
class StoredCheckpoint:
    """One row of the ``checkpoints`` table (``note`` is the signed note, verbatim)."""

    size: int
    root: bytes
    note: str
    created_at: str


@dataclass(frozen=True)
class StoreStats:
    """Append transactions committed by this store object, and the entries they held."""

    commits: int
    records: int


def plan_append(
    size: int,
    prev_leaf_hash: bytes,
    pending: Sequence[PendingEntry],
    read_node: Callable[[NodeKey], bytes],
) -> tuple[list[StoredEntry], list[tuple[int, int, bytes]]]:
    """Sequence ``pending`` after a tree of ``size`` leaves: rows for entries and nodes.

    Backend-independent: ``read_node((level, idx))`` reads an existing node; nodes created
    earlier in the same batch are taken from the batch itself.
    """
    created: dict[NodeKey, bytes] = {}

    def node(key: NodeKey) -> bytes:
        return created[key] if key in created else read_node(key)

    entries: list[StoredEntry] = []
    nodes: list[tuple[int, int, bytes]] = []
    prev = prev_leaf_hash
    for offset, item in enumerate(pending):
        seq = size + offset
        leaf = LeafInput(
            seq=seq,
            prev_leaf_hash=prev,
            pae_hash=item.pae_hash,
            ecdsa_sig_hash=item.ecdsa_sig_hash,
            mldsa_sig_hash=item.mldsa_sig_hash,
        ).encode()
        lh = leaf_hash(leaf)
        rows = nodes_for_append(seq, lh, node)
        for level, idx, value in rows:
            created[(level, idx)] = value
        nodes.extend(rows)
        entries.append(
            StoredEntry(
                seq=seq,
                leaf_input=leaf,
                leaf_hash=lh,
                envelope=item.envelope,
                predicate_type=item.predicate_type,
                action=item.action,
                created_at=item.created_at,
            )
        )
        prev = lh
    return entries, nodes


class LedgerStore(ABC):
    """What a ledger backend provides (SQLite here; PostgreSQL later, same semantics).

    Every method is atomic and may be called from any thread. ``append`` and
    ``add_checkpoint`` are serialised by a single-writer lock shared by all processes using
    the same database. (Threads of one process share a :class:`.groupcommit.GroupCommit`
    in front of ``append`` so concurrent records go into one transaction.)
    """

    read_only: bool = False

    @abstractmethod
    def size(self) -> int:
        """Number of entries (the tree size)."""

    @abstractmethod
    def append(self, pending: Sequence[PendingEntry]) -> list[StoredEntry]:
        """Append entries and their tree nodes in one transaction; all or nothing."""

    @abstractmethod
    def get_entry(self, seq: int) -> StoredEntry:
        """The entry ``seq`` (:class:`StoreError` if absent)."""

    @abstractmethod
    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        """Entries with ``start <= seq < end`` in order."""

    @abstractmethod
    def iter_actions(self, names: Sequence[str] = (), prefixes: Sequence[str] = ()
                     ) -> Iterator[StoredEntry]:  # fmt: skip
        """Entries (intents and outcomes) whose action is one of ``names`` or starts with one
        of ``prefixes``, in seq order (read through the action index)."""

    @abstractmethod
    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        """The complete-subtree hashes at ``keys`` (all must exist)."""

    @abstractmethod
    def node_range(self, level: int, start: int, end: int) -> list[bytes]:
        """Hashes of nodes ``(level, start) .. (level, end - 1)`` (all must exist)."""

    @abstractmethod
    def add_checkpoint(
        self, size: int, root: bytes, note: str, created_at: str, *, expected_latest: int | None
    ) -> StoredCheckpoint:
        """Store a checkpoint if the latest stored one still has size ``expected_latest``."""

    @abstractmethod
    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint with the largest size."""

    @abstractmethod
    def get_checkpoint(self, size: int) -> StoredCheckpoint | None:
        """The stored checkpoint of tree size ``size``."""

    @abstractmethod
    def checkpoints(self) -> list[StoredCheckpoint]:
        """All stored checkpoints by increasing size."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A metadata value (schema version, public keys)."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Record a metadata value once (metadata is append-only too)."""

    @abstractmethod
    def stats(self) -> StoreStats:
        """Counts of the append transactions this object has committed."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    seq            INTEGER PRIMARY KEY CHECK (seq >= 0),
    leaf_input     BLOB NOT NULL CHECK (length(leaf_input) = 158),
    leaf_hash      BLOB NOT NULL CHECK (length(leaf_hash) = 32),
    envelope       BLOB NOT NULL,
    predicate_type TEXT NOT NULL,
    action         TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_leaf_hash ON entries (leaf_hash);
CREATE INDEX IF NOT EXISTS entries_action ON entries (action);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size       INTEGER PRIMARY KEY CHECK (size >= 0),
    root       BLOB NOT NULL CHECK (length(root) = 32),
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def _trigger_sql(table: str) -> str:
    return "".join(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;\n"
        for op in ("UPDATE", "DELETE")
    )


def _row_entry(row: tuple[Any, ...]) -> StoredEntry:
    seq, leaf_input, lh, envelope, ptype, action, created = row
    return StoredEntry(
        seq=int(seq),
        leaf_input=bytes(leaf_input),
        leaf_hash=bytes(lh),
        envelope=bytes(envelope),
        predicate_type=str(ptype),
        action=str(action),
        created_at=str(created),
    )


def _row_checkpoint(row: tuple[Any, ...]) -> StoredCheckpoint:
    size, root, note, created = row
    return StoredCheckpoint(int(size), bytes(root), str(note), str(created))


_ENTRY_COLUMNS = "seq, leaf_input, leaf_hash, envelope, predicate_type, action, created_at"


class SQLiteStore(LedgerStore):
    """Embedded store: WAL, ``synchronous=FULL``, append-only triggers, ``BEGIN IMMEDIATE``.

    ``read_only`` opens the file with ``mode=ro`` (every write then fails with
    :class:`StoreError`). ``busy_timeout`` is how long a writer waits for another process
    holding the append lock.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, busy_timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._busy_timeout = busy_timeout
        self._commits = self._records = 0
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: ledger database not found")
        try:
            if read_only:
                uri = self.path.absolute().as_uri() + "?mode=ro"
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    isolation_level=None,
                    timeout=busy_timeout,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open ledger database ({exc})") from None
        self._conn = conn
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path}: not a usable ledger database ({exc})") from None
        except StoreError:
            conn.close()
            raise

    # --- connection setup ---------------------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if tables and not {"entries", "nodes", "checkpoints", "meta"} <= tables:
            if "entries" not in tables:
                raise StoreError(f"{self.path}: not a lineage-audit ledger (no entries table)")
            raise StoreError(f"{self.path}: ledger schema incomplete (tables: {sorted(tables)})")
        if self.read_only:
            if not tables:
                raise StoreError(f"{self.path}: not a lineage-audit ledger (empty database)")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA recursive_triggers = ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(_SCHEMA + "".join(map(_trigger_sql, LEDGER_TABLES))):
                    conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                        (SCHEMA_VERSION,),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        version = self.get_meta("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: unsupported ledger schema_version {version!r} "
                f"(expected {SCHEMA_VERSION!r})"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The single-writer transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` or rollback."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise AppendError(f"{self.path}: cannot take the append lock ({exc})") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed ({exc})") from None

    # --- LedgerStore ------------------------------------------------------------------

    def size(self) -> int:
        row = self._read("SELECT max(seq) FROM entries")[0]
        return 0 if row[0] is None else int(row[0]) + 1

    def append(self, pending: Sequence[PendingEntry]) -> list[StoredEntry]:
        if not pending:
            return []
        try:
            with self._write() as conn:
                tip = conn.execute(
                    "SELECT seq, leaf_hash FROM entries ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                size, prev = (0, ZERO_HASH) if tip is None else (int(tip[0]) + 1, bytes(tip[1]))

                def read_node(key: NodeKey) -> bytes:
                    row = conn.execute(
                        "SELECT hash FROM nodes WHERE level = ? AND idx = ?", key
                    ).fetchone()
                    if row is None:
                        raise AppendError(f"{self.path}: tree node {key} missing; store corrupt")
                    return bytes(row[0])

                entries, nodes = plan_append(size, prev, pending, read_node)
                # Field order of StoredEntry = _ENTRY_COLUMNS (astuple would deep-copy).
                rows = [
                    (
                        e.seq,
                        e.leaf_input,
                        e.leaf_hash,
                        e.envelope,
                        e.predicate_type,
                        e.action,
                        e.created_at,
                    )
                    for e in entries
                ]
                conn.executemany(
                    f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
                conn.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
        except sqlite3.Error as exc:
            raise AppendError(f"{self.path}: append failed, nothing written ({exc})") from None
        with self._lock:
            self._commits += 1
            self._records += len(entries)
        return entries

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(commits=self._commits, records=self._records)

    def get_entry(self, seq: int) -> StoredEntry:
        rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq = ?", (seq,))
        if not rows:
            raise StoreError(f"seq {seq}: no such entry (ledger size {self.size()})")
        return _row_entry(rows[0])

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        upper = 2**63 - 1 if end is None else end
        return self._paged("seq < ?", [upper], start)

    def iter_actions(self, names: Sequence[str] = (), prefixes: Sequence[str] = ()
                     ) -> Iterator[StoredEntry]:  # fmt: skip
        # A prefix is a half-open range of the text order, so the action index serves it
        # (LIKE would not, with SQLite's default case-insensitive LIKE).
        terms = ["action = ?"] * len(names) + ["(action >= ? AND action < ?)"] * len(prefixes)
        if not terms:
            return
        params: list[Any] = [*names]
        for prefix in prefixes:
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        yield from self._paged(f"({' OR '.join(terms)})", params)

    def _paged(self, where: str, params: Sequence[Any], start: int = 0) -> Iterator[StoredEntry]:
        """Entries with seq >= ``start`` matching ``where``, in seq order, read
        :data:`_READ_CHUNK` rows at a time (no read holds the store for long)."""
        pos = start
        while True:
            rows = self._read(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq >= ? AND {where} "
                "ORDER BY seq LIMIT ?",
                (pos, *params, _READ_CHUNK),
            )
            if not rows:
                return
            for row in rows:
                yield _row_entry(row)
            pos = int(rows[-1][0]) + 1

    @staticmethod
    def nodes_sql(count: int) -> str:
        """The point-lookup query for ``count`` nodes (a primary-key search per key)."""
        where = " OR ".join(["(level = ? AND idx = ?)"] * count)
        return f"SELECT level, idx, hash FROM nodes WHERE {where}"

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        found: dict[NodeKey, bytes] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _KEY_CHUNK):
            chunk = unique[i : i + _KEY_CHUNK]
            params = [x for key in chunk for x in key]
            for level, idx, value in self._read(self.nodes_sql(len(chunk)), params):
                found[(int(level), int(idx))] = bytes(value)
        missing = [key for key in unique if key not in found]
        if missing:
            raise StoreError(f"{self.path}: tree node(s) {missing[:4]} missing; store corrupt")
        return found

    def node_range(self, level: int, start: int, end: int) -> list[bytes]:
        rows = self._read(
            "SELECT idx, hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end),
        )
        if len(rows) != end - start:
            raise StoreError(
                f"{self.path}: tree nodes at level {level} [{start}, {end}) incomplete; "
                "store corrupt"
            )
        return [bytes(row[1]) for row in rows]

    def add_checkpoint(
        self, size: int, root: bytes, note: str, created_at: str, *, expected_latest: int | None
    ) -> StoredCheckpoint:
        try:
            with self._write() as conn:
                row = conn.execute("SELECT max(size) FROM checkpoints").fetchone()
                latest = None if row[0] is None else int(row[0])
                if latest != expected_latest:
                    raise CheckpointConflict(
                        f"checkpoint: latest stored size changed from {expected_latest} to "
                        f"{latest} while signing; retry"
                    )
                conn.execute(
                    "INSERT INTO checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
                    (size, root, note, created_at),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: storing checkpoint failed ({exc})") from None
        return StoredCheckpoint(size, root, note, created_at)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._read(
            "SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1"
        )
        return _row_checkpoint(rows[0]) if rows else None

    def get_checkpoint(self, size: int) -> StoredCheckpoint | None:
        rows = self._read(
            "SELECT size, root, note, created_at FROM checkpoints WHERE size = ?", (size,)
        )
        return _row_checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._read("SELECT size, root, note, created_at FROM checkpoints ORDER BY size")
        return [_row_checkpoint(row) for row in rows]

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot record meta {key!r} ({exc})") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_sql(script: str) -> list[str]:
    """Split the schema script into statements (triggers contain ``;`` inside BEGIN/END)."""
    statements: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                statements.append(buf.strip())
            buf = ""
    return statements
