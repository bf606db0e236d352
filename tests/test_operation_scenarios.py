"""OperationScenarios (contract checks of quota usage, set_quota and tools) against the mock and broken variants.

Against the in-process mock every check runs and passes; each broken variant, a realistic bug in
one operation, makes the check that covers it fail (with its reproduction); without a staff token or a stream
budget the checks that need them are skipped with a reason, never passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.contract.behaviour import Budget
from mockserver.contract.findings import CheckResult
from mockserver.contract.operations import OperationScenarios, tool_result_problems, usage_problems
from mockserver.contract.target import Target, Tokens

TOKENS = Tokens(user="alice-token", other="bob-token", staff="staff-token")
CHECKS = {
    "operations.authentication",
    "operations.quota_usage_shape",
    "operations.quota_usage_follows_stream",
    "operations.set_quota_staff_only",
    "operations.set_quota_applies",
    "operations.tools_known_tool",
    "operations.tools_refusals",
}


@pytest.fixture
def mock() -> Iterator[MockApp]:
    app = create_app(ServerOptions(validate_responses=True, speed=0))
    yield app
    assert not app.violations.drain()


def run(app: ASGIApp, tokens: Tokens = TOKENS, streams: int = 5) -> dict[str, CheckResult]:
    with Target("http://mock", tokens, app=app) as target:
        results = OperationScenarios(target, Budget(streams)).run()
    assert {r.check for r in results} == CHECKS, "stable check names, whatever the verdict"
    return {r.check: r for r in results}


def test_the_mock_passes_every_check(mock: MockApp) -> None:
    results = run(mock)
    assert {name: r.verdict for name, r in results.items()} == dict.fromkeys(CHECKS, "passed"), results
    assert "a daily limit of 0 makes the stream 409" in results["operations.set_quota_applies"].message
    own = [mock.chat.quota.own_limit("alice", p) for p in ("daily", "weekly", "monthly")]
    assert own == [None, None, None], "the suite restored the limits it set"


def test_what_cannot_run_is_skipped_with_a_reason(mock: MockApp) -> None:
    results = run(mock, Tokens(user="alice-token", other="bob-token"), streams=0)
    skipped = {name for name, r in results.items() if r.verdict == "skipped"}
    assert skipped == {"operations.quota_usage_follows_stream", "operations.set_quota_applies"}
    assert "--max-streams" in results["operations.quota_usage_follows_stream"].message
    assert "--staff-token" in results["operations.set_quota_applies"].message
    assert all(r.verdict == "passed" for name, r in results.items() if name not in skipped)


def test_a_user_without_tokens_left_is_not_streamed_for(mock: MockApp) -> None:
    mock.settings.usage["alice"] = {"daily": 5, "weekly": 5, "monthly": 5}
    mock.settings.system_limits.daily = 5
    result = run(mock)["operations.quota_usage_follows_stream"]
    assert (result.verdict, "no tokens left" in result.message) == ("skipped", True)


# -- broken variants: one realistic bug each ---------------------------------------------------
class Rewrite:
    """ASGI wrapper that changes requests to one path before the mock sees them."""

    def __init__(self, app: ASGIApp, path: str, change: Callable[[Scope], Scope]):
        self.app, self.path, self.change = app, path, change

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            scope = self.change(scope)
        await self.app(scope, receive, send)


def as_staff(scope: Scope) -> Scope:
    """The permission check is missing: every caller of set_quota acts as staff."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
    return {**scope, "headers": [*headers, (b"authorization", b"Token staff-token")]}


class RewriteBody:
    """ASGI wrapper that edits the JSON answer of one path."""

    def __init__(self, app: ASGIApp, path: str, edit: Callable[[Any], Any]):
        self.app, self.path, self.edit = app, path, edit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                body = b"".join(chunks)
                if body and start["status"] == 200:
                    body = json.dumps(self.edit(json.loads(body))).encode()
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def frozen_usage(body: dict[str, Any]) -> dict[str, Any]:
    """Usage is never counted: the counters stay at 0."""
    return {**body, **{f"{p}_usage": 0 for p in ("daily", "weekly", "monthly")}}


def one_row_short(body: dict[str, Any]) -> dict[str, Any]:
    """The table lost a row but still counts it."""
    return {**body, "ui_data": {**body["ui_data"], "r": body["ui_data"]["r"][1:]}}


def set_quota_ignored(mock: MockApp) -> ASGIApp:
    """set_quota answers 200 but stores nothing."""
    mock.chat.quota.set_limits = lambda username, changes: None  # type: ignore[method-assign]
    return mock


