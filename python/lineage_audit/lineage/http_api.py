"""OpenLineage over HTTP, on the server's HTTP side.

- ``POST /api/v1/lineage``: one event, exactly what ``openlineage-python``'s HTTP transport
  sends (JSON, optionally ``Content-Encoding: gzip``). 201 once the event is stored and its
  batch's ledger intent is durable; 400 ``{"error", "path"}`` naming the failing JSON path;
  413 for a body over the limit; 401/403 when auth refuses the bearer token.
- ``POST /api/v1/lineage/batch``: a JSON array of events, all or nothing.
- ``GET /api/v1/lineage?nodeId=dataset:<ns>:<name>&depth=N``: Marquez's lineage read shape.
- ``GET /api/v1/lineage/findings?k=3``: convergence and re-entry findings.
"""

from __future__ import annotations

import gzip
import json
import zlib

from aiohttp import web

from ..server.auth import Authenticator, AuthError
from ..server.http import json_error
from .events import MAX_EVENT_BYTES, EventError
from .ingest import ShuttingDown
from .service import LineageService

__all__ = ["MAX_BATCH_BYTES", "lineage_routes"]

MAX_BATCH_BYTES = 16 << 20


async def _body(request: web.Request, limit: int) -> bytes:
    raw = await request.read()
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise EventError("$", f"body is not valid gzip: {exc}") from None
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    return raw


def lineage_routes(service: LineageService, auth: Authenticator) -> list[web.RouteDef]:
    def actor(request: web.Request) -> str | None:
        return auth.identify_header(request.headers.get("Authorization"))

    async def ingest(request: web.Request, *, batch: bool) -> web.Response:
        try:
            who = actor(request)
            raw = await _body(request, MAX_BATCH_BYTES if batch else MAX_EVENT_BYTES)
            try:
                parsed = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise EventError("$", f"not valid JSON: {exc}") from None
            if batch and not isinstance(parsed, list):
                raise EventError("$", "expected a JSON array of events", type(parsed).__name__)
            events = parsed if batch else [parsed]
            result = await service.ingest(events, who)
        except AuthError as exc:
            return json_error(exc.http_status, exc.message)
        except web.HTTPRequestEntityTooLarge as exc:
            return json_error(413, f"request body too large: {exc.text}")
        except EventError as exc:
            return json_error(400, str(exc), path=exc.field)
        except ShuttingDown as exc:
            return json_error(503, str(exc))
        return web.json_response(
            {"accepted": result.accepted, "ledger_seq": result.record_seq}, status=201
        )

    async def post_one(request):
        return await ingest(request, batch=False)

    async def post_batch(request):
        return await ingest(request, batch=True)

    async def read(request: web.Request) -> web.Response:
        try:
            actor(request)
            depth = _int(request.query.get("depth", "20"), "depth")
            node = request.query.get("nodeId")
            if not node:
                raise EventError("nodeId", "missing query parameter")
            return web.json_response(service.lineage(node, depth))
        except AuthError as exc:
            return json_error(exc.http_status, exc.message)
        except EventError as exc:
            status = 404 if "not in the lineage graph" in exc.problem else 400
            return json_error(status, str(exc), path=exc.field)

    async def findings(request: web.Request) -> web.Response:
        try:
            actor(request)
            k = _int(request.query.get("k", "3"), "k")
            if k < 2:
                raise EventError("k", "expected >= 2", k)
            return web.json_response({"findings": service.findings(k)})
        except AuthError as exc:
            return json_error(exc.http_status, exc.message)
        except EventError as exc:
            return json_error(400, str(exc), path=exc.field)

    return [
        web.post("/api/v1/lineage", post_one),
        web.post("/api/v1/lineage/batch", post_batch),
        web.get("/api/v1/lineage", read),
        web.get("/api/v1/lineage/findings", findings),
    ]


def _int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EventError(field, "expected an integer", text) from None
