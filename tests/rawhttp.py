"""Raw HTTP/1.1 over a real socket to a uvicorn-served mock: for requests httpx refuses to send
(newlines and bad escapes in paths, malformed headers, oversized heads, chunked bodies).

The server runs with the limits `waldur-chat-mock serve` uses (UVICORN_LIMITS), so what is
measured here is what a client of the real command gets.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mockserver.app import MockApp
from tests.support import served_app

# Signs that an answer leaks the server's insides: a Python traceback or a source path.
LEAK = re.compile(rb'Traceback \(most recent call last\)|File "[^"]+", line \d+|/site-packages/|\.py", line')


@dataclass
class RawResponse:
    status: int
    head: bytes
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


@contextmanager
def served(app: MockApp, log_level: str = "critical") -> Iterator[int]:
    """Serve `app` as `serve` does, on an ephemeral loopback port; yields the port."""
    with served_app(app, log_level) as base:
        yield int(base.rsplit(":", 1)[1])


def exchange(port: int, request: bytes, timeout: float = 5.0) -> RawResponse:
    """Send `request` as is and read the answer until the server closes or `timeout` passes.

    Send `Connection: close` in the request to have the server end the exchange; a response
    that has not ended within `timeout` raises TimeoutError (the "no hang" bound)."""
    started = time.perf_counter()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            sock.sendall(request)
        while True:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"no complete answer within {timeout} s to {request[:120]!r}")
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise TimeoutError(f"no complete answer within {timeout} s to {request[:120]!r}") from None
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if match is None:
        raise AssertionError(f"not an HTTP response: {data[:200]!r} to {request[:120]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return RawResponse(int(match.group(1)), head, body, time.perf_counter() - started)


def request_bytes(method: str, target: str | bytes, headers: list[tuple[str, str | bytes]], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request; `Host`, `Content-Length` (when there is a body) and
    `Connection: close` are added unless given."""
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} ".encode() + (target if isinstance(target, bytes) else target.encode()) + b" HTTP/1.1"]
    extra = [("Host", "127.0.0.1"), ("Connection", "close")]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        extra.append(("Content-Length", str(len(body))))
    for name, value in [*headers, *(h for h in extra if h[0].lower() not in names)]:
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out + body
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def http_scope(
    method: str, path: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """An ASGI HTTP scope as a server would build it, for scopes no HTTP/1.1 parser would produce."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
