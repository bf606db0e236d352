"""The request journal (`GET /__mock__/requests`): headers, bodies, stream records, filters, redaction.

What a frontend test reads to assert what the frontend sent; every answer is checked against
the `RequestJournal` schema of spec/mock-control.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.control.journal import BODY_LIMIT, REDACTED, RecordCapture
from mockserver.engine.scripts import load_scripts_text
from mockserver.openapi.loader import CONTROL_SPEC, SpecIndex
from tests.support import Clients, clients_for

JOURNAL_SCHEMA = SpecIndex.from_file(CONTROL_SPEC).schema_validator("/components/schemas/RequestJournal")


def journal(clients: Clients, **params: Any) -> dict[str, Any]:
    response = clients.anonymous.get("/__mock__/requests", params=params)
    assert response.status_code == 200, response.text
    answer = response.json()
    problems = [f"{e.json_path}: {e.message}" for e in JOURNAL_SCHEMA.iter_errors(answer)]
    assert not problems, problems
    return answer


def only_entry(clients: Clients, **params: Any) -> dict[str, Any]:
    entries = journal(clients, **params)["requests"]
    assert len(entries) == 1, entries
    return entries[0]


def test_request_headers_and_json_body_are_kept(clients: Clients) -> None:
    """A frontend test can see the body and headers the client sent, with the token redacted."""
    clients.alice.post(
        "/api/chat/stream/",
        json={"input": "Hello"},
        headers={"Accept-Language": "et", "X-Mock-Scenario": "greeting"},
    )
    entry = only_entry(clients)
    request = entry["request"]
    assert json.loads(request["body"]) == {"input": "Hello"}
    assert request["body_bytes"] == len(request["body"].encode()) and request["body_truncated"] is False
    assert request["headers"]["accept-language"] == "et"
    assert request["headers"]["x-mock-scenario"] == "greeting"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["authorization"] == f"Token {REDACTED}"
    assert "alice-token" not in json.dumps(entry)


def test_stream_is_journaled_as_its_records(clients: Clients) -> None:
    """A stream's body is one parsed record per line, the same records the client received."""
    result = clients.alice.stream(input="Hello", headers={"X-Mock-Scenario": "code-block"})
    response = only_entry(clients)["response"]
    assert response["records"] == result.records
    assert response["body"] is None
    assert response["headers"]["content-type"] == "application/x-ndjson"
    assert response["body_bytes"] == len(result.response.content)
    assert response["body_truncated"] is False


def test_json_response_body_and_headers_are_kept(clients: Clients) -> None:
    answer = clients.alice.get("/api/chat-threads/", params={"page_size": "5"})
    response = only_entry(clients)["response"]
    assert json.loads(response["body"]) == answer.json()
    assert response["records"] is None
    assert response["headers"]["x-result-count"] == answer.headers["x-result-count"]


def test_a_dropped_stream_keeps_the_records_sent_before_the_cut(clients: Clients) -> None:
    """The journal follows the wire: after `drop_after_records=1` it holds exactly the thread `m`."""
    with pytest.raises(ConnectionDroppedOnPurpose):  # how the in-process transport sees the cut
        clients.alice.post("/api/chat/stream/", json={"input": "Hi"}, headers={"X-Mock-Fault": "drop_after_records=1"})
    records = only_entry(clients)["response"]["records"]
    assert len(records) == 1 and set(records[0]["m"]) == {"thread_uuid"}


def test_a_malformed_line_is_kept_as_text(clients: Clients) -> None:
    clients.alice.post(
        "/api/chat/stream/",
        json={"input": "Hello"},
        headers={"X-Mock-Fault": "malformed_line_after_records=1", "X-Mock-Scenario": "greeting"},
    )
    records = only_entry(clients)["response"]["records"]
    assert isinstance(records[1], str) and all(isinstance(r, dict) for r in records[:1] + records[2:])


