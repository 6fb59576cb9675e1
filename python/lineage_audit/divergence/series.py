"""The per-window time series: Parquet part files in one directory (a pyarrow dataset).

Each flush writes one complete part file (temp file, fsync, rename, directory fsync), so a
crash loses at most the windows not yet flushed and never leaves a half-written file in the
series. Read the whole series with ``pyarrow.parquet.read_table(directory)``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..durable import fsync_directory

__all__ = ["SERIES_SCHEMA_FIELDS", "SeriesWriter", "WindowResult", "read_series"]


@dataclass(frozen=True)
class WindowResult:
    """One scored (or skipped) window of one asset class."""

    asset: str
    window: int
    status: str  # "scored", or "insufficient" (too few rows in a time window)
    rows: int  # rows that fell in the window
    scored_rows: int  # rows scored (time windows are thinned to a calibrated size)
    start_row: int
    end_row: int  # exclusive
    start_time_ns: int | None
    end_time_ns: int | None
    mmd2: float
    effect: float
    p: float
    z: float
    lambda_hat: float
    lambda_se: float
    mean_similarity: float
    z_similarity: float
    level: str
    bandwidth_id: str
    baseline_version: str
    backend: str


SERIES_SCHEMA_FIELDS = tuple(WindowResult.__dataclass_fields__)


def _schema():
    import pyarrow as pa

    types = {
        "asset": pa.string(),
        "window": pa.int64(),
        "status": pa.string(),
        "rows": pa.int64(),
        "scored_rows": pa.int64(),
        "start_row": pa.int64(),
        "end_row": pa.int64(),
        "start_time_ns": pa.int64(),
        "end_time_ns": pa.int64(),
        "level": pa.string(),
        "bandwidth_id": pa.string(),
        "baseline_version": pa.string(),
        "backend": pa.string(),
    }
    return pa.schema([(name, types.get(name, pa.float64())) for name in SERIES_SCHEMA_FIELDS])


class SeriesWriter:
    """Appends window results to ``directory`` as atomic Parquet part files."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)  # created on the first write, not before
        self._parts = len(list(self.directory.glob("part-*.parquet")))

    def write(self, results: Sequence[WindowResult]) -> Path | None:
        if not results:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([asdict(r) for r in results], schema=_schema())
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"part-{self._parts:06d}-{uuid.uuid4().hex[:8]}.parquet"
        final = self.directory / name
        staging = self.directory / f".{name}.tmp"
        pq.write_table(table, staging)
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, final)
        fsync_directory(self.directory)  # the rename too: the row journal relies on it
        self._parts += 1
        return final


def read_series(directory: str | Path):
    """The whole series as one Arrow table, in write order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(Path(directory).glob("part-*.parquet"))
    if not parts:
        return _schema().empty_table()
    return pa.concat_tables(pq.read_table(p, schema=_schema()) for p in parts)
