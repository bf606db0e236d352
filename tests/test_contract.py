"""The contract suite passes against the mock, in-process, with instant replies.

This is the same suite `waldur-chat-mock verify` runs against a URL; here the target is
the ASGI app itself (CONTRACT_EXAMPLES / CONTRACT_SEED choose a deeper profile).
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from mockserver.app import MockApp
from mockserver.contract.report import summary, write_junit
from mockserver.contract.runner import PARTS, Report, TargetUnreachable, VerifyOptions, verify

EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "8"))
SEED = int(os.environ.get("CONTRACT_SEED", "1"))  # fixed by default: CI runs the same cases


def run_against(app: MockApp, **overrides: object) -> Report:
    options = VerifyOptions(
        base_url="http://mock",
        token="alice-token",
        other_token="bob-token",
        staff_token="staff-token",
        max_streams=200,
        max_examples=EXAMPLES,
        seed=SEED,
        app=app,
        stream_timeout=20,
    )
    for name, value in overrides.items():
        setattr(options, name, value)
    return verify(options)


_FULL: dict[str, MockApp] = {}


def full_report_app() -> MockApp:
    return _FULL["app"]


@pytest.fixture(scope="module")
def full_report() -> Report:
    from mockserver.app import ServerOptions, create_app

    _FULL["app"] = create_app(ServerOptions(validate_responses=True, speed=0))
    return run_against(_FULL["app"])


def test_the_mock_honours_its_own_contract(full_report: Report) -> None:
    assert full_report.ok, summary(full_report)


def test_every_part_ran_and_nothing_was_skipped(full_report: Report) -> None:
    """With a staff token and a switchable target, no check has a reason to skip; only the
    timing cannot be measured in-process, and says so instead of passing."""
    assert {r.part for r in full_report.results} == set(PARTS)
    assert not full_report.incomplete, summary(full_report)
    not_applicable = {r.check: r.message for r in full_report.results if r.verdict == "skipped"}
    assert list(not_applicable) == ["stream.timing"] and "in-process" in not_applicable["stream.timing"]
    assert full_report.exit_code() == 0


def test_the_suite_archives_what_it_created(full_report: Report) -> None:
    assert full_report.archived > 0


def test_junit_report_lists_every_check(full_report: Report, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(full_report, path)
    cases = ET.parse(path).getroot().iter("testcase")
    assert {c.get("name") for c in cases} == {r.check for r in full_report.results}


def test_stream_budget_is_respected_by_every_part(app: MockApp) -> None:
    """With no stream budget no stream answers 200 (each would be an LLM call on a real server)."""
    report = run_against(app, max_streams=0, only=("schema", "stream", "behaviour"), max_examples=3)
    streamed = [
        e for e in app.journal.entries() if (e["method"], e["path"], e["status"]) == ("POST", "/api/chat/stream/", 200)
    ]
    assert streamed == []
    assert "stream budget (--max-streams) exhausted" in summary(report)


def test_every_message_the_suite_sends_is_marked(full_report: Report) -> None:
    """A real deployment keeps every message: the suite's must be recognisable."""
    from mockserver.contract.behaviour import MARK

    app = full_report_app()
    users = [m for m in app.store.messages_visible_to(app.store.user_by_username("staff")) if m.role == "user"]
    assert users and all(m.content.startswith(MARK) for m in users)


def test_a_bad_token_is_a_usage_error_not_a_verdict(app: MockApp) -> None:
    with pytest.raises(TargetUnreachable, match="answered 401"):
        run_against(app, token="not-a-token")
