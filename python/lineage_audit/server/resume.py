"""Where each asset's window stream resumes after a restart (graceful or not), and on which
baseline.

A baseline switched over gRPC (``baseline.activate``) is restored from the ledger: the last
such action per asset whose outcome succeeded names the version that was active when the
server stopped, so a restart does not silently fall back to the config's baseline. The
version must be one the config loads (``baseline`` or ``candidates``); if it is not, the
config's baseline stays and the start line says so.

The per-window series is the durable record of the stream (each part file is written whole or
not at all), so a restarted server continues from its last window: the window index, the
stream row after that window and the alert level (a latched halt stays latched across a
crash), and where the next window starts (the last one's start plus the stride). Rows
acknowledged after that window are in the row journal (``_journal`` in the series
directory, :mod:`..divergence.journal`): they are replayed into the stream, in order and
with the actor that sent them, and any window they complete is scored then. When windows
overlap, the rows the next window shares with the last are replayed too. Journaled
rows that do not follow on from the stream (a gap, another dimension, no times for time
windows) are not replayed: they are reported in the ``server.run`` intent and the journal
file as it was is kept beside the new one (``<asset>.journal.left-out-<ns>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..divergence.journal import JournalRecord, why_not_following
from ..divergence.monitor import Monitor
from ..divergence.rules import Level
from ..divergence.series import read_series

__all__ = ["replay_journals", "restore_baselines", "resume_streams"]


def _activated(ledger: Any) -> dict[str, str]:
    """Asset -> version of its last succeeded ``baseline.activate`` (write-ahead pairs)."""
    pending: dict[int, tuple[str, str]] = {}
    active: dict[str, str] = {}
    for entry in ledger.entries_of(["baseline.activate"]):
        predicate = entry.statement()["predicate"]
        if entry.kind == "intent":
            pending[entry.seq] = (predicate["asset"], predicate["version"])
        elif predicate.get("status") == "succeeded" and predicate["intent"]["seq"] in pending:
            asset, version = pending.pop(predicate["intent"]["seq"])
            active[asset] = version
    return active


def restore_baselines(monitor: Monitor, registry: Any) -> dict[str, Any]:
    """Make each asset's last activated baseline (per the ledger) active again; returns, by
    asset, the version restored or why it could not be."""
    if monitor.ledger is None:
        return {}
    restored: dict[str, Any] = {}
    for name, version in _activated(monitor.ledger).items():
        asset = monitor.assets.get(name)
        if asset is None or asset.baseline.version == version:
            continue
        loaded = registry.by_version.get(version)
        if loaded is None:
            restored[name] = {"version": version, "restored": False,
                              "why": "not loaded: name it in the asset's candidates"}  # fmt: skip
            continue
        monitor.assets[name] = asset.successor(loaded.baseline)  # state, not a new switch
        restored[name] = {"version": version, "restored": True}
    return restored


def resume_streams(monitor: Monitor, series_dir: Path | None) -> dict[str, Any]:
    """Resume every asset with windows in ``series_dir``; returns what was resumed, by asset."""
    if series_dir is None or not Path(series_dir).is_dir():
        return {}
    table = read_series(series_dir)
    if table.num_rows == 0:
        return {}
    last: dict[str, dict[str, Any]] = {}
    columns = ["asset", "window", "start_row", "end_row", "start_time_ns", "level"]
    for row in table.select(columns).to_pylist():
        seen = last.get(row["asset"])
        if seen is None or row["window"] > seen["window"]:
            last[row["asset"]] = row
    resumed = {}
    for name, row in last.items():
        asset = monitor.assets.get(name)
        if asset is None:
            continue
        policy, start_ns = asset.policy, row["start_time_ns"]
        asset.resume(
            windows=row["window"] + 1, stream_row=row["end_row"], level=Level(row["level"]),
            next_start=None if policy.by_time else row["start_row"] + policy.row_stride,
            window_start_ns=(start_ns + policy.time_stride
                             if policy.by_time and start_ns is not None else None),
        )  # fmt: skip
        resumed[name] = {"windows": asset.windows, "stream_row": asset.rows_seen,
                         "level": row["level"]}  # fmt: skip
    return resumed


def replay_journals(monitor: Monitor) -> dict[str, Any]:
    """Replay each asset's journaled rows past its resumed stream position (after
    :func:`resume_streams`); returns, by asset, what was replayed or left out. The journal
    is then rewritten to hold exactly the rows a later window may still use."""
    if monitor.journal is None:
        return {}
    replayed: dict[str, Any] = {}
    for name, asset in monitor.assets.items():
        journal = monitor.journal.stream(name)
        contents = journal.read()
        if contents.cut > asset.rows_seen:
            asset.skip_to(contents.cut)  # rows a baseline switch dropped
        shared = _shared_rows_from(asset, contents)
        if shared is not None:  # overlapping windows: take the shared rows again
            asset.rewind(shared)
        records, left_out = _follow_on(contents.records, asset.rows_seen,
                                       asset.baseline.dimension, asset.policy.by_time)  # fmt: skip
        if left_out:  # nothing is deleted: the file as it was stays beside the journal
            left_out["kept_in"] = journal.set_aside().name
        windows = monitor.replay(name, records)
        journal.rewrite(asset.first_needed_row, records, contents.cut)  # no second read
        replayed[name] = {
            "replayed_rows": sum(len(r.rows) for r in records),
            "shared_with_last_window": 0 if shared is None else asset.last_window_end - shared,
            "windows_completed": len(windows),
            "stream_row": asset.rows_seen,
            "torn_bytes": contents.torn_bytes,
            **({"left_out": left_out} if left_out else {}),
        }
    return replayed


def _shared_rows_from(asset: Any, contents: Any) -> int | None:
    """Where the next window starts, if that is before the resumed stream position (windows
    that overlap) and the journal holds every row from there on; else None."""
    end = asset.rows_seen
    if asset.policy.by_time:
        start_ns = asset.next_window_start_ns
        if start_ns is None:
            return None
        later = [
            record.start_row + int(np.searchsorted(record.times, start_ns))
            for record in contents.records
            if record.times is not None and record.start_row < end and record.times[-1] >= start_ns
        ]
        start = min(later, default=end)
    else:
        start = asset.resumed_next_start
        if start is None:
            return None
    start = max(start, contents.cut)  # never before rows a baseline switch dropped
    if start >= end:
        return None
    shared, _ = _follow_on(contents.records, start, asset.baseline.dimension,
                           asset.policy.by_time)  # fmt: skip
    reached = shared[-1].end_row if shared else start
    return start if reached >= end else None  # only if every shared row can be replayed


def _follow_on(
    records: list[JournalRecord], row: int, dimension: int, by_time: bool
) -> tuple[list[JournalRecord], dict[str, Any] | None]:
    """The records' rows from stream row ``row`` on while they continue the stream without a
    gap, have the baseline's dimension and (time windows) times; and what was left out."""
    out: list[JournalRecord] = []
    for index, record in enumerate(records):
        part = record.since(row)
        if part is None:
            continue
        why = why_not_following(part, row, dimension, by_time)
        if why is not None:
            rest = records[index:]
            return out, {"why": why, "rows": sum(len(r.rows) for r in rest)}
        out.append(part)
        row = part.end_row
    return out, None
