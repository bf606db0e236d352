"""The chat API's upstream stage as an HTTP client of a real LLM (`serve --upstream-url`).

A replacement for the scripted stage 1: the same `UpstreamEvent` stream, read from a
LangServe `/stream` or an OpenAI-compatible `/chat/completions` the way Waldur reads them,
then through the same record adapter (StreamParser, the `m` frame) and writer. The prompt is
built as Waldur builds it: LangServe gets one string (system prompt, history, current
message), OpenAI gets `messages`. A non-2xx answer, a broken connection, a timeout or an
in-stream error is an upstream failure (the `e` record). The upstream faults apply to the
live events (error after N chunks, stall), the wire faults to the records; speed does not
(the real upstream sets the pace).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER, record_stream
from mockserver.engine.base import ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer
from mockserver.engine.records import CANNED_REFUSAL
from mockserver.engine.tools import ToolExecutor
from mockserver.engine.upstream import TextChunk, UpstreamEvent, UpstreamFailure, UpstreamReply, Usage
from mockserver.engine.writer import with_wire_faults
from mockserver.upstream.calls import CURRENT_MARK, HISTORY_MARK, REFUSAL_PREFIX, TITLE_PREFIX, TITLE_USER_MESSAGE
from mockserver.upstream.target import UpstreamTarget

TIMEOUT = httpx.Timeout(60.0, connect=5.0)  # as Waldur: 5 s to connect, 60 s between bytes
SYSTEM_PROMPT = (
    "You are the assistant of Waldur, a cloud and HPC resource management portal. Answer the user's "
    "questions about Waldur concisely; use markdown, fenced code blocks and mermaid diagrams where they help."
)
TITLE_PROMPT = (
    TITLE_PREFIX + " (3-6 words) for this conversation. Reply with only the title text, nothing else. "
    "Do not wrap the title in quotation marks." + TITLE_USER_MESSAGE
)
REFUSAL_PROMPT = (
    REFUSAL_PREFIX + " Generate a polite, brief response explaining that you cannot help with that specific request."
)


class HttpUpstreamEngine:
    """A `ReplyEngine` whose upstream is a real LLM over HTTP; it has no scripts and plans nothing."""

    def __init__(self, target: UpstreamTarget, tools: ToolExecutor, transport: httpx.AsyncBaseTransport | None = None):
        self.target = target
        self.tools = tools
        self.transport = transport  # tests may pass one; by default real sockets

    def scenario_names(self) -> list[str]:
        return []

    def plan(self, request: ReplyRequest) -> UpstreamReply:
        """A real upstream cannot be planned ahead (the 7.9.4 SSE profile needs a plan: refused at start)."""
        raise NotImplementedError("a real upstream is streamed, not planned")

    def stream(self, request: ReplyRequest, frame: StreamFrame) -> AsyncGenerator[StreamItem, None]:
        events = with_upstream_faults(self.events(request), request.faults)
        records = record_stream(events, request, frame, self.tools.runner(request.username))
        return with_wire_faults(records, request.faults, NDJSON_ENCODER)

    async def events(self, request: ReplyRequest) -> AsyncGenerator[UpstreamEvent, None]:
        """What the upstream sends, as events; any failure to get it is one `UpstreamFailure`."""
        if request.blocked and not request.history:
            yield TextChunk(CANNED_REFUSAL)  # Waldur does not call the upstream
            return
        url, body, read = self._request(request)
        headers = {"Authorization": self._authorization()}
        try:
            async with (
                httpx.AsyncClient(timeout=TIMEOUT, transport=self.transport) as client,
                client.stream("POST", url, json=body, headers=headers) as response,
            ):
                if not response.is_success:
                    yield UpstreamFailure()
                    return
                async for event in read(response.aiter_lines()):
                    yield event
        except httpx.HTTPError:
            yield UpstreamFailure()

    def _authorization(self) -> str:
        scheme = "Bearer" if self.target.format == "openai" else "Token"
        return f"{scheme} {self.target.token}"

    def _request(self, request: ReplyRequest) -> tuple[str, dict[str, Any], Any]:
        if self.target.format == "langserve":
            return self.target.url, {"input": langserve_prompt(request)}, read_langserve
        body = {
            "model": self.target.model,
            "messages": openai_messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.7,
            "top_p": 0.8,
        }
        return self.target.url.rstrip("/") + "/chat/completions", body, read_openai


def _history_text(history: tuple[tuple[str, str], ...]) -> str:
    return "\n".join(f"{role}: {content}" for role, content in history)


def langserve_prompt(request: ReplyRequest) -> str:
    """One string, as Waldur 8.0.5 builds it; title calls have no history."""
    if request.blocked:
        return f"{REFUSAL_PROMPT}\n\nConversation history:\n{_history_text(request.history)}"
    parts = [SYSTEM_PROMPT]
    if request.history and request.kind != "title":
        parts.append(f"{HISTORY_MARK}\n{_history_text(request.history)}")
    parts.append(f"{CURRENT_MARK}\nuser: {request.input}")
    return "\n\n".join(parts)


def openai_messages(request: ReplyRequest) -> list[dict[str, str]]:
    """System prompt, history and the user message; the title prompt alone, as the newest Waldur."""
    if request.blocked:
        return [{"role": "user", "content": langserve_prompt(request)}]
    if request.kind == "title":
        return [{"role": "user", "content": TITLE_PROMPT + request.input[:500]}]
    history = [{"role": role, "content": content} for role, content in request.history]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": request.input}]


async def _data_lines(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    async for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None  # skipped, as Waldur skips it


async def read_langserve(lines: AsyncIterator[str]) -> AsyncGenerator[UpstreamEvent, None]:
    """Waldur 8.0.5's reading: `data: ` lines only, bad JSON skipped, the last usage wins.

    LangServe's `event: error` (which Waldur never sees: it reads no `event:` line, but the
    connection that breaks after it) is taken as the failure it announces.
    """
    usage: Usage | None = None
    async for line in lines:
        if line.startswith("event: error"):
            yield UpstreamFailure()
            return
        if not line.startswith("data: "):
            continue
        data = _json(line[len("data: ") :])
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("content"), str) and data["content"]:
            yield TextChunk(data["content"])
        kwargs = data.get("additional_kwargs")
        metadata = kwargs.get("usage_metadata") if isinstance(kwargs, dict) else None
        if isinstance(metadata, dict):
            usage = Usage(int(metadata.get("input_tokens") or 0), int(metadata.get("output_tokens") or 0))
    if usage is not None:
        yield usage


async def read_openai(lines: AsyncIterator[str]) -> AsyncGenerator[UpstreamEvent, None]:
    """The newest Waldur's reading: text deltas, usage added up over chunks, `[DONE]` or EOF ends."""
    prompt = completion = 0
    seen_usage = False
    async for payload in _data_lines(lines):
        if payload.strip() == "[DONE]":
            break
        data = _json(payload)
        if not isinstance(data, dict):
            continue
        if data.get("error"):
            yield UpstreamFailure()
            return
        for choice in data.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
                yield TextChunk(delta["content"])
        usage = data.get("usage")
        if isinstance(usage, dict):
            seen_usage = True
            prompt += int(usage.get("prompt_tokens") or 0)
            completion += int(usage.get("completion_tokens") or 0)
    if seen_usage:
        yield Usage(prompt, completion)


async def with_upstream_faults(
    events: AsyncIterator[UpstreamEvent], faults: Faults
) -> AsyncGenerator[UpstreamEvent, None]:
    """The upstream faults on a live stream: a stall before chunk N, a failure after N chunks."""
    index = 0
    fail_at = faults.upstream_error_after_chunks
    async for event in events:
        if isinstance(event, TextChunk):
            if faults.stall_seconds and faults.stall_after_chunks == index:
                await Pacer().sleep_unscaled(faults.stall_seconds)
            if fail_at == index:
                yield UpstreamFailure()
                return
            index += 1
        elif isinstance(event, Usage) and fail_at is not None:
            break  # the reply ended before chunk N: it fails at its end
        yield event
        if isinstance(event, UpstreamFailure):
            return
    if fail_at is not None:
        yield UpstreamFailure()
