"""The system under test, behind one seam: a base URL, or an ASGI app called in-process.

Both go through `httpx.AsyncClient` driven from a blocking portal, so the checks are plain
synchronous code (hypothesis state machines included). Streams are read chunk by chunk
with arrival times and a hard deadline: a slow or endless stream is a reported failure,
never a hang. httpx's ASGI transport delivers a body only when it is complete, so timing
is measured for URL targets only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import httpx

from mockserver.contract.findings import Step
from mockserver.profiles import get_profile

# In-process, what the app sends on the current stream (the ASGI transport hands a body over
# only whole, so the suite watches the app's own sends to see a stream as it goes).
_BODY_WATCH: ContextVar[Callable[[bytes, bool], None] | None] = ContextVar("body_watch", default=None)


@dataclass(frozen=True)
class Tokens:
    user: str  # a regular user
    other: str  # another regular user
    staff: str | None = None  # enables the staff-only checks


@dataclass
class StreamCapture:
    """One streamed response: status, headers, raw body, and when each piece arrived."""

    status: int
    headers: httpx.Headers
    body: bytes
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds since send, bytes so far)
    timed_out: bool = False
    timed: bool = True  # False when the transport buffers (in-process)
    error: str = ""  # the connection broke (e.g. closed mid-stream): what the client saw
    ended_at: float = 0.0  # seconds from the send until the body was over (or the connection gone)

    def records(self) -> list[dict[str, Any]]:
        """Parsed records of complete lines (lines that do not parse are skipped, as homeport does)."""
        out = []
        for line in self.body.split(b"\n")[:-1]:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def line_times(self) -> list[float]:
        """Arrival time of each complete line."""
        times, seen = [], 0
        newline_offsets = [i + 1 for i, byte in enumerate(self.body) if byte == 0x0A]
        for offset in newline_offsets:
            while seen < len(self.arrivals) and self.arrivals[seen][1] < offset:
                seen += 1
            if seen < len(self.arrivals):
                times.append(self.arrivals[seen][0])
        return times


@dataclass
class Interruption:
    """A request sent while a stream is open, as soon as `ready` says the body so far calls for it.

    Times are seconds since the stream was sent; `response` stays None when the stream ended
    before `ready` held (the request was then never sent)."""

    method: str
    path: str
    token: str
    ready: Callable[[bytes], bool]
    response: httpx.Response | None = None
    answered_at: float | None = None


def _watched(app: Any) -> Any:
    """The app, with each body piece of a watched stream reported as the app sends it."""

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        watch = _BODY_WATCH.get()
        if watch is None:
            await app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.body":
                watch(message.get("body", b""), message.get("more_body", False))
            await send(message)

        await app(scope, receive, sending)

    return watched


@dataclass
class _Reading:
    """One stream while it is read: what came, and when (seconds since it was sent)."""

    started: float
    interruption: Interruption | None
    watched: bool  # in-process: pieces are seen as the app sends them, not as the transport delivers
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    chunks: list[bytes] = field(default_factory=list)  # as delivered
    seen: list[bytes] = field(default_factory=list)  # as they arrived (or were sent, in-process)
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    error: str = ""
    ended_at: float = 0.0
    due: anyio.Event = field(default_factory=anyio.Event)  # the interruption is to be sent

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def arrived(self, chunk: bytes, more: bool = True) -> None:
        if not more:  # in-process: the app's last body message, the end of the body on the wire
            self.ended_at = self.elapsed()
        if not chunk:
            return
        self.seen.append(chunk)
        self.arrivals.append((self.elapsed(), sum(map(len, self.seen))))
        if self.interruption is not None and not self.due.is_set() and self.interruption.ready(b"".join(self.seen)):
            self.due.set()

    def capture(self, timed_out: bool) -> StreamCapture:
        whole = b"".join(self.chunks)
        arrivals = self.arrivals
        if sum(map(len, self.seen)) != len(whole):  # in-process, the app sent what the transport did not deliver
            arrivals = [(self.elapsed(), len(whole))]
        capture = StreamCapture(self.status, self.headers, whole, arrivals, timed_out)
        capture.timed, capture.error, capture.ended_at = not self.watched, self.error, self.ended_at
        return capture


class Target:
    """A chat API implementation to check. Use as a context manager."""

    def __init__(
        self,
        base_url: str,
        tokens: Tokens,
        *,
        app: Any = None,
        stream_timeout: float = 60.0,
        request_timeout: float = 30.0,
        stream_path: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.stream_path = stream_path or get_profile().stream_path  # the API profile's stream operation
        self.tokens = tokens
        self.app = app
        self.stream_timeout = stream_timeout
        self.request_timeout = request_timeout
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._client: httpx.AsyncClient | None = None
        self._portal_cm: Any = None
        self.last: Step | None = None  # the latest request, for the steps of an unexpected error

    @property
    def in_process(self) -> bool:
        return self.app is not None

    def __enter__(self) -> Target:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        transport = httpx.ASGITransport(app=_watched(self.app)) if self.app is not None else None
        self._client = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=self.request_timeout, follow_redirects=False
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._portal is not None and self._client is not None
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(*exc)

    def _headers(self, token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        merged = dict(headers or {})
        if token is not None:
            merged.setdefault("Authorization", f"Token {token}")
        return merged

    def request(
        self, method: str, path: str, *, token: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        assert self._portal is not None and self._client is not None
        client = self._client
        sent = self._headers(token, headers)
        self.last = Step(method, path + _query(kwargs.get("params")), None, kwargs.get("json"))
        response = self._portal.call(lambda: client.request(method, path, headers=sent, **kwargs))
        self.last.status = response.status_code
        return response

    def stream(
        self,
        body: dict[str, Any],
        *,
        token: str,
        headers: dict[str, str] | None = None,
        interruption: Interruption | None = None,
    ) -> StreamCapture:
        """One stream, read to its end or the deadline; with `interruption`, that request is
        sent while the stream is open (its answer is stored on it)."""
        assert self._portal is not None
        self.last = Step("POST", self.stream_path, None, body)
        capture = self._portal.call(self._stream, body, self._headers(token, headers), interruption)
        self.last.status = capture.status or None
        return capture

    async def _stream(
        self, body: dict[str, Any], headers: dict[str, str], interruption: Interruption | None
    ) -> StreamCapture:
        reading = _Reading(time.perf_counter(), interruption, watched=self.in_process)
        with anyio.move_on_after(self.stream_timeout) as deadline:
            async with anyio.create_task_group() as group:
                if interruption is not None:
                    group.start_soon(self._interrupt, interruption, reading)
                await self._read(body, headers, reading)
                if not reading.due.is_set():
                    group.cancel_scope.cancel()  # the stream ended first: the interruption is never sent
        return reading.capture(deadline.cancelled_caught)

    async def _read(self, body: dict[str, Any], headers: dict[str, str], reading: _Reading) -> None:
        """Read the stream into `reading` (in-process, its pieces are seen as the app sends them)."""
        assert self._client is not None
        token = _BODY_WATCH.set(reading.arrived if reading.watched else None)
        try:
            async with self._client.stream("POST", self.stream_path, json=body, headers=headers) as response:
                reading.status, reading.headers = response.status_code, response.headers
                async for chunk in response.aiter_raw():
                    reading.chunks.append(chunk)
                    if not reading.watched:
                        reading.arrived(chunk)
        except httpx.TransportError as exc:  # a dropped connection is a finding with its request
            reading.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            _BODY_WATCH.reset(token)
            reading.ended_at = reading.ended_at or reading.elapsed()

    async def _interrupt(self, interruption: Interruption, reading: _Reading) -> None:
        assert self._client is not None
        await reading.due.wait()
        _BODY_WATCH.set(None)  # this task's own request is not the stream
        headers = self._headers(interruption.token, None)
        interruption.response = await self._client.request(interruption.method, interruption.path, headers=headers)
        interruption.answered_at = reading.elapsed()

    def broken(self, capture: StreamCapture, body: Any) -> Step | None:
        """The step of a stream whose connection broke, or None when it did not."""
        if not capture.error:
            return None
        excerpt = f"connection broke after {len(capture.body)} bytes: {capture.error}"
        return Step("POST", self.stream_path, capture.status or None, body, excerpt)

    def step(self, response: httpx.Response, body: Any = None, excerpt: str = "") -> Step:
        """A reproduction step for a plain response."""
        request = response.request
        path = request.url.raw_path.decode()
        return Step(request.method, path, response.status_code, body, excerpt)


def _query(params: Any) -> str:
    from urllib.parse import urlencode

    return f"?{urlencode(params, doseq=True)}" if params else ""
