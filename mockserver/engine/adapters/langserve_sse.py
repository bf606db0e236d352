"""Waldur's SSE passthrough (7.9.4): each upstream event re-emitted as a Server-Sent Event.

Waldur read the LangServe upstream line by line, re-serialized each `data:` payload to
`{"content": ..., "additional_kwargs": {...}}` with `json.dumps` and passed blank lines on;
an upstream failure became `event: error` with a fixed `detail`. Nothing is persisted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from mockserver.engine.adapters.waldur_records import reassemble
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

SSE_INTERRUPTED = "Chat processing was interrupted due to a technical problem. Please try again later."
# Written as Waldur wrote it: a literal, compact string (the chunks go through json.dumps).
ERROR_DATA = '{"detail":"' + SSE_INTERRUPTED + '"}'


@dataclass(frozen=True)
class SseEvent:
    """One event: its `data:` payload (one line of JSON text) and an optional `event:` name."""

    data: str
    event: str | None = None


@dataclass(frozen=True)
class BlankLine:
    """A blank line passed on from the upstream (LangServe's closing `event: end`)."""


SseItem = SseEvent | BlankLine


class SseEncoder:
    """`event: <name>` (if any), `data: <payload>`, and the blank line that ends the event."""

    media_type = "text/event-stream"
    default_malformed = 'data: {"content": "unterminated'

    def encode(self, item: SseItem) -> bytes:
        if isinstance(item, BlankLine):
            return b"\n"
        head = f"event: {item.event}\n" if item.event else ""
        return f"{head}data: {item.data}\n\n".encode()

    def malformed(self, text: str) -> bytes:
        return (text + "\n\n").encode("utf-8")


SSE_ENCODER = SseEncoder()


def chunk_data(content: str, additional_kwargs: dict[str, Any] | None = None) -> str:
    """The payload of one chunk, serialized as Waldur did (`json.dumps` defaults)."""
    return json.dumps({"content": content, "additional_kwargs": additional_kwargs or {}})


def sse_item(event: UpstreamEvent) -> SseItem | None:
    """The SSE item for one upstream event (None: nothing on the wire)."""
    if isinstance(event, TextChunk):
        return SseEvent(chunk_data(event.text))
    if isinstance(event, LiteralRecord) and event.record is not None:
        text = reassemble([event.record])
        return SseEvent(chunk_data(text)) if text else None
    if isinstance(event, Usage):
        usage = {"input_tokens": event.input_tokens, "output_tokens": event.output_tokens}
        return SseEvent(chunk_data("", {"usage_metadata": usage}))
    if isinstance(event, UpstreamFailure):
        return SseEvent(ERROR_DATA, event="error")
    return None


async def sse_stream(events: AsyncIterator[UpstreamEvent]) -> AsyncGenerator[SseItem, None]:
    """Events as they arrive; after a failure's error event the stream ends."""
    async for event in events:
        item = sse_item(event)
        if item is not None:
            yield item
        if isinstance(event, UpstreamFailure):
            return
    yield BlankLine()


def sse_reply(reply: UpstreamReply, speed: float) -> AsyncGenerator[Any, None]:
    """The whole pipeline for one planned reply: play, adapt to SSE events, wire faults."""
    return with_wire_faults(sse_stream(play(reply.events, Pacer(speed))), reply.faults, SSE_ENCODER)
