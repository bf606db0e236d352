"""`verify --api 7.9.4`: passes against the mock's 7.9.4 profile, and catches 7.9.4 mutants.

Each mutant is the mock with one thing a 7.9.4 client relies on broken, by an ASGI
wrapper that rewrites one answer; the suite must name the broken rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.cli import main
from mockserver.contract.runner import Report, UsageError
from tests.support import served_app, verify_in_process

Rewrite = Callable[[Message], Message]


def legacy_app(speed: float = 0) -> MockApp:
    return create_app(ServerOptions(api="7.9.4", speed=speed, validate_responses=True))


def run(target: ASGIApp, **options: Any) -> Report:
    return verify_in_process(target, "7.9.4", **options)


class Rewriting:
    """The app, with the response messages of one path and method passed through `rewrite`."""

    def __init__(self, app: ASGIApp, method: str, path: str, rewrite: Rewrite):
        self.app, self.method, self.path, self.rewrite = app, method, path, rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) != (self.method, self.path):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            await send(self.rewrite(message))

        await self.app(scope, receive, sending)


def _body(old: bytes, new: bytes) -> Rewrite:
    def rewrite(message: Message) -> Message:
        if message["type"] == "http.response.body":
            return {**message, "body": message.get("body", b"").replace(old, new)}
        return message

    return rewrite


def _content_type(value: bytes) -> Rewrite:
    def rewrite(message: Message) -> Message:
        if message["type"] == "http.response.start":
            headers = [(k, value if k == b"content-type" else v) for k, v in message["headers"]]
            return {**message, "headers": headers}
        return message

    return rewrite


def _status(old: int, new: int) -> Rewrite:
    def rewrite(message: Message) -> Message:
        if message["type"] == "http.response.start" and message["status"] == old:
            return {**message, "status": new}
        return message

    return rewrite


STREAM = ("POST", "/api/chat/stream/")
MUTANTS: dict[str, tuple[tuple[str, str], Rewrite, str]] = {
    # The error payload without its `event: error` line: clients never see the failure.
    "error_event_unnamed": (STREAM, _body(b"event: error\n", b""), "stream.sse.error_event"),
    # NDJSON's media type on the SSE body (the 8.0.5 writer left in place).
    "ndjson_content_type": (STREAM, _content_type(b"application/x-ndjson"), "stream.content_type"),
    # Chunks without the blank line that ends an SSE event.
    "events_not_ended": (STREAM, _body(b"}\n\n", b"}\n"), "stream.sse.framing"),
    # A data payload that is not JSON.
    "data_not_json": (STREAM, _body(b'data: {"content"', b'data: content{"content"'), "stream.sse.data"),
    # 424 (the 8.0 answer) instead of 7.9.4's 400 for a missing input is one of many: here 400 -> 422.
    "refusal_status": (STREAM, _status(400, 422), "stream.refusals.required"),
    # invoke answers another string.
    "invoke_answer": (("POST", "/api/chat/invoke/"), _body(b"Invoke chat", b"Invoked chat"), "stream.invoke.answer"),
}


def test_the_7_9_4_mock_passes() -> None:
    mock = legacy_app()
    report = run(mock)
    assert report.outcome == "honoured", [(r.check, r.message) for r in report.failed + report.incomplete]
    checks = {r.check: r.verdict for r in report.results}
    for name in ("stream.invoke", "stream.refusals", "stream.sse_reply", "stream.sse_error_event"):
        assert checks[name] == "passed", name
    assert any(name.startswith("schema.") and verdict == "passed" for name, verdict in checks.items())
    assert not mock.violations.drain()


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_7_9_4_mutant_is_caught(name: str) -> None:
    (method, path), rewrite, rule = MUTANTS[name]
    report = run(Rewriting(legacy_app(), method, path, rewrite), only=("stream",))
    assert rule in report.names("failed"), [(r.check, r.diagnosis, r.message) for r in report.results]


def test_the_8_0_5_parts_are_refused_for_7_9_4() -> None:
    with pytest.raises(UsageError, match="no behaviour part"):
        run(legacy_app(), only=("behaviour",))


@pytest.mark.slow
def test_verify_api_7_9_4_over_http_measures_timing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI against a served 7.9.4 mock at real speed: passes, with the time to first event."""
    report_path = tmp_path / "report.json"
    with served_app(legacy_app(speed=1.0)) as base:
        code = main(
            ["verify", "--api", "7.9.4", "--base-url", base, "--token", "alice-token", "--other-token", "bob-token",
             "--max-examples", "2", "--seed", "1", "--max-streams", "4", "--report-json", str(report_path)]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    results = {r["name"]: r for r in json.loads(report_path.read_text())["checks"]}
    assert results["stream.timing"]["verdict"] == "passed", results["stream.timing"]
    assert results["stream.timing"]["figures"]["first_record_ms_p50"] > 0
