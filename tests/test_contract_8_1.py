"""`verify --api 8.1`: its schema part passes against the mock's 8.1 profile and catches 8.1 mutants.

Only the schema part (schemathesis over the 8.1 spec, streams included) applies to 8.1 so
far; the stream-grammar and behaviour parts of 8.0.5 read `content` and `update_thread_name`,
so they are not offered for 8.1 (a usage error, never a pass). Each mutant is the mock with
one 8.1 rule broken by an ASGI wrapper that rewrites one answer.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.types import ASGIApp, Message

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.contract.findings import CheckResult
from mockserver.contract.runner import Report, UsageError, VerifyOptions, verify
from tests.test_contract_7_9_4 import Rewrite, Rewriting, _status


def app_8_1() -> MockApp:
    return create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))


def run(target: ASGIApp, **options: Any) -> Report:
    defaults: dict[str, Any] = {"max_examples": 3, "seed": 1, "max_streams": 6}
    return verify(
        VerifyOptions(
            base_url="http://mock",
            token="alice-token",
            other_token="bob-token",
            app=target,
            api="8.1",
            **{**defaults, **options},
        )
    )


def _body(old: bytes, new: bytes) -> Rewrite:
    """Replace bytes in a JSON answer, and drop `Content-Length` (the length changes)."""

    def rewrite(message: Message) -> Message:
        if message["type"] == "http.response.start":
            return {**message, "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"]}
        if message["type"] == "http.response.body":
            return {**message, "body": message.get("body", b"").replace(old, new)}
        return message

    return rewrite


MUTANTS: dict[str, tuple[tuple[str, str], Rewrite, str]] = {
    # 8.0.5's message shape: `content` instead of `blocks`.
    "messages_with_content": (
        ("GET", "/api/chat-messages/"),
        _body(b'"blocks":', b'"content":'),
        "schema.response_schema_conformance",
    ),
    # Stats without `satisfaction_rate`.
    "stats_incomplete": (
        ("GET", "/api/chat-threads/stats/"),
        _body(b',"satisfaction_rate":null', b""),
        "schema.response_schema_conformance",
    ),
    # A thread's `has_feedback` as a string.
    "threads_has_feedback_text": (
        ("GET", "/api/chat-threads/"),
        _body(b'"has_feedback":false', b'"has_feedback":"no"'),
        "schema.response_schema_conformance",
    ),
    # The stream's body errors answered as 422 instead of DRF's 400.
    "stream_refusal_status": (("POST", "/api/chat/stream/"), _status(400, 422), "schema.status_code_conformance"),
}


# A known gap of the schema part, not of the mock: the marketplace chat is off by default and
# answers 424 before it reads the body (Waldur's order), so a schema-violating body gets 424 and
# schemathesis counts it as accepted. The 424 is a documented state refusal
# (`x-waldur-state-refusals`), which the suite exempts for valid bodies only so far. Only this
# exact finding is set aside; any other failure, or this one for another operation, still fails.
KNOWN_GAP_CHECK = "schema.negative_data_rejection"
KNOWN_GAP_PATHS = ("/api/marketplace-chat/",)


def _known_gap(result: CheckResult) -> bool:
    """Every failure the result lists is a marketplace chat operation (and none is left unlisted)."""
    listed = re.findall(r"\b[A-Z]+ (/\S+) \(\w+ phase\)", result.message)
    more = re.search(r"; (\d+) more: ", result.message)
    complete = len(listed) == 1 + (int(more.group(1)) if more else 0)
    return result.check == KNOWN_GAP_CHECK and complete and all(p.startswith(KNOWN_GAP_PATHS) for p in listed)


def test_the_8_1_mock_passes() -> None:
    mock = app_8_1()
    report = run(mock)
    left = [(r.check, r.message) for r in report.failed + report.incomplete if not _known_gap(r)]
    assert left == []
    checks = {r.check: r.verdict for r in report.results}
    assert checks["schema.response_schema_conformance"] == "passed"
    assert checks["schema.not_a_server_error"] == "passed"
    assert not mock.violations.drain()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_an_8_1_mutant_is_caught(name: str) -> None:
    (method, path), rewrite, rule = MUTANTS[name]
    report = run(Rewriting(app_8_1(), method, path, rewrite))
    assert rule in report.names("failed"), [(r.check, r.message) for r in report.results]


def test_parts_not_built_for_8_1_are_refused() -> None:
    for part in ("stream", "behaviour", "operations"):
        with pytest.raises(UsageError):
            run(app_8_1(), only=(part,))
