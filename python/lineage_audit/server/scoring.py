"""ScoringService: unary ``Score`` (one-off, stateless) and ``StreamScore`` (the window stream).

The engine runs in a thread pool (``loop.run_in_executor``) so the event loop keeps serving;
each asset class has one lock, since its scorer's buffers and window state are not shared-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from .._generated.lineage_audit.v1 import scoring_pb2, scoring_pb2_grpc
from ..divergence.monitor import AssetMonitor, Monitor
from .codec import Batch, decode_embeddings, result_to_proto
from .errors import RequestError, status_for

__all__ = ["ScoringServicer"]


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, monitor: Monitor, executor: Executor, *, max_rows: int) -> None:
        self.monitor = monitor
        self.executor = executor
        self.max_rows = max_rows
        self.locks = {asset: threading.Lock() for asset in monitor.assets}

    # --- helpers ----------------------------------------------------------------------------

    def _asset(self, name: str) -> AssetMonitor:
        if not name:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "asset_class: missing (empty string)"
            )
        asset = self.monitor.assets.get(name)
        if asset is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"asset_class: no baseline is active for {name!r}; served: "
                f"{sorted(self.monitor.assets)}",
            )
        return asset

    def _decode(self, request: scoring_pb2.ScoreRequest) -> tuple[AssetMonitor, Batch]:
        asset = self._asset(request.asset_class)
        if not request.HasField("embeddings"):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "embeddings: missing")
        batch = decode_embeddings(
            request.embeddings, asset.baseline, asset=asset.asset, max_rows=self.max_rows
        )
        return asset, batch

    async def _run(self, asset: str, fn, *args):
        lock = self.locks[asset]

        def locked():
            with lock:
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self.executor, locked)

    # --- RPCs -------------------------------------------------------------------------------

    async def Score(self, request, context) -> scoring_pb2.ScoreResponse:
        try:
            asset, batch = self._decode(request)
            result = await self._run(
                asset.asset, lambda: asset.evaluate(batch.rows, encoder_id=batch.encoder_id)
            )
        except Exception as exc:
            code, message = status_for(exc)
            await context.abort(code, message)
        return scoring_pb2.ScoreResponse(
            result=result_to_proto(result), request_id=request.request_id
        )

    async def StreamScore(
        self, request_iterator, context
    ) -> AsyncIterator[scoring_pb2.StreamScoreResponse]:
        async for request in request_iterator:
            try:
                asset, batch = self._decode(request)
                results, pending = await self._run(asset.asset, self._observe, asset, batch)
            except Exception as exc:
                code, message = status_for(exc)
                await context.abort(code, message)
            yield scoring_pb2.StreamScoreResponse(
                windows=[result_to_proto(r) for r in results],
                request_id=request.request_id,
                pending_rows=pending,
            )

    def _observe(self, asset: AssetMonitor, batch: Batch):
        name = asset.asset
        results = self.monitor.observe(name, batch.rows, batch.times, encoder_id=batch.encoder_id)
        return results, asset.pending_rows
