"""Stage 1 of the stream pipeline: a reply script becomes timed upstream events.

The simulated upstream LLM (Waldur's LangServe-style backend) is described by what it
would send: text chunks with the delay before each, its token usage, a failure, a stall.
Planning is pure and synchronous (checking scripts at load time is a plain loop);
`play` is the only part that waits. Every protocol adapter, and anything else that needs
the upstream's view of a reply (an upstream-LLM server mode, recordings), reads these events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from mockserver.engine.base import ReplyRequest
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer, count_tokens
from mockserver.engine.plans import PlanCache
from mockserver.engine.records import Record
from mockserver.engine.scripts.model import Script


@dataclass(frozen=True)
class TextChunk:
    """A text delta from the upstream; `delay` (seconds) is waited before it, scaled by speed."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True)
class Usage:
    """The upstream's token counts, sent after the last chunk of a reply that completed."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class UpstreamFailure:
    """The upstream call failed here (the `upstream_error_after_chunks` fault)."""


@dataclass(frozen=True)
class Stall:
    """The upstream goes silent for `seconds` (a fault: not scaled by speed)."""

    seconds: float


@dataclass(frozen=True)
class LiteralRecord:
    """A literal script's hand-written Waldur record (None: a pause), after `delay` seconds.

    Not an upstream message: literal scripts bypass the simulated LLM. Adapters of other
    protocols use the text a client would rebuild from it.
    """

    record: Record | None
    delay: float = 0.0


UpstreamEvent = TextChunk | Usage | UpstreamFailure | Stall | LiteralRecord


@dataclass(frozen=True)
class UpstreamReply:
    """The planned reply to one request: its events and the faults in force (wire faults included)."""

    events: tuple[UpstreamEvent, ...]
    faults: Faults
    script: Script | None = None


@dataclass(frozen=True)
class TimedText:
    """One rendering of a script as timed chunks, and its output tokens: shared by every turn (immutable)."""

    chunks: tuple[TextChunk, ...]
    output_tokens: int


def timed_text(script: Script, rendered: tuple[str, ...]) -> TimedText:
    """Split a rendering into chunks and draw their (seeded) delays: the costly part of planning."""
    chunks = script.chunks_of(rendered)
    delays = script.timing.delays([c.text for c in chunks], [c.delay_ms for c in chunks])
    timed = tuple(TextChunk(chunk.text, delay) for chunk, delay in zip(chunks, delays, strict=True))
    return TimedText(timed, count_tokens("".join(c.text for c in chunks)))


def plan_script(
    script: Script, request: ReplyRequest, faults: Faults, plans: PlanCache[TimedText] | None = None
) -> list[UpstreamEvent]:
    """The events one script sends for one request; upstream faults cut or stall the chunks.

    With `plans`, the timed chunks of each (script, rendered text) are computed once and shared.
    """
    if script.literal:
        return [LiteralRecord(step.record, step.delay_ms / 1000) for step in script.records]
    rendered = script.rendered(request)
    timed = (
        timed_text(script, rendered)
        if plans is None
        else plans.get(script, rendered, lambda: timed_text(script, rendered), sum(map(len, rendered)))
    )
    usage = Usage(count_tokens(request.input), timed.output_tokens)
    if faults.upstream_error_after_chunks is None and not faults.stall_seconds:
        return [*timed.chunks, usage]
    events: list[UpstreamEvent] = []
    for index, chunk in enumerate(timed.chunks):
        if faults.stall_seconds and faults.stall_after_chunks == index:
            events.append(Stall(faults.stall_seconds))
        if faults.upstream_error_after_chunks == index:
            events.append(UpstreamFailure())
            return events
        events.append(chunk)
    if faults.upstream_error_after_chunks is not None and faults.upstream_error_after_chunks >= len(timed.chunks):
        events.append(UpstreamFailure())
        return events
    events.append(usage)
    return events


async def play(events: Iterable[UpstreamEvent], pacer: Pacer) -> AsyncIterator[UpstreamEvent]:
    """The events in real time: each chunk after its (speed-scaled) delay, stalls unscaled."""
    for event in events:
        if isinstance(event, TextChunk | LiteralRecord):
            await pacer.sleep(event.delay)
        elif isinstance(event, Stall):
            await pacer.sleep_unscaled(event.seconds)
        yield event
