"""Waldur's record stream (8.x): upstream events through StreamParser, framed by the `m` records.

The chat service owns state and passes a `StreamFrame`: the opening record (the thread
`m`) and `finish`, which persists the turn and returns the closing record. The adapter
calls `finish` exactly once, in a `finally`, so a client that went away still persists.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from mockserver.engine.base import ReplyRequest, StreamFrame
from mockserver.engine.faults import DEFAULT_MALFORMED_LINE
from mockserver.engine.pacing import Pacer, count_tokens
from mockserver.engine.parser import StreamParser, ToolRunner
from mockserver.engine.records import Record, encode_record, error
from mockserver.engine.upstream import LiteralRecord, Stall, TextChunk, UpstreamEvent, UpstreamFailure, Usage


class NdjsonEncoder:
    """One compact JSON line per record, as Waldur writes them."""

    media_type = "application/x-ndjson"
    default_malformed = DEFAULT_MALFORMED_LINE

    def encode(self, item: Record) -> bytes:
        return encode_record(item)

    def malformed(self, text: str) -> bytes:
        return (text + "\n").encode("utf-8")


NDJSON_ENCODER = NdjsonEncoder()


def turn_usage(request_input: str, stored: str, stored_tokens: int | None = None) -> int:
    """Quota usage of a turn that stored `stored`: the input's tokens and the reply's
    (`stored_tokens` when already counted: a shared plan counts its text once)."""
    return count_tokens(request_input) + (count_tokens(stored) if stored_tokens is None else stored_tokens)


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
        return turn_usage(self.input, stored)


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


@dataclass(frozen=True)
class RecordSchedule:
    """The records each chunk of a text reply completes, computed once per shared plan.

    The parser is deterministic on text (only tool output, held to the end, depends on the
    user), so every stream of the same plan makes the same records at the same chunks.
    `made[i]` is what the i-th text chunk completes (mostly nothing), `ends` what the end
    flushes, `lengths[i]` the length of the text once chunk i is in.
    """

    made: tuple[tuple[Record, ...], ...]
    ends: tuple[Record, ...]
    lengths: tuple[int, ...]
    text: str
    at: tuple[float, ...]  # seconds from the start to each chunk, at speed 1
    makers: tuple[int, ...]  # the chunks that complete records
    text_tokens: int  # count_tokens(text), once per plan rather than at the end of every stream

    def plays(self, events: Sequence[UpstreamEvent]) -> bool:
        """`events` are this plan's chunks and the usage, no fault in between: the lookup path applies."""
        return len(events) == len(self.made) + 1 and isinstance(events[-1], Usage)

    def due(self, elapsed: float, pacer: Pacer) -> int:
        """Length of the text whose chunks were due `elapsed` seconds after the start."""
        count = bisect_right(self.at, elapsed * pacer.speed) if pacer.speed > 0 else len(self.at)
        return self.lengths[count - 1] if count else 0


def record_schedule(chunks: Sequence[TextChunk]) -> RecordSchedule | None:
    """The schedule of a planned reply's text chunks; None for tool output (it needs the user's tools)."""
    parser = StreamParser(lambda raw: None)
    made = tuple(tuple(parser.feed(chunk.text)) for chunk in chunks)
    if parser.is_tool_output:
        return None
    ends = tuple(parser.finish())
    text = "".join(chunk.text for chunk in chunks)
    lengths = tuple(accumulate(len(chunk.text) for chunk in chunks))
    at = tuple(accumulate(chunk.delay for chunk in chunks))
    makers = tuple(index for index, records in enumerate(made) if records)
    return RecordSchedule(made, ends, lengths, text, at, makers, count_tokens(text))


@dataclass
class ScheduledTranslation:
    """`RecordTranslation` for a scheduled reply: looks the records up instead of parsing again.

    Records are copied on the way out: the schedule is shared, what a stream sends is its own.
    """

    schedule: RecordSchedule
    input: str
    failed: bool = False
    _chunks: int = 0  # text chunks fed so far

    def feed(self, event: UpstreamEvent) -> list[Record]:
        if self.failed:
            return []
        if isinstance(event, TextChunk):
            self._chunks += 1
            return [dict(record) for record in self.schedule.made[self._chunks - 1]]
        if isinstance(event, UpstreamFailure):
            self.failed = True
            return [error()]
        return []

    def end(self) -> list[Record]:
        return [] if self.failed else [dict(record) for record in self.schedule.ends]

    @property
    def raw(self) -> str:
        return self.schedule.text[: self.schedule.lengths[self._chunks - 1]] if self._chunks else ""

    @property
    def usage_tokens(self) -> int:
        return self.usage_with(self.raw)

    def usage_with(self, stored: str) -> int:
        return turn_usage(self.input, stored)


