"""`verify` as users run it: over real HTTP, at its defaults, against broken targets, and its reports.

The mock is served by uvicorn on a free 127.0.0.1 port in a thread (speed 0); broken
targets are tiny raw socket servers. Every run goes through `cli.main`, so exit codes,
one-line reasons and the report files are checked as a CI job would see them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.cli import main
from mockserver.contract.behaviour import Budget
from mockserver.contract.report import as_json, summary
from mockserver.contract.runner import (
    BEHAVIOUR_STREAMS,
    EXIT_INCOMPLETE,
    OPERATIONS_STREAMS,
    STREAM_PART_STREAMS,
    UsageError,
    VerifyOptions,
    plan_budget,
    verify,
)
from mockserver.contract.schema import run_schema_checks
from tests.mutants import narrowed_spec
from tests.support import served_app

README_TOKENS = ["--token", "alice-token", "--other-token", "bob-token"]


def served(app: MockApp) -> AbstractContextManager[str]:
    """The app behind a real uvicorn on an ephemeral port; the base URL while it runs."""
    return served_app(app, log_level="critical")


@contextmanager
def raw_target(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A broken target: a socket server that handles each connection with `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def _answer_always(status: str, content_type: str, body: bytes) -> Callable[[socket.socket], None]:
    def answer(connection: socket.socket) -> None:
        try:
            while connection.recv(65536):
                head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                connection.sendall(head.encode() + body)
        except OSError:
            pass

    return answer


def _never_answer(connection: socket.socket) -> None:
    try:
        while connection.recv(65536):
            pass
    except OSError:
        pass


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- the README's command over real HTTP ------------------------------------------------
@pytest.mark.slow
def test_the_readme_command_runs_every_part_over_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three tokens, defaults otherwise: every part runs, nothing is skipped for budget,
    timing is measured over HTTP, exit 0; and the users' token usage is as before."""
    app = create_app(ServerOptions(validate_responses=True, speed=0))
    report = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    with served(app) as url:
        usage_before = httpx.get(f"{url}/__mock__/config").json()["token_usage"]
        argv = ["verify", "--base-url", url, *README_TOKENS, "--report-json", str(report), "--report", str(junit)]
        code, out, err = run_cli(argv, capsys)
        usage_after = httpx.get(f"{url}/__mock__/config").json()["token_usage"]
    data = json.loads(report.read_text())
    assert code == 0, out + err
    assert data["outcome"] == "honoured" and data["exit_code"] == 0
    checks = {c["name"]: c for c in data["checks"]}
    assert {c["part"] for c in checks.values()} == {"schema", "stream", "behaviour", "operations", "configuration"}
    assert [c["name"] for c in checks.values() if c["skip"] not in (None, "not_applicable")] == [], out
    staff_only = ["stream.staff_visibility", "operations.set_quota_applies"]
    assert [c["name"] for c in checks.values() if c["skip"] == "not_applicable"] == staff_only
    assert checks["stream.timing"]["verdict"] == "passed" and checks["stream.timing"]["figures"]["streams"] >= 5
    assert data["budget"]["parts"]["stream"] == {
        "granted": STREAM_PART_STREAMS,
        "used": STREAM_PART_STREAMS,
        "left_out": 0,
    }
    assert data["budget"]["parts"]["behaviour"]["used"] >= 1
    assert sum(p["used"] for p in data["budget"]["parts"].values()) <= 12
    assert "every check that applies to it ran and passed" in out
    assert usage_after == usage_before, "the run left the users' token usage raised"
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert {c.get("name") for c in cases} == set(checks)
    assert all(float(c.get("time", "-1")) >= 0 and c.find("system-out") is not None for c in cases)
    timing = next(c for c in cases if c.get("name") == "stream.timing")
    assert "first_record_ms_p50 = " in (timing.find("system-out").text or "")  # type: ignore[union-attr]
    assert err.count("\n") >= 8 and "schema: " in err and "streams " in err  # a line per part when not a TTY


