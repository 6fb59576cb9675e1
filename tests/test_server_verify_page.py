"""``GET /verify`` on the server's HTTP side (real loopback HTTP): the built browser verifier
with its Content-Security-Policy as a header, a rebuilt page picked up without a restart,
and JSON errors for a missing page or one without a policy."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lineage_audit.server.http import HttpSide
from lineage_audit.server.metrics import ServerMetrics
from lineage_audit.server.verify_page import DEFAULT_PAGE, page_csp, routes

HOST = "127.0.0.1"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
CSP = "default-src 'none'; script-src 'sha256-abc='; style-src 'sha256-def='; img-src data:"


def page(policy: str | None = CSP, marker: str = "first") -> bytes:
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">' if policy else ""
    return f"<!doctype html><html><head>{meta}</head><body>{marker}</body></html>".encode()


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@pytest.fixture
def serve(loop):
    """``serve(path)``: an HttpSide with the /verify route on a free port; stopped afterwards."""
    sides: list[HttpSide] = []

    def start(path: Path) -> HttpSide:
        side = HttpSide(ServerMetrics(), lambda: "SERVING")
        side.add_routes(routes(path))
        asyncio.run_coroutine_threadsafe(side.start(HOST, 0), loop).result(timeout=30)
        sides.append(side)
        return side

    yield start
    for side in sides:
        asyncio.run_coroutine_threadsafe(side.stop(), loop).result(timeout=30)


def get(side: HttpSide, path: str = "/verify"):
    try:
        with OPENER.open(f"http://{HOST}:{side.port}{path}", timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def test_serves_the_page_with_its_policy_as_a_header(serve, tmp_path: Path) -> None:
    built = tmp_path / "verify.html"
    built.write_bytes(page())
    status, headers, body = get(serve(built))
    assert status == 200
    assert body == page()
    assert headers.get_content_type() == "text/html"
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_rebuilt_page_is_served_without_a_restart(serve, tmp_path: Path) -> None:
    built = tmp_path / "verify.html"
    built.write_bytes(page(marker="first"))
    side = serve(built)
    assert b"first" in get(side)[2]
    built.write_bytes(page(policy=CSP.replace("abc", "xyz"), marker="second build"))
    status, headers, body = get(side)
    assert status == 200 and b"second build" in body
    assert "sha256-xyz=" in headers["Content-Security-Policy"]


def test_a_missing_page_is_a_json_404_saying_how_to_build_it(serve, tmp_path: Path) -> None:
    status, headers, body = get(serve(tmp_path / "absent.html"))
    assert status == 404
    assert headers.get_content_type() == "application/json"
    assert b"run make setup to build web/dist/verify.html" in body


def test_a_page_without_a_policy_is_refused(serve, tmp_path: Path) -> None:
    built = tmp_path / "verify.html"
    built.write_bytes(page(policy=None))
    status, headers, body = get(serve(built))
    assert status == 500 and headers.get_content_type() == "application/json"
    assert b"no Content-Security-Policy" in body


def test_the_built_page_is_served_with_the_policy_it_carries(serve) -> None:
    if not DEFAULT_PAGE.exists():
        pytest.fail(f"{DEFAULT_PAGE} is missing: build it with `make setup`")
    status, headers, body = get(serve(DEFAULT_PAGE))
    assert status == 200 and body == DEFAULT_PAGE.read_bytes()
    policy = headers["Content-Security-Policy"]
    assert policy == page_csp(body)
    assert policy.startswith("default-src 'none'; script-src 'sha256-")
    assert "connect-src" not in policy and "unsafe-eval" not in policy
