"""The server's HTTP side over real loopback HTTP: Prometheus metrics from a private registry,
health and readiness from the health callable, JSON errors, the route index, the body limit,
and a port that is released on stop."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from importlib import metadata

import pytest
from aiohttp import web
from lineage_audit.server.http import DEFAULT_CLIENT_MAX_SIZE, METRICS, HttpSide
from lineage_audit.server.metrics import ServerMetrics
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
# Loopback only: an http_proxy in the environment must not see these requests.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LoopThread:
    """An asyncio event loop in a daemon thread, so the tests can use blocking urllib."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def serve(loop):
    """``serve(...)`` starts an HttpSide on HOST and returns it; all are stopped afterwards."""
    sides: list[HttpSide] = []

    def start(metrics=None, health=lambda: "SERVING", routes=(), port=0, **options) -> HttpSide:
        side = HttpSide(metrics or ServerMetrics(), health, **options)
        side.add_routes(routes)
        sides.append(side)
        loop.run(side.start(HOST, port))
        return side

    yield start
    for side in sides:
        loop.run(side.stop())


def fetch(side: HttpSide, path: str, *, method: str | None = None, data: bytes | None = None):
    """(status, headers, body) of one request; error statuses are returned, not raised."""
    request = urllib.request.Request(f"http://{HOST}:{side.port}{path}", data=data, method=method)
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def fetch_json(side: HttpSide, path: str, **kwargs):
    status, headers, body = fetch(side, path, **kwargs)
    assert headers.get_content_type() == "application/json", body
    return status, headers, json.loads(body)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(table: dict, name: str, **labels: str) -> float | None:
    return table.get((name, frozenset(labels.items())))


def rendered(metrics: ServerMetrics) -> dict:
    body, _ = metrics.render()
    return samples(body.decode())


# --- ServerMetrics ----------------------------------------------------------------------------

EXPECTED_FAMILIES = {
    "lineage_audit_rpc",  # counters are listed without their _total suffix
    "lineage_audit_rpc_seconds",
    "lineage_audit_rows_scored",
    "lineage_audit_batch_requests",
    "lineage_audit_batch_seconds",
    "lineage_audit_queue_requests",
    "lineage_audit_queue_rows",
    "lineage_audit_rejected",
    "lineage_audit_windows",
    "lineage_audit_last_z",
    "lineage_audit_alerts",
    "lineage_audit_alert_level",
    "lineage_audit_ledger_entries",
    "lineage_audit_alert_subscribers",
}


def test_the_registry_holds_exactly_the_prefixed_server_metrics():
    body, content_type = ServerMetrics().render()
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert names == EXPECTED_FAMILIES
    assert content_type.startswith("text/plain")


def test_two_instances_do_not_share_values():
    first, second = ServerMetrics(), ServerMetrics()
    first.batch_scored("a", requests=1, rows=256, seconds=0.01)
    second.ledger_size(7)
    one, two = rendered(first), rendered(second)
    assert value(one, "lineage_audit_rows_scored_total", asset="a") == 256
    assert value(two, "lineage_audit_rows_scored_total", asset="a") is None
    assert value(one, "lineage_audit_ledger_entries") == 0
    assert value(two, "lineage_audit_ledger_entries") == 7


@pytest.mark.parametrize(("level", "expected"), [("ok", 0), ("watch", 1), ("halt", 2)])
def test_alert_sets_the_level_gauge_and_counts(level, expected):
    metrics = ServerMetrics()
    metrics.alert("a", "halt" if level != "halt" else "ok")  # start from another level
    metrics.alert("a", level)
    table = rendered(metrics)
    assert value(table, "lineage_audit_alert_level", asset="a") == expected
    assert value(table, "lineage_audit_alerts_total", asset="a", level=level) == 1


def test_alert_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="level: expected one of"):
        ServerMetrics().alert("a", "panic")


