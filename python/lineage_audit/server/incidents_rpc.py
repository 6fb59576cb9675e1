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
from typing import TYPE_CHECKING, Any

import grpc

from .._generated.lineage_audit.v1 import incidents_pb2, incidents_pb2_grpc
from ..incidents import HaltHook, HaltResult, IncidentError, IncidentEvent, IncidentManager
from ..incidents.errors import status_of
from .auth import Authenticator
from .errors import status_for
from .fanout import FanOut

if TYPE_CHECKING:
    from .incident_side import IncidentDesk

__all__ = ["IncidentHub", "IncidentServicer", "event_to_proto", "halt_to_proto",
           "summary_to_proto"]  # fmt: skip


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


def halt_to_proto(result: HaltResult) -> incidents_pb2.HaltReply:
    return incidents_pb2.HaltReply(
        action=result.action, asset_class=result.asset_class, signal=result.signal,
        incident_id=result.incident_id or "", actor=result.actor,
        intent_seq=result.intent_seq, outcome_seq=result.outcome_seq,
        delivered=result.delivered, webhook_status=result.webhook_status or 0,
        webhook_error=result.webhook_error or "",
        envelope=json.dumps(result.envelope, sort_keys=True).encode(),
    )  # fmt: skip


class IncidentServicer(incidents_pb2_grpc.IncidentServiceServicer):
    def __init__(self, manager: IncidentManager, hook: HaltHook, hub: IncidentHub,
                 auth: Authenticator, executor: Executor, *,
                 desk: IncidentDesk | None = None) -> None:  # fmt: skip
        self.manager = manager
        self.hook = hook
        self.hub = hub
        self.auth = auth
        self.executor = executor
        self.desk = desk  # submissions and artifacts (server.incident_side)

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
        return halt_to_proto(result)

    async def LiftHalt(self, request, context) -> incidents_pb2.HaltReply:
        result = await self._call(context, lambda who: self.hook.lift(
            request.asset_class, actor=who, reason=request.reason,
            incident_id=request.incident_id or None))  # fmt: skip
        return halt_to_proto(result)

    async def SubmitAttribution(self, request, context) -> incidents_pb2.SubmitAttributionReply:
        done = await self._call(context, lambda who: self.desk.submit_attribution(
            request.asset_class, request.summary_json, request.results_parquet, who))  # fmt: skip
        reply = incidents_pb2.SubmitAttributionReply(
            job=done.job, stored=done.stored, rows=done.rows, discoveries=done.discoveries,
            discovery_fraction=done.discovery_fraction, intent_seq=done.intent_seq,
            outcome_seq=done.outcome_seq,
        )  # fmt: skip
        if done.incident is not None:
            reply.incident.CopyFrom(summary_to_proto(done.incident))
        return reply

    async def SubmitRatings(self, request, context) -> incidents_pb2.SubmitRatingsReply:
        def submit(who: str | None):
            items = [_rating_json(raw, i) for i, raw in enumerate(request.ratings)]
            return self.desk.submit_ratings(items, who)

        done = await self._call(context, submit)
        return incidents_pb2.SubmitRatingsReply(sources=done.sources, held=done.held,
                                                intent_seq=done.intent_seq,
                                                outcome_seq=done.outcome_seq)  # fmt: skip

    async def BuildArtifact(self, request, context) -> incidents_pb2.ArtifactReply:
        artifact = await self._call(context, lambda _: self.desk.build_artifact(request.id))
        return incidents_pb2.ArtifactReply(
            json=json.dumps(artifact, sort_keys=True).encode(),
            checkpoint_size=int(artifact["ledger"]["bundle"]["checkpoint"].split("\n")[1]),
        )

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


def _rating_json(raw: bytes, index: int) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncidentError(f"ratings[{index}]", f"not valid JSON ({exc})") from None