def stream_ignores_user_limits(mock: MockApp) -> ASGIApp:
    """The stream skips its quota check: limits stored by set_quota are never enforced."""
    quota = mock.chat.quota
    quota.ensure_within = lambda username: None  # type: ignore[method-assign]
    return mock


def other_user_charged(mock: MockApp) -> ASGIApp:
    """Usage is booked to every user, not to the one who streamed."""
    quota, add = mock.chat.quota, mock.chat.quota.add_usage
    quota.add_usage = lambda username, tokens: [add(u.username, tokens) for u in mock.store.users]  # type: ignore[method-assign]
    return mock


VARIANTS: dict[str, tuple[Callable[[MockApp], ASGIApp], str]] = {
    "set_quota-not-staff-only": (lambda m: Rewrite(m, "/api/chat-quota/set_quota/", as_staff), "set_quota_staff_only"),
    "usage-not-counted": (
        lambda m: RewriteBody(m, "/api/chat-quota/usage/", frozen_usage),
        "quota_usage_follows_stream",
    ),
    "other-user-charged": (other_user_charged, "quota_usage_follows_stream"),
    "set_quota-ignored": (set_quota_ignored, "set_quota_applies"),
    "stream-ignores-limits": (stream_ignores_user_limits, "set_quota_applies"),
    "table-row-lost": (lambda m: RewriteBody(m, "/api/chat-tools/execute/", one_row_short), "tools_known_tool"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_broken_variant_fails_its_check(variant: str) -> None:
    make, check = VARIANTS[variant]
    broken = make(create_app(ServerOptions(speed=0)))
    results = run(broken)
    failed = {name for name, r in results.items() if r.verdict == "failed"}
    assert f"operations.{check}" in failed, {n: (r.verdict, r.message) for n, r in results.items()}
    assert results[f"operations.{check}"].steps, "a failure comes with the requests that reproduce it"


# -- the pure checks ----------------------------------------------------------------------------
GOOD_USAGE = {
    **{
        f"{p}_{f}": v
        for p in ("daily", "weekly", "monthly")
        for f, v in [
            ("limit", None),
            ("usage", 5),
            ("remaining", None),
            ("reset_at", "2999-01-01T00:00:00Z"),
            ("system_default", -1),
        ]
    },
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"daily_remaining": 3}, "daily_remaining is 3, expected None"),
        ({"weekly_limit": 10, "weekly_remaining": 10}, "weekly_remaining is 10, expected 5"),
        ({"monthly_limit": 2, "monthly_remaining": -3}, "monthly_remaining is -3, expected 0"),
        ({"daily_reset_at": "2000-01-01T00:00:00Z"}, "not in the future"),
        ({"daily_reset_at": "2999-01-01T00:00:00.000001Z"}, "not a UTC midnight"),
        ({"daily_usage": "5"}, "must be integers"),
    ],
)
def test_usage_problems_find_each_inconsistency(change: dict[str, Any], problem: str) -> None:
    assert usage_problems(GOOD_USAGE) == []
    found = usage_problems({**GOOD_USAGE, **change})
    assert len(found) == 1 and problem in found[0], found


def test_usage_problems_want_exactly_the_fifteen_fields() -> None:
    assert usage_problems({k: v for k, v in GOOD_USAGE.items() if k != "weekly_usage"})
    assert usage_problems({**GOOD_USAGE, "extra": 1})


def test_tool_result_problems_find_a_miscount(mock: MockApp) -> None:
    result = mock.tools.show_user_resources("alice")
    assert tool_result_problems(result) == []
    assert tool_result_problems({**result, "summary": "Found 3 resources"})
    assert tool_result_problems({**result, "ui_data": {**result["ui_data"], "h": ["Name"]}})
    assert tool_result_problems({**result, "type": "error"})


def test_a_session_without_its_user_is_a_finding_with_its_request(mock: MockApp) -> None:
    """Not a bare KeyError: the check names what is missing and the request that showed it; and
    without --staff-token the staff-only check stays not applicable instead of failing first."""
    app = RewriteBody(mock, "/api/chat-sessions/current/", lambda body: {k: v for k, v in body.items() if k != "user"})
    results = run(app, Tokens(user="alice-token", other="bob-token"))
    staff_only = results["operations.set_quota_staff_only"]
    assert staff_only.failed and "names no `user`" in staff_only.message
    assert staff_only.steps and staff_only.steps[-1].path.startswith("/api/chat-sessions/current/")
    assert (results["operations.set_quota_applies"].verdict, results["operations.set_quota_applies"].skip) == (
        "skipped",
        "not_applicable",
    )
    assert all(r.duration > 0 for r in results.values()), "every check is timed"
