"""The scripted engine: a simulated upstream LLM driven by reply scripts, parsed as Waldur does.

Per turn: pick a script (by `X-Mock-Scenario`, else the first that matches), let the
simulated upstream produce its chunks with the script's timing and upstream faults,
turn them into records with `StreamParser`, and apply the wire faults on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from mockserver.engine.base import DropConnection, RawLine, ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.faults import DEFAULT_MALFORMED_LINE, Faults
from mockserver.engine.pacing import Pacer, Timing, count_tokens
from mockserver.engine.parser import StreamParser
from mockserver.engine.records import CANNED_REFUSAL, Record, error, markdown
from mockserver.engine.scripts.loader import ScriptError
from mockserver.engine.scripts.model import Script, ScriptSet
from mockserver.engine.tools import ToolExecutor

# With usable history Waldur still calls the upstream, asking for a polite refusal.
CONTEXT_AWARE_REFUSAL = Script(
    name="context-aware-refusal",
    file="<built-in>",
    text=(
        "I'm sorry, but I cannot help with that specific request. Is there anything else about Waldur I can do for you?"
    ),
    timing=Timing(first_chunk_ms=300, inter_chunk_ms=25),
)

RecordCheck = Callable[[Record], list[str]]  # record -> schema problems (empty when valid)
log = logging.getLogger("mockserver.engine")


@dataclass
class _Turn:
    """What one reply produced so far: the raw upstream text and the token usage."""

    request: ReplyRequest
    raw: str = ""

    @property
    def usage_tokens(self) -> int:
        return count_tokens(self.request.input) + count_tokens(self.raw)


class _Wire:
    """Counts records and applies the wire faults after each one."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self.count = 0
        self.dropped = False

    def emit(self, record: Record) -> Iterator[StreamItem]:
        if self.dropped:
            return
        if self.faults.drop_after_records == 0 and self.count == 0:
            self.dropped = True
            yield DropConnection()
            return
        self.count += 1
        yield record
        if self.faults.malformed_line_after_records == self.count:
            text = self.faults.malformed_line or DEFAULT_MALFORMED_LINE
            yield RawLine((text + "\n").encode("utf-8"))
        if self.faults.drop_after_records == self.count:
            self.dropped = True
            yield DropConnection()


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


