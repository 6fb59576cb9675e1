"""Where each asset's window stream resumes after a restart (graceful or not).

The per-window series is the durable record of the stream (each part file is written whole or
not at all), so a restarted server continues from its last window: the window index, the
stream row after that window and the alert level (a latched halt stays latched across a
crash). Rows of a window that was not complete when the server stopped are not in the series
and are not replayed; the ``server.run`` outcome (graceful stop) counts them as dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..divergence.monitor import Monitor
from ..divergence.rules import Level
from ..divergence.series import read_series

__all__ = ["resume_streams"]


def resume_streams(monitor: Monitor, series_dir: Path | None) -> dict[str, Any]:
    """Resume every asset with windows in ``series_dir``; returns what was resumed, by asset."""
    if series_dir is None or not Path(series_dir).is_dir():
        return {}
    table = read_series(series_dir)
    if table.num_rows == 0:
        return {}
    last: dict[str, dict[str, Any]] = {}
    for row in table.select(["asset", "window", "end_row", "level"]).to_pylist():
        seen = last.get(row["asset"])
        if seen is None or row["window"] > seen["window"]:
            last[row["asset"]] = row
    resumed = {}
    for name, row in last.items():
        asset = monitor.assets.get(name)
        if asset is None:
            continue
        asset.resume(windows=row["window"] + 1, stream_row=row["end_row"],
                     level=Level(row["level"]))  # fmt: skip
        resumed[name] = {"windows": asset.windows, "stream_row": asset.rows_seen,
                         "level": row["level"]}  # fmt: skip
    return resumed
