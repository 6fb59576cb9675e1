"""The incident queue over HTTP, on the server's HTTP side (JSON in, JSON out).

- ``GET /api/v1/incidents[?state=&asset_class=]``: ``{"incidents": [summary, ...]}``;
- ``GET /api/v1/incidents/{id}``: the whole incident (evidence, confidence, history, halts);
- ``POST /api/v1/incidents/{id}/acknowledge`` and ``.../resolve``, body ``{"note": "..."}``
  (optional): ``{"incident": summary, "change": {from, to, actor, at, note, ...}}``;
- ``POST /api/v1/incidents/{id}/artifact``: build the audit artifact (signs a checkpoint
  covering the incident's records, so its evidence bundle verifies), keep it, return it;
- ``GET /api/v1/incidents/{id}/artifact`` and ``.../report``: the kept artifact as JSON, or
  rendered as the self-contained HTML report — reading writes nothing: 404 before the first
  POST, 409 when the incident has records the kept artifact does not cite (POST again);
- ``POST /api/v1/halt/{asset_class}``, body ``{"reason": "...", "incident_id": "..."}``, and
  ``POST /api/v1/halt/{asset_class}/lift`` (same body);
- ``POST /api/v1/incidents/attribution/{asset_class}``, body ``{"summary": {...},
  "results_parquet_b64": "..."}``: a finished Tier 4 job (``roles.submit``);
- ``POST /api/v1/incidents/ratings``, body ``{"ratings": [rating, ...]}``: Tier 1 ratings as
  ``provenance check --json`` prints them (``roles.submit`` of every asset class).

The actor of every change is the bearer token's identity (``Authorization: Bearer ...``).
Errors are ``{"error", "field"}`` with 400 (bad input: nothing written), 401/403
(credentials, or the policy refusing the caller: that refusal is on the ledger), 404 (unknown
incident or asset class, no artifact yet) and 409 (a change out of order: nothing written; a
stale artifact). Ledger writes, the webhook, uploads and the report run in ``executor`` so the
event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..server.auth import Authenticator, AuthError
from ..server.http import json_error
from .errors import IncidentError, status_of
from .halt import HaltHook
from .manager import IncidentManager

if TYPE_CHECKING:
    from ..server.incident_side import IncidentDesk

__all__ = ["MAX_BODY_BYTES", "MAX_UPLOAD_BYTES", "incident_routes"]

MAX_BODY_BYTES = 64 << 10  # a note or a reason; nothing bigger belongs here
MAX_UPLOAD_BYTES = 64 << 20  # an attribution job's results, base64 (gRPC allows 64 MiB too)


async def _json_body(request: web.Request, allowed: set[str], *,
                     limit: int = MAX_BODY_BYTES) -> dict[str, Any]:  # fmt: skip
    """The request's JSON object (empty body: ``{}``), only ``allowed`` keys."""
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise IncidentError("$", f"body over {limit} bytes")
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
                    executor: Executor | None = None,
                    desk: IncidentDesk | None = None) -> list[web.RouteDef]:  # fmt: skip
    """The routes above; ``desk`` (the server's submissions and artifacts) adds the artifact,
    report, attribution and ratings routes."""

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
                return json_error(exc.http_status, exc.message)
            except IncidentError as exc:
                return json_error(status_of(exc)[0], str(exc), field=exc.field)

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

    def halt(change: Callable[..., Any]):
        @answered
        async def post(request: web.Request) -> web.Response:
            who = actor(request)
            body = await _json_body(request, {"reason", "incident_id"})
            result = await off_loop(lambda: change(
                request.match_info["asset_class"], actor=who, reason=body.get("reason", ""),
                incident_id=body.get("incident_id") or None))  # fmt: skip
            return web.json_response({**result.to_json(), "envelope": result.envelope})

        return post

    routes = [
        web.get("/api/v1/incidents", list_incidents),
        web.get("/api/v1/incidents/{id}", get_incident),
        web.post("/api/v1/incidents/{id}/acknowledge", transition(manager.acknowledge)),
        web.post("/api/v1/incidents/{id}/resolve", transition(manager.resolve)),
        web.post("/api/v1/halt/{asset_class}", halt(hook.fire)),
        web.post("/api/v1/halt/{asset_class}/lift", halt(hook.lift)),
    ]
    if desk is not None:
        routes[:0] = _desk_routes(desk, actor, off_loop, answered)  # before /incidents/{id}
    return routes


def _desk_routes(desk: IncidentDesk, actor, off_loop, answered) -> list[web.RouteDef]:
    @answered
    async def build_artifact(request: web.Request) -> web.Response:
        actor(request)
        return web.json_response(await off_loop(desk.build_artifact, request.match_info["id"]))

    @answered
    async def artifact(request: web.Request) -> web.Response:
        actor(request)
        return web.json_response(await off_loop(desk.latest_artifact, request.match_info["id"]))

    @answered
    async def report(request: web.Request) -> web.Response:
        actor(request)
        html = await off_loop(_report_html, desk, request.match_info["id"])
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    @answered
    async def attribution(request: web.Request) -> web.Response:
        who = actor(request)
        body = await _json_body(request, {"summary", "results_parquet_b64"},
                                limit=MAX_UPLOAD_BYTES)  # fmt: skip
        summary, results = _attribution_body(body)
        done = await off_loop(desk.submit_attribution, request.match_info["asset_class"],
                              summary, results, who)  # fmt: skip
        return web.json_response(done.to_json())

    @answered
    async def ratings(request: web.Request) -> web.Response:
        who = actor(request)
        body = await _json_body(request, {"ratings"}, limit=MAX_UPLOAD_BYTES)
        done = await off_loop(desk.submit_ratings, body.get("ratings"), who)
        return web.json_response(done.to_json())

    return [
        web.post("/api/v1/incidents/attribution/{asset_class}", attribution),
        web.post("/api/v1/incidents/ratings", ratings),
        web.post("/api/v1/incidents/{id}/artifact", build_artifact),
        web.get("/api/v1/incidents/{id}/artifact", artifact),
        web.get("/api/v1/incidents/{id}/report", report),
    ]


def _attribution_body(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """``(summary.json bytes, results.parquet bytes)`` of an attribution upload's body."""
    summary = body.get("summary")
    if not isinstance(summary, dict):
        raise IncidentError("summary", "expected the job's summary.json as a JSON object",
                            type(summary).__name__)  # fmt: skip
    encoded = body.get("results_parquet_b64")
    if not isinstance(encoded, str) or not encoded:
        raise IncidentError("results_parquet_b64", "expected results.parquet in base64")
    try:
        results = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IncidentError("results_parquet_b64", f"not valid base64 ({exc})") from None
    return json.dumps(summary, indent=2).encode() + b"\n", results


def _report_html(desk: IncidentDesk, incident_id: str) -> str:
    from .report import render_html

    return render_html(desk.latest_artifact(incident_id))
