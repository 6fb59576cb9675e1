"""IncidentService: the incident queue and the halt hook over gRPC, and the WatchIncidents
stream.

Calls identify the caller like every other service (:meth:`Authenticator.identify`); that
identity is the actor the manager checks against the policy and records. Incident errors map
to status codes through the same table as the HTTP routes (:func:`~..incidents.errors.
status_of`): out of order is FAILED_PRECONDITION, a caller the policy does not list is
PERMISSION_DENIED (and recorded), unknown ids NOT_FOUND.

:class:`IncidentHub` is the manager's listener: manager changes and halts happen in engine
threads (or an HTTP handler's executor thread); the hub hands each event to the event loop,
which fans it out to each subscriber's bounded queue, as the alert stream does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc

from .._generated.lineage_audit.v1 import incidents_pb2, incidents_pb2_grpc
from ..incidents import HaltHook, IncidentError, IncidentEvent, IncidentManager
from ..incidents.errors import status_of
from .auth import Authenticator
from .errors import status_for

__all__ = ["IncidentHub", "IncidentServicer", "event_to_proto", "summary_to_proto"]

_END = None  # queue sentinel: the server is stopping


def summary_to_proto(summary: dict[str, Any]) -> incidents_pb2.Incident:
    return incidents_pb2.Incident(**summary)


def event_to_proto(event: IncidentEvent) -> incidents_pb2.IncidentEvent:
    detail = event.detail or {}
    message = incidents_pb2.IncidentEvent(
        kind=event.kind,
        actor=event.actor,
        ledger_seq=event.ledger_seq,
        asset_class=(event.incident or detail).get("asset_class", ""),
        detail=json.dumps(detail, sort_keys=True).encode() if event.detail else b"",
        time_ns=time.time_ns(),
    )
    if event.incident is not None:
        message.incident.CopyFrom(summary_to_proto(event.incident))
    return message


@dataclass(eq=False)
class _Subscriber:
    assets: frozenset[str]
    queue: asyncio.Queue
    overflowed: bool = False


class IncidentHub:
    """Fan-out of incident events from any thread to the event loop's subscribers."""

    def __init__(self, *, buffer: int = 256) -> None:
        self.buffer = buffer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[_Subscriber] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listener(self, event: IncidentEvent) -> None:
        """IncidentManager listener: publish on the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, event_to_proto(event))

    def _publish(self, event: incidents_pb2.IncidentEvent) -> None:
        for sub in list(self._subscribers):
            if sub.overflowed or (sub.assets and event.asset_class not in sub.assets):
                continue
            if sub.queue.qsize() >= self.buffer:
                sub.overflowed = True  # its stream ends; no change ever waits for a reader
                sub.queue.put_nowait(_END)
            else:
                sub.queue.put_nowait(event)

    def subscribe(self, assets: frozenset[str]) -> _Subscriber:
        sub = _Subscriber(assets, asyncio.Queue())  # bounded by _publish
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (server shutdown)."""
        for sub in self._subscribers:
            sub.queue.put_nowait(_END)


class IncidentServicer(incidents_pb2_grpc.IncidentServiceServicer):
    def __init__(self, manager: IncidentManager, hook: HaltHook, hub: IncidentHub,
                 auth: Authenticator, executor: Executor) -> None:  # fmt: skip
        self.manager = manager
        self.hook = hook
        self.hub = hub
        self.auth = auth
        self.executor = executor

    async def _call(self, context, fn: Callable[[str | None], Any]) -> Any:
        """``fn(actor)`` in the executor (ledger writes, the webhook); errors as statuses."""
        try:
            who = self.auth.identify(context)
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, who)
        except IncidentError as exc:
            await context.abort(grpc.StatusCode[status_of(exc)[1]], str(exc))
        except Exception as exc:
            await context.abort(*status_for(exc))

    async def ListIncidents(self, request, context) -> incidents_pb2.ListIncidentsResponse:
        found = await self._call(context, lambda _: self.manager.list(
            state=request.state or None, asset_class=request.asset_class or None))  # fmt: skip
        return incidents_pb2.ListIncidentsResponse(
            incidents=[summary_to_proto(i.summary()) for i in found]
        )

    async def GetIncident(self, request, context) -> incidents_pb2.IncidentDetail:
        incident = await self._call(context, lambda _: self.manager.get(request.id))
        return incidents_pb2.IncidentDetail(
            incident=summary_to_proto(incident.summary()),
            json=json.dumps(incident.to_json(), sort_keys=True).encode(),
        )

    async def Acknowledge(self, request, context) -> incidents_pb2.Incident:
        incident = await self._call(context, lambda who: self.manager.acknowledge(
            request.id, actor=who, note=request.note))  # fmt: skip
        return summary_to_proto(incident.summary())

    async def Resolve(self, request, context) -> incidents_pb2.Incident:
        incident = await self._call(context, lambda who: self.manager.resolve(
            request.id, actor=who, note=request.note))  # fmt: skip
        return summary_to_proto(incident.summary())

    async def FireHalt(self, request, context) -> incidents_pb2.HaltReply:
        result = await self._call(context, lambda who: self.hook.fire(
            request.asset_class, actor=who, reason=request.reason,
            incident_id=request.incident_id or None))  # fmt: skip
        return incidents_pb2.HaltReply(
            action=result.action, asset_class=result.asset_class, signal=result.signal,
            incident_id=result.incident_id or "", actor=result.actor,
            intent_seq=result.intent_seq, outcome_seq=result.outcome_seq,
            delivered=result.delivered, webhook_status=result.webhook_status or 0,
            webhook_error=result.webhook_error or "",
            envelope=json.dumps(result.envelope, sort_keys=True).encode(),
        )  # fmt: skip

    async def WatchIncidents(self, request, context) -> AsyncIterator[incidents_pb2.IncidentEvent]:
        try:
            self.auth.identify(context)
            for name in request.asset_classes:
                self.manager.policy.asset(name)  # unknown: NOT_FOUND naming the known ones
        except IncidentError as exc:
            await context.abort(grpc.StatusCode[status_of(exc)[1]], str(exc))
        except Exception as exc:
            await context.abort(*status_for(exc))
        sub = self.hub.subscribe(frozenset(request.asset_classes))
        try:
            # Initial metadata tells the client it is subscribed: events from now on reach it.
            await context.send_initial_metadata((("lineage-audit-subscribed", "1"),))
            while True:
                event = await sub.queue.get()
                if event is _END:
                    break
                yield event
        finally:
            self.hub.unsubscribe(sub)
        if sub.overflowed:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"incident stream fell more than {self.hub.buffer} events behind; "
                "resubscribe and read the queue with ListIncidents",
            )
        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