def test_a_dropped_connection_mid_stream_is_a_failure_with_its_request(capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(ServerOptions(validate_responses=False, speed=0))
    with served(app) as url:
        assert httpx.patch(f"{url}/__mock__/config", json={"faults": {"drop_after_records": 1}}).status_code == 200
        options = VerifyOptions(base_url=url, token="alice-token", other_token="bob-token", only=("stream",))
        report = verify(options)
    failed = {r.check: r for r in report.failed}
    assert failed["stream.new_thread"].rule == "stream.connection", summary(report)
    steps = failed["stream.new_thread"].steps
    assert steps and steps[-1].path == "/api/chat/stream/" and "connection broke" in steps[-1].excerpt
    assert report.exit_code() == 1


@pytest.mark.slow
def test_a_dropped_connection_in_the_schema_part_has_its_request(tmp_path: Path) -> None:
    app = create_app(ServerOptions(validate_responses=False, speed=0))
    spec = narrowed_spec(("/api/chat/stream/",), tmp_path)
    with served(app) as url:
        assert httpx.patch(f"{url}/__mock__/config", json={"faults": {"drop_after_records": 1}}).status_code == 200
        options = VerifyOptions(
            base_url=url, token="alice-token", other_token="bob-token", only=("schema",), spec=spec, max_examples=2
        )
        report = verify(options)
    errors = next(r for r in report.results if r.check == "schema.errors")
    assert errors.failed and errors.steps, summary(report)
    assert errors.steps[0].path == "/api/chat/stream/" and "curl -X POST" in errors.steps[0].excerpt


# -- the budget plan and the honest exit code -----------------------------------------
def test_the_plan_reserves_the_stream_behaviour_and_operations_parts_first() -> None:
    every = ("schema", "stream", "behaviour", "operations", "configuration")
    assert plan_budget(12, every) == {
        "schema": 12 - STREAM_PART_STREAMS - BEHAVIOUR_STREAMS - OPERATIONS_STREAMS,
        "stream": STREAM_PART_STREAMS,
        "behaviour": BEHAVIOUR_STREAMS,
        "operations": OPERATIONS_STREAMS,
        "configuration": 0,
    }
    assert plan_budget(12, every)["schema"] >= 1, "at the defaults the schema part must stream at least once"
    assert plan_budget(3, every) == {"schema": 0, "stream": 3, "behaviour": 0, "operations": 0, "configuration": 0}
    assert plan_budget(12, ("stream", "behaviour"))["behaviour"] == 12 - STREAM_PART_STREAMS


def test_checks_skipped_for_budget_give_exit_3_unless_allowed(app: MockApp) -> None:
    options = VerifyOptions(
        base_url="http://mock", token="alice-token", other_token="bob-token", max_streams=2, only=("stream",), app=app
    )
    report = verify(options)
    assert report.ok and report.outcome == "incomplete", summary(report)
    skipped = {r.check: r.skip for r in report.results if r.verdict == "skipped"}
    assert skipped["stream.reload"] == "budget" and skipped["stream.staff_visibility"] == "not_applicable"
    assert report.exit_code() == EXIT_INCOMPLETE and report.exit_code(allow_skips=True) == 0
    assert "INCOMPLETE" in summary(report) and "stream.reload (budget)" in summary(report)
    assert "stream.staff_visibility" not in summary(report).splitlines()[-1]  # not applicable is not "not run"


def test_the_schema_part_without_budget_reports_no_false_failure(app: MockApp, tmp_path: Path) -> None:
    """Regression: with its budget spent, the schema part used to edit the spec's example body
    in place; the coverage phase then sent `{}` as a positive case ("Schema-valid request rejected")."""
    spec = narrowed_spec(("/api/chat/stream/",), tmp_path)
    budget = Budget(0)
    results = run_schema_checks(spec, "alice-token", app=app, budget=budget, seed=1, max_examples=5)
    assert not [r for r in results if r.failed], [(r.check, r.message) for r in results if r.failed]
    stream_cases = next(r for r in results if r.check == "schema.stream_cases")
    assert stream_cases.skip == "budget" and budget.left_out > 0 and budget.used == 0
    sent = [(e["method"], e["path"], e["status"]) for e in app.journal.entries()]
    assert ("POST", "/api/chat/stream/", 400) in sent and ("POST", "/api/chat/stream/", 200) not in sent


# -- refused up front -------------------------------------------------------------------
@pytest.mark.parametrize(
    "tokens",
    [
        ["--token", "alice-token", "--other-token", "alice-token"],
        ["--token", "alice-token", "--other-token", "bob-token", "--staff-token", "bob-token"],
    ],
)
def test_one_token_for_two_roles_is_refused_in_one_line(tokens: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["verify", "--base-url", "http://127.0.0.1:9", *tokens], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "are the same token" in err


def test_two_tokens_of_one_user_are_refused(app: MockApp) -> None:
    app.store.user_by_username("alice")  # exists
    options = VerifyOptions(base_url="http://mock", token="alice-token", other_token="alice-token", app=app)
    with pytest.raises(UsageError):
        verify(options)


@pytest.mark.parametrize(
    ("token", "other", "staff", "refused"),
    [
        ("staff-token", "bob-token", None, "--token belongs to 'staff'"),
        ("alice-token", "support-token", None, "--other-token belongs to 'support'"),
        ("alice-token", "bob-token", "staff-token", None),
        ("alice-token", "bob-token", "support-token", None),
    ],
)
def test_a_token_of_the_wrong_role_is_refused_up_front(
    app: MockApp, token: str, other: str, staff: str | None, refused: str | None
) -> None:
    """Staff rightly see other users' sessions: as --token they would look like a leak."""
    options = VerifyOptions(
        base_url="http://mock", token=token, other_token=other, staff_token=staff, only=("configuration",), app=app
    )
    if refused is None:
        assert verify(options).exit_code() == 0
    else:
        with pytest.raises(UsageError, match=refused):
            verify(options)


def test_a_regular_users_token_as_staff_token_is_refused(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n"
        "  - {username: alice, token: alice-token}\n  - {username: bob, token: bob-token}\n"
        "  - {username: carol, token: carol-token}\n"
    )
    app = create_app(ServerOptions(users_file=users, speed=0))
    options = VerifyOptions(
        base_url="http://mock", token="alice-token", other_token="bob-token", staff_token="carol-token", app=app
    )
    with pytest.raises(UsageError, match="--staff-token belongs to 'carol', who is neither staff nor support"):
        verify(options)


# -- broken targets: one line and exit 2, quickly -------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_answer_always("200 OK", "text/html", b"<!doctype html><p>Welcome</p>"), "with text/html, not JSON"),
        (_answer_always("200 OK", "application/json", b"{}"), "no uuid and no user_username"),
        (
            _answer_always("200 OK", "application/json", b"[1, 2]"),
            "does not answer a Waldur chat session for --token: not an object",
        ),
    ],
    ids=["html-everywhere", "empty-object-everywhere", "array-everywhere"],
)
def test_a_broken_target_gets_one_line_and_exit_2(
    answer: Callable[[socket.socket], None], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw_target(answer) as url:
        code, out, err = run_cli(["verify", "--base-url", url, *README_TOKENS], capsys)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


async def _session_then_html(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A target that opens sessions and answers 200 HTML to everything else."""
    if scope["path"] == "/api/chat-sessions/current/":
        token = dict(scope["headers"]).get(b"authorization", b"").decode().split()[-1]
        body = json.dumps({"uuid": "a" * 32, "user_username": token}).encode()
        kind = b"application/json"
    else:
        body, kind = b"<!doctype html><p>Welcome</p>", b"text/html"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})


def test_answers_that_are_not_json_are_failures_with_their_requests_not_a_crash() -> None:
    options = VerifyOptions(
        base_url="http://html",
        token="alice-token",
        other_token="bob-token",
        only=("stream", "behaviour", "configuration"),
        app=_session_then_html,
    )
    report = verify(options)
    assert report.exit_code() == 1, summary(report)
    assert {r.part for r in report.failed} == {"stream", "behaviour"}, summary(report)
    assert all(r.steps for r in report.failed), summary(report)
    assert {r.skip for r in report.results if r.part == "configuration"} == {"not_applicable"}


def test_a_target_that_never_answers_is_told_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    with raw_target(_never_answer) as url:
        options = VerifyOptions(base_url=url, token="alice-token", other_token="bob-token", preflight_timeout=1)
        began = time.monotonic()
        with pytest.raises(Exception, match=r"no answer within 1 s") as raised:
            verify(options)
    assert time.monotonic() - began < 5
    assert type(raised.value).__name__ == "TargetUnreachable"


def test_a_closed_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    code, _, err = run_cli(["verify", "--base-url", f"http://127.0.0.1:{port}", *README_TOKENS], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot reach" in err and "ConnectError" in err


# -- reports ----------------------------------------------------------------------------
def test_check_names_are_the_same_whether_they_pass_or_fail(app: MockApp) -> None:
    from tests.mutants import MUTANTS

    mutant = next(m for m in MUTANTS if m.id == "stream-without-final-m")
    base = {"base_url": "http://mock", "token": "alice-token", "other_token": "bob-token", "only": ("stream",)}
    passing = verify(VerifyOptions(**base, app=app))  # type: ignore[arg-type]
    failing = verify(VerifyOptions(**base, app=mutant.inject(create_app(ServerOptions(speed=0)))))  # type: ignore[arg-type]
    assert [r.check for r in passing.results] == [r.check for r in failing.results]
    new_thread = next(r for r in failing.results if r.check == "stream.new_thread")
    assert new_thread.failed and new_thread.rule == "stream.grammar.final_m_last" and new_thread.steps
    data = as_json(failing, failing.exit_code())
    check = next(c for c in data["checks"] if c["name"] == "stream.new_thread")
    assert check["verdict"] == "failed" and check["rule"] == "stream.grammar.final_m_last"
    assert check["steps"][0]["path"] == "/api/chat/stream/" and check["duration"] >= 0
    assert data["outcome"] == "violated" and data["exit_code"] == 1


def test_plain_progress_prints_a_line_per_part(app: MockApp) -> None:
    import io

    from mockserver.contract.progress import PlainProgress

    stream = io.StringIO()
    options = VerifyOptions(
        base_url="http://mock", token="alice-token", other_token="bob-token", only=("stream", "configuration"), app=app
    )
    verify(options, progress=PlainProgress(stream, options.max_streams))
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["... stream"] * 2 + ["... configuration"] * 2
    assert "7 cases; streams 5/12" in lines[1]


def test_rich_progress_shows_part_cases_and_streams(app: MockApp) -> None:
    import io

    from mockserver.contract.progress import RichProgress

    stream = io.StringIO()
    options = VerifyOptions(
        base_url="http://mock", token="alice-token", other_token="bob-token", only=("stream",), app=app
    )
    with RichProgress(stream, options.max_streams) as live:
        verify(options, progress=live)
        assert live.bar.tasks[0].completed == 7 and live.bar.tasks[0].fields["streams"] == STREAM_PART_STREAMS
    assert "stream: " in stream.getvalue() and "(streams 5/12)" in stream.getvalue()


def test_verify_help_documents_the_exit_codes_and_skip_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = capsys.readouterr().out
    for needed in ("exit codes:", "--allow-skips", "--report-json", "not applicable", "3  no violation"):
        assert needed in text