def test_a_large_request_body_is_truncated_and_says_so(clients: Clients) -> None:
    """Bodies are bounded; the entry keeps the full size and marks the cut."""
    body = json.dumps({"input": "x" * (BODY_LIMIT * 2)})
    clients.alice.post("/api/chat/stream/", content=body, headers={"Content-Type": "application/json"})
    request = only_entry(clients, method="POST")["request"]
    assert request["body_truncated"] is True
    assert request["body_bytes"] == len(body)
    assert len(request["body"].encode()) <= BODY_LIMIT
    assert body.startswith(request["body"])


def test_record_capture_is_bounded_and_never_holds_a_partial_record() -> None:
    """Lines split across chunks are joined; once the budget is spent no more records are kept."""
    line = json.dumps({"k": "markdown", "c": "y" * 100}).encode() + b"\n"
    capture = RecordCapture()
    stream = line * (2 * BODY_LIMIT // len(line))
    for start in range(0, len(stream), 7):  # chunks that split lines anywhere
        capture.add(stream[start : start + 7])
    capture.finish()
    assert capture.body_truncated is True
    assert capture.body_bytes == len(stream)
    assert capture.records and all(r == json.loads(line) for r in capture.records)
    assert len(capture.records) * len(line) <= BODY_LIMIT


def test_x_auth_token_query_value_is_redacted(clients: Clients) -> None:
    """`?x-auth-token=` authenticates (Waldur's query form) but never appears in the journal."""
    answer = clients.anonymous.get("/api/chat-threads/", params={"x-auth-token": "alice-token", "page": "1"})
    assert answer.status_code == 200
    entry = only_entry(clients)
    assert entry["user"] == "alice"
    assert entry["query"] == f"x-auth-token={REDACTED}&page=1"
    assert "alice-token" not in json.dumps(entry)


def test_a_percent_encoded_token_key_is_redacted_too(clients: Clients) -> None:
    clients.anonymous.get("/api/chat-threads/?x%2Dauth%2Dtoken=alice-token")
    entry = only_entry(clients)
    assert entry["user"] == "alice" and "alice-token" not in json.dumps(entry)


def test_cookies_and_login_secrets_are_redacted(clients: Clients) -> None:
    """Cookie headers, and the password of a login body and the token of its answer."""
    clients.anonymous.post(
        "/api-auth/password/", json={"username": "alice", "password": "alice"}, headers={"Cookie": "sessionid=s3cret"}
    )
    entry = only_entry(clients)
    assert entry["request"]["headers"]["cookie"] == REDACTED
    assert json.loads(entry["request"]["body"]) == {"username": "alice", "password": REDACTED}
    assert "token" in json.loads(entry["response"]["body"])
    assert "alice-token" not in json.dumps(entry) and "s3cret" not in json.dumps(entry)


def test_form_login_password_is_redacted(clients: Clients) -> None:
    clients.anonymous.post("/api-auth/password/", data={"username": "alice", "password": "alice"})
    assert only_entry(clients)["request"]["body"] == f"username=alice&password={REDACTED}"


@pytest.fixture
def busy_journal(clients: Clients) -> Clients:
    clients.alice.get("/api/chat-threads/")
    clients.bob.get("/api/chat-threads/", params={"page_size": "3"})
    clients.alice.stream(input="Hello")
    clients.anonymous.get("/api/chat-messages/")
    clients.alice.get("/api/chat-sessions/current/")
    return clients


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"method": "post"}, [("POST", "/api/chat/stream/", "alice")]),
        (
            {"path": "/api/chat-threads/"},
            [("GET", "/api/chat-threads/", "alice"), ("GET", "/api/chat-threads/", "bob")],
        ),
        ({"path": "/api/chat-*"}, "all but the stream"),
        ({"user": "bob"}, [("GET", "/api/chat-threads/", "bob")]),
        (
            {"user": "alice", "method": "GET"},
            [("GET", "/api/chat-threads/", "alice"), ("GET", "/api/chat-sessions/current/", "alice")],
        ),
        ({"path": "/api/chat"}, []),  # exact unless it ends in `*`
    ],
)
def test_filters(busy_journal: Clients, params: dict[str, str], expected: Any) -> None:
    """`method` (any case), `path` (exact, or a prefix ending in `*`) and `user` combine; `count` counts matches."""
    answer = journal(busy_journal, **params)
    found = [(e["method"], e["path"], e["user"]) for e in answer["requests"]]
    if expected == "all but the stream":
        expected = [
            t
            for t in [(e["method"], e["path"], e["user"]) for e in journal(busy_journal)["requests"]]
            if t[1] != "/api/chat/stream/"
        ]
        assert len(expected) == 4
    assert found == expected
    assert answer["count"] == len(expected)


