"""``GET /verify``: the offline browser verifier (``web/dist/verify.html``), served as built.

The page is one self-contained HTML file whose ``<meta>`` Content-Security-Policy forbids
every network request; the same policy is sent as a header, so the page behaves the same
served or opened from disk. The file is read when it changes (a rebuild needs no restart).
A missing page is a JSON 404 that says how to build it.

Register with ``HttpSide.add_routes(routes(page_path))`` before the HTTP side starts.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from aiohttp import web

__all__ = ["DEFAULT_PAGE", "PAGE_ROUTE", "page_csp", "routes"]

PAGE_ROUTE = "/verify"
# Where `make setup` builds the page in a source checkout.
DEFAULT_PAGE = Path(__file__).resolve().parents[3] / "web" / "dist" / "verify.html"
BUILD_HINT = "run make setup to build web/dist/verify.html"
_CSP_META = re.compile(
    rb'<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]*)"', re.IGNORECASE
)


def page_csp(page: bytes) -> str | None:
    """The policy of the page's CSP ``<meta>`` (None if it has none)."""
    found = _CSP_META.search(page)
    return html.unescape(found.group(1).decode("utf-8")) if found else None


class _Page:
    """The built page and its policy, re-read when the file's size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._body = b""
        self._csp: str | None = None

    def load(self) -> tuple[bytes, str | None]:
        stat = self.path.stat()  # FileNotFoundError propagates: the caller answers 404
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            body = self.path.read_bytes()
            self._body, self._csp, self._stamp = body, page_csp(body), stamp
        return self._body, self._csp


def routes(page_path: Path) -> list[web.RouteDef]:
    """The ``GET /verify`` route serving ``page_path`` (normally :data:`DEFAULT_PAGE`)."""
    page = _Page(Path(page_path))

    async def verify_page(request: web.Request) -> web.Response:
        try:
            body, csp = page.load()
        except FileNotFoundError:
            message = f"the verifier page {page.path} is missing: {BUILD_HINT}"
            return web.json_response({"error": message}, status=404)
        if csp is None:
            # Serving it without its policy would let it reach the network: refuse.
            message = f"{page.path} has no Content-Security-Policy: {BUILD_HINT}"
            return web.json_response({"error": message}, status=500)
        headers = {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    return [web.get(PAGE_ROUTE, verify_page)]
