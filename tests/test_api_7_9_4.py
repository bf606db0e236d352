"""The 7.9.4 profile over HTTP: invoke, the SSE stream byte for byte, refusals, 404s, faults, timing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.engine.scripts import load_scripts_text
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.validation import ValidationMiddleware, ViolationLog
from mockserver.profiles import get_profile
from tests.support import Clients, clients_for, served, served_app

SCRIPTS = """
scripts:
  - name: two-chunks
    match: {}
    reply:
      chunks:
        - {text: "Hello", delay_ms: 0}
        - {text: " th\\u00e9re", delay_ms: 0}
"""
# count_tokens: "Hi" is 1 token; "Hello thére" is Hell|o| th|é|re = 5.
PLAIN_REPLY = (
    b'data: {"content": "Hello", "additional_kwargs": {}}\n\n'
    b'data: {"content": " th\\u00e9re", "additional_kwargs": {}}\n\n'
    b'data: {"content": "", "additional_kwargs": {"usage_metadata": {"input_tokens": 1, "output_tokens": 5}}}\n\n'
    b"\n"
)
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
ERROR_EVENT = (
    b'event: error\ndata: {"detail":"Chat processing was interrupted due to a technical problem. '
    b'Please try again later."}\n\n'
)


def legacy_app(**options: object) -> MockApp:
    return create_app(ServerOptions(api="7.9.4", validate_responses=True, speed=0, **options))  # type: ignore[arg-type]


@pytest.fixture
def app() -> Iterator[MockApp]:
    mock = legacy_app()
    mock.replace_scripts(load_scripts_text(SCRIPTS, "two.yaml"), "two.yaml")
    yield mock
    violations = mock.violations.drain()
    assert not violations, f"the mock answered outside its own spec: {violations}"


@pytest.fixture
def clients(app: MockApp) -> Iterator[Clients]:
    with clients_for(app) as made:
        yield made


# -- invoke ------------------------------------------------------------------------
def test_invoke_answers_the_placeholder_string_and_ignores_the_body(clients: Clients) -> None:
    for kwargs in ({}, {"content": b"not json", "headers": {"Content-Type": "text/plain"}}, {"json": {"x": 1}}):
        response = clients.alice.post("/api/chat/invoke/", **kwargs)
        assert (response.status_code, response.content) == (200, b'"Invoke chat response"'), kwargs
        assert response.headers["content-type"] == "application/json"


def test_invoke_needs_a_token_but_not_the_feature_flag(clients: Clients) -> None:
    anonymous = clients.with_token(None).post("/api/chat/invoke/")
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"detail": "Authentication credentials were not provided."},
    )
    assert anonymous.headers["www-authenticate"] == "Token"
    bad = clients.with_token("nope").post("/api/chat/invoke/")
    assert (bad.status_code, bad.json()) == (401, {"detail": "Invalid token."})
    clients.with_token(None).request("PATCH", "/__mock__/config", json={"chat_enabled": False})
    assert clients.alice.post("/api/chat/invoke/").status_code == 200


# -- the stream ----------------------------------------------------------------------
def test_stream_is_sse_byte_for_byte(clients: Clients) -> None:
    response = clients.alice.post("/api/chat/stream/", json={"input": "Hi"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == PLAIN_REPLY


def test_an_upstream_failure_ends_the_stream_with_the_error_event(clients: Clients) -> None:
    response = clients.alice.post(
        "/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Fault": "upstream_error_after_chunks=1"}
    )
    assert response.status_code == 200
    assert response.content == b'data: {"content": "Hello", "additional_kwargs": {}}\n\n' + ERROR_EVENT
    before_any = clients.alice.post(
        "/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Fault": "upstream_error_after_chunks=0"}
    )
    assert before_any.content == ERROR_EVENT


def test_wire_faults_apply_to_sse_too(clients: Clients) -> None:
    malformed = clients.alice.post(
        "/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Fault": "malformed_line_after_records=1"}
    )
    first, second, *_ = malformed.content.split(b"\n\n")
    assert first == b'data: {"content": "Hello", "additional_kwargs": {}}'
    assert second == b'data: {"content": "unterminated'
    with pytest.raises((ConnectionDroppedOnPurpose, httpx.TransportError)):  # in-process, the cut is raised
        clients.alice.post("/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Fault": "drop_after_records=1"})


def test_scenarios_are_selected_and_unknown_ones_refused(app: MockApp, clients: Clients) -> None:
    scripts = SCRIPTS + '  - name: other\n    reply: {text: "Other", chunking: none}\n'
    app.replace_scripts(load_scripts_text(scripts, "two.yaml"), "two.yaml")
    chosen = clients.alice.post("/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Scenario": "other"})
    assert chosen.content.startswith(b'data: {"content": "Other", "additional_kwargs": {}}\n\n')
    unknown = clients.alice.post("/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Scenario": "nope"})
    assert unknown.status_code == 400 and "Unknown X-Mock-Scenario" in unknown.json()["detail"]


@pytest.mark.parametrize(
    ("kwargs", "status", "body"),
    [
        ({"json": {}}, 400, {"input": ["This field is required."]}),
        ({"json": {"input": "   "}}, 400, {"input": ["This field may not be blank."]}),
        ({"json": {"input": None}}, 400, {"input": ["This field may not be null."]}),
        ({"json": {"input": 5}}, 400, {"input": ["Not a valid string."]}),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, None),
        ({"content": b"input=x", "headers": {"Content-Type": "text/plain"}}, 415, None),
    ],
)
def test_bad_input_is_refused_as_drf_does(clients: Clients, kwargs: dict, status: int, body: object) -> None:
    response = clients.alice.post("/api/chat/stream/", **kwargs)
    assert response.status_code == status, response.text
    if body is not None:
        assert response.json() == body
    else:
        assert set(response.json()) == {"detail"}


def test_chat_disabled_is_404_before_authentication(clients: Clients) -> None:
    clients.with_token(None).request("PATCH", "/__mock__/config", json={"chat_enabled": False})
    for client in (clients.alice, clients.with_token(None)):
        response = client.post("/api/chat/stream/", json={"input": "Hi"})
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


def test_anonymous_stream_is_401(clients: Clients) -> None:
    response = clients.with_token(None).post("/api/chat/stream/", json={"input": "Hi"})
    assert (response.status_code, response.json()) == (401, NO_CREDENTIALS)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/chat-sessions/"),
        ("GET", "/api/chat-sessions/current/"),
        ("GET", "/api/chat-threads/"),
        ("GET", "/api/chat-messages/"),
        ("GET", "/api/chat-quota/usage/"),
        ("POST", "/api/chat-tools/execute/"),
        ("POST", "/api/chat-quota/set_quota/"),
    ],
)
def test_the_8_0_5_endpoints_do_not_exist(clients: Clients, method: str, path: str) -> None:
    response = clients.alice.request(method, path, json={})
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


def test_nothing_is_persisted(app: MockApp, clients: Clients) -> None:
    before = [len(app.store.threads_visible_to(u)) for u in app.store.users]
    clients.alice.post("/api/chat/stream/", json={"input": "Hi"})
    assert [len(app.store.threads_visible_to(u)) for u in app.store.users] == before


def test_health_and_journal_name_the_profile(clients: Clients) -> None:
    anonymous = clients.with_token(None)
    assert anonymous.get("/__mock__/health").json() == {"status": "ok", "spec_version": "7.9.4"}
    clients.alice.post("/api/chat/invoke/")
    entry = anonymous.get("/__mock__/requests", params={"path": "/api/chat/invoke/"}).json()["requests"][-1]
    assert entry["api"] == "7.9.4"


def test_the_default_profile_is_8_0_5() -> None:
    mock = create_app(ServerOptions(speed=0))
    assert mock.profile.name == "8.0.5" and mock.journal.api == "8.0.5"


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown API profile"):
        create_app(ServerOptions(api="9.9.9"))


# -- timing over real TCP ----------------------------------------------------------
TIMED_SCRIPTS = """
scripts:
  - name: timed
    match: {}
    reply:
      chunks:
        - {text: "one", delay_ms: 150}
        - {text: " two", delay_ms: 100}
        - {text: " three", delay_ms: 100}
