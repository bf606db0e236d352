"""`verify --api 8.1`, behaviour part: the 8.1 mock passes the model, and each 8.1 mutant is caught.

The machine for 8.1 is composed from its traits (server-side names, blocks, cancel,
feedback, stats, day-bound filters). Each mutant is one fresh 8.1 `MockApp` with one rule
broken by an ASGI wrapper (the helpers of `tests/mutants.py`); the same runs pass against
the unbroken mock, so a mutant is never caught merely because everything fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis.internal.conjecture import engine as hypothesis_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.contract.machines import (
    BoundFilterRules,
    CancelRules,
    ClientNamingRules,
    FeedbackRules,
    ServerNamingRules,
    StatsRules,
    rule_sets,
    thread_filter,
)
from mockserver.contract.runner import Report
from mockserver.profiles import get_profile
from tests.mutants import Answer, Rewrite, RewriteQuery, _json_body, _path
from tests.support import verify_in_process

# Enough examples that every 8.1 rule runs (~1 s a run). The stream budget never runs out
# here: a replay that finds it spent draws differently, and the failure is then not shrunk.
RUN = {"max_examples": 30, "max_streams": 100_000, "behaviour_steps": 10}


@pytest.fixture(autouse=True)
def no_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    """What is asserted is the verdict and the rule, not how short the reproduction got."""
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKS", 0, raising=False)


def app_8_1() -> MockApp:
    return create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))


def run(target: ASGIApp) -> Report:
    return verify_in_process(target, "8.1", only=("behaviour",), seed=None, **RUN)


class Counting:
    """The app, counting the requests it answers by method, path shape and status."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.seen: Counter[tuple[str, str, int]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        shape = "/".join("{uuid}" if len(part) == 32 else part for part in _path(scope).split("/"))

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen[(scope["method"], shape, message["status"])] += 1
            await send(message)

        await self.app(scope, receive, sending)


def test_the_traits_pick_the_rule_sets() -> None:
    assert rule_sets(get_profile("8.0.5").traits) == [ClientNamingRules]
    assert rule_sets(get_profile("8.1").traits) == [
        ServerNamingRules,
        CancelRules,
        FeedbackRules,
        StatsRules,
        BoundFilterRules,
    ]


def test_day_bounds_are_inclusive_and_a_null_total_passes_no_token_bound() -> None:
    sample = {"created": "2026-12-02T10:00:00Z", "total_tokens": 5, "has_feedback": False}
    name, value, keep = thread_filter("created_after", sample, 0)
    assert (name, value) == ("created_after", "2026-12-02")
    assert keep({"created": "2026-12-02T00:00:00Z"})
    assert not keep({"created": "2026-12-01T23:59:59Z"})
    name, value, keep = thread_filter("created_before", sample, -1)
    assert value == "2026-12-01"
    assert keep({"created": "2026-12-01T23:59:59Z"})
    assert not keep({"created": "2026-12-02T00:00:00Z"})
    name, value, keep = thread_filter("total_tokens_max", sample, 1)
    assert value == "6"
    assert keep({"total_tokens": 6})
    assert not keep({"total_tokens": 7})
    assert not keep({"total_tokens": None})
    name, value, keep = thread_filter("has_feedback", sample, -1)
    assert value == "true"
    assert keep({"has_feedback": True})
    assert not keep({"has_feedback": False})
    name, value, keep = thread_filter("created", sample, 0)  # gone in 8.1: nothing is filtered out
    assert value == "2026-12-04"
    assert keep({"created": "2026-12-02T10:00:00Z"})


def test_the_8_1_mock_passes_and_every_8_1_rule_ran() -> None:
    mock = app_8_1()
    counting = Counting(mock.asgi)
    report = run(counting)
    assert report.outcome == "honoured", [(r.check, r.rule, r.message) for r in report.results]
    assert report.budget["behaviour"].used > 0
    seen = counting.seen
    for wanted in [
        ("POST", "/api/chat-threads/{uuid}/cancel/", 200),
        ("POST", "/api/chat-threads/{uuid}/cancel/", 404),
        ("POST", "/api/chat-messages/{uuid}/feedback/", 200),
        ("POST", "/api/chat-messages/{uuid}/feedback/", 400),
        ("POST", "/api/chat-messages/{uuid}/feedback/", 404),
        ("GET", "/api/chat-threads/stats/", 200),
    ]:
        assert seen[wanted], (wanted, seen)
    assert not mock.violations.drain()


# -- mutants -------------------------------------------------------------------------
def _is(method: str, suffix: str) -> Callable[[Scope], bool]:
    return lambda scope: scope["method"] == method and _path(scope).endswith(suffix)


