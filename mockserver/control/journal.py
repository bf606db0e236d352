"""A bounded journal of the requests the mock received, newest last.

Each entry keeps what a frontend test wants to assert about a call: the request's headers
and body, the response's headers and body (a stream as its records, one parsed record per
line), with secrets redacted and bodies bounded. Streams are recorded line by line as they
pass: nothing is held back from the client to journal it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.openapi.sequential import NDJSON
from mockserver.redaction import REDACTED, SECRET_BODY_FIELDS, redact_header, redact_query, redact_urls
from mockserver.util import REQUEST_WARNINGS, format_datetime

CONTROL_PREFIX = "/__mock__/"
BODY_LIMIT = 16 * 1024  # bytes of each body (or of a stream's records) kept per entry
HEADER_VALUE_LIMIT = 1024  # characters of each header value kept


@dataclass
class BodyCapture:
    """The first BODY_LIMIT bytes of a body as text, its full size, and whether it was cut."""

    body_bytes: int = 0
    body_truncated: bool = False
    _kept: bytearray = field(default_factory=bytearray, repr=False)

    def add(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        room = BODY_LIMIT - len(self._kept)
        if len(chunk) > room:
            self.body_truncated = True
        self._kept += chunk[: max(room, 0)]

    @property
    def text(self) -> str | None:
        """UTF-8 (undecodable bytes replaced); None for an empty body."""
        return self._kept.decode("utf-8", errors="replace") if self._kept else None


@dataclass
class RecordCapture:
    """A stream's lines kept as they pass, parsed when the journal is read (a line that is not
    JSON is shown as its text): parsing each record as it left cost every stream its share."""

    lines: list[bytes] = field(default_factory=list)
    body_bytes: int = 0
    body_truncated: bool = False
    _kept_bytes: int = 0
    _pending: bytes = b""

    @property
    def records(self) -> list[Any]:
        return [_record(line) for line in self.lines]

    def add(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_truncated:
            return
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            self._keep(line)
        if len(self._pending) > BODY_LIMIT:  # one line larger than the whole budget
            self.body_truncated = True
            self._pending = b""

    def finish(self) -> None:
        """An unterminated last line (a dropped connection) is kept as it arrived."""
        if self._pending and not self.body_truncated:
            self._keep(self._pending)
        self._pending = b""

    def _keep(self, line: bytes) -> None:
        self._kept_bytes += len(line) + 1
        if self._kept_bytes > BODY_LIMIT:
            self.body_truncated = True
            return
        self.lines.append(line)


def _record(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return line.decode("utf-8", errors="replace")


@dataclass
class JournalEntry:
    seq: int
    received: datetime
    api: str  # the API profile that answered (which Waldur version)
    method: str
    path: str
    raw_query: bytes  # redacted when read, as the headers
    status: int | None = None
    user: str | None = None
    duration_ms: float | None = None
    # Raw as received and sent; redacted when the journal is read (most entries never are).
    raw_request_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    request_body: BodyCapture = field(default_factory=BodyCapture)
    raw_response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    response_body: BodyCapture | RecordCapture | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The entry as `spec/mock-control.yaml` describes it (secrets redacted)."""
        request_headers = redact_headers(self.raw_request_headers)
        response_headers = redact_headers(self.raw_response_headers)
        response: dict[str, Any] = {"headers": response_headers, "body": None, "records": None}
        body = self.response_body or BodyCapture()
        if isinstance(body, RecordCapture):
            response["records"] = body.records
        else:
            response["body"] = _redact_body(body.text, response_headers)
        response.update(body_bytes=body.body_bytes, body_truncated=body.body_truncated)
        return {
            "seq": self.seq,
            "time": format_datetime(self.received),
            **{k: getattr(self, k) for k in ("api", "method", "path")},
            "query": redact_query(self.raw_query.decode("latin-1")),
            **{k: getattr(self, k) for k in ("status", "user")},
            "duration_ms": self.duration_ms,
            "request": {
                "headers": request_headers,
                "body": _redact_body(self.request_body.text, request_headers),
                "body_bytes": self.request_body.body_bytes,
                "body_truncated": self.request_body.body_truncated,
            },
            "response": response,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class JournalFilter:
    """`method` (any case), `path` (exact, or a prefix when it ends in `*`), `user` (username)."""

    method: str | None = None
    path: str | None = None
    user: str | None = None

    def accepts(self, entry: JournalEntry) -> bool:
        if self.method and entry.method != self.method.upper():
            return False
        if self.user and entry.user != self.user:
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return entry.path.startswith(self.path[:-1])
        return entry.path == self.path


class RequestJournal:
    def __init__(self, limit: int = 1000, *, api: str):
        self.api = api
        self.limit = limit
        self._entries: deque[JournalEntry] = deque(maxlen=limit)
        self._seq = 0
        self._lock = threading.Lock()

    def open(self, scope: Scope) -> JournalEntry:
        with self._lock:
            self._seq += 1
            entry = JournalEntry(
                seq=self._seq,
                received=datetime.now(UTC),
                api=self.api,
                method=scope["method"],
                path=scope["path"],
                raw_query=scope.get("query_string", b""),
                raw_request_headers=list(scope.get("headers", [])),
            )
            self._entries.append(entry)
            return entry

    def entries(self, limit: int | None = None, where: JournalFilter | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries (all by default) that pass `where`, oldest first."""
        return [e.as_json() for e in self.matching(limit, where)]

    def matching(self, limit: int | None = None, where: JournalFilter | None = None) -> list[JournalEntry]:
        with self._lock:
            items = [e for e in self._entries if where is None or where.accepts(e)]
        return items[-limit:] if limit else items

    def count(self, where: JournalFilter | None = None) -> int:
        return len(self.matching(None, where))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Empty the journal; sequence numbers start again at 1."""
        with self._lock:
            self._entries.clear()
            self._seq = 0


def redact_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined with `, `; credentials replaced; long values cut."""
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = redact_urls(redact_header(name, value_bytes.decode("latin-1")))
        if len(value) > HEADER_VALUE_LIMIT:
            value = value[:HEADER_VALUE_LIMIT] + "...(truncated)"
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


_SECRET_FORM_FIELD = re.compile(r"(^|&)(" + "|".join(SECRET_BODY_FIELDS) + r")=[^&]*")


def _redact_body(body: str | None, headers: dict[str, str]) -> str | None:
    """Passwords and tokens of JSON objects and forms (a login and its answer) are redacted."""
    if body is None:
        return None
    body = redact_urls(body)
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return _SECRET_FORM_FIELD.sub(rf"\1\2={REDACTED}", body)
    if not any(f'"{name}"' in body for name in SECRET_BODY_FIELDS):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or not SECRET_BODY_FIELDS & data.keys():
        return body
    return json.dumps({k: REDACTED if k in SECRET_BODY_FIELDS else v for k, v in data.items()})


class JournalMiddleware:
    """Records every non-control request: headers and body as they arrive, the response as it leaves."""

    def __init__(self, app: ASGIApp, journal: RequestJournal):
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        entry = self.journal.open(scope)
        # Any layer may add a warning for this request (e.g. no reply script matched).
        scope.setdefault("state", {})[REQUEST_WARNINGS] = entry.warnings
        started = time.perf_counter()

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                entry.request_body.add(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                entry.user = scope.get("state", {}).get("username")
                entry.raw_response_headers = list(message.get("headers", []))
                streaming = Headers(raw=message.get("headers", [])).get("content-type", "").startswith(NDJSON)
                entry.response_body = RecordCapture() if streaming else BodyCapture()
            elif message["type"] == "http.response.body" and entry.response_body is not None:
                entry.response_body.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:  # also for streams cut short by a drop fault or a client that went away
            if isinstance(entry.response_body, RecordCapture):
                entry.response_body.finish()
            entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
