"""A bounded journal of the requests the mock received, newest last."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.util import format_datetime

CONTROL_PREFIX = "/__mock__/"


@dataclass
class JournalEntry:
    seq: int
    time: str
    method: str
    path: str
    query: str
    status: int | None = None
    user: str | None = None
    duration_ms: float | None = None


class RequestJournal:
    def __init__(self, limit: int = 1000):
        self.limit = limit
        self._entries: deque[JournalEntry] = deque(maxlen=limit)
        self._seq = 0
        self._lock = threading.Lock()

    def open(self, scope: Scope) -> JournalEntry:
        with self._lock:
            self._seq += 1
            entry = JournalEntry(
                seq=self._seq,
                time=format_datetime(datetime.now(UTC)),
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
            )
            self._entries.append(entry)
            return entry

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries (all by default), oldest first."""
        with self._lock:
            items = list(self._entries)
        return [asdict(e) for e in (items[-limit:] if limit else items)]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Empty the journal; sequence numbers start again at 1."""
        with self._lock:
            self._entries.clear()
            self._seq = 0


class JournalMiddleware:
    """Records every non-control request: status when the response starts, duration when it ends."""

    def __init__(self, app: ASGIApp, journal: RequestJournal):
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        entry = self.journal.open(scope)
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                entry.user = scope.get("state", {}).get("username")
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:  # also for streams cut short by a drop fault or a client that went away
            entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
