"""Size limits a real deployment puts in front of Waldur, so that no request costs unbounded work.

Waldur runs behind nginx. Bodies: `client_max_body_size` answers 413 before Django sees the
request; the limit here is Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), which deployments
match in nginx, and far above the largest valid chat body (50000 characters of input, at
most 12 bytes each as JSON escapes: 600 KB). Headers: nginx's `large_client_header_buffers`
(4 x 8 KB) answers 400 "Request Header Or Cookie Too Large"; uvicorn's h11 implementation
bounds the request line plus headers with `h11_max_incomplete_event_size` and answers 400
too, while httptools has no limit at all (a 64 MB header was accepted), hence UVICORN_LIMITS.
Measured on loopback: h11 refuses a 64 MB header in 2 ms (httptools took 4.8 s to accept it),
costs about 0.08 ms more per request (0.20 against 0.12 ms on `/__mock__/health`, lost in the
4-5 ms of a validated chat request), and streams records just as incrementally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.api.rendering import error_response
from mockserver.errors import ApiError

MAX_BODY_BYTES = 2_621_440  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE
MAX_HEADER_BYTES = 32_768  # nginx: 4 buffers of 8 KB for the request line and the headers

# Keyword arguments for `uvicorn.Config` / `uvicorn.run`, for every server that runs the mock.
UVICORN_LIMITS: dict[str, Any] = {"http": "h11", "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


class RequestTooLarge(ApiError):
    status_code = 413

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        super().__init__(f"Request body too large: the limit is {limit} bytes.")


class HeadersTooLarge(ApiError):
    status_code = 400  # what nginx and uvicorn answer (not 431: see the module docstring)

    def __init__(self) -> None:
        super().__init__(f"Request line and headers too large: the limit is {MAX_HEADER_BYTES} bytes.")


class TargetNotAscii(ApiError):
    """h11 (what `serve` runs) refuses such a request line itself; other servers pass it on,
    and Starlette's `request.url` then fails on a query that is not UTF-8."""

    status_code = 400
    default_detail = "Invalid request target: bytes outside ASCII must be percent-encoded."


class RequestLimits:
    """400 for a request head above MAX_HEADER_BYTES (or a target that is not ASCII), 413 for
    a body above MAX_BODY_BYTES, or above the smaller limit `path_limits` gives its path (the
    control API's, for bodies that are never more than a few KB).

    h11's limit applies to what it has buffered of an incomplete head, so a head that arrives
    in one read may pass it by up to a read's size: the exact limit is checked here (and under
    any server). The body: 413 at once when Content-Length says so (nginx checks the header
    before reading), otherwise as soon as the bytes read pass the limit. Past the limit the
    application is told the client went away (`http.disconnect`): every reader stops there,
    nothing half-read is acted on, and whatever the application answers is replaced.
    """

    def __init__(
        self,
        app: ASGIApp,
        body_limit: int = MAX_BODY_BYTES,
        header_limit: int = MAX_HEADER_BYTES,
        path_limits: Mapping[str, int] | None = None,
    ):
        self.app = app
        self.body_limit = body_limit
        self.header_limit = header_limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_limit = self.path_limits.get(scope["path"], self.body_limit)
        refusal = self._refusal(scope, body_limit)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        guard = _Guard(body_limit, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.exceeded:
                raise
        if guard.exceeded and not guard.started:
            await error_response(RequestTooLarge(body_limit))(scope, receive, send)

    def _refusal(self, scope: Scope, body_limit: int) -> ApiError | None:
        target = (scope.get("raw_path") or b"") + b"?" + scope.get("query_string", b"")
        if not target.isascii():
            return TargetNotAscii()
        head = len(target)
        head += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > self.header_limit:
            return HeadersTooLarge()
        if _declared_length(scope) > body_limit:
            return RequestTooLarge(body_limit)
        return None


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server refuses a malformed Content-Length before the app runs
    return 0


class _Guard:
    def __init__(self, limit: int, receive: Receive, send: Send):
        self.limit = limit
        self.downstream_receive = receive
        self.downstream_send = send
        self.received = 0
        self.exceeded = False
        self.started = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self.downstream_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded and not self.started:
            return  # the 413 replaces whatever the application answers to a cut-off body
        if message["type"] == "http.response.start":
            self.started = True
        await self.downstream_send(message)
