"""The scripted engine: reply scripts as the simulated upstream LLM, run through the pipeline.

Per turn: pick a script (by `X-Mock-Scenario`, else the first that matches) and plan its
upstream events with the script's timing and upstream faults (stage 1, `upstream`). A
protocol adapter turns the events into wire items (stage 2, `adapters`), and the writer
applies the wire faults (stage 3, `writer`). `stream` is that pipeline for Waldur's
record stream; other protocols compose `plan` with their own adapter.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any

from mockserver.engine.adapters.waldur_records import (
    NDJSON_ENCODER,
    RecordSchedule,
    paced_record_stream,
    record_schedule,
    translate_all,
)
from mockserver.engine.base import ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer, Timing
from mockserver.engine.plans import PlanCache
from mockserver.engine.records import CANNED_REFUSAL, Record
from mockserver.engine.scripts.loader import ScriptError
from mockserver.engine.scripts.model import Script, ScriptSet
from mockserver.engine.tools import ToolExecutor
from mockserver.engine.upstream import TextChunk, TimedText, UpstreamReply, plan_script, timed_text
from mockserver.engine.writer import with_wire_faults

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


class ScriptedEngine:
    def __init__(self, scripts: ScriptSet, tools: ToolExecutor):
        self.scripts = scripts
        self.tools = tools
        self.plans: PlanCache[TimedText] = PlanCache()  # keyed by script object: new scripts, new plans
        self.schedules: PlanCache[RecordSchedule | None] = PlanCache()  # keyed by plan object

    def scenario_names(self) -> list[str]:
        return self.scripts.names()

    def plan(self, request: ReplyRequest) -> UpstreamReply:
        """Stage 1, pure: the script for this request and the upstream events it sends."""
        # A scenario that vanished (scripts replaced after the request was checked) falls back
        # to matching: by now the user message may be stored and the turn must be completed.
        script = self._script_for(request)
        # Precedence: the script's own faults, then global config and the request header.
        faults = (script.faults if script else Faults()).merged(request.faults)
        if script is not None:
            return UpstreamReply(tuple(plan_script(script, request, faults, self.plans)), faults, script)
        if request.blocked:  # no upstream call: Waldur's canned refusal, at once
            return UpstreamReply((TextChunk(CANNED_REFUSAL),), faults)
        _warn_no_match(request)
        return UpstreamReply((), faults)

    def stream(self, request: ReplyRequest, frame: StreamFrame) -> AsyncGenerator[StreamItem, None]:
        """Waldur's record stream for one turn: plan, pace per record, adapt to records, wire faults."""
        reply = self.plan(request)
        tools = self.tools.runner(request.username)
        schedule = self._schedule(request, reply)
        records = paced_record_stream(reply.events, Pacer(request.speed), request, frame, tools, schedule=schedule)
        return with_wire_faults(records, reply.faults, NDJSON_ENCODER)

    def _schedule(self, request: ReplyRequest, reply: UpstreamReply) -> RecordSchedule | None:
        """The records of the reply's shared plan, chunk by chunk (None: parse as the stream goes)."""
        script = reply.script
        if script is None or script.literal:
            return None
        rendered = script.rendered(request)
        weight = sum(map(len, rendered))
        if not self.plans.keeps(weight):
            return None  # a plan built for this turn alone: parsed as the stream goes, not twice
        timed = self.plans.get(script, rendered, lambda: timed_text(script, rendered), weight)
        return self.schedules.get(timed, None, lambda: record_schedule(timed.chunks), weight)

    def _script_for(self, request: ReplyRequest) -> Script | None:
        if request.blocked:
            # No usable history: the canned refusal, no upstream call (None). Otherwise the
            # upstream is asked for a polite refusal.
            return CONTEXT_AWARE_REFUSAL if request.history else None
        return self.scripts.select(request) or self.scripts.select(replace(request, scenario=None))

    # -- load-time checks --------------------------------------------------------
    def check(self, validate: RecordCheck) -> None:
        """Dry-run every script and validate each record it produces; refuse on the first problem."""
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
        events = plan_script(script, request, Faults())
        return translate_all(events, self.tools.runner(request.username), request.input)


def _warn_no_match(request: ReplyRequest) -> None:
    """A script set without a catch-all left this request unanswered: say so, it looks like a bug."""
    message = (
        f"no reply script matches this request (mode {request.kind}, turn {request.turn}, "
        f"input {_short(request.input)}): the reply has no content"
    )
    log.warning(message)
    if request.warn is not None:
        request.warn(message)


def _refuse_invalid(script: Script, record: Record, validate: RecordCheck, line: int | None) -> None:
    problems = validate(record)
    if problems:
        reason = f"script {script.name!r} would send an invalid record {_short(record)}: {problems[0]}"
        raise ScriptError(script.file, line or script.line, reason)


def _short(record: Any) -> str:
    text = repr(record)
    return text if len(text) <= 80 else text[:77] + "..."