"""


async def event_times(base: str) -> list[float]:
    """Arrival time of every `data:` line, from the request on."""
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        started = time.perf_counter()
        async with client.stream(
            "POST", "/api/chat/stream/", json={"input": "Hi"}, headers={"Authorization": "Token alice-token"}
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    times.append(time.perf_counter() - started)
    return times


@pytest.mark.slow
def test_events_arrive_at_their_scripted_times_over_tcp() -> None:
    mock = create_app(ServerOptions(api="7.9.4", speed=1.0, cors=False))
    mock.replace_scripts(load_scripts_text(TIMED_SCRIPTS, "timed.yaml"), "timed.yaml")
    with served_app(mock) as base:
        times = asyncio.run(event_times(base))
    assert len(times) == 4  # three chunks and the usage chunk
    assert 0.14 <= times[0] < 0.6, times  # the first chunk's delay, not the whole reply's
    gaps = [b - a for a, b in itertools.pairwise(times[:3])]
    assert all(0.08 <= gap < 0.5 for gap in gaps), times  # each event flushed on its own


# -- response validation of an SSE body, line by line ------------------------------------
BAD_SSE = (
    b'data: {"content": 1, "additional_kwargs": {}}\n\nevent: nope\ndata: {"detail":"x"}\n\n'
    b'retry: 5\ndata: {"content": "x"'
)


async def bad_sse(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for piece in (BAD_SSE[:30], BAD_SSE[30:]):  # a line split across two body messages
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_response_validation_checks_each_sse_line() -> None:
    spec = SpecIndex.from_file(get_profile("7.9.4").spec_file)
    log = ViolationLog()
    checked = ValidationMiddleware(bad_sse, spec=spec, validate_responses=True, violations=log)  # type: ignore[arg-type]
    with clients_for(checked) as made:  # type: ignore[arg-type]
        assert made.alice.post("/api/chat/stream/", json={"input": "Hi"}).content == BAD_SSE
    found = [(v.line, v.message.split(":")[0]) for v in log.drain()]
    assert found == [
        (1, "data {'content'"),  # content is not a string
        (3, "undocumented event name 'nope'"),
        (4, "data {'detail'"),  # not Waldur's error detail
        (6, "not a data or event line"),
        (7, "unterminated last line"),
    ], found


# -- the command line ------------------------------------------------------------------
@pytest.mark.slow
def test_serve_api_7_9_4_says_so_and_serves_sse() -> None:
    with served(["--api", "7.9.4"]) as server:
        health = httpx.get(f"{server.base}/__mock__/health").json()
        stream = httpx.post(
            f"{server.base}/api/chat/stream/", json={"input": "hello"}, headers={"Authorization": "Token alice-token"}
        )
    assert health == {"status": "ok", "spec_version": "7.9.4"}
    assert stream.headers["content-type"] == "text/event-stream" and stream.text.startswith("data: {")
    assert "serving Waldur 7.9.4 chat API" in server.stdout