def _offset_after(event: UpstreamEvent, offset: float, pacer: Pacer) -> float:
    """When `event` arrives, in seconds from the stream's start, given when the one before did."""
    if isinstance(event, TextChunk | LiteralRecord):
        return offset + pacer.scaled(event.delay)
    if isinstance(event, Stall):
        return offset + event.seconds  # a fault: not scaled by speed
    return offset


def _sent_by(events: Sequence[UpstreamEvent], since: int, offset: float, now: float, pacer: Pacer) -> int:
    """Characters of text in `events[since:]` (fed ahead of their time) whose time had come by `now`."""
    length = 0
    for event in events[since:]:
        offset = _offset_after(event, offset, pacer)
        if offset > now:
            break
        if isinstance(event, TextChunk):
            length += len(event.text)
    return length


def paced_record_stream(
    events: Sequence[UpstreamEvent],
    pacer: Pacer,
    request: ReplyRequest,
    frame: StreamFrame,
    tools: ToolRunner,
    *,
    schedule: RecordSchedule | None = None,
) -> AsyncGenerator[Record, None]:
    """`record_stream` over a planned reply, waking once per record rather than once per chunk.

    Each event's deadline is counted from the stream's start (after the opening `m`, so a slow
    first byte shifts them all), and the stream sleeps once, to the deadline of the chunk that
    makes the next records: no drift from chained sleeps, no wake-up for chunks that only fill
    the parser's buffer. With the plan's `schedule` (text replies) the records are looked up,
    not parsed again. Records and stored text are the same as `record_stream` over `play`.
    """
    if schedule is not None and schedule.plays(events):
        return _looked_up_records(schedule, pacer, request, frame)
    return _fed_records(events, pacer, request, frame, tools, schedule=schedule)


async def _fed_records(
    events: Sequence[UpstreamEvent],
    pacer: Pacer,
    request: ReplyRequest,
    frame: StreamFrame,
    tools: ToolRunner,
    *,
    schedule: RecordSchedule | None,
) -> AsyncGenerator[Record, None]:
    """Every event fed in turn (faults in the plan, literal records, tool output)."""
    translation: RecordTranslation | ScheduledTranslation = (
        RecordTranslation(StreamParser(tools), request.input)
        if schedule is None
        else ScheduledTranslation(schedule, request.input)
    )
    sent, sent_index, sent_offset = 0, 0, 0.0  # text length, events and time the client has been sent
    start = pacer.now()
    finished = False
    try:
        if frame.opening is not None:
            yield frame.opening
        start = pacer.now()
        offset = 0.0
        for index, event in enumerate(events):
            offset = _offset_after(event, offset, pacer)
            records = translation.feed(event)
            if records:
                await pacer.sleep_until(start + offset)
                sent, sent_index, sent_offset = len(translation.raw), index + 1, offset
                for record in records:
                    yield record
        await pacer.sleep_until(start + offset)  # the last chunk (or a trailing pause) is due
        sent, sent_index = len(translation.raw), len(events)
        for record in translation.end():
            yield record
        finished = True
        closing = frame.finish(translation.raw, translation.usage_tokens)
    finally:
        if not finished:  # the client went away or was cut: store what it had been sent
            ahead = _sent_by(events, sent_index, sent_offset, pacer.now() - start, pacer)
            stored = translation.raw[: sent + ahead]
            frame.finish(stored, translation.usage_with(stored))
    if closing is not None:
        yield closing


async def _looked_up_records(
    schedule: RecordSchedule, pacer: Pacer, request: ReplyRequest, frame: StreamFrame
) -> AsyncGenerator[Record, None]:
    """A plain text reply: straight from one record-making chunk to the next, nothing fed in between."""
    fed = sent = 0  # text lengths: up to the chunk being waited for, and up to the last one sent
    start = pacer.now()
    finished = False
    try:
        if frame.opening is not None:
            yield frame.opening
        start = pacer.now()
        for index in schedule.makers:
            fed = schedule.lengths[index]
            await pacer.sleep_until(start + pacer.scaled(schedule.at[index]))
            sent = fed
            for record in schedule.made[index]:
                yield dict(record)
        fed = len(schedule.text)
        await pacer.sleep_until(start + pacer.scaled(schedule.at[-1] if schedule.at else 0.0))
        sent = fed
        for record in schedule.ends:
            yield dict(record)
        finished = True
        closing = frame.finish(schedule.text, turn_usage(request.input, schedule.text, schedule.text_tokens))
    finally:
        if not finished:  # the client went away or was cut: store what it had been sent
            stored = schedule.text[: max(sent, min(fed, schedule.due(pacer.now() - start, pacer)))]
            frame.finish(stored, turn_usage(request.input, stored))
    if closing is not None:
        yield closing
