"""The recording reverse proxy: forwards every request to the target and appends it to a cassette.

httpx is the transport seam. A response is passed on chunk by chunk the moment it arrives
(nothing is buffered, so a client behind the proxy sees the first record when the target
sends it); a streamed body is recorded line by line with each line's arrival offset.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from starlette.types import Receive, Scope, Send

from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.openapi.validation import buffer_request  # one request-body buffer
from mockserver.replay.cassette import (
    CassetteWriter,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamLine,
    is_stream_type,
)
from mockserver.replay.redaction import HOP_BY_HOP, Redactor, scope_headers, scope_query, token_of

log = logging.getLogger("mockserver.replay")

FORWARD_DROP = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})


@dataclass
class ResponseCapture:
    """What came back so far: chunks for a plain body, lines with offsets for a stream."""

    stream: bool
    started: float
    body: bytearray = field(default_factory=bytearray)
    lines: list[StreamLine] = field(default_factory=list)
    partial: bytearray = field(default_factory=bytearray)
    cut: bool = False

    def add(self, chunk: bytes, now: float) -> None:
        if not self.stream:
            self.body += chunk
            return
        self.partial += chunk
        *complete, rest = bytes(self.partial).split(b"\n")
        at_ms = (now - self.started) * 1000
        self.lines.extend(StreamLine(at_ms, line.decode("utf-8", errors="replace")) for line in complete)
        self.partial = bytearray(rest)

    def finish(self, now: float) -> tuple[str | None, tuple[StreamLine, ...] | None, bool]:
        if not self.stream:
            return self.body.decode("utf-8", errors="replace"), None, False
        if self.partial:
            self.lines.append(StreamLine((now - self.started) * 1000, self.partial.decode("utf-8", errors="replace")))
            return None, tuple(self.lines), True
        return None, tuple(self.lines), False


class RecordingProxy:
    """An ASGI app: every HTTP exchange goes to `target` and into `writer`."""

    def __init__(
        self, target: str, writer: CassetteWriter, redactor: Redactor, client: httpx.AsyncClient | None = None
    ):
        self.target = target.rstrip("/")
        self.writer = writer
        self.redactor = redactor
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        buffered = await buffer_request(receive)
        if buffered is None:  # the client left before its body ended
            return
        body = buffered[0]
        headers, query = scope_headers(scope), scope_query(scope)
        request = self.client.build_request(
            scope["method"],
            self.target + scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
            params=scope.get("query_string", b"").decode("latin-1") or None,
            headers=[(k, v) for k, v in headers if k.lower() not in FORWARD_DROP] + [("accept-encoding", "identity")],
            content=body,
        )
        recorded = self.redactor.request(scope, headers, query, body, self.redactor.alias(token_of(headers, query)))
        started = time.perf_counter()
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.error("recorder: %s %s: cannot reach %s: %s", scope["method"], scope["path"], self.target, exc)
            await _answer(send, 502, b'{"detail":"The recorder cannot reach its target."}')
            return
        await self._relay(send, response, recorded, started)

    async def _relay(self, send: Send, response: httpx.Response, request: RecordedRequest, started: float) -> None:
        head_at = time.perf_counter()
        content_type = response.headers.get("content-type", "")
        capture = ResponseCapture(stream=is_stream_type(content_type), started=head_at)
        forwarded = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": forwarded})
        try:
            async for chunk in response.aiter_raw():
                capture.add(chunk, time.perf_counter())
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.TransportError as exc:  # the target cut the body short: recorded, and passed on as a cut
            capture.cut = True
            log.warning("recorder: %s %s: the target cut the response: %s", request.method, request.path, exc)
        finally:
            await response.aclose()
            self._write(request, response, capture, head_at - started)
        if capture.cut:
            raise ConnectionDroppedOnPurpose("the target cut the response")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _write(
        self, request: RecordedRequest, response: httpx.Response, capture: ResponseCapture, headers_s: float
    ) -> None:
        body, lines, unterminated = capture.finish(time.perf_counter())
        content_type = response.headers.get("content-type", "")
        if lines is not None:
            lines = tuple(StreamLine(line.at_ms, self.redactor.stream_line(line.text)) for line in lines)
        recorded = RecordedResponse(
            status=response.status_code,
            headers=self.redactor.response_headers([(k, v) for k, v in response.headers.multi_items()]),
            headers_ms=headers_s * 1000,
            body=self.redactor.body(body, content_type),
            lines=lines,
            unterminated=unterminated,
            cut=capture.cut,
        )
        self.writer.append(Interaction(request, recorded))
        log.info("recorded %s %s -> %d", request.method, request.path, recorded.status)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                self.writer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def target_origin(url: str) -> str:
    """Scheme, host and port of the target: what the cassette header names (never credentials or paths)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
