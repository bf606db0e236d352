"""The replay layer: answers requests from a cassette, in front of the stateful mock.

A recorded stream is sent line by line at its recorded offsets scaled by `speed` (0: at
once), each line sleeping to an absolute deadline so that delays do not add up. `strict`
answers an unmatched request with 404 and a body naming the closest recording and how it
differs; `fallback` hands it to the mock. The control API (`/__mock__/`) is never replayed;
`POST /__mock__/reset` also rewinds the cassette.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.control.journal import CONTROL_PREFIX
from mockserver.openapi.validation import buffer_request  # one request-body buffer
from mockserver.replay.cassette import Cassette, Interaction, RecordedResponse
from mockserver.replay.matcher import Matcher, Miss
from mockserver.replay.redaction import TOKEN_PLACEHOLDER, Redactor, scope_headers, scope_query, token_of

REPLAY_HEADER = b"x-mock-replay"
MODES = ("strict", "fallback")
MISS_STATUS = 404
# Set by the mock's own CORS layer around this one; a recorded copy would be a second, stale one.
NOT_REPLAYED = ("access-control-",)


@dataclass(frozen=True)
class ReplaySource:
    """What `serve --cassette FILE --replay MODE` asks for."""

    cassette: Cassette
    mode: str = "strict"


class UserAliases:
    """Replay's token to alias map: `user-N` is the N-th user of the users file (alice, bob, ...).

    An unknown token gets no recording (its alias names no user of the cassette).
    """

    def __init__(self, users: list[tuple[str, str]]):  # (token, username) in the users file's order
        self.aliases = {token: f"user-{number}" for number, (token, _) in enumerate(users, start=1)}
        self.usernames = dict(users)

    def __call__(self, token: str | None) -> str | None:
        return None if token is None else self.aliases.get(token, "unknown-token")


class ReplayLayer:
    """Pure ASGI: a matching request is served from the cassette, others per `mode`."""

    def __init__(
        self,
        app: ASGIApp,
        cassette: Cassette,
        mode: str,
        speed: Callable[[], float],
        alias_of: UserAliases,
    ):
        if mode not in MODES:
            raise ValueError(f"replay mode must be one of {MODES}, not {mode!r}")
        self.app = app
        self.mode = mode
        self.speed = speed
        self.alias_of = alias_of
        self.redactor = Redactor(cassette.redacted)
        self.matcher = Matcher(cassette.interactions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, self._rewinding(scope, send))
            return
        buffered = await buffer_request(receive)
        if buffered is None:  # the client left before its body ended
            return
        body, receive = buffered
        headers, query = scope_headers(scope), scope_query(scope)
        token = token_of(headers, query)
        found = self.matcher.take(self.redactor.request(scope, headers, query, body, self.alias_of(token)))
        if isinstance(found, Interaction):
            if token in self.alias_of.usernames:  # for the access log, as the auth layer does
                scope.setdefault("state", {})["username"] = self.alias_of.usernames[token]
            await send_recorded(send, found.response, self.speed(), token)
        elif self.mode == "fallback":
            await self.app(scope, receive, _tagged(send, b"miss"))
        else:
            await _send_miss(send, found)

    def _rewinding(self, scope: Scope, send: Send) -> Send:
        if scope["method"] != "POST" or scope["path"].rstrip("/") != CONTROL_PREFIX + "reset":
            return send

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                self.matcher.rewind()
            await send(message)

        return watch


async def send_recorded(send: Send, response: RecordedResponse, speed: float, token: str | None = None) -> None:
    """The recorded answer, byte for byte (the caller's token where a recorded token was); a stream at
    its recorded pace (scaled by `speed`)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    headers = [*_replayed_headers(response.headers, token), (REPLAY_HEADER, b"hit")]
    if not response.is_stream:
        body = _with_token(response.body_bytes().decode("utf-8"), token).encode("utf-8")
        headers.append((b"content-length", str(len(body)).encode()))
        await _sleep_until(loop, start + response.headers_ms / 1000 * _scale(speed))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": response.cut})
        if response.cut:
            raise ConnectionDroppedOnPurpose("replaying a response the target cut short")
        return
    await _sleep_until(loop, start + response.headers_ms / 1000 * _scale(speed))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send_lines(send, response, speed, token)


async def send_lines(send: Send, response: RecordedResponse, speed: float, token: str | None = None) -> None:
    """The timed line sender: each line at head + offset / speed, to absolute deadlines (no drift).

    Kept here (not in the shared stream writer) so replay depends on nothing of the engine.
    """
    loop = asyncio.get_running_loop()
    head = loop.time()
    lines = response.lines or ()
    for number, line in enumerate(lines, start=1):
        await _sleep_until(loop, head + line.at_ms / 1000 * _scale(speed))
        last = number == len(lines)
        text = _with_token(line.text, token)
        data = text if last and response.unterminated else text + "\n"
        await send({"type": "http.response.body", "body": data.encode("utf-8"), "more_body": True})
    if response.cut:
        raise ConnectionDroppedOnPurpose("replaying a stream the target cut short")
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _with_token(text: str, token: str | None) -> str:
    return text.replace(TOKEN_PLACEHOLDER, token) if token and TOKEN_PLACEHOLDER in text else text


def _replayed_headers(recorded: tuple[tuple[str, str], ...], token: str | None) -> list[tuple[bytes, bytes]]:
    """The recorded headers, less what the serving mock's CORS layer sets itself (no doubled `Vary: Origin`)."""
    out = []
    for name, recorded_value in recorded:
        lowered = name.lower()
        if lowered.startswith(NOT_REPLAYED) or lowered == REPLAY_HEADER.decode():
            continue
        value = _with_token(recorded_value, token)
        if lowered == "vary":
            value = ", ".join(v.strip() for v in value.split(",") if v.strip().lower() != "origin")
            if not value:
                continue
        out.append((lowered.encode("latin-1"), value.encode("latin-1")))
    return out


def _scale(speed: float) -> float:
    return 0.0 if speed == 0 else 1.0 / speed


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _send_miss(send: Send, miss: Miss) -> None:
    closest = None
    if miss.closest is not None:
        closest = {k: v for k, v in asdict(miss.closest).items() if k != "headers"}
    body = json.dumps(
        {
            "detail": "No recorded interaction matches this request (replay is strict).",
            "closest": closest,
            "differences": miss.differences,
        },
        ensure_ascii=False,
    ).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REPLAY_HEADER, b"miss"),
    ]
    await send({"type": "http.response.start", "status": MISS_STATUS, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _tagged(send: Send, verdict: bytes) -> Send:
    async def tag(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (REPLAY_HEADER, verdict)]}
        await send(message)

    return tag
