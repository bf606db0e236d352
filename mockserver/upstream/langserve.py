"""Upstream events as a LangServe `/stream` answer (the LLM of Waldur 7.9.x-8.0.x).

A LangServe server streams `event: data` / `data: <serialized AIMessageChunk>` pairs and a
closing `event: end`. Waldur reads only the `data: ` lines: `content` is the text delta and
the last `additional_kwargs.usage_metadata` the usage (LangChain puts it at the top level
too, so both are sent). An upstream failure is LangServe's `event: error` followed by a cut
connection: Waldur ignores the event's JSON (no `content`), but the broken body makes its
HTTP client raise, which is how it sees a failed upstream.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from mockserver.engine.adapters.waldur_records import reassemble
from mockserver.engine.base import DropConnection
from mockserver.engine.pacing import Pacer
from mockserver.engine.upstream import (
    LiteralRecord,
    TextChunk,
    UpstreamEvent,
    UpstreamFailure,
    UpstreamReply,
    Usage,
    play,
)
from mockserver.engine.writer import with_wire_faults

ERROR_DATA = {"status_code": 500, "message": "Internal Server Error"}


@dataclass(frozen=True)
class LangServeEvent:
    """`event: <name>` and, unless None, one `data:` line."""

    event: str
    data: str | None = None


class LangServeEncoder:
    media_type = "text/event-stream"
    default_malformed = 'event: data\ndata: {"content": "unterminated'

    def encode(self, item: LangServeEvent) -> bytes:
        data = "" if item.data is None else f"data: {item.data}\n"
        return f"event: {item.event}\n{data}\n".encode()

    def malformed(self, text: str) -> bytes:
        return (text + "\n\n").encode("utf-8")


LANGSERVE_ENCODER = LangServeEncoder()


class MessageChunks:
    """Serialized `AIMessageChunk`s of one run (one id)."""

    def __init__(self) -> None:
        self.id = f"run-{uuid.uuid4()}"

    def data(self, content: str, usage: Usage | None = None) -> str:
        usage_metadata = None
        if usage is not None:
            total = usage.input_tokens + usage.output_tokens
            usage_metadata = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": total,
            }
        chunk: dict[str, Any] = {
            "content": content,
            "additional_kwargs": {"usage_metadata": usage_metadata} if usage_metadata else {},
            "response_metadata": {},
            "type": "AIMessageChunk",
            "name": None,
            "id": self.id,
            "example": False,
            "tool_calls": [],
            "invalid_tool_calls": [],
            "usage_metadata": usage_metadata,
            "tool_call_chunks": [],
        }
        return json.dumps(chunk)


def _item(event: UpstreamEvent, chunks: MessageChunks) -> LangServeEvent | None:
    if isinstance(event, TextChunk):
        return LangServeEvent("data", chunks.data(event.text))
    if isinstance(event, LiteralRecord) and event.record is not None:
        text = reassemble([event.record])
        return LangServeEvent("data", chunks.data(text)) if text else None
    if isinstance(event, Usage):
        return LangServeEvent("data", chunks.data("", event))
    return None


async def langserve_stream(events: AsyncIterator[UpstreamEvent]) -> AsyncGenerator[Any, None]:
    """Data events as they arrive and `end`; a failure is `error` and a cut connection."""
    chunks = MessageChunks()
    async for event in events:
        if isinstance(event, UpstreamFailure):
            yield LangServeEvent("error", json.dumps(ERROR_DATA))
            yield DropConnection()
            return
        item = _item(event, chunks)
        if item is not None:
            yield item
    yield LangServeEvent("end")


def langserve_reply(reply: UpstreamReply, speed: float) -> AsyncGenerator[Any, None]:
    """The whole pipeline for one planned reply: play, LangServe events, wire faults."""
    return with_wire_faults(langserve_stream(play(reply.events, Pacer(speed))), reply.faults, LANGSERVE_ENCODER)
