"""The incident queue over HTTP, on the server's HTTP side (JSON in, JSON out).

- ``GET /api/v1/incidents[?state=&asset_class=]``: ``{"incidents": [summary, ...]}``;
- ``GET /api/v1/incidents/{id}``: the whole incident (evidence, confidence, history, halts);
- ``POST /api/v1/incidents/{id}/acknowledge`` and ``.../resolve``, body ``{"note": "..."}``
  (optional): ``{"incident": summary, "change": {from, to, actor, at, note, ...}}``;
- ``GET /api/v1/incidents/{id}/report``: the self-contained HTML report (signs a checkpoint
  covering the incident's records first, so its evidence bundle verifies);
- ``POST /api/v1/halt/{asset_class}``, body ``{"reason": "...", "incident_id": "..."}``.

The actor of every change is the bearer token's identity (``Authorization: Bearer ...``).
Errors are ``{"error", "field"}`` with 400 (bad input), 401/403 (credentials, or the policy
refusing the caller: that refusal is on the ledger), 404 (unknown incident or asset class)
and 409 (a change out of order: nothing written). Ledger writes, the webhook and the report
run in ``executor`` so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc
from aiohttp import web

from ..server.auth import Authenticator, AuthError
from .errors import IncidentError, status_of
from .halt import HaltHook
from .manager import IncidentManager

__all__ = ["MAX_BODY_BYTES", "incident_routes"]

MAX_BODY_BYTES = 64 << 10  # a note or a reason; nothing bigger belongs here
_HTTP_FOR = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403}


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


async def _json_body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (empty body: ``{}``), only ``allowed`` keys."""
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise IncidentError("$", f"body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncidentError("$", f"not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise IncidentError("$", "expected a JSON object", type(body).__name__)
    for key in body:
        if key not in allowed:
            raise IncidentError(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return body


def incident_routes(manager: IncidentManager, hook: HaltHook, auth: Authenticator, *,
                    executor: Executor | None = None) -> list[web.RouteDef]:  # fmt: skip
    def actor(request: web.Request) -> str | None:
        return auth.identify_header(request.headers.get("Authorization"))

    async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def answered(handler):
        """Errors of the handler as JSON with their status (one place for every route)."""

        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except AuthError as exc:
                return _error(_HTTP_FOR.get(exc.code, 401), exc.message)
            except IncidentError as exc:
                return _error(status_of(exc)[0], str(exc), exc.field)

        return run

    @answered
    async def list_incidents(request: web.Request) -> web.Response:
        actor(request)
        state, asset = request.query.get("state") or None, request.query.get("asset_class")
        found = await off_loop(lambda: manager.list(state=state, asset_class=asset or None))
        return web.json_response({"incidents": [i.summary() for i in found]})

    @answered
    async def get_incident(request: web.Request) -> web.Response:
        actor(request)
        incident = await off_loop(manager.get, request.match_info["id"])
        return web.json_response(incident.to_json())

    def transition(change: Callable[..., Any]):
        @answered
        async def post(request: web.Request) -> web.Response:
            who = actor(request)
            note = (await _json_body(request, {"note"})).get("note", "")
            incident = await off_loop(lambda: change(request.match_info["id"], actor=who,
                                                     note=note))  # fmt: skip
            return web.json_response({"incident": incident.summary(),
                                      "change": incident.history[-1]})  # fmt: skip

        return post

    @answered
    async def report(request: web.Request) -> web.Response:
        actor(request)
        html = await off_loop(_report_html, manager, request.match_info["id"])
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    @answered
    async def halt(request: web.Request) -> web.Response:
        who = actor(request)
        body = await _json_body(request, {"reason", "incident_id"})
        result = await off_loop(lambda: hook.fire(
            request.match_info["asset_class"], actor=who, reason=body.get("reason", ""),
            incident_id=body.get("incident_id") or None))  # fmt: skip
        return web.json_response({**result.to_json(), "envelope": result.envelope})

    return [
        web.get("/api/v1/incidents", list_incidents),
        web.get("/api/v1/incidents/{id}", get_incident),
        web.post("/api/v1/incidents/{id}/acknowledge", transition(manager.acknowledge)),
        web.post("/api/v1/incidents/{id}/resolve", transition(manager.resolve)),
        web.get("/api/v1/incidents/{id}/report", report),
        web.post("/api/v1/halt/{asset_class}", halt),
    ]


def _report_html(manager: IncidentManager, incident_id: str) -> str:
    from .artifact import build_artifact
    from .report import render_html

    return render_html(build_artifact(manager.get(incident_id), manager.ledger))
