"""`GET /__mock__/ui`: the playground page, a plain HTML/CSS/JS consumer of the mock's own API.

The files are package data (mockserver/ui), read once when the app is built, and served from
the mock's own origin: the control API's origin guard lets the page drive `/__mock__/`, and the
page reads the stream with `fetch` and a `ReadableStream` line reader, as a browser frontend does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mockserver.api.rendering import json_response

PAGE = "index.html"
ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
# Everything the page loads comes from the mock itself: no CDN, works offline.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str


class Playground:
    """The page and its assets, held in memory: per request there is nothing to read or build."""

    def __init__(self, directory: Path):
        self.files = {PAGE: _File((directory / PAGE).read_bytes(), "text/html; charset=utf-8")}
        for name, media_type in ASSETS.items():
            self.files[name] = _File((directory / name).read_bytes(), media_type)

    def routes(self) -> list[Route]:
        """Relative to the `/__mock__` mount."""
        return [
            Route("/ui", self.page, methods=["GET", "HEAD"]),
            Route("/ui/{name}", self.asset, methods=["GET", "HEAD"]),
        ]

    async def page(self, request: Request) -> Response:
        return self._send(PAGE)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return json_response({"detail": "Not found."}, status=404)
        return self._send(name)

    def _send(self, name: str) -> Response:
        file = self.files[name]
        return Response(file.body, media_type=file.media_type, headers=PAGE_HEADERS)
