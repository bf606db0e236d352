"""The upstream mode's pure parts: reading what Waldur sent, the status fault, live-stream faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from mockserver.engine.faults import Faults, FaultSyntaxError
from mockserver.engine.scripts.loader import ScriptError, load_scripts_text
from mockserver.engine.upstream import TextChunk, UpstreamEvent, UpstreamFailure, Usage
from mockserver.upstream.calls import CallError, langserve_call, openai_call
from mockserver.upstream.client import read_langserve, read_openai, with_upstream_faults
from mockserver.upstream.errors import split_status_fault


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _events(*events: UpstreamEvent) -> AsyncIterator[UpstreamEvent]:
    for event in events:
        yield event


def collect(events: AsyncIterator[UpstreamEvent]) -> list[UpstreamEvent]:
    async def run() -> list[UpstreamEvent]:
        return [event async for event in events]

    return asyncio.run(run())


def test_a_waldur_prompt_is_split_into_history_and_current_message() -> None:
    prompt = (
        "System: use show_user_resources for resources.\n\n=== CONVERSATION HISTORY ===\nuser: hi\n"
        "assistant: Hello!\nA second line.\nuser: code?\n\n=== CURRENT USER MESSAGE ===\nuser: draw it"
    )
    call = langserve_call({"input": prompt})
    assert call.text == "draw it" and call.turn == 3 and call.kind == "message"
    assert call.history == (("user", "hi"), ("assistant", "Hello!\nA second line."), ("user", "code?"))
    assert call.prompt_text == prompt


def test_title_health_and_refusal_prompts_are_recognised() -> None:
    title = openai_call(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Generate a very short title (3-6 words) x\n\nUser message: vm"}],
        }
    )
    assert (title.kind, title.text) == ("title", "vm")
    health = openai_call({"model": "m", "messages": [{"role": "user", "content": "Reply with exactly: OK"}]})
    assert health.health
    refusal = langserve_call(
        {"input": "The user's latest message could not be processed. Be brief.\n\nConversation history:\nuser: hi"}
    )
    assert refusal.refusal and refusal.history == (("user", "hi"),)
    assert refusal.reply_request(None, Faults(), 0).blocked


def test_openai_calls_read_tools_tool_results_and_parameters() -> None:
    call = openai_call(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "list"}]},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c", "content": "{}"},
            ],
            "tools": [{"type": "function", "function": {"name": "show_user_resources"}}],
            "temperature": 0.7,
            "stream": True,
        }
    )
    assert call.text == "list" and call.after_tool and call.tool_names == ("show_user_resources",)
    assert call.parameters == {"temperature": 0.7} and call.stream and not call.include_usage
    for body in [None, {"model": "m"}, {"model": "m", "messages": [{"role": "robot"}]}, {"messages": []}]:
        with pytest.raises(CallError):
            openai_call(body)


def test_the_status_fault_is_split_from_the_other_faults() -> None:
    assert split_status_fault("status=429; retry_after=2.5, stall_seconds=1") == (429, 2.5, "stall_seconds=1")
    assert split_status_fault("") == (None, None, "")
    for bad in ["status=200", "status=abc", "retry_after=-1", "retry_after=1e9"]:
        with pytest.raises(FaultSyntaxError):
            split_status_fault(bad)


def test_after_tool_must_be_a_string() -> None:
    text = "scripts:\n  - name: t\n    match: {}\n    reply: {text: hi, after_tool: [1]}\n"
    with pytest.raises(ScriptError, match="after_tool of 't' must be a string"):
        load_scripts_text(text)
    (script,) = load_scripts_text(text.replace("[1]", "done"))
    assert script.after_tool == "done"


EARLY = {"input_tokens": 1, "output_tokens": 2}


def test_langserve_reading_skips_bad_json_and_keeps_the_last_usage() -> None:
    events = collect(
        read_langserve(
            _lines(
                "event: data",
                'data: {"content": "Hel"}',
                "data: {not json",
                ": a comment",
                "data: " + json.dumps({"content": "lo", "additional_kwargs": {"usage_metadata": EARLY}}),
                'data: {"additional_kwargs": {"usage_metadata": {"input_tokens": 10, "output_tokens": 5}}}',
                "event: end",
            )
        )
    )
    assert events == [TextChunk("Hel"), TextChunk("lo"), Usage(10, 5)]


def test_openai_reading_adds_usage_up_and_stops_at_done_or_error() -> None:
    chunk = 'data: {"choices": [{"delta": {"content": "%s"}}]}'
    usage = 'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    events = collect(read_openai(_lines(chunk % "a", usage, usage, "data: [DONE]", chunk % "late")))
    assert events == [TextChunk("a"), Usage(6, 8)]
    failed = collect(read_openai(_lines(chunk % "a", 'data: {"error": {"message": "x"}}', chunk % "b")))
    assert failed == [TextChunk("a"), UpstreamFailure()]


def test_upstream_faults_apply_to_a_live_stream() -> None:
    live = (TextChunk("a"), TextChunk("b"), TextChunk("c"), Usage(1, 3))
    cut = collect(with_upstream_faults(_events(*live), Faults(upstream_error_after_chunks=2)))
    assert cut == [TextChunk("a"), TextChunk("b"), UpstreamFailure()]
    late = collect(with_upstream_faults(_events(*live), Faults(upstream_error_after_chunks=9)))
    assert late == [TextChunk("a"), TextChunk("b"), TextChunk("c"), UpstreamFailure()]
    assert collect(with_upstream_faults(_events(*live), Faults())) == list(live)
