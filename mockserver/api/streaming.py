"""An ASGI response that writes records as NDJSON lines, one flush per record.

Unlike Starlette's `StreamingResponse` it always closes the record generator, and it
watches for the client going away even while the generator waits (a stall), so the
chat service's `finally` persists the messages promptly in every case.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

import anyio
from starlette.types import Receive, Scope, Send

from mockserver.engine.records import Record, encode_record

NDJSON_MEDIA_TYPE = "application/x-ndjson"


class RecordStreamResponse:
    def __init__(self, records: AsyncGenerator[Record, None], headers: Mapping[str, str] | None = None):
        self.records = records
        self.headers = [(b"content-type", NDJSON_MEDIA_TYPE.encode())] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
            try:
                async for record in self.records:
                    await send({"type": "http.response.body", "body": encode_record(record), "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client went away while we were sending
            finally:
                with anyio.CancelScope(shield=True):
                    await self.records.aclose()
                group.cancel_scope.cancel()

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
