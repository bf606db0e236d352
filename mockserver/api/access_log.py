"""One access-log line per request for `serve`: who asked for what, the answer, how long, how much.

Pure ASGI so that streams pass through untouched: every body chunk is forwarded at once and
only counted (bytes; for NDJSON also records, one per newline that ends a line). The user is
the username the auth layer resolved (`-` for anonymous); the token itself is never logged,
and a `?x-auth-token=` value is masked.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.openapi.loader import NDJSON
from mockserver.redaction import redact_query

ACCESS_LOGGER = "mockserver.access"
_UNPRINTABLE = re.compile(rb'[^\x21-\x7e]|["\\]')


@dataclass
class _Exchange:
    """What was sent back so far; filled in as the response passes."""

    status: int | None = None
    user: str | None = None
    streams: bool = False
    bytes_sent: int = 0
    records: int = 0
    complete: bool = False


class AccessLogMiddleware:
    """Logs one line per HTTP request when its response ends (or is cut short)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None):
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange()
        started = time.perf_counter()

        async def counting_send(message: Message) -> None:
            _count(exchange, scope, message)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:  # also for a client that went away and a stream dropped on purpose
            self.logger.info(access_line(scope, exchange, (time.perf_counter() - started) * 1000))


def _count(exchange: _Exchange, scope: Scope, message: Message) -> None:
    if message["type"] == "http.response.start":
        exchange.status = message["status"]
        exchange.user = scope.get("state", {}).get("username")  # set by the auth layer
        exchange.streams = _content_type(message).startswith(NDJSON.encode())
    elif message["type"] == "http.response.body":
        body = message.get("body", b"")
        exchange.bytes_sent += len(body)
        if exchange.streams:
            exchange.records += body.count(b"\n")
        exchange.complete = not message.get("more_body", False)


def _content_type(message: Message) -> bytes:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            return bytes(value).lower()
    return b""


def access_line(scope: Scope, exchange: _Exchange, duration_ms: float) -> str:
    """`client user "METHOD target" status duration bytes=N [records=N] [incomplete]`."""
    client = scope.get("client")
    fields = [
        _printable(str(client[0]).encode()) if client else "-",
        _printable(exchange.user.encode()) if exchange.user else "-",
        f'"{_printable(scope["method"].encode())} {request_target(scope)}"',
        str(exchange.status) if exchange.status is not None else "-",
        f"{duration_ms:.1f}ms",
        f"bytes={exchange.bytes_sent}",
    ]
    if exchange.streams:
        fields.append(f"records={exchange.records}")
    if not exchange.complete:
        fields.append("incomplete")
    return " ".join(fields)


def request_target(scope: Scope) -> str:
    """The path as sent (percent-encoded) and the query with secrets masked, safe to print."""
    path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query = redact_query(scope.get("query_string", b"").decode("latin-1")).encode("latin-1")
    return _printable(path + (b"?" + query if query else b""))


def _printable(raw: bytes) -> str:
    """Printable ASCII as is, anything else (spaces, newlines, quotes, non-ASCII) as \\xNN: one line per request."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{match.group()[0]:02x}".encode(), raw).decode("ascii")