class ScriptedEngine:
    def __init__(self, scripts: ScriptSet, tools: ToolExecutor):
        self.scripts = scripts
        self.tools = tools

    def scenario_names(self) -> list[str]:
        return self.scripts.names()

    async def stream(self, request: ReplyRequest, frame: StreamFrame) -> AsyncGenerator[StreamItem, None]:
        # A scenario that vanished (scripts replaced after the request was checked) falls back
        # to matching: by now the user message is stored and the turn must be completed.
        script = self._script_for(request)
        if script is None and not request.blocked:
            _warn_no_match(request)
        # Precedence: the script's own faults, then global config and the request header.
        faults = (script.faults if script else Faults()).merged(request.faults)
        pacer = Pacer(request.speed)
        wire = _Wire(faults)
        turn = _Turn(request)
        closing: Record | None = None
        completed = False
        try:
            if faults.first_byte_delay_ms:
                await pacer.sleep_unscaled(faults.first_byte_delay_ms / 1000)
            if frame.opening is not None:
                for item in wire.emit(frame.opening):
                    yield item
            if wire.dropped:
                return
            async for record in self._content(script, faults, turn, pacer):
                for item in wire.emit(record):
                    yield item
                if wire.dropped:
                    return
            completed = not wire.dropped
        finally:
            closing = frame.finish(turn.raw, turn.usage_tokens)
        if completed and closing is not None:
            for item in wire.emit(closing):
                yield item

    def _script_for(self, request: ReplyRequest) -> Script | None:
        if request.blocked:
            # No usable history: the canned refusal, no upstream call (None). Otherwise the
            # upstream is asked for a polite refusal.
            return CONTEXT_AWARE_REFUSAL if request.history else None
        return self.scripts.select(request) or self.scripts.select(replace(request, scenario=None))

    async def _content(self, script: Script | None, faults: Faults, turn: _Turn, pacer: Pacer) -> AsyncIterator[Record]:
        if script is None:
            if turn.request.blocked:
                turn.raw = CANNED_REFUSAL
                yield markdown(CANNED_REFUSAL)
            return
        records = self._literal(script, turn, pacer) if script.literal else self._upstream(script, faults, turn, pacer)
        async for record in records:
            yield record

    async def _literal(self, script: Script, turn: _Turn, pacer: Pacer) -> AsyncIterator[Record]:
        sent: list[Record] = []
        for step in script.records:
            await pacer.sleep(step.delay_ms / 1000)
            if step.record is not None:
                sent.append(step.record)
                turn.raw = reassemble(sent)
                yield step.record

    async def _upstream(self, script: Script, faults: Faults, turn: _Turn, pacer: Pacer) -> AsyncIterator[Record]:
        """The simulated LLM call: chunks with delays, parsed; upstream faults end it with `e`."""
        parser = StreamParser(self.tools.runner(turn.request.username))
        chunks = script.upstream_chunks(turn.request)
        delays = script.timing.delays([c.text for c in chunks], [c.delay_ms for c in chunks])
        for index, (chunk, delay) in enumerate(zip(chunks, delays, strict=True)):
            if faults.stall_seconds and faults.stall_after_chunks == index:
                await pacer.sleep_unscaled(faults.stall_seconds)
            if faults.upstream_error_after_chunks == index:
                yield error()  # the text still buffered is lost on the wire but stored
                return
            await pacer.sleep(delay)
            turn.raw += chunk.text
            for record in parser.feed(chunk.text):
                yield record
        if faults.upstream_error_after_chunks is not None and faults.upstream_error_after_chunks >= len(chunks):
            yield error()
            return
        for record in parser.finish():
            yield record

    # -- load-time checks --------------------------------------------------------
    def check(self, validate: RecordCheck) -> None:
        """Dry-run every script at speed 0 and validate each record it produces; refuse on the first problem."""
        for script in self.scripts.scripts:
            for step in script.records:
                if step.record is not None:
                    _refuse_invalid(script, step.record, validate, step.line)
            if not script.literal:
                for record in self._dry_run(script):
                    _refuse_invalid(script, record, validate, None)

    def _dry_run(self, script: Script) -> list[Record]:
        modes = sorted(script.match.modes) if script.match and script.match.modes else ["message"]
        request = ReplyRequest(input="sample input", kind=modes[0], username="", speed=0)  # type: ignore[arg-type]
        return _drain_instantly(self._upstream(script, Faults(), _Turn(request), Pacer(0)))


def _warn_no_match(request: ReplyRequest) -> None:
    """A script set without a catch-all left this request unanswered: say so, it looks like a bug."""
    message = (
        f"no reply script matches this request (mode {request.kind}, turn {request.turn}, "
        f"input {_short(request.input)}): the reply has no content"
    )
    log.warning(message)
    if request.warn is not None:
        request.warn(message)


def _drain_instantly(records: AsyncIterator[Record]) -> list[Record]:
    """Collect an async iterator that never suspends (speed 0), without an event loop."""
    collected: list[Record] = []
    while True:
        step = records.__anext__()
        try:
            step.send(None)  # type: ignore[attr-defined]
        except StopIteration as done:
            collected.append(done.value)
            continue
        except StopAsyncIteration:
            return collected
        step.close()  # type: ignore[attr-defined]
        raise RuntimeError("a dry run tried to wait")


def _refuse_invalid(script: Script, record: Record, validate: RecordCheck, line: int | None) -> None:
    problems = validate(record)
    if problems:
        reason = f"script {script.name!r} would send an invalid record {_short(record)}: {problems[0]}"
        raise ScriptError(script.file, line or script.line, reason)


def _short(record: Any) -> str:
    text = repr(record)
    return text if len(text) <= 80 else text[:77] + "..."