def test_filters_then_limit_keep_the_newest_matches_oldest_first(busy_journal: Clients) -> None:
    answer = journal(busy_journal, path="/api/chat-*", limit=2)
    assert [e["path"] for e in answer["requests"]] == ["/api/chat-messages/", "/api/chat-sessions/current/"]
    assert answer["count"] == 4
    seqs = [e["seq"] for e in answer["requests"]]
    assert seqs == sorted(seqs)


@pytest.fixture
def tiny_journal() -> Iterator[Clients]:
    app = create_app(ServerOptions(validate_responses=True, speed=0, journal_limit=2))
    with clients_for(app) as made:
        yield made
    assert not app.violations.drain()


def test_bound_still_holds_with_bodies(tiny_journal: Clients) -> None:
    for text in ("one", "two", "three"):
        tiny_journal.alice.stream(input=text)
    entries = journal(tiny_journal)["requests"]
    assert [json.loads(e["request"]["body"])["input"] for e in entries] == ["two", "three"]


def test_control_requests_are_not_journaled(app: MockApp, clients: Clients) -> None:
    clients.anonymous.get("/__mock__/config")
    clients.anonymous.request("PUT", "/__mock__/scripts", content=b"scripts: []", params={"allow_no_catch_all": "true"})
    assert journal(clients)["requests"] == []


PAUSED_SCRIPT = (
    "scripts:\n  - name: paused\n    match: {}\n    records:\n"
    "      - {k: markdown, c: before the pause}\n      - {delay_ms: 1500}\n      - {k: markdown, c: after}\n"
)


def test_stream_records_are_journaled_while_the_stream_runs() -> None:
    """The journal is written as lines pass: mid-stream it already holds the records sent so far."""
    app = create_app(ServerOptions(validate_responses=True, speed=1))
    app.replace_scripts(load_scripts_text(PAUSED_SCRIPT, "paused.yaml"))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            async with anyio.create_task_group() as group:
                group.start_soon(
                    lambda: http.post(
                        "/api/chat/stream/", json={"input": "Hi"}, headers={"Authorization": "Token alice-token"}
                    )
                )
                mid = await _first_entry_with_records(http, 2)
                group.cancel_scope.deadline = anyio.current_time() + 10
            done = (await http.get("/__mock__/requests")).json()["requests"][0]
        return mid, done

    mid, done = anyio.run(scenario)
    assert mid["duration_ms"] is None  # still streaming
    assert [r.get("c") for r in mid["response"]["records"]] == [None, "before the pause"]
    assert [r.get("c") for r in done["response"]["records"]] == [None, "before the pause", "after", None]
    assert not app.violations.drain()


async def _first_entry_with_records(http: httpx.AsyncClient, count: int) -> dict[str, Any]:
    with anyio.fail_after(5):
        while True:
            entries = (await http.get("/__mock__/requests")).json()["requests"]
            if entries and len(entries[0]["response"]["records"] or []) >= count:
                return entries[0]
            await anyio.sleep(0.02)


def test_the_spec_example_is_a_valid_journal() -> None:
    """The documented example keeps up with the schema it illustrates."""
    operation = SpecIndex.from_file(CONTROL_SPEC).document["paths"]["/__mock__/requests"]["get"]
    example = operation["responses"]["200"]["content"]["application/json"]["examples"]["two"]["value"]
    assert [e.message for e in JOURNAL_SCHEMA.iter_errors(example)] == []
    assert example["requests"][1]["query"].endswith(f"x-auth-token={REDACTED}")
