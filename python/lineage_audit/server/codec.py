"""Wire format <-> engine: packed little-endian float32 embeddings, and window results.

Checks that need only the message and the baseline (shape rank, rows, dimension, byte length,
id/time counts, size limit) are made here, before any engine call; finiteness, zero rows and
the encoder id are checked by the engine itself (same messages as the CLI).
"""

from __future__ import annotations

import math

import grpc
import numpy as np

from .._generated.lineage_audit.v1 import common_pb2
from ..divergence.baseline import Baseline
from ..divergence.series import WindowResult
from .errors import RequestError

__all__ = ["Batch", "decode_embeddings", "result_to_proto"]

_LEVELS = {
    "ok": common_pb2.LEVEL_OK,
    "watch": common_pb2.LEVEL_WATCH,
    "halt": common_pb2.LEVEL_HALT,
}


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


class Batch:
    """A decoded batch: ``rows`` (n, D) float32 (a read-only view of the bytes), times, ids."""

    __slots__ = ("encoder_id", "item_ids", "rows", "times")

    def __init__(self, rows, times, item_ids, encoder_id) -> None:
        self.rows = rows
        self.times = times
        self.item_ids = item_ids
        self.encoder_id = encoder_id


def decode_embeddings(
    message: common_pb2.Embeddings, baseline: Baseline, *, asset: str, max_rows: int
) -> Batch:
    """Validate the shape and bytes of ``message`` against ``baseline``; decode, no copy."""
    shape = list(message.shape)
    if len(shape) != 2:
        raise _invalid(
            f"embeddings.shape: expected 2 entries [rows, dimension], got {len(shape)}: {shape}"
        )
    rows, dim = shape
    if rows == 0:
        raise _invalid("embeddings.shape: empty: rows is 0, no embeddings to score")
    if rows > max_rows:
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"embeddings.shape: {rows} rows exceed this server's limit of {max_rows} per request",
        )
    if dim != baseline.dimension:
        raise _invalid(
            f"embeddings.shape: dimension {dim} does not match the baseline's "
            f"{baseline.dimension} (asset class {asset!r}, baseline {baseline.version})"
        )
    expected = 4 * rows * dim
    if len(message.data) != expected:
        raise _invalid(
            f"embeddings.data: {len(message.data)} bytes, but shape [{rows}, {dim}] needs "
            f"4 * {rows} * {dim} = {expected} (packed little-endian float32)"
        )
    if message.item_ids and len(message.item_ids) != rows:
        raise _invalid(
            f"embeddings.item_ids: {len(message.item_ids)} ids for {rows} rows (expected 0 or "
            f"{rows})"
        )
    times = None
    if message.event_times_ns:
        if len(message.event_times_ns) != rows:
            raise _invalid(
                f"embeddings.event_times_ns: {len(message.event_times_ns)} times for {rows} "
                f"rows (expected 0 or {rows})"
            )
        times = np.asarray(message.event_times_ns, dtype=np.int64)
    array = np.frombuffer(message.data, dtype="<f4").reshape(rows, dim)
    return Batch(array, times, list(message.item_ids), message.encoder_id or None)


def result_to_proto(result: WindowResult) -> common_pb2.WindowResult:
    out = common_pb2.WindowResult(
        asset=result.asset,
        window=result.window,
        status=result.status,
        rows=result.rows,
        scored_rows=result.scored_rows,
        start_row=result.start_row,
        end_row=result.end_row,
        mmd2=_float(result.mmd2),
        effect=_float(result.effect),
        p=_float(result.p),
        z=_float(result.z),
        lambda_hat=_float(result.lambda_hat),
        lambda_se=_float(result.lambda_se),
        mean_similarity=_float(result.mean_similarity),
        z_similarity=_float(result.z_similarity),
        level=_LEVELS.get(result.level, common_pb2.LEVEL_UNSPECIFIED),
        bandwidth_id=result.bandwidth_id,
        baseline_version=result.baseline_version,
        backend=result.backend,
    )
    if result.start_time_ns is not None:
        out.start_time_ns = int(result.start_time_ns)
    if result.end_time_ns is not None:
        out.end_time_ns = int(result.end_time_ns)
    return out


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
