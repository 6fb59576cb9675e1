"""ScoringService: unary ``Score`` (one-off, stateless) and ``StreamScore`` (the window stream).

Requests are decoded and shape-checked on the event loop, then queued in their asset's
:class:`.batching.AssetBatcher`, which coalesces concurrent calls into one kernel call in the
engine thread pool. The caller's identity (see :mod:`.auth`) is the actor of any alert its
rows cause. With an ``[incidents]`` policy, every reply says whether the asset class's signal
may be relied on (a halt suspends reliance; scoring and recording go on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from .._generated.lineage_audit.v1 import scoring_pb2, scoring_pb2_grpc
from ..divergence.monitor import AssetMonitor, Monitor, ObserveOutcome
from .auth import Authenticator
from .batching import AssetBatcher, Job
from .codec import Batch, decode_embeddings, result_to_proto
from .errors import RequestError, status_for
from .metrics import ServerMetrics

__all__ = ["ScoringServicer"]


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(
        self,
        monitor: Monitor,
        batchers: dict[str, AssetBatcher],
        auth: Authenticator,
        metrics: ServerMetrics,
        *,
        max_rows: int,
        reliance: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.monitor = monitor
        self.batchers = batchers
        self.auth = auth
        self.metrics = metrics
        self.max_rows = max_rows
        self.reliance = reliance  # asset class -> Reliance fields (server.incident_side)

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

    def _job(self, kind: str, request, context, actor: str | None) -> tuple[str, Job]:
        asset = self._asset(request.asset_class)
        if not request.HasField("embeddings"):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "embeddings: missing")
        batch: Batch = decode_embeddings(
            request.embeddings, asset.baseline, asset=asset.asset, max_rows=self.max_rows
        )
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        return asset.asset, Job(kind, batch, actor, deadline)

    def _reliance(self, name: str) -> scoring_pb2.Reliance | None:
        """Read when the reply is built: a halt fired meanwhile is reported at once."""
        found = self.reliance(name) if self.reliance is not None else None
        return None if found is None else scoring_pb2.Reliance(**found)

    # --- RPCs -------------------------------------------------------------------------------

    async def Score(self, request, context) -> scoring_pb2.ScoreResponse:
        started, code = time.perf_counter(), "OK"
        try:
            actor = self.auth.identify(context)
            name, job = self._job("score", request, context, actor)
            result = await self.batchers[name].submit(job)
            return scoring_pb2.ScoreResponse(
                result=result_to_proto(result), request_id=request.request_id,
                reliance=self._reliance(name),
            )  # fmt: skip
        except Exception as exc:
            status, message = status_for(exc)
            code = status.name
            await context.abort(status, message)
        finally:
            self.metrics.rpc_finished("Score", code, time.perf_counter() - started)

    async def StreamScore(
        self, request_iterator, context
    ) -> AsyncIterator[scoring_pb2.StreamScoreResponse]:
        started, code = time.perf_counter(), "OK"
        try:
            actor = self.auth.identify(context)
            async for request in request_iterator:
                name, job = self._job("observe", request, context, actor)
                outcome: ObserveOutcome = await self.batchers[name].submit(job)
                yield scoring_pb2.StreamScoreResponse(
                    windows=[result_to_proto(r) for r in outcome.windows],
                    request_id=request.request_id,
                    pending_rows=outcome.pending_rows,
                    reliance=self._reliance(name),
                )
        except Exception as exc:
            status, message = status_for(exc)
            code = status.name
            await context.abort(status, message)
        finally:
            self.metrics.rpc_finished("StreamScore", code, time.perf_counter() - started)
