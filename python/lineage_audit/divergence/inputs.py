"""Embedding input: validation, L2 normalisation, and loading from .npy, Parquet or Arrow IPC.

Every array that reaches a kernel passes :func:`prepare_embeddings`, so bad input is refused
with the row and column that are wrong before anything is computed or written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["EmbeddingTable", "file_sha256", "load_embeddings", "prepare_embeddings"]

# Column names tried, in order, when a table's embedding or time column is not given.
EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector")
TIME_COLUMNS = ("event_time", "time", "timestamp")


def prepare_embeddings(
    values: object, *, dimension: int | None = None, field: str = "embeddings"
) -> np.ndarray:
    """Return ``values`` as a C-contiguous float32 (n, D) array with unit-norm rows.

    Refuses (with :class:`InputError` naming the problem) anything that is not a non-empty
    2-D array of finite real numbers with non-zero rows, or whose D differs from
    ``dimension``.
    """
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise InputError(field, "expected real numbers", f"dtype {array.dtype}")
    if array.ndim != 2:
        raise InputError(field, "expected a 2-D array (rows, dimension)", f"shape {array.shape}")
    rows, dim = array.shape
    if rows == 0:
        raise InputError(field, "empty: no embeddings to score", f"shape {array.shape}")
    if dim == 0:
        raise InputError(field, "embedding dimension is 0", f"shape {array.shape}")
    if dimension is not None and dim != dimension:
        raise InputError(
            field, f"dimension {dim} does not match the baseline's {dimension}", array.shape
        )
    _check_finite(array, field)
    return _normalised_copy(array, field)


def _check_finite(array: np.ndarray, field: str) -> None:
    if array.dtype.kind != "f":
        return
    finite = np.isfinite(array)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        bad = int((~finite).sum())
        raise InputError(
            f"{field}[{row}][{col}]",
            f"not a finite number ({bad} non-finite value(s) in all)",
            float(array[row, col]),
        )


def _normalised_copy(array: np.ndarray, field: str) -> np.ndarray:
    """A new float32 array of unit rows; the caller's array is never modified."""
    norms = row_norms(array)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise InputError(f"{field}[{int(zero[0])}]", "zero vector cannot be L2-normalised")
    out = np.empty(array.shape, dtype=np.float32)
    np.divide(array, norms[:, None], out=out, casting="unsafe")
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (embedding files and model weights are large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def row_norms(array: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Euclidean row norms in float64, in chunks so memory stays bounded for huge inputs."""
    # float64: a float32 sum of squares of large inputs could overflow to inf.
    norms = np.empty(len(array), dtype=np.float64)
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start : start + chunk], dtype=np.float64)
        norms[start : start + chunk] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return norms


@dataclass(frozen=True)
class EmbeddingTable:
    """Rows of embeddings in file order, with event times (ns since epoch) when present."""

    vectors: np.ndarray
    times: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.vectors)


def load_embeddings(
    path: str | Path, *, column: str | None = None, time_column: str | None = None
) -> EmbeddingTable:
    """Load raw (not yet normalised) embeddings from ``.npy``, Parquet or Arrow IPC.

    Tables hold one list/fixed-size-list column of floats (``column``, or the first of
    ``embedding``, ``embeddings``, ``vector``) and optionally a time column.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("input", "file not found", str(path))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = _read_or_fail(path, lambda: pq.read_table(path))
    elif suffix in (".arrow", ".feather", ".ipc", ".arrows"):
        table = _read_or_fail(path, lambda: _read_ipc(path))
    else:
        raise InputError("input", "unknown format; expected .npy, .parquet or .arrow", str(path))
    return _from_table(table, path, column, time_column)


def _load_npy(path: Path) -> EmbeddingTable:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError("input", f"not a readable .npy array: {exc}", str(path)) from None
    return EmbeddingTable(array, None, str(path))


def _read_ipc(path: Path):
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def _read_or_fail(path: Path, read):
    import pyarrow as pa

    try:
        return read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError("input", f"cannot read table: {exc}", str(path)) from None


def _from_table(table, path: Path, column: str | None, time_column: str | None) -> EmbeddingTable:
    name = column or _first_present(table.column_names, EMBEDDING_COLUMNS)
    if name is None or name not in table.column_names:
        raise InputError(
            "input.column",
            f"no embedding column (looked for {column or ', '.join(EMBEDDING_COLUMNS)})",
            table.column_names,
        )
    vectors = list_column_to_matrix(table.column(name), f"{path.name}:{name}")
    tname = time_column or _first_present(table.column_names, TIME_COLUMNS)
    if time_column is not None and time_column not in table.column_names:
        raise InputError("input.time_column", "no such column", table.column_names)
    times = None if tname is None else _times_ns(table.column(tname), f"{path.name}:{tname}")
    return EmbeddingTable(vectors, times, str(path))


def _first_present(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def list_column_to_matrix(chunked, field: str) -> np.ndarray:
    """A (fixed-size) list<float> Arrow column as a 2-D array (zero-copy when possible)."""
    import pyarrow as pa

    array = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    if array.null_count:
        raise InputError(field, "null embeddings", f"{array.null_count} null row(s)")
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
    elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        lengths = np.asarray(array.value_lengths())
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.flatnonzero(lengths != lengths[0])[0])
            raise InputError(
                f"{field}[{row}]", "rows differ in dimension", f"{lengths[row]} vs {lengths[0]}"
            )
        width = int(lengths[0]) if len(lengths) else 0
    else:
        raise InputError(field, "expected a list column of floats", str(array.type))
    flat = np.asarray(array.flatten())
    if len(array) == 0:
        return np.zeros((0, width), dtype=np.float32)
    return flat.reshape(len(array), width)


def _times_ns(chunked, field: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    array = chunked.combine_chunks()
    if array.null_count:
        raise InputError(field, "null event times", f"{array.null_count} null row(s)")
    if pa.types.is_timestamp(array.type):
        array = pc.cast(array, pa.timestamp("ns", tz=array.type.tz))
        return np.asarray(array.cast(pa.int64()))
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return np.asarray(array).astype(np.int64)
    raise InputError(field, "expected a timestamp or integer column", str(array.type))
