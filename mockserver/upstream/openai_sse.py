"""Upstream events as an OpenAI-compatible Chat Completions answer (the newest Waldur's LLM).

Streaming: `data: {chat.completion.chunk}` events (a first one with the role, then text
deltas or `tool_calls` deltas, then one with `finish_reason`), usage once in a final chunk
with empty `choices` when `stream_options.include_usage` asked for it, then `data: [DONE]`.
An upstream failure is an in-stream `{"error": {...}}` object (the SDK raises `APIError`)
and the stream ends there. `stream: false` is one `chat.completion` object.

A tool call is a script whose output is Waldur's tool-call JSON (`{"tool": ..., "arguments":
...}`) on a request that offers that tool: its chunks keep their timing, the first carries
the call's id and name, the others the arguments in pieces.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from mockserver.engine.adapters.waldur_records import reassemble
from mockserver.engine.pacing import Pacer
from mockserver.engine.tools import parse_tool_call
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
from mockserver.upstream.calls import UpstreamCall

FAILURE_ERROR = {"message": "The model failed while generating the response.", "kind": "server_error"}


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of one function call: the first has `call_id` and `name`, all have argument text."""

    arguments: str
    delay: float = 0.0
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Done:
    """`data: [DONE]`, the end of an OpenAI stream."""


class OpenAIEncoder:
    """`data: <json>` events; `[DONE]` last."""

    media_type = "text/event-stream"
    default_malformed = 'data: {"id": "chatcmpl-unterminated'

    def encode(self, item: dict[str, Any] | Done) -> bytes:
        data = "[DONE]" if isinstance(item, Done) else json.dumps(item, separators=(",", ":"))
        return f"data: {data}\n\n".encode()

    def malformed(self, text: str) -> bytes:
        return (text + "\n\n").encode("utf-8")


class JsonBodyEncoder:
    """One JSON document (`stream: false`): the writer's faults apply to it as to one item."""

    media_type = "application/json"
    default_malformed = '{"id": "chatcmpl-unterminated'

    def encode(self, item: dict[str, Any]) -> bytes:
        return json.dumps(item, separators=(",", ":")).encode()

    def malformed(self, text: str) -> bytes:
        return text.encode("utf-8")


OPENAI_ENCODER = OpenAIEncoder()
JSON_BODY_ENCODER = JsonBodyEncoder()


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The provider's error object, as OpenAI and vLLM answer it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def with_tool_calls(events: Iterable[UpstreamEvent], call: UpstreamCall) -> list[UpstreamEvent | ToolCallDelta]:
    """The events, with a tool-call output turned into function-call deltas when the tool is offered."""
    events = list(events)
    chunks = [e for e in events if isinstance(e, TextChunk)]
    tool = parse_tool_call("".join(c.text for c in chunks)) if call.tool_names and not call.after_tool else None
    if tool is None or tool.get("tool") not in call.tool_names:
        return list(events)
    arguments = json.dumps(tool.get("arguments") or {})
    pieces = _split_evenly(arguments, max(len(chunks) - 1, 1))
    call_id = "call_" + uuid.uuid4().hex[:24]
    out: list[UpstreamEvent | ToolCallDelta] = []
    index, waited = 0, 0.0  # an empty piece sends nothing: its delay goes to the next one
    for event in events:
        if not isinstance(event, TextChunk):
            out.append(event)
            continue
        if index == 0:
            first = pieces[0] if len(chunks) == 1 else ""
            out.append(ToolCallDelta(first, event.delay, call_id, str(tool["tool"])))
        elif pieces[index - 1]:
            out.append(ToolCallDelta(pieces[index - 1], waited + event.delay))
            waited = 0.0
        else:
            waited += event.delay
        index += 1
    return out


def _split_evenly(text: str, parts: int) -> list[str]:
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


class ChunkWriter:
    """Builds the `chat.completion.chunk` objects of one response (one id, one creation time)."""

    def __init__(self, model: str):
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, usage: Usage | None = None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage_json(usage)
        return body


