"""The access log of `serve`: one line per request, streams counted as they pass, no secrets, --quiet."""

from __future__ import annotations

import logging
import re

import anyio
import httpx
import pytest

from mockserver.api.access_log import ACCESS_LOGGER, AccessLogMiddleware
from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.app import ServerOptions, create_app
from mockserver.cli import INVALID_REQUEST_NOTE, _explain_invalid_requests
from tests.support import served

LINE = re.compile(
    r'^(?P<client>\S+) (?P<user>\S+) "(?P<method>[A-Z]+) (?P<target>\S+)" (?P<status>\d{3}|-)'
    r" (?P<ms>\d+\.\d)ms bytes=(?P<bytes>\d+)(?: records=(?P<records>\d+))?(?P<incomplete> incomplete)?$"
)


def send(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request through the access log in front of a fresh mock, as `serve` stacks them."""
    app = AccessLogMiddleware(create_app(ServerOptions(speed=0)))

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as http:
            return await http.request(method, url, **kwargs)  # type: ignore[arg-type]

    return anyio.run(call)


def logged(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), f"access-log lines outside the format: {lines}"
    return [m for m in matches if m]


def test_json_route_logs_method_target_status_user_duration_and_bytes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = send("GET", "/api/chat-threads/?o=-created", headers={"Authorization": "Token alice-token"})
    [line] = logged(caplog)
    assert response.status_code == 200
    assert line.group("client", "user", "method", "target", "status") == (
        "127.0.0.1",
        "alice",
        "GET",
        "/api/chat-threads/?o=-created",
        "200",
    )
    assert int(line.group("bytes")) == len(response.content) > 0
    assert line.group("records") is None and line.group("incomplete") is None
    assert float(line.group("ms")) > 0


def test_stream_route_logs_records_and_bytes_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = send(
        "POST",
        "/api/chat/stream/",
        json={"input": "Show me some code"},
        headers={"Authorization": "Token bob-token", "X-Mock-Scenario": "code-block"},
    )
    [line] = logged(caplog)
    assert response.status_code == 200
    assert line.group("user", "method", "target", "status") == ("bob", "POST", "/api/chat/stream/", "200")
    assert int(line.group("records")) == len(response.text.splitlines()) > 2
    assert int(line.group("bytes")) == len(response.content)


def test_anonymous_is_a_dash_and_a_query_token_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    assert send("GET", "/api/chat-threads/").status_code == 401
    assert send("GET", "/api/chat-threads/?page=1&x-auth-token=alice-token").status_code == 200
    send("GET", "/api/chat-threads/?X%2DAuth-Token=bob-token")  # masked whether or not it authenticates
    anonymous, by_query, encoded = logged(caplog)
    assert anonymous.group("user", "status") == ("-", "401")
    assert by_query.group("user", "target") == ("alice", "/api/chat-threads/?page=1&x-auth-token=REDACTED")
    assert encoded.group("target") == "/api/chat-threads/?X%2DAuth-Token=REDACTED"
    assert "alice-token" not in caplog.text and "bob-token" not in caplog.text


def test_a_hostile_path_or_user_stays_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """Control characters, quotes and non-ASCII are escaped: no forged or split lines."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    async def answer(scope: dict, receive: object, send: object) -> None:
        scope.setdefault("state", {})["username"] = "ev il\n"
        await send({"type": "http.response.start", "status": 404, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    scope = {"type": "http", "method": "GET", "path": '/a\n"x" 200 é/', "query_string": b"q=\r\n", "headers": []}
    anyio.run(AccessLogMiddleware(answer), scope, _no_body, _discard)  # type: ignore[arg-type]
    [line] = logged(caplog)
    assert line.group("user", "target") == ("ev\\x20il\\x0a", "/a\\x0a\\x22x\\x22\\x20200\\x20\\xc3\\xa9/?q=\\x0d\\x0a")


async def _no_body() -> dict:
    return {"type": "http.request", "body": b""}


async def _discard(message: dict) -> None:
    return None


def test_a_stream_cut_short_is_logged_incomplete_with_what_was_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    headers = {"Authorization": "Token alice-token", "X-Mock-Fault": "drop_after_records=2"}
    with pytest.raises((ConnectionDroppedOnPurpose, httpx.TransportError)):
        send("POST", "/api/chat/stream/", json={"input": "Hello"}, headers=headers)
    [line] = logged(caplog)
    assert line.group("status", "records", "incomplete") == ("200", "2", " incomplete")


def test_stream_chunks_pass_through_before_the_next_one_is_made(caplog: pytest.LogCaptureFixture) -> None:
    """Never buffer a stream: the app only sends its second chunk once the first reached the client."""
    first_arrived = anyio.Event()
    received: list[bytes] = []

    async def streaming_app(scope: dict, receive: object, send: object) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        )  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b'{"a":1}\n', "more_body": True})  # type: ignore[operator]
        with anyio.fail_after(2):
            await first_arrived.wait()
        await send({"type": "http.response.body", "body": b'{"b":2}\n', "more_body": False})  # type: ignore[operator]

    async def client_send(message: dict) -> None:
        if message["type"] == "http.response.body":
            received.append(message["body"])
            first_arrived.set()

    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    scope = {"type": "http", "method": "POST", "path": "/s/", "query_string": b"", "headers": []}
    anyio.run(AccessLogMiddleware(streaming_app), scope, _no_body, client_send)  # type: ignore[arg-type]
    assert received == [b'{"a":1}\n', b'{"b":2}\n']
    [line] = logged(caplog)
    assert line.group("user", "target", "bytes", "records", "incomplete") == ("-", "/s/", "16", "2", None)


def test_uvicorns_invalid_request_warning_says_what_it_is() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.WARNING, __file__, 1, "Invalid HTTP request received.", (), None
    )
    assert _explain_invalid_requests(record) is True
    assert record.getMessage() == INVALID_REQUEST_NOTE
    other = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "something %s", ("else",), None)
    assert _explain_invalid_requests(other) and other.getMessage() == "something else"


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True], ids=["logged", "quiet"])
def test_serve_writes_the_access_log_to_stdout_unless_quiet(quiet: bool) -> None:
    """The real `serve` under uvicorn: our line per request on stdout, uvicorn's own access log off."""
    with served(["--quiet"] if quiet else []) as server:
        httpx.get(f"{server.base}/api/chat-threads/", headers={"Authorization": "Token alice-token"})
        httpx.post(
            f"{server.base}/api/chat/stream/", json={"input": "Hi"}, headers={"Authorization": "Token bob-token"}
        )
    lines = [line for line in server.stdout.splitlines() if '"' in line and "/api/" in line]
    if quiet:
        assert lines == []
        return
    json_line, stream_line = lines
    assert re.search(r' alice "GET /api/chat-threads/" 200 [\d.]+ms bytes=\d+$', json_line)
    assert re.search(r' bob "POST /api/chat/stream/" 200 [\d.]+ms bytes=\d+ records=\d+$', stream_line)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1 ", json_line)
    assert not [line for line in lines if "alice-token" in line or "bob-token" in line]
