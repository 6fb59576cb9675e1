"""AlertService: every alert transition, streamed to subscribers after its ledger intent exists.

The monitor calls :meth:`AlertHub.listener` inside the alert's write-ahead action, in an engine
thread; the hub hands the event to the event loop, which fans it out to each subscriber's
bounded queue. A subscriber that falls ``buffer`` alerts behind is ended with
RESOURCE_EXHAUSTED instead of slowing scoring down; on shutdown every stream ends UNAVAILABLE.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import grpc

from .._generated.lineage_audit.v1 import alerts_pb2, alerts_pb2_grpc, common_pb2
from ..divergence.monitor import AlertEvent
from .auth import Authenticator
from .errors import RequestError, status_for
from .fanout import FanOut
from .metrics import ServerMetrics

__all__ = ["AlertHub", "AlertServicer", "alert_to_proto"]

LEVELS = {
    "ok": common_pb2.LEVEL_OK,
    "watch": common_pb2.LEVEL_WATCH,
    "halt": common_pb2.LEVEL_HALT,
}


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


class AlertHub(FanOut):
    """Alert events from engine threads, fanned out to the WatchAlerts streams."""

    def __init__(self, metrics: ServerMetrics, *, buffer: int = 1024) -> None:
        super().__init__(buffer=buffer)
        self.metrics = metrics

    def listener(self, event: AlertEvent) -> None:
        """Monitor listener (engine thread): publish on the event loop."""
        self.metrics.alert(event.transition.asset, event.transition.after.value)
        self.publish(alert_to_proto(event))

    def subscribers_changed(self, count: int) -> None:
        self.metrics.alert_subscribers(count)


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
        assets, min_level = frozenset(request.asset_classes), int(request.min_level)

        def wants(alert: alerts_pb2.Alert) -> bool:
            return (not assets or alert.asset in assets) and alert.after >= min_level

        overflow = (f"alert stream fell more than {self.hub.buffer} alerts behind; resubscribe "
                    "and read the ledger for the gap")  # fmt: skip
        async for alert in self.hub.stream(context, wants, overflow=overflow):
            yield alert