def fails(reply: UpstreamReply) -> bool:
    """A planned upstream failure: `stream: false` answers it with a 500 error instead of a body."""
    return any(isinstance(event, UpstreamFailure) for event in reply.events)


def usage_json(usage: Usage) -> dict[str, int]:
    total = usage.input_tokens + usage.output_tokens
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens, "total_tokens": total}


def _delta(event: UpstreamEvent | ToolCallDelta) -> dict[str, Any] | None:
    """The `delta` of one content event (None: not content)."""
    if isinstance(event, TextChunk):
        return {"content": event.text}
    if isinstance(event, LiteralRecord) and event.record is not None:
        text = reassemble([event.record])
        return {"content": text} if text else None
    if isinstance(event, ToolCallDelta):
        function: dict[str, Any] = {"arguments": event.arguments}
        entry: dict[str, Any] = {"index": 0}
        if event.call_id is not None:
            entry.update(id=event.call_id, type="function")
            function = {"name": event.name, **function}
        return {"tool_calls": [{**entry, "function": function}]}
    return None


async def chunk_stream(
    events: AsyncIterator[UpstreamEvent | ToolCallDelta], call: UpstreamCall
) -> AsyncGenerator[dict[str, Any] | Done, None]:
    writer = ChunkWriter(call.model)
    yield writer.chunk({"role": "assistant", "content": ""})
    usage: Usage | None = None
    finish = "stop"
    async for event in events:
        if isinstance(event, UpstreamFailure):
            yield error_body(**FAILURE_ERROR)
            return
        if isinstance(event, Usage):
            usage = event
        if isinstance(event, ToolCallDelta):
            finish = "tool_calls"
        delta = _delta(event)
        if delta is not None:
            yield writer.chunk(delta)
    yield writer.chunk({}, finish)
    if usage is not None and call.include_usage:
        yield writer.chunk(None, usage=usage)
    yield Done()


async def completion(
    events: AsyncIterator[UpstreamEvent | ToolCallDelta], call: UpstreamCall
) -> AsyncGenerator[dict[str, Any], None]:
    """`stream: false`: the whole answer as one object, after the reply's time has passed."""
    text, usage, tool = "", Usage(0, 0), None
    async for event in events:  # a planned failure was answered 500 before (see `fails`)
        if isinstance(event, Usage):
            usage = event
        elif isinstance(event, ToolCallDelta):
            tool = tool or {"id": event.call_id, "type": "function", "function": {"name": event.name, "arguments": ""}}
            tool["function"]["arguments"] += event.arguments
        elif (delta := _delta(event)) is not None:
            text += delta["content"]
    writer = ChunkWriter(call.model)
    message: dict[str, Any] = {"role": "assistant", "content": text if tool is None else None}
    if tool is not None:
        message["tool_calls"] = [tool]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool else "stop"}
    yield {
        "id": writer.id,
        "object": "chat.completion",
        "created": writer.created,
        "model": call.model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": usage_json(usage),
    }


async def _played(
    events: list[UpstreamEvent | ToolCallDelta], pacer: Pacer
) -> AsyncGenerator[UpstreamEvent | ToolCallDelta, None]:
    """`play`, with tool-call deltas waiting their delay as the text chunks they replace."""
    for event in events:
        if isinstance(event, ToolCallDelta):
            await pacer.sleep(event.delay)
            yield event
        else:
            async for played in play([event], pacer):
                yield played


def openai_reply(reply: UpstreamReply, call: UpstreamCall, speed: float) -> AsyncGenerator[Any, None]:
    """The whole pipeline for one planned reply: tool calls, play, chunks or one object, wire faults."""
    events = _played(with_tool_calls(reply.events, call), Pacer(speed))
    if call.stream:
        return with_wire_faults(chunk_stream(events, call), reply.faults, OPENAI_ENCODER)
    return with_wire_faults(completion(events, call), reply.faults, JSON_BODY_ENCODER)
