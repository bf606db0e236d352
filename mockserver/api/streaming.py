"""An ASGI response that writes a stream's wire items through its encoder, one flush per item.

Unlike Starlette's `StreamingResponse` it always closes the item generator (so the
engine's `finally` persists the turn), it watches for the client going away even while
the generator waits (a stall), it sends the status line only with the first item (so a
delayed first record delays every byte), and it carries out the writer's wire faults: a
raw line is written as it is, and a dropped connection is cut without terminating the body.
It knows no protocol: the encoder (NDJSON line, SSE event) gives the bytes and media type.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from mockserver.engine.base import DropConnection, RawLine
from mockserver.engine.writer import Encoder, encode_item
from mockserver.openapi.validation import WIRE_FAULT_FLAG


class ConnectionDroppedOnPurpose(Exception):
    """Raised to make the server cut the connection mid-body (the drop fault)."""


class _QuietDrops(logging.Filter):
    """Keep uvicorn from logging a deliberate drop as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, ConnectionDroppedOnPurpose):
                return False
            exc = exc.__cause__ or exc.__context__ or (getattr(exc, "exceptions", None) or [None])[0]
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


DROP_GRACE_SECONDS = 0.05


class WireStreamResponse:
    def __init__(self, items: AsyncGenerator[Any, None], encoder: Encoder, headers: Mapping[str, str] | None = None):
        self.items = items
        self.encoder = encoder
        self.headers = [(b"content-type", encoder.media_type.encode())] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dropped = False
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
            try:
                async for item in self.items:
                    await self._start(send)
                    if isinstance(item, DropConnection):
                        dropped = True
                        break
                    if isinstance(item, RawLine):
                        scope.setdefault("state", {})[WIRE_FAULT_FLAG] = True
                    body = encode_item(item, self.encoder)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                else:
                    await self._start(send)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client went away while we were sending
            finally:
                with anyio.CancelScope(shield=True):
                    await self.items.aclose()
                group.cancel_scope.cancel()
        if dropped:
            scope.setdefault("state", {})[WIRE_FAULT_FLAG] = True
            # Let the records before the cut reach the client first: a browser that reads the last
            # record and the cut in one network read may report only the error (Chromium does).
            await anyio.sleep(DROP_GRACE_SECONDS)
            raise ConnectionDroppedOnPurpose("drop fault")

    async def _start(self, send: Send) -> None:
        """The status line and headers go out with the first item, not before.

        So a slow first byte (the `first_byte_delay_ms` fault, a title call's first chunk)
        means nothing at all arrives until then, as with a WSGI server or a slow proxy.
        """
        if not self._started:
            self._started = True
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
