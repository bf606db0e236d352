"""Stage 1 for the upstream mode: the scripted engine's plan for one call, with the LLM's own turns.

The chat API's scripts answer as they do there; what only an LLM sees is added here: the
health prompt answered `OK`, the answer after a tool result (a script's `after_tool`), and
input tokens counted on everything the caller sent.
"""

from __future__ import annotations

from dataclasses import replace

from mockserver.engine.base import ReplyEngine, ReplyRequest
from mockserver.engine.pacing import count_tokens
from mockserver.engine.upstream import TextChunk, UpstreamReply, Usage, plan_script
from mockserver.upstream.calls import UpstreamCall

HEALTH_ANSWER = "OK"
DEFAULT_AFTER_TOOL = "Here is what I found."


def plan_call(engine: ReplyEngine, call: UpstreamCall, request: ReplyRequest) -> UpstreamReply:
    """The planned events for one upstream call."""
    if call.health:
        events = (TextChunk(HEALTH_ANSWER), Usage(0, count_tokens(HEALTH_ANSWER)))
        return _counted(UpstreamReply(events, request.faults), call)
    reply = engine.plan(request)
    if call.after_tool and reply.script is not None and not reply.script.literal:
        script = replace(reply.script, text=reply.script.after_tool or DEFAULT_AFTER_TOOL, chunks=())
        reply = UpstreamReply(tuple(plan_script(script, request, reply.faults)), reply.faults, script)
    return _counted(reply, call)


def _counted(reply: UpstreamReply, call: UpstreamCall) -> UpstreamReply:
    """Input tokens counted on everything sent (system prompt, history), not the matched text only."""
    prompt_tokens = count_tokens(call.prompt_text)
    events = tuple(replace(e, input_tokens=prompt_tokens) if isinstance(e, Usage) else e for e in reply.events)
    return replace(reply, events=events)
