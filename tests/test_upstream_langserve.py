"""The upstream mode's LangServe `/stream`, read exactly as Waldur 8.0.5 reads its LLM.

Waldur reads the body line by line, uses only lines that start with `data: `, skips JSON
that fails to parse, takes `content` as the text and the last
`additional_kwargs.usage_metadata` as usage; the end of the body ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.engine.base import ReplyRequest
from mockserver.engine.pacing import count_tokens
from mockserver.engine.upstream import TextChunk, UpstreamFailure
from mockserver.upstream.app import LANGSERVE_PATH
from tests.support import served_app
from tests.test_upstream_openai import SCENARIO_INPUTS

AUTH = {"Authorization": "Token llm-token"}


def waldur_805_read(lines: Iterable[str]) -> tuple[str, dict[str, int] | None]:
    """Waldur 8.0.5's reading of its upstream, written from its description, not from our client."""
    text, usage = "", None
    for line in lines:
        if not line.startswith("data: "):
            continue
        try:
            data = json.loads(line[6:])
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        text += data.get("content") or ""
        metadata = (data.get("additional_kwargs") or {}).get("usage_metadata")
        if metadata:
            usage = {"input_tokens": metadata["input_tokens"], "output_tokens": metadata["output_tokens"]}
    return text, usage


def waldur_prompt(message: str, history: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """A prompt shaped as Waldur 8.0.5 builds it: system prompt, history, current message."""
    parts = ["You are a Waldur support assistant. Tools: show_user_resources. You can render code and diagrams."]
    if history:
        parts.append("=== CONVERSATION HISTORY ===\n" + "\n".join(f"{r}: {c}" for r, c in history))
    parts.append(f"=== CURRENT USER MESSAGE ===\nuser: {message}")
    return "\n\n".join(parts)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[MockApp, str]]:
    app = create_app(ServerOptions(speed=0, upstream_token="llm-token"))
    with served_app(app) as base:
        yield app, base + LANGSERVE_PATH


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, list[str]]:
    with httpx.stream("POST", url, json=body, headers=headers or AUTH, timeout=10) as response:
        return response.status_code, list(response.iter_lines())


@pytest.mark.parametrize("scenario", sorted(set(SCENARIO_INPUTS) - {"upstream-error"}))
def test_waldurs_reading_gives_the_scripted_text_and_usage(scenario: str, upstream: tuple[MockApp, str]) -> None:
    app, url = upstream
    message = SCENARIO_INPUTS[scenario]
    prompt = waldur_prompt(message, [("user", "hello"), ("assistant", "Hi there.")])
    request = ReplyRequest(input=message, turn=2)
    assert app.scripted.scripts.select(request).name == scenario
    planned = app.scripted.plan(request).events
    expected = "".join(e.text for e in planned if isinstance(e, TextChunk))
    status, lines = post(url, {"input": prompt})
    assert status == 200
    text, usage = waldur_805_read(lines)
    assert text == expected and text
    assert usage == {"input_tokens": count_tokens(prompt), "output_tokens": count_tokens(expected)}
    assert lines[-2:] == ["event: end", ""]  # LangServe's closing event


def test_the_fallback_sees_the_current_message_and_its_turn(upstream: tuple[MockApp, str]) -> None:
    """Scripts match on the current user message, not on the system prompt around it."""
    _, url = upstream
    history = [("user", "first"), ("assistant", "one"), ("user", "second"), ("assistant", "two")]
    _, lines = post(url, {"input": waldur_prompt("what now", history)})
    text, _ = waldur_805_read(lines)
    assert 'You asked: "what now" (turn 3)' in text


def test_an_unmarked_prompt_is_matched_whole(upstream: tuple[MockApp, str]) -> None:
    _, url = upstream
    text, _ = waldur_805_read(post(url, {"input": "hello"})[1])
    assert text == "Hello! How can I help you with Waldur today?"


def test_an_upstream_failure_is_an_error_event_and_a_cut_connection(upstream: tuple[MockApp, str]) -> None:
    app, url = upstream
    events = app.scripted.plan(ReplyRequest(input="broken")).events
    sent = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert isinstance(events[-1], UpstreamFailure)
    seen: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url, json={"input": "broken"}, headers=AUTH) as r,
    ):
        for line in r.iter_lines():
            seen.append(line)
    assert waldur_805_read(seen) == (sent, None)  # the text so far, no usage
    assert "event: error" in seen


def test_wire_faults_apply_to_the_sse_events(upstream: tuple[MockApp, str]) -> None:
    _, url = upstream
    status, lines = post(url, {"input": "hello"}, {**AUTH, "X-Mock-Fault": "malformed_line_after_records=1"})
    assert status == 200
    assert "event: data" in lines and 'data: {"content": "unterminated' in lines
    text, _ = waldur_805_read(lines)  # Waldur skips the broken line
    assert text == "Hello! How can I help you with Waldur today?"


def test_token_check_and_bad_bodies(upstream: tuple[MockApp, str]) -> None:
    _, url = upstream
    response = httpx.post(url, json={"input": "hi"}, headers={"Authorization": "Token wrong"})
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}
    response = httpx.post(url, json={"prompt": "hi"}, headers=AUTH)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "input"]
    response = httpx.post(url, json={"input": "hi"}, headers={**AUTH, "X-Mock-Fault": "status=503"})
    assert response.status_code == 503 and response.json() == {"detail": "Service Unavailable"}
    response = httpx.post(url, json={"input": "hi"}, headers={**AUTH, "X-Mock-Fault": "stall_seconds=x"})
    assert response.status_code == 400 and "stall_seconds" in response.json()["detail"]


def test_chat_api_checks_do_not_apply_to_upstream_routes(upstream: tuple[MockApp, str]) -> None:
    """No chat-API token, no spec validation, no origin guard: a browser-less LLM client is served."""
    _, url = upstream
    response = httpx.post(url, json={"input": "hi"}, headers={**AUTH, "Origin": "https://evil.example"})
    assert response.status_code == 200
    base = url.removesuffix(LANGSERVE_PATH)
    assert httpx.get(f"{base}/__upstream__/nowhere").status_code == 404


def test_global_faults_and_speed_from_the_control_api_apply(upstream: tuple[MockApp, str]) -> None:
    app, url = upstream
    control = url.removesuffix(LANGSERVE_PATH) + "/__mock__/config"
    try:
        patched = httpx.patch(control, json={"faults": {"upstream_error_after_chunks": 2}})
        assert patched.status_code == 200, patched.text
        seen: list[str] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),  # the body is not terminated
            httpx.stream("POST", url, json={"input": "hello"}, headers=AUTH) as response,
        ):
            seen.extend(response.iter_lines())
        assert waldur_805_read(seen) == ("Hello! How ", None)  # two word chunks, then the failure
    finally:
        app.reset()
