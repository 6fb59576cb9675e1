"""The stream row journal: rows a stream has acknowledged but no window has scored yet,
durable before the acknowledgement, so a restart after ``kill -9`` continues the window
with them.

One append-only file per asset class. Each record is a fixed header (magic, lengths, CRC-32
of the body) and a body: a JSON line (kind, stream row of the first row, row count,
dimension, whether times follow, the actor) and then the rows as little-endian float32 and
the times as int64. A **cut** record says the rows before a stream row are never to be
replayed (a baseline switch drops the rows of the incomplete window).

:class:`AssetJournal` buffers the records of one engine call and :meth:`~AssetJournal.commit`
writes them with one ``fdatasync`` (group commit: a coalesced call of many batches pays one
sync). A crash mid-write leaves a torn last record, which was never acknowledged: reading
drops it and truncates the file there. A record that fails its CRC with more data after it
is damage, not a torn write, and is refused with :class:`JournalError` naming the file and
offset. Once the file passes ``compact_bytes`` it is rewritten (temp file, fsync, rename)
with only the rows a restart would still need.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..durable import fsync_directory
from .errors import DivergenceError

__all__ = [
    "JOURNAL_DIR",
    "AssetJournal",
    "JournalError",
    "JournalRecord",
    "RowJournal",
    "why_not_following",
]

# The journal's directory inside a series directory: a leading "_" keeps pyarrow's dataset
# discovery (``pyarrow.parquet.read_table(series_dir)``) away from it.
JOURNAL_DIR = "_journal"

MAGIC = b"LAJ1"
HEADER = struct.Struct("<4sIII")  # magic, JSON length, data length, CRC-32 of JSON + data
DEFAULT_COMPACT_BYTES = 64 << 20


class JournalError(DivergenceError):
    """A journal file that is damaged (not merely cut short by a crash)."""


@dataclass(frozen=True)
class JournalRecord:
    """Rows ``[start_row, start_row + len(rows))`` of one stream batch, with their event
    times (time windows) and the actor of the call that sent them."""

    start_row: int
    rows: np.ndarray  # float32 (n, dimension)
    times: np.ndarray | None  # int64 (n,)
    actor: str | None

    @property
    def end_row(self) -> int:
        return self.start_row + len(self.rows)

    def since(self, row: int) -> JournalRecord | None:
        """The part of this record from stream row ``row`` on (None if nothing is left)."""
        if row >= self.end_row:
            return None
        if row <= self.start_row:
            return self
        skip = row - self.start_row
        times = None if self.times is None else self.times[skip:]
        return JournalRecord(row, self.rows[skip:], times, self.actor)


def why_not_following(record: JournalRecord, row: int, dimension: int, by_time: bool) -> str | None:
    """Why ``record`` cannot be appended to a stream at stream row ``row`` whose baseline has
    ``dimension`` (and uses time windows: ``by_time``), or None if it can."""
    if record.start_row != row:
        return f"gap: the stream is at row {row}, the journal continues at {record.start_row}"
    if record.rows.shape[1] != dimension:
        return f"dimension {record.rows.shape[1]}, the baseline's is {dimension}"
    if by_time and record.times is None:
        return "rows without times, the asset now uses time windows"
    return None


@dataclass(frozen=True)
class JournalContents:
    """What a journal file holds: its row records in order, the highest cut, and how many
    bytes of a torn last record were dropped."""

    records: list[JournalRecord]
    cut: int
    torn_bytes: int


def _encode(kind: str, start_row: int, rows: np.ndarray | None, times: np.ndarray | None,
            actor: str | None) -> bytes:  # fmt: skip
    data = b""
    meta: dict[str, object] = {"kind": kind, "start_row": int(start_row), "actor": actor}
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype="<f4")
        meta.update(n=int(rows.shape[0]), dim=int(rows.shape[1]), times=times is not None)
        data = rows.tobytes()
        if times is not None:
            data += np.ascontiguousarray(times, dtype="<i8").tobytes()
    head = json.dumps(meta, separators=(",", ":")).encode()
    crc = zlib.crc32(data, zlib.crc32(head))
    return HEADER.pack(MAGIC, len(head), len(data), crc) + head + data


def _decode(head: bytes, data: bytes) -> tuple[str, int, JournalRecord | None]:
    meta = json.loads(head)
    kind, start = meta["kind"], int(meta["start_row"])
    if kind == "cut":
        return kind, start, None
    n, dim = int(meta["n"]), int(meta["dim"])
    rows = np.frombuffer(data, dtype="<f4", count=n * dim).reshape(n, dim)
    times = np.frombuffer(data, dtype="<i8", offset=n * dim * 4) if meta["times"] else None
    return kind, start, JournalRecord(start, rows, times, meta.get("actor"))


class AssetJournal:
    """The journal file of one asset class (used from one engine thread at a time: the
    asset's batcher serialises its calls)."""

    def __init__(self, path: Path, compact_bytes: int) -> None:
        self.path = path
        self.compact_bytes = compact_bytes
        self._pending: list[bytes] = []
        self._file = None

    # --- writing ----------------------------------------------------------------------------

    def add(self, start_row: int, rows: np.ndarray, times: np.ndarray | None,
            actor: str | None) -> None:  # fmt: skip
        """Buffer a batch's rows (validated, appended to the stream at ``start_row``)."""
        self._pending.append(_encode("rows", start_row, rows, times, actor))

    def cut(self, row: int) -> None:
        """Buffer a cut: rows before stream row ``row`` are never to be replayed."""
        self._pending.append(_encode("cut", row, None, None, None))

    def commit(self, keep_from: int | None = None) -> None:
        """Write the buffered records and make them durable (one ``fdatasync``); then, if
        the file has grown past ``compact_bytes``, rewrite it with the rows from
        ``keep_from`` on."""
        if self._pending:
            handle = self._handle()
            end = handle.tell()
            try:
                handle.writelines(self._pending)  # no joined copy of a coalesced call's rows
                handle.flush()
                os.fdatasync(handle.fileno())
            except BaseException:
                # E.g. a full disk: cut off what was half written and keep the records for
                # the next commit, so the file never has a gap or garbage in its middle.
                self._truncate(end)
                raise
            self._pending = []
        if keep_from is None or self._file is None:
            return
        if self._file.tell() > self.compact_bytes:  # the append position is the file size
            self.rewrite(keep_from)

    def rewrite(
        self, keep_from: int, records: list[JournalRecord] | None = None, cut: int = 0
    ) -> None:
        """Replace the file with its rows from stream row ``keep_from`` on and a cut there
        (or at a higher earlier cut), atomically: temp file, fsync, rename, fsync of the
        directory. A caller that has just read the file passes its ``records`` and ``cut``
        instead of having it read again."""
        if records is None:
            contents = self.read()
            records, cut = contents.records, contents.cut
        kept = [r for r in (rec.since(keep_from) for rec in records) if r is not None]
        staging = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with staging.open("wb") as out:
            out.write(_encode("cut", max(keep_from, cut), None, None, None))
            for record in kept:
                out.write(_encode("rows", record.start_row, record.rows, record.times,
                                  record.actor))  # fmt: skip
            out.flush()
            os.fsync(out.fileno())
        self.close()
        os.replace(staging, self.path)
        fsync_directory(self.path.parent)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _handle(self):
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        return self._file

    def set_aside(self) -> Path:
        """Keep a copy of the file as it is (rows that will not be replayed), named with the
        time; returns its path."""
        copy = self.path.with_name(f"{self.path.name}.left-out-{time.time_ns()}")
        shutil.copyfile(self.path, copy)
        with copy.open("rb") as handle:
            os.fsync(handle.fileno())
        return copy

    def _truncate(self, size: int) -> None:
        self.close()
        with self.path.open("r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())

    # --- reading ----------------------------------------------------------------------------

    def read(self) -> JournalContents:
        """The records on disk. A torn last record (a crash mid-write: never acknowledged)
        is dropped and the file truncated there; damage before the end raises
        :class:`JournalError`."""
        if not self.path.exists():
            return JournalContents([], 0, 0)
        blob = self.path.read_bytes()
        records: list[JournalRecord] = []
        cut, at = 0, 0
        while at < len(blob):
            end = self._record_end(blob, at)
            if end is None:  # torn: the last write of a crashed process
                self._truncate(at)
                return JournalContents(records, cut, len(blob) - at)
            head_len = HEADER.unpack_from(blob, at)[1]
            body = at + HEADER.size
            kind, start, record = _decode(blob[body : body + head_len],
                                          blob[body + head_len : end])  # fmt: skip
            if kind == "cut":
                cut = max(cut, start)
            elif record is not None:
                records.append(record)
            at = end
        return JournalContents(records, cut, 0)

    def _record_end(self, blob: bytes, at: int) -> int | None:
        """Where the record at ``at`` ends; None if it is invalid and no valid record
        follows (the torn last write of a crashed process); :class:`JournalError` if one
        does (damage in the middle of the file)."""
        end = _valid_end(blob, at)
        if end is not None:
            return end
        follows = blob.find(MAGIC, at + 1)
        while follows >= 0:
            if _valid_end(blob, follows) is not None:
                raise JournalError(
                    f"{self.path}: the record at byte {at} is damaged (bad magic, length or "
                    f"CRC) and valid records follow it at byte {follows}: the file was "
                    "altered or the disk corrupted it. Move the file aside to start without "
                    "replaying its rows."
                )
            follows = blob.find(MAGIC, follows + 1)
        return None


def _valid_end(blob: bytes, at: int) -> int | None:
    """The end of a whole record with a good magic and CRC at ``at``, else None."""
    if len(blob) - at < HEADER.size:
        return None
    magic, head_len, data_len, crc = HEADER.unpack_from(blob, at)
    end = at + HEADER.size + head_len + data_len
    if magic != MAGIC or end > len(blob):
        return None
    return end if zlib.crc32(blob[at + HEADER.size : end]) == crc else None


class RowJournal:
    """The journal files of every asset class, in one directory."""

    def __init__(self, directory: str | Path, *, compact_bytes: int = DEFAULT_COMPACT_BYTES):
        self.directory = Path(directory)
        self.compact_bytes = compact_bytes
        self._streams: dict[str, AssetJournal] = {}
        self._lock = threading.Lock()

    def stream(self, asset: str) -> AssetJournal:
        with self._lock:
            journal = self._streams.get(asset)
            if journal is None:
                path = self.directory / f"{quote(asset, safe='')}.journal"
                journal = self._streams[asset] = AssetJournal(path, self.compact_bytes)
            return journal

    def close(self) -> None:
        with self._lock:
            for journal in self._streams.values():
                journal.close()
