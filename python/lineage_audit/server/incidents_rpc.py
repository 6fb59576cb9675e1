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
from typing import Any

import grpc

from .._generated.lineage_audit.v1 import incidents_pb2, incidents_pb2_grpc
from ..incidents import HaltHook, IncidentError, IncidentEvent, IncidentManager
from ..incidents.errors import status_of
from .auth import Authenticator
from .errors import status_for
from .fanout import FanOut

__all__ = ["IncidentHub", "IncidentServicer", "event_to_proto", "summary_to_proto"]


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


class IncidentHub(FanOut):
    """Incident events from any thread, fanned out to the WatchIncidents streams."""

    def __init__(self, *, buffer: int = 256) -> None:
        super().__init__(buffer=buffer)

    def listener(self, event: IncidentEvent) -> None:
        """IncidentManager listener: publish on the event loop."""
        self.publish(event_to_proto(event))


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
        assets = frozenset(request.asset_classes)
        overflow = (f"incident stream fell more than {self.hub.buffer} events behind; "
                    "resubscribe and read the queue with ListIncidents")  # fmt: skip

        def wants(event: incidents_pb2.IncidentEvent) -> bool:
            return not assets or event.asset_class in assets

        async for event in self.hub.stream(context, wants, overflow=overflow):
            yield event
