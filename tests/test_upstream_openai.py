"""The upstream mode's OpenAI-compatible endpoints, read by the official `openai` SDK over real TCP.

What the newest Waldur does with its LLM: `client.chat.completions.create(..., stream=True)`,
text deltas, tool-call deltas, usage once; and the SDK's own exception types for the
provider errors (`X-Mock-Fault: status=NNN`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.engine.base import ReplyRequest
from mockserver.engine.pacing import count_tokens
from mockserver.engine.upstream import TextChunk, UpstreamFailure
from mockserver.upstream.app import MODEL_ID
from mockserver.upstream.replies import DEFAULT_AFTER_TOOL
from tests.support import served_app

TOOLS = [
    {
        "type": "function",
        "function": {"name": "show_user_resources", "description": "List resources", "parameters": {"type": "object"}},
    }
]
# One input per default scenario, and what the scenario's script is for.
SCENARIO_INPUTS = {
    "greeting": "hello",
    "long-answer": "explain projects",
    "code-block": "show me some code",
    "mermaid": "draw a diagram",
    "table": "list my resources",
    "upstream-error": "this is broken",
    "fallback": "something else entirely",
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[MockApp, str]]:
    app = create_app(ServerOptions(speed=0, upstream_token="sk-mock"))
    with served_app(app) as base:
        yield app, base


@pytest.fixture
def client(upstream: tuple[MockApp, str]) -> openai.OpenAI:
    app, base = upstream
    app.reset()
    return openai.OpenAI(api_key="sk-mock", base_url=f"{base}/__upstream__/openai/v1", max_retries=0)


def planned(app: MockApp, text: str, scenario: str | None = None) -> tuple[str, bool]:
    """(text, fails) the scripts plan for a user message: what the SDK must read."""
    events = app.scripted.plan(ReplyRequest(input=text, scenario=scenario)).events
    return "".join(e.text for e in events if isinstance(e, TextChunk)), any(
        isinstance(e, UpstreamFailure) for e in events
    )


def read_stream(stream: Any) -> tuple[str, list[Any], dict[int, dict[str, str]], list[str | None]]:
    """(text, usages, tool calls by index, finish reasons), accumulated as Waldur does."""
    text, usages, calls, finishes = "", [], {}, []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            finishes.append(choice.finish_reason)
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    return text, usages, calls, finishes


@pytest.mark.parametrize("scenario", sorted(SCENARIO_INPUTS))
def test_the_sdk_reads_every_default_scenario_with_usage_once(
    scenario: str, client: openai.OpenAI, upstream: tuple[MockApp, str]
) -> None:
    app, _ = upstream
    message = SCENARIO_INPUTS[scenario]
    assert app.scripted.scripts.select(ReplyRequest(input=message)).name == scenario  # the input picks it
    expected, fails = planned(app, message)
    stream = client.chat.completions.create(
        model="gemma3:27b",
        messages=[{"role": "system", "content": "You are Waldur."}, {"role": "user", "content": message}],
        stream=True,
        stream_options={"include_usage": True},
    )
    if fails:
        with pytest.raises(openai.APIError) as raised:
            read_stream(stream)
        assert type(raised.value) is openai.APIError  # an in-stream error object, not an HTTP status
        return
    text, usages, calls, finishes = read_stream(stream)
    assert text == expected and text
    assert calls == {}
    assert finishes[-1] == "stop"
    assert len(usages) == 1  # Waldur adds usage up over chunks: exactly one carries it
    assert usages[0].completion_tokens == count_tokens(expected)
    assert usages[0].prompt_tokens == count_tokens(f"You are Waldur.\n{message}")


def test_without_include_usage_no_chunk_carries_usage(client: openai.OpenAI) -> None:
    """Waldur's health check sends no `stream_options`; the answer to its prompt is `OK`."""
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Reply with exactly: OK"}], stream=True
    )
    text, usages, _, _ = read_stream(stream)
    assert text == "OK"
    assert usages == []


def test_a_tool_call_is_streamed_as_tool_call_deltas_then_answered_after_the_result(
    client: openai.OpenAI, upstream: tuple[MockApp, str]
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "list my resources"}]
    stream = client.chat.completions.create(
        model="m", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    text, usages, calls, finishes = read_stream(stream)
    assert text == ""
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == "show_user_resources" and call["id"].startswith("call_")
    assert json.loads(call["arguments"]) == {}
    assert finishes[-1] == "tool_calls"
    assert len(usages) == 1
    # Round 2, as Waldur sends it: the assistant's tool call and the tool's result.
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"resources": [], "total": 0})},
    ]
    answer, _, calls_2, finishes_2 = read_stream(
        client.chat.completions.create(model="m", messages=messages, tools=TOOLS, stream=True)
    )
    table = upstream[0].scripted.scripts.by_name["table"]
    assert answer == (table.after_tool or DEFAULT_AFTER_TOOL)
    assert calls_2 == {} and finishes_2[-1] == "stop"


