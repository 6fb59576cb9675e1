"""The server's HTTP side: Prometheus ``/metrics``, ``/healthz``, ``/readyz`` and an index.

An aiohttp app run by :class:`HttpSide` on the event loop of the grpc.aio server, so both share
one loop and one shutdown. Later routes (the verifier page, OpenLineage ingest) are added with
:meth:`HttpSide.add_routes` (or ``side.app.add_routes``) before :meth:`HttpSide.start`; they
reach the server's metrics as ``request.app[METRICS]``.

Every error is a JSON body ``{"error": "..."}`` with the right status; an unexpected exception
is logged here and answered with a bare 500, never a traceback.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from aiohttp import web

from .. import __version__
from .metrics import ServerMetrics

__all__ = [
    "DEFAULT_CLIENT_MAX_SIZE",
    "HEALTH",
    "METRICS",
    "SERVING",
    "HttpSide",
    "build_http_app",
    "package_version",
]

log = logging.getLogger(__name__)

DEFAULT_CLIENT_MAX_SIZE = 16 * 1024 * 1024  # request body limit; aiohttp's own default is 1 MiB
SERVING = "SERVING"  # the gRPC health status name that means healthy; anything else is 503

HealthCheck = Callable[[], str]
METRICS = web.AppKey("metrics", ServerMetrics)
HEALTH = web.AppKey("health", Callable[[], str])


def package_version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    try:
        return metadata.version("lineage-audit")
    except metadata.PackageNotFoundError:
        return __version__


# --- errors as JSON ---------------------------------------------------------------------------


def json_error(status: int, message: str, *, headers: dict[str, str] | None = None,
               **fields: Any) -> web.Response:  # fmt: skip
    """``{"error": message, **fields}`` (fields that are None left out) with ``status``: the
    one error shape of every HTTP route (the lineage and incident routes add the JSON path or
    field that is wrong)."""
    body = {"error": message, **{k: v for k, v in fields.items() if v is not None}}
    return web.json_response(body, status=status, headers=headers)


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.text and exc.text != f"{exc.status}: {exc.reason}":
        return exc.text  # a handler's own message, e.g. which field is wrong
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no route {request.path}; GET / lists the routes"
    return exc.reason.lower()


def _passed_headers(exc: web.HTTPException) -> dict[str, str]:
    # Keep e.g. Allow (405) or WWW-Authenticate (401); the body is ours, so not its type/length.
    dropped = {"content-type", "content-length"}
    return {k: v for k, v in exc.headers.items() if k.lower() not in dropped}


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through untouched
        return json_error(exc.status, _message(request, exc), headers=_passed_headers(exc))
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return json_error(500, "internal server error")


# --- routes -----------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "service": "lineage-audit",
            "version": package_version(),
            "routes": route_table(request.app),
        }
    )


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    # Set as a header: aiohttp refuses a content_type argument that carries parameters.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _health(request: web.Request) -> web.Response:
    status = request.app[HEALTH]()
    return web.json_response({"status": status}, status=200 if status == SERVING else 503)


ROUTES = (
    web.get("/", _index),
    web.get("/metrics", _metrics),
    web.get("/healthz", _health),
    web.get("/readyz", _health),  # ready = serving until there is warm-up to wait for
)


def route_table(app: web.Application) -> dict[str, list[str]]:
    """Path -> methods of every registered route (HEAD, implied by GET, left out)."""
    table: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.resource is not None and route.method != "HEAD":
            table.setdefault(route.resource.canonical, set()).add(route.method)
    return {path: sorted(methods) for path, methods in sorted(table.items())}


def build_http_app(
    metrics: ServerMetrics,
    health: HealthCheck,
    *,
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE,
) -> web.Application:
    """The HTTP app; ``health()`` returns a gRPC health status name such as ``"SERVING"``."""
    if client_max_size < 1:
        raise ValueError(f"client_max_size: expected >= 1, got {client_max_size}")
    app = web.Application(client_max_size=client_max_size, middlewares=[_json_errors])
    app[METRICS] = metrics
    app[HEALTH] = health
    app.add_routes(ROUTES)
    return app


# --- running on the current event loop ---------------------------------------------------------


class HttpSide:
    """The HTTP app on a TCP port of the running event loop; one start and one stop per instance.

    ``shutdown_timeout`` is how long :meth:`stop` lets in-flight requests finish.
    """

    def __init__(
        self,
        metrics: ServerMetrics,
        health: HealthCheck,
        *,
        client_max_size: int = DEFAULT_CLIENT_MAX_SIZE,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.app = build_http_app(metrics, health, client_max_size=client_max_size)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("HTTP side not started")
        return self._port

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Register more routes; only before :meth:`start` (aiohttp freezes the router then)."""
        if self._started:
            raise RuntimeError("add_routes: the HTTP side is already started")
        self.app.add_routes(routes)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Bind ``host:port`` (0: any free port) and serve (HTTPS with ``ssl_context``);
        returns the bound port."""
        if self._started:
            raise RuntimeError("start: an HttpSide starts once; make a new one")
        self._started = True  # also after a failed bind: the app is frozen to this loop by now
        runner = web.AppRunner(self.app, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        # With port 0 and a host name of several addresses each gets its own port: report the
        # first, which is the one a client resolving the name tries first.
        self._port = int(runner.addresses[0][1])
        return self._port

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish, release the port. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