def praise_with_category_accepted(app: MockApp) -> ASGIApp:
    """The serializer lacks its `validate`: a category with score=true is stored."""

    def change(scope: Scope, answer: Answer) -> Answer:
        body = json.loads(answer.request or b"{}")
        if answer.status == 400 and body.get("score") is True and "category" in body:
            return Answer(200, answer.headers, b"{}", answer.request)
        return answer

    return Rewrite(app.asgi, _is("POST", "/feedback/"), change)


def feedback_on_question_accepted(app: MockApp) -> ASGIApp:
    """The view forgets the role check: a user message takes feedback."""

    def change(scope: Scope, answer: Answer) -> Answer:
        if answer.status == 400 and b"assistant messages" in answer.body:
            return Answer(200, answer.headers, b"{}", answer.request)
        return answer

    return Rewrite(app.asgi, _is("POST", "/feedback/"), change)


def stats_threads_total_off_by_one(app: MockApp) -> ASGIApp:
    """The stats count a join's rows instead of distinct threads."""
    return Rewrite(
        app.asgi, _is("GET", "/stats/"), _json_body(lambda s: {**s, "threads_total": s["threads_total"] + 1})
    )


def has_feedback_never_set(app: MockApp) -> ASGIApp:
    """The `has_feedback` annotation looks at the wrong relation: always false."""

    def change(data: Any) -> Any:
        for thread in data if isinstance(data, list) else [data]:
            if isinstance(thread, dict) and "has_feedback" in thread:
                thread["has_feedback"] = False
        return data

    def threads(scope: Scope) -> bool:
        return scope["method"] == "GET" and _path(scope).startswith("/api/chat-threads/")

    return Rewrite(app.asgi, threads, _json_body(change))


def cancel_without_owner_check(app: MockApp) -> ASGIApp:
    """The cancel action looks the thread up in the wrong queryset: anyone's (or none) gets 200."""

    def change(scope: Scope, answer: Answer) -> Answer:
        return Answer(200, answer.without("content-type"), b"", answer.request) if answer.status == 404 else answer

    return Rewrite(app.asgi, _is("POST", "/cancel/"), change)


def created_after_ignored(app: MockApp) -> ASGIApp:
    """The filterset lacks `created_after` (list and stats alike): it is ignored."""

    def threads(scope: Scope) -> bool:
        return scope["method"] == "GET" and _path(scope) in ("/api/chat-threads/", "/api/chat-threads/stats/")

    return RewriteQuery(app.asgi, threads, lambda q: [(k, v) for k, v in q if k != "created_after"])


def names_not_given(app: MockApp) -> ASGIApp:
    """The title call's result is never saved: every thread stays "New chat"."""

    def change(data: Any) -> Any:
        for thread in data if isinstance(data, list) else [data]:
            if isinstance(thread, dict) and "name" in thread:
                thread["name"] = "New chat"
        return data

    return Rewrite(app.asgi, _is("GET", "/"), _json_body(change))


def blocks_lose_markdown(app: MockApp) -> ASGIApp:
    """The accumulator keeps only the last markdown delta of a block."""

    def change(data: Any) -> Any:
        for row in data if isinstance(data, list) else []:
            for block in row.get("blocks", []) if row.get("role") == "assistant" else []:
                if block.get("key") == "markdown" and len(block["content"]) > 1:
                    block["content"] = block["content"][1:]
        return data

    return Rewrite(app.asgi, _is("GET", "/api/chat-messages/"), _json_body(change))


MUTANTS: dict[str, tuple[Callable[[MockApp], ASGIApp], str]] = {
    "praise_with_category_accepted": (praise_with_category_accepted, "behaviour.feedback_category_needs_negative"),
    "feedback_on_question_accepted": (feedback_on_question_accepted, "behaviour.feedback_on_question_refused"),
    "stats_threads_total_off_by_one": (stats_threads_total_off_by_one, "behaviour.stats_threads_total"),
    "has_feedback_never_set": (has_feedback_never_set, "behaviour.has_feedback"),
    "cancel_without_owner_check": (cancel_without_owner_check, "behaviour.cancel_foreign_refused"),
    "created_after_ignored": (created_after_ignored, "behaviour.filter_created_after"),
    "names_not_given": (names_not_given, "behaviour.server_names_thread"),
    "blocks_lose_markdown": (blocks_lose_markdown, "stream.blocks_reassembly"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_an_8_1_behaviour_mutant_is_caught(name: str) -> None:
    inject, rule = MUTANTS[name]
    report = run(inject(app_8_1()))
    failed = [r for r in report.results if r.failed]
    assert [r.rule for r in failed] == [rule], [(r.check, r.rule, r.message) for r in report.results]
    assert failed[0].steps, "a violation carries the requests that show it"
