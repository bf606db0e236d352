"""Waldur's record stream (8.x): upstream events through StreamParser, framed by the `m` records.

The chat service owns state and passes a `StreamFrame`: the opening record (the thread
`m`) and `finish`, which persists the turn and returns the closing record. The adapter
calls `finish` exactly once, in a `finally`, so a client that went away still persists.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from mockserver.engine.base import ReplyRequest, StreamFrame
from mockserver.engine.faults import DEFAULT_MALFORMED_LINE
from mockserver.engine.pacing import Pacer, count_tokens
from mockserver.engine.parser import StreamParser, ToolRunner
from mockserver.engine.records import Record, encode_record, error
from mockserver.engine.upstream import LiteralRecord, Stall, TextChunk, UpstreamEvent, UpstreamFailure


class NdjsonEncoder:
    """One compact JSON line per record, as Waldur writes them."""

    media_type = "application/x-ndjson"
    default_malformed = DEFAULT_MALFORMED_LINE

    def encode(self, item: Record) -> bytes:
        return encode_record(item)

    def malformed(self, text: str) -> bytes:
        return (text + "\n").encode("utf-8")


NDJSON_ENCODER = NdjsonEncoder()


def reassemble(records: list[Record]) -> str:
    """The text a client would rebuild from content records (used for literal scripts)."""
    parts = []
    for record in records:
        kind = record.get("k")
        if kind == "markdown" or (kind is None and "c" in record):
            parts.append(record["c"])
        elif kind == "code":
            parts.append(f"```{record['t']}\n{record['c']}```")
        elif kind == "mermaid":
            parts.append(f"```mermaid\n{record['c']}```")
    return "".join(parts)


@dataclass
class RecordTranslation:
    """Synchronous core: one event at a time to content records; tracks the text to store.

    Used as it is for the load-time dry run (a plain loop over planned events).
    """

    parser: StreamParser
    input: str
    raw: str = ""
    failed: bool = False
    _literal: list[Record] = field(default_factory=list)

    def feed(self, event: UpstreamEvent) -> list[Record]:
        if self.failed:
            return []
        if isinstance(event, LiteralRecord) and event.record is not None:
            self._literal.append(event.record)
            self.raw = reassemble(self._literal)
            return [event.record]
        if isinstance(event, TextChunk):
            self.raw += event.text
            return self.parser.feed(event.text)
        if isinstance(event, UpstreamFailure):
            self.failed = True  # the text still buffered is lost on the wire but stored
            return [error()]
        return []

    def end(self) -> list[Record]:
        return [] if self.failed else self.parser.finish()

    @property
    def usage_tokens(self) -> int:
        return self.usage_with(self.raw)

    def usage_with(self, stored: str) -> int:
        """Quota usage of a turn that stored `stored`: the input's tokens and the reply's."""
        return count_tokens(self.input) + count_tokens(stored)


def translate_all(events: Iterable[UpstreamEvent], tools: ToolRunner, request_input: str) -> list[Record]:
    """Every content record of a planned reply, without waiting (load-time checks)."""
    translation = RecordTranslation(StreamParser(tools), request_input)
    records = [record for event in events for record in translation.feed(event)]
    return records + translation.end()


async def record_stream(
    events: AsyncIterator[UpstreamEvent], request: ReplyRequest, frame: StreamFrame, tools: ToolRunner
) -> AsyncGenerator[Record, None]:
    """Opening `m`, content records as events arrive, closing `m`; `finish` runs exactly once."""
    translation = RecordTranslation(StreamParser(tools), request.input)
    finished = False
    try:
        if frame.opening is not None:
            yield frame.opening
        async for event in events:
            for record in translation.feed(event):
                yield record
        for record in translation.end():
            yield record
        finished = True
        closing = frame.finish(translation.raw, translation.usage_tokens)
    finally:
        if not finished:
            frame.finish(translation.raw, translation.usage_tokens)
    if closing is not None:
        yield closing


def _offset_after(event: UpstreamEvent, offset: float, pacer: Pacer) -> float:
    """When `event` arrives, in seconds from the stream's start, given when the one before did."""
    if isinstance(event, TextChunk | LiteralRecord):
        return offset + pacer.scaled(event.delay)
    if isinstance(event, Stall):
        return offset + event.seconds  # a fault: not scaled by speed
    return offset


@dataclass
class _Arrivals:
    """How much of the reply a client has been sent by now: the stored text if the stream ends early.

    Chunks are fed to the parser ahead of their time (up to the next one that makes a record);
    each fed chunk's deadline and the length of the text with it are kept until the stream
    wakes at it (the text only grows at its end, so a length is enough).
    """

    pacer: Pacer
    arrived: int = 0
    pending: list[tuple[float, int]] = field(default_factory=list)

    def add(self, deadline: float, length: int) -> None:
        self.pending.append((deadline, length))

    def reached(self) -> None:
        if self.pending:
            self.arrived = self.pending[-1][1]
            self.pending.clear()

    def by_now(self) -> int:
        now = self.pacer.now()
        due = [length for deadline, length in self.pending if deadline <= now]
        return due[-1] if due else self.arrived


async def paced_record_stream(
    events: Sequence[UpstreamEvent], pacer: Pacer, request: ReplyRequest, frame: StreamFrame, tools: ToolRunner
) -> AsyncGenerator[Record, None]:
    """`record_stream` over a planned reply, waking once per record rather than once per chunk.

    Each event's deadline is counted from the stream's start (after the opening `m`, so a slow
    first byte shifts them all), and the stream sleeps once, to the deadline of the chunk that
    makes the next records: no drift from chained sleeps, no wake-up for chunks that only fill
    the parser's buffer. Records and stored text are the same as `record_stream` over `play`.
    """
    translation = RecordTranslation(StreamParser(tools), request.input)
    arrivals = _Arrivals(pacer)
    finished = False
    try:
        if frame.opening is not None:
            yield frame.opening
        start = pacer.now()
        offset = 0.0
        for event in events:
            offset = _offset_after(event, offset, pacer)
            records = translation.feed(event)
            arrivals.add(start + offset, len(translation.raw))
            if records:
                await pacer.sleep_until(start + offset)
                arrivals.reached()
                for record in records:
                    yield record
        await pacer.sleep_until(start + offset)  # the last chunk (or a trailing pause) is due
        arrivals.reached()
        for record in translation.end():
            yield record
        finished = True
        closing = frame.finish(translation.raw, translation.usage_tokens)
    finally:
        if not finished:
            stored = translation.raw[: arrivals.by_now()]
            frame.finish(stored, translation.usage_with(stored))
    if closing is not None:
        yield closing
