"""AlertService: every alert transition, streamed to subscribers after its ledger intent exists.

The monitor calls :meth:`AlertHub.listener` inside the alert's write-ahead action, in an engine
thread; the hub hands the event to the event loop, which fans it out to each subscriber's
bounded queue. A subscriber that falls ``buffer`` alerts behind is ended with
RESOURCE_EXHAUSTED instead of slowing scoring down; on shutdown every stream ends UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from .._generated.lineage_audit.v1 import alerts_pb2, alerts_pb2_grpc, common_pb2
from ..divergence.monitor import AlertEvent
from .auth import Authenticator
from .errors import RequestError, status_for
from .metrics import ServerMetrics

__all__ = ["AlertHub", "AlertServicer", "alert_to_proto"]

LEVELS = {
    "ok": common_pb2.LEVEL_OK,
    "watch": common_pb2.LEVEL_WATCH,
    "halt": common_pb2.LEVEL_HALT,
}
_END = None  # queue sentinel: the server is stopping


def alert_to_proto(event: AlertEvent) -> alerts_pb2.Alert:
    t = event.transition
    return alerts_pb2.Alert(
        asset=t.asset,
        before=LEVELS[t.before.value],
        after=LEVELS[t.after.value],
        window=t.window,
        z=t.z if isinstance(t.z, float) and math.isfinite(t.z) else math.nan,
        reason=t.reason,
        ledger_seq=event.ledger_seq or 0,
        time_ns=time.time_ns(),
        baseline_version=event.baseline_version,
    )


@dataclass(eq=False)
class _Subscriber:
    assets: frozenset[str]
    min_level: int
    queue: asyncio.Queue
    overflowed: bool = False

    def wants(self, alert: alerts_pb2.Alert) -> bool:
        return (not self.assets or alert.asset in self.assets) and alert.after >= self.min_level


class AlertHub:
    """Fan-out of alert events from engine threads to the event loop's subscribers."""

    def __init__(self, metrics: ServerMetrics, *, buffer: int = 1024) -> None:
        self.metrics = metrics
        self.buffer = buffer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[_Subscriber] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listener(self, event: AlertEvent) -> None:
        """Monitor listener (engine thread): publish on the event loop."""
        self.metrics.alert(event.transition.asset, event.transition.after.value)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, alert_to_proto(event))

    def _publish(self, alert: alerts_pb2.Alert) -> None:
        for sub in list(self._subscribers):
            if not sub.wants(alert) or sub.overflowed:
                continue
            if sub.queue.qsize() >= self.buffer:
                sub.overflowed = True  # its stream ends; scoring never waits for a reader
                sub.queue.put_nowait(_END)
            else:
                sub.queue.put_nowait(alert)

    def subscribe(self, assets: frozenset[str], min_level: int) -> _Subscriber:
        sub = _Subscriber(assets, min_level, asyncio.Queue())  # bounded by _publish
        self._subscribers.add(sub)
        self.metrics.alert_subscribers(len(self._subscribers))
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)
        self.metrics.alert_subscribers(len(self._subscribers))

    def close(self) -> None:
        """End every subscription (server shutdown)."""
        for sub in self._subscribers:
            sub.queue.put_nowait(_END)


class AlertServicer(alerts_pb2_grpc.AlertServiceServicer):
    def __init__(self, hub: AlertHub, known_assets: set[str], auth: Authenticator) -> None:
        self.hub = hub
        self.known_assets = known_assets
        self.auth = auth

    async def WatchAlerts(self, request, context) -> AsyncIterator[alerts_pb2.Alert]:
        try:
            self.auth.identify(context)
            unknown = sorted(set(request.asset_classes) - self.known_assets)
            if unknown:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"asset_classes: {unknown} not served; served: {sorted(self.known_assets)}",
                )
        except Exception as exc:
            await context.abort(*status_for(exc))
        sub = self.hub.subscribe(frozenset(request.asset_classes), int(request.min_level))
        try:
            # Initial metadata tells the client it is subscribed: alerts from now on reach it.
            await context.send_initial_metadata((("lineage-audit-subscribed", "1"),))
            while True:
                alert = await sub.queue.get()
                if alert is _END:
                    break
                yield alert
        finally:
            self.hub.unsubscribe(sub)
        if sub.overflowed:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"alert stream fell more than {self.hub.buffer} alerts behind; resubscribe "
                "and read the ledger for the gap",
            )
        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