def test_concurrent_updates_from_threads_are_all_counted():
    metrics = ServerMetrics()

    def work():
        for _ in range(500):
            metrics.batch_scored("a", requests=1, rows=2, seconds=0.001)
            metrics.rpc_finished("Score", "OK", 0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    table = rendered(metrics)
    assert value(table, "lineage_audit_rows_scored_total", asset="a") == 8 * 500 * 2
    assert value(table, "lineage_audit_rpc_total", method="Score", code="OK") == 8 * 500
    assert value(table, "lineage_audit_batch_requests_count", asset="a") == 8 * 500


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_endpoint_serves_the_recorded_values(serve):
    metrics = ServerMetrics()
    metrics.batch_scored("a", requests=3, rows=256, seconds=0.02)
    metrics.batch_scored("a", requests=3, rows=256, seconds=0.02)
    metrics.rpc_finished("Score", "OK", 0.004)
    metrics.rpc_finished("Score", "INVALID_ARGUMENT", 0.0005)
    metrics.queue_depth("a", requests=5, rows=1280)
    metrics.rejected("a", "queue_full")
    metrics.window_scored("a", "watch", 2.5)
    metrics.alert("a", "halt")
    metrics.ledger_size(42)
    metrics.alert_subscribers(3)
    side = serve(metrics)

    status, headers, body = fetch(side, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == metrics.render()[1]
    table = samples(body.decode())
    assert value(table, "lineage_audit_rows_scored_total", asset="a") == 512
    assert value(table, "lineage_audit_batch_requests_count", asset="a") == 2
    assert value(table, "lineage_audit_batch_requests_sum", asset="a") == 6
    assert value(table, "lineage_audit_batch_requests_bucket", asset="a", le="2.0") == 0
    assert value(table, "lineage_audit_batch_requests_bucket", asset="a", le="4.0") == 2
    assert value(table, "lineage_audit_batch_seconds_count", asset="a") == 2
    assert value(table, "lineage_audit_rpc_total", method="Score", code="OK") == 1
    assert value(table, "lineage_audit_rpc_total", method="Score", code="INVALID_ARGUMENT") == 1
    assert value(table, "lineage_audit_rpc_seconds_bucket", method="Score", le="0.001") == 1
    assert value(table, "lineage_audit_rpc_seconds_bucket", method="Score", le="0.005") == 2
    assert value(table, "lineage_audit_rpc_seconds_bucket", method="Score", le="10.0") == 2
    assert value(table, "lineage_audit_queue_requests", asset="a") == 5
    assert value(table, "lineage_audit_queue_rows", asset="a") == 1280
    assert value(table, "lineage_audit_rejected_total", asset="a", reason="queue_full") == 1
    assert value(table, "lineage_audit_windows_total", asset="a", level="watch") == 1
    assert value(table, "lineage_audit_last_z", asset="a") == 2.5
    assert value(table, "lineage_audit_alerts_total", asset="a", level="halt") == 1
    assert value(table, "lineage_audit_alert_level", asset="a") == 2
    assert value(table, "lineage_audit_ledger_entries") == 42
    assert value(table, "lineage_audit_alert_subscribers") == 3


def test_metrics_endpoint_is_live_not_a_snapshot(serve):
    metrics = ServerMetrics()
    side = serve(metrics)
    metrics.queue_depth("a", requests=1, rows=10)
    before = samples(fetch(side, "/metrics")[2].decode())
    metrics.queue_depth("a", requests=0, rows=0)
    metrics.batch_scored("a", requests=1, rows=10, seconds=0.01)
    after = samples(fetch(side, "/metrics")[2].decode())
    assert value(before, "lineage_audit_queue_rows", asset="a") == 10
    assert value(before, "lineage_audit_rows_scored_total", asset="a") is None
    assert value(after, "lineage_audit_queue_rows", asset="a") == 0
    assert value(after, "lineage_audit_rows_scored_total", asset="a") == 10


# --- health, readiness ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_follows_the_health_callable(serve, path):
    state = {"status": "SERVING"}
    side = serve(health=lambda: state["status"])
    assert fetch_json(side, path)[::2] == (200, {"status": "SERVING"})
    state["status"] = "NOT_SERVING"
    assert fetch_json(side, path)[::2] == (503, {"status": "NOT_SERVING"})
    state["status"] = "SERVING"
    assert fetch_json(side, path)[::2] == (200, {"status": "SERVING"})


# --- errors -----------------------------------------------------------------------------------


def test_unknown_route_is_404_json(serve):
    status, _, body = fetch_json(serve(), "/no/such/route")
    assert status == 404
    assert set(body) == {"error"}
    assert "/no/such/route" in body["error"]


def test_wrong_method_is_405_json_with_allow(serve):
    status, headers, body = fetch_json(serve(), "/metrics", method="POST", data=b"x")
    assert status == 405
    assert "POST" in body["error"] and "/metrics" in body["error"]
    assert "GET" in headers["Allow"]


def test_a_failing_handler_is_500_json_without_a_traceback(serve):
    async def broken(request):
        raise RuntimeError("secret-internal-detail")

    status, _, body = fetch_json(serve(routes=[web.get("/broken", broken)]), "/broken")
    assert status == 500
    assert body == {"error": "internal server error"}


def test_a_handler_message_is_kept(serve):
    async def refuse(request):
        raise web.HTTPBadRequest(text="run.runId: missing")

    status, _, body = fetch_json(serve(routes=[web.post("/refuse", refuse)]), "/refuse", data=b"")
    assert (status, body) == (400, {"error": "run.runId: missing"})


# --- request body limit -----------------------------------------------------------------------


async def _echo_length(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


def test_body_over_the_limit_is_413_json(serve):
    side = serve(routes=[web.post("/echo", _echo_length)], client_max_size=1024)
    assert fetch_json(side, "/echo", data=b"x" * 1000)[::2] == (200, {"bytes": 1000})
    status, _, body = fetch_json(side, "/echo", data=b"x" * 2048)
    assert status == 413
    assert "1024" in body["error"]


def test_default_body_limit_is_16_mib(serve):
    assert DEFAULT_CLIENT_MAX_SIZE == 16 * 1024 * 1024
    side = serve(routes=[web.post("/echo", _echo_length)])
    big = 2 * 1024 * 1024  # over aiohttp's own 1 MiB default
    assert fetch_json(side, "/echo", data=b"x" * big)[::2] == (200, {"bytes": big})


# --- index and extension --------------------------------------------------------------------


def test_index_lists_routes_and_version(serve):
    async def ingest(request):  # a later route, reaching the server's metrics
        return web.json_response(
            {"metrics": isinstance(request.app[METRICS], ServerMetrics)}, status=201
        )

    side = serve(routes=[web.post("/api/v1/lineage", ingest)])
    assert fetch_json(side, "/api/v1/lineage", data=b"{}")[::2] == (201, {"metrics": True})
    status, _, body = fetch_json(side, "/")
    assert status == 200
    assert body["version"] == metadata.version("lineage-audit")
    assert body["routes"] == {
        "/": ["GET"],
        "/api/v1/lineage": ["POST"],
        "/healthz": ["GET"],
        "/metrics": ["GET"],
        "/readyz": ["GET"],
    }


def test_routes_can_only_be_added_before_start(serve):
    side = serve()
    with pytest.raises(RuntimeError, match="already started"):
        side.add_routes([web.get("/late", _echo_length)])
    assert fetch(side, "/late")[0] == 404


# --- lifecycle --------------------------------------------------------------------------------


def test_start_returns_the_bound_port(serve):
    side = HttpSide(ServerMetrics(), lambda: "SERVING")
    with pytest.raises(RuntimeError, match="not started"):
        _ = side.port
    side = serve()
    assert 0 < side.port < 65536
    assert fetch(side, "/healthz")[0] == 200


def test_a_side_starts_only_once(serve, loop):
    side = serve()
    with pytest.raises(RuntimeError, match="starts once"):
        loop.run(side.start(HOST, 0))


def test_stop_releases_the_port(serve, loop):
    first = serve()
    port = first.port
    with pytest.raises(OSError):  # the port is really held while serving
        serve(port=port)
    loop.run(first.stop())
    loop.run(first.stop())  # idempotent
    second = serve(port=port)
    assert second.port == port
    assert fetch(second, "/healthz")[0] == 200