def test_a_tool_that_is_not_offered_stays_text(client: openai.OpenAI, upstream: tuple[MockApp, str]) -> None:
    """Without `tools` (Waldur 8.0.5's way) the tool-call JSON is the text, for Waldur's parser."""
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "my vms"}], stream=True)
    text, _, calls, _ = read_stream(stream)
    assert calls == {}
    assert json.loads(text) == {"tool": "show_user_resources", "arguments": {}}


def test_stream_false_is_one_chat_completion(client: openai.OpenAI, upstream: tuple[MockApp, str]) -> None:
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    expected, _ = planned(upstream[0], "hello")
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == count_tokens(expected)
    with pytest.raises(openai.InternalServerError):  # a planned failure without a stream: a 500
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "broken"}])


def test_the_title_prompt_answers_with_the_title_script(client: openai.OpenAI) -> None:
    prompt = (
        "Generate a very short title (3-6 words) for this conversation. Reply with only the title text, "
        "nothing else. Do not wrap the title in quotation marks.\n\nUser message: How do I order a virtual machine"
    )
    text, _, _, _ = read_stream(
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}], stream=True)
    )
    assert text == "How do I order a virtual"  # the default title script: the first six words


def test_models_lists_the_mock_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL_ID]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_faults_raise_the_sdks_exception_types(
    status: int, error: type[openai.APIStatusError], client: openai.OpenAI
) -> None:
    with pytest.raises(error) as raised:
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            extra_headers={"X-Mock-Fault": f"status={status}"},
        )
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict) and raised.value.body["message"]  # the provider's error object
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "1"


def test_a_429_is_retried_by_the_sdk_and_every_attempt_is_journaled(upstream: tuple[MockApp, str]) -> None:
    app, base = upstream
    app.reset()
    retrying = openai.OpenAI(api_key="sk-mock", base_url=f"{base}/__upstream__/openai/v1", max_retries=2)
    with pytest.raises(openai.RateLimitError):
        retrying.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"X-Mock-Fault": "status=429; retry_after=0.05"},
        )
    attempts = [e for e in app.journal.entries() if e["path"] == "/__upstream__/openai/v1/chat/completions"]
    assert [e["status"] for e in attempts] == [429, 429, 429]  # what one 429 costs Waldur


def test_a_wrong_token_is_refused_in_the_providers_shape(upstream: tuple[MockApp, str]) -> None:
    _, base = upstream
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=f"{base}/__upstream__/openai/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.models.list()
    assert raised.value.code == "invalid_api_key"


def test_the_journal_shows_what_the_caller_sent(client: openai.OpenAI, upstream: tuple[MockApp, str]) -> None:
    app, _ = upstream
    client.chat.completions.create(
        model="gemma3:27b",
        messages=[{"role": "user", "content": "hello"}],
        tools=TOOLS,
        temperature=0.7,
        top_p=0.8,
        stream=True,
        stream_options={"include_usage": True},
    ).close()
    (entry,) = [e for e in app.journal.entries() if e["path"].startswith("/__upstream__/")]
    sent = json.loads(entry["request"]["body"])
    assert sent["model"] == "gemma3:27b" and sent["temperature"] == 0.7 and sent["top_p"] == 0.8
    assert sent["messages"] == [{"role": "user", "content": "hello"}]
    assert sent["tools"][0]["function"]["name"] == "show_user_resources"
    assert entry["request"]["headers"]["authorization"] == "Bearer REDACTED"


def test_bad_bodies_and_headers_get_the_providers_400(upstream: tuple[MockApp, str]) -> None:
    _, base = upstream
    url = f"{base}/__upstream__/openai/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-mock"}
    for body, headers in [
        ({"messages": [{"role": "user", "content": "hi"}]}, {}),  # no model
        ({"model": "m", "messages": []}, {}),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {"X-Mock-Fault": "status=200"}),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {"X-Mock-Scenario": "nope"}),
    ]:
        response = httpx.post(url, json=body, headers={**auth, **headers})
        assert response.status_code == 400, (body, headers)
        assert response.json()["error"]["message"]
    assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400
