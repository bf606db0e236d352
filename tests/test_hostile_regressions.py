"""One regression test per class of hostile input that used to answer 500 or cost unbounded
work, over raw HTTP to a uvicorn-served mock (httpx refuses to send much of this).

Each class is fixed at its root: the one text check (NUL, lone surrogates), the one uuid
check (fullmatch), the one body reader (DRF's JSON parser), the Content-Type parser, the
request limits, and authentication before the body is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from mockserver.api.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.control.api import BODY_LIMITS as CONTROL_BODY_LIMITS
from mockserver.openapi.bodies import MAX_JSON_DEPTH
from tests.rawhttp import LEAK, RawResponse, exchange, http_scope, request_bytes, served

TOKENS = {"alice": "alice-token", "bob": "bob-token", "staff": "staff-token", "support": "support-token"}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
JSON = ("Content-Type", "application/json")
FORM = ("Content-Type", "application/x-www-form-urlencoded")
UNKNOWN_UUID = "6d3c1ad36c7b4bc5a1a4a3b0c2f0a0ff"
ALICE_UUID = "6d3c1ad36c7b4bc5a1a4a3b0c2f0a001"


@pytest.fixture(scope="module")
def mock() -> Iterator[tuple[MockApp, int]]:
    app = create_app(ServerOptions(validate_responses=True, speed=0))
    with served(app) as port:
        yield app, port


@pytest.fixture
def port(mock: tuple[MockApp, int]) -> Iterator[int]:
    """A fresh state per test; any answer outside the spec fails the test that caused it."""
    app, port = mock
    app.reset()
    app.violations.drain()
    yield port
    assert not app.violations.drain()


def auth(user: str = "alice") -> tuple[str, str]:
    return ("Authorization", f"Token {TOKENS[user]}")


def call(
    port: int,
    method: str,
    target: str | bytes,
    headers: list[tuple[str, str | bytes]] | None = None,
    body: bytes = b"",
) -> RawResponse:
    response = exchange(port, request_bytes(method, target, headers or [], body))
    assert response.status < 500, (response.status, response.body[:300])
    assert not LEAK.search(response.body), response.body[:300]
    return response


def post_json(port: int, path: str, payload: str, user: str | None = "alice") -> RawResponse:
    """`payload` is JSON text written by hand, so it can hold escapes such as `\\ud800`."""
    headers: list[tuple[str, str | bytes]] = [JSON, *([auth(user)] if user else [])]
    return call(port, "POST", path, headers, payload.encode())


def new_thread(port: int) -> str:
    response = post_json(port, "/api/chat/stream/", '{"input": "hello"}')
    assert response.status == 200, response.body
    return json.loads(response.body.splitlines()[0])["m"]["thread_uuid"]


def assert_every_list_answers(port: int) -> None:
    for user in TOKENS:
        for path in ("/api/chat-threads/", "/api/chat-messages/", "/api/chat-sessions/"):
            response = call(port, "GET", path, [auth(user)])
            assert response.status == 200, (user, path, response.body[:200])
            response.json()
    assert call(port, "GET", "/__mock__/config").status == 200


# -- stored text that cannot be encoded -------------------------------------------------------
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\udc00y"])
def test_lone_surrogate_in_input_is_refused_and_every_view_still_answers(port: int, escape: str) -> None:
    code = json.loads(f'"{escape}"').strip("xy")
    response = post_json(port, "/api/chat/stream/", f'{{"input": "hi {escape}"}}')
    assert (response.status, response.json()) == (
        400,
        {"input": [f"Surrogate characters are not allowed: U+{ord(code):X}."]},
    )
    assert_every_list_answers(port)


def test_surrogate_in_a_title_call_leaves_the_thread_name_and_list_intact(port: int) -> None:
    thread = new_thread(port)
    payload = f'{{"input": "\\ud83d title", "update_thread_name": "{thread}"}}'
    response = post_json(port, "/api/chat/stream/", payload)
    assert response.status == 400
    assert response.json() == {"input": ["Surrogate characters are not allowed: U+D83D."]}
    threads = call(port, "GET", "/api/chat-threads/", [auth()]).json()
    assert [t["name"] for t in threads] == ["New chat"]
    assert_every_list_answers(port)


def test_nul_and_surrogate_are_both_reported_as_drf_does(port: int) -> None:
    response = post_json(port, "/api/chat/stream/", '{"input": "a\\u0000b\\ud800"}')
    assert response.json() == {
        "input": ["Null characters are not allowed.", "Surrogate characters are not allowed: U+D800."]
    }


def test_a_paired_surrogate_escape_is_ordinary_text(port: int) -> None:
    response = post_json(port, "/api/chat/stream/", '{"input": "smile \\ud83d\\ude00"}')
    assert response.status == 200
    messages = call(port, "GET", "/api/chat-messages/", [auth()]).json()
    assert messages[0]["content"] == "smile \U0001f600"


def test_a_surrogate_echoed_in_an_error_message_is_escaped_not_a_500(port: int) -> None:
    thread = new_thread(port)
    response = post_json(port, "/api/chat/stream/", f'{{"input": "x", "thread_uuid": "{thread}", "mode": "\\ud800"}}')
    assert response.status == 400
    assert response.json() == {"mode": ['"\ud800" is not a valid choice.']}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ('{"injection_allowlist": ["ok", "\\udc00"]}', "injection_allowlist"),
        ('{"token_limits": {"\\ud800": {"daily_limit": 5}}}', "token_limits"),
        ('{"token_usage": {"al\\udbffice": {"daily": 5}}}', "token_usage"),
    ],
)
def test_surrogates_are_refused_by_the_control_api_too(port: int, patch: str, field: str) -> None:
    before = call(port, "GET", "/__mock__/config").json()
    response = call(port, "PATCH", "/__mock__/config", [JSON], patch.encode())
    assert response.status == 400
    assert list(response.json()) == [field]
    assert response.json()[field][0].startswith("Surrogate characters are not allowed: U+D")
    assert call(port, "GET", "/__mock__/config").json() == before


# -- identifiers with a trailing newline ------------------------------------------------------
NOT_FOUND = {"detail": "Not found."}


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/chat-threads/{}/"),
        ("POST", "/api/chat-threads/{}/archive/"),
        ("POST", "/api/chat-threads/{}/unarchive/"),
        ("GET", "/api/chat-sessions/{}/"),
    ],
)
@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%0a", "%00", "%20"])
def test_a_path_uuid_with_a_trailing_control_character_is_a_malformed_lookup(
    port: int, method: str, template: str, suffix: str
) -> None:
    thread = new_thread(port)
    session = call(port, "GET", "/api/chat-sessions/current/", [auth()]).json()["uuid"]
    target = session if "sessions" in template else thread
    response = call(port, method, template.format(target + suffix), [auth()])
    assert (response.status, response.json()) == (404, NOT_FOUND)
    assert call(port, method, template.format(target), [auth()]).status in (200, 204)


def test_a_newline_after_the_last_slash_matches_no_route(port: int) -> None:
    response = call(port, "GET", "/api/chat-sessions/current/%0A", [auth()])
    assert response.status == 404


@pytest.mark.parametrize(("path", "name"), [("/api/chat-threads/", "user"), ("/api/chat-messages/", "thread")])
@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00"])
def test_a_query_uuid_with_a_trailing_newline_is_refused_like_any_malformed_uuid(
    port: int, path: str, name: str, suffix: str
) -> None:
    response = call(port, "GET", f"{path}?{name}={ALICE_UUID}{suffix}", [auth("staff")])
    assert (response.status, response.json()) == (400, {name: ["Enter a valid UUID."]})


@pytest.mark.parametrize("field", ["thread_uuid", "update_thread_name", "edit_message_uuid"])
@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_body_uuid_with_a_trailing_newline_is_not_a_valid_uuid(port: int, field: str, encoding: str) -> None:
    thread = new_thread(port)
    fields = {"input": "x", field: thread + "\n"}
    if field == "edit_message_uuid":
        fields.update(thread_uuid=thread, mode="edit")
    if encoding == "json":
        headers, body = [JSON, auth()], json.dumps(fields).encode()
    else:
        headers, body = [FORM, auth()], "&".join(f"{k}={v.replace(chr(10), '%0A')}" for k, v in fields.items()).encode()
    response = call(port, "POST", "/api/chat/stream/", headers, body)
    assert (response.status, response.json()) == (400, {field: ["Must be a valid UUID."]})


# -- malformed headers and bodies -------------------------------------------------------------
MALFORMED_CONTENT_TYPES = ["text/plain; x", ";", "application/json; =x", 'application/json; charset="', "a/b;;;c"]


@pytest.mark.parametrize("content_type", MALFORMED_CONTENT_TYPES)
def test_a_malformed_content_type_gets_401_without_credentials(port: int, content_type: str) -> None:
    response = call(port, "POST", "/api/chat/stream/", [("Content-Type", content_type)], b'{"input": "x"}')
    assert (response.status, response.json()) == (401, NO_CREDENTIALS)


@pytest.mark.parametrize("content_type", MALFORMED_CONTENT_TYPES)
def test_a_malformed_content_type_is_parsed_leniently_as_django_does(port: int, content_type: str) -> None:
    response = call(port, "POST", "/api/chat/stream/", [("Content-Type", content_type), auth()], b'{"input": "x"}')
    if content_type.startswith("application/json"):
        assert response.status == 200  # the parameter without `=` is skipped, the type is JSON
    else:
        assert (response.status, response.json()) == (
            415,
            {"detail": f'Unsupported media type "{content_type}" in request.'},
        )


def nested(depth: int) -> bytes:
    return b'{"input": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"


def test_json_nested_thousands_deep_gets_401_first_then_a_parse_error(port: int) -> None:
    body = nested(100_000)
    anonymous = call(port, "POST", "/api/chat/stream/", [JSON], body)
    assert (anonymous.status, anonymous.json()) == (401, NO_CREDENTIALS)
    known = call(port, "POST", "/api/chat/stream/", [JSON, auth()], body)
    assert (known.status, known.json()) == (
        400,
        {"detail": f"JSON parse error - nesting deeper than {MAX_JSON_DEPTH} levels"},
    )
    assert call(port, "POST", "/api/chat/stream/", [JSON, auth()], nested(MAX_JSON_DEPTH - 1)).status == 200


@pytest.mark.parametrize("path", ["/__mock__/config", "/api-auth/password/"])
def test_deep_json_is_no_500_on_the_other_json_readers(port: int, path: str) -> None:
    method = "PATCH" if path.startswith("/__mock__") else "POST"
    # 20,000 levels: past Python's recursion limit, and within the control API's 64 KiB patch limit.
    response = call(port, method, path, [JSON], b"[" * 20_000 + b"]" * 20_000)
    assert response.status in (400, 401)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"input": NaN}', "Out of range float values are not JSON compliant: 'NaN'"),
        (b'{"input": "x", "n": -Infinity}', "Out of range float values are not JSON compliant: '-Infinity'"),
        ('\ufeff{"input": "x"}'.encode(), "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"),
        ('{"input": "x"}'.encode("utf-16"), "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)
@pytest.mark.parametrize("path", ["/api/chat/stream/", "/__mock__/config"])
def test_json_drf_refuses_is_refused(port: int, body: bytes, reason: str, path: str) -> None:
    method, headers = ("POST", [JSON, auth()]) if path.startswith("/api") else ("PATCH", [JSON])
    response = call(port, method, path, headers, body)
    assert (response.status, response.json()) == (400, {"detail": f"JSON parse error - {reason}"})


def test_a_declared_charset_is_honoured_as_django_does(port: int) -> None:
    headers = [("Content-Type", "application/json; charset=utf-16"), auth()]
    response = call(port, "POST", "/api/chat/stream/", headers, '{"input": "grüße"}'.encode("utf-16"))
    assert response.status == 200
    assert call(port, "GET", "/api/chat-messages/", [auth()]).json()[0]["content"] == "grüße"


def test_a_charset_python_decodes_in_quadratic_time_is_not_honoured(port: int) -> None:
    headers = [("Content-Type", "application/json; charset=punycode"), auth()]
    response = call(port, "POST", "/api/chat/stream/", headers, b"a-" + b"9" * 400_000)
    assert response.status == 400
    assert response.seconds < 2


def test_a_form_with_more_fields_than_django_allows_is_a_400(port: int) -> None:
    body = b"input=x&" + b"&".join(b"f%d=1" % i for i in range(1001))
    response = call(port, "POST", "/api/chat/stream/", [FORM, auth()], body)
    assert response.status == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]


# -- unbounded work before authentication ----------------------------------------------------
TOO_LARGE = {"detail": f"Request body too large: the limit is {MAX_BODY_BYTES} bytes."}


def test_a_declared_body_above_the_limit_is_413_before_anything_is_read(port: int) -> None:
    head = request_bytes("POST", "/api/chat/stream/", [JSON, ("Content-Length", str(52 * 2**20))])
    response = exchange(port, head)  # the 52 MB are never sent: the answer cannot wait for them
    assert (response.status, response.json()) == (413, TOO_LARGE)
    assert response.seconds < 1


def chunked(total: int, piece: int = 65536) -> bytes:
    chunks = [b"%x\r\n%s\r\n" % (piece, b" " * piece) for _ in range(total // piece + 1)]
    return b"".join(chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("method", "path", "headers", "limit"),
    [
        ("POST", "/api/chat/stream/", [JSON, auth()], MAX_BODY_BYTES),
        ("PATCH", "/__mock__/config", [JSON], CONTROL_BODY_LIMITS["/__mock__/config"]),
        ("PUT", "/__mock__/scripts", [("Content-Type", "application/yaml")], CONTROL_BODY_LIMITS["/__mock__/scripts"]),
    ],
)
def test_a_chunked_body_past_the_limit_is_413_and_nothing_is_acted_on(
    port: int, method: str, path: str, headers: list[tuple[str, str]], limit: int
) -> None:
    request = request_bytes(method, path, [*headers, ("Transfer-Encoding", "chunked")], chunked(limit + 1))
    response = exchange(port, request)
    assert (response.status, response.json()) == (
        413,
        {"detail": f"Request body too large: the limit is {limit} bytes."},
    )
    assert call(port, "GET", "/api/chat-messages/", [auth()]).json() == []


def test_a_body_at_the_limit_is_read(port: int) -> None:
    payload = b'{"input": "x", "pad": "' + b" " * (MAX_BODY_BYTES - 30) + b'"}'
    assert len(payload) <= MAX_BODY_BYTES
    assert call(port, "POST", "/api/chat/stream/", [JSON, auth()], payload).status == 200


def asgi_call(
    app: MockApp,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    body: bytes = b"",
    query: bytes = b"",
    raw_path: bytes | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Call the application directly with a scope no HTTP/1.1 parser of ours would produce.

    Returns the messages sent and a record of every `receive` call."""
    asked: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append("receive")
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = raw_path if raw_path is not None else path.encode("utf-8", "surrogatepass")
    scope = http_scope(method, path, raw, query, headers)
    anyio.run(app, scope, receive, send)
    return sent, asked


def test_an_anonymous_body_is_never_read() -> None:
    """ASGI level: for a caller without valid credentials the app never asks for the body."""
    app = create_app(ServerOptions(speed=0))
    for authorization in (None, b"Token wrong-token", b"Token"):
        headers = [(b"content-type", b"application/json")]
        if authorization is not None:
            headers.append((b"authorization", authorization))
        sent, asked = asgi_call(app, "POST", "/api/chat/stream/", headers, body=b"[" * 100_000)
        assert sent[0]["status"] == 401
        assert asked == []
    sent, asked = asgi_call(app, "POST", "/api/chat/stream/", [(b"authorization", b"Token alice-token")], body=b"{}")
    assert sent[0]["status"] == 400
    assert asked == ["receive"]  # the control: a known caller's body is read


# -- found by the fuzzer ----------------------------------------------------------------------
def test_a_get_with_a_body_is_answered_as_if_it_had_none(port: int) -> None:
    """DRF never parses the body of a view that does not read `request.data`."""
    response = call(port, "GET", "/api/chat-sessions/", [JSON, auth()], b"{not json")
    assert response.status == 200


def test_a_request_target_outside_ascii_is_a_400_under_any_server() -> None:
    """h11 refuses it itself; another server would pass it on, and Starlette then failed on it."""
    app = create_app(ServerOptions(speed=0))
    sent, _ = asgi_call(
        app, "GET", "/api/chat-sessions/current", [(b"authorization", b"Token alice-token")], query=b"x=\xff"
    )
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "detail": "Invalid request target: bytes outside ASCII must be percent-encoded."
    }


def test_the_slash_redirect_escapes_what_it_cannot_spell() -> None:
    app = create_app(ServerOptions(speed=0))
    headers = [(b"authorization", b"Token alice-token")]
    sent, _ = asgi_call(app, "GET", "/api/chat-sessions/\ud800", headers, raw_path=b"/api/chat-sessions/%ED%A0%80")
    assert sent[0]["status"] == 301
    assert dict(sent[0]["headers"])[b"location"].endswith(b"/api/chat-sessions/%ED%A0%80/")


def test_a_huge_header_is_refused_at_once(port: int) -> None:
    request = request_bytes("GET", "/api/chat-threads/", [auth(), ("X-Big", "a" * 64 * 2**20)])
    response = exchange(port, request)
    assert response.status == 400
    assert response.seconds < 2


@pytest.mark.parametrize(("size", "status"), [(MAX_HEADER_BYTES // 2, 200), (MAX_HEADER_BYTES + 100, 400)])
def test_the_head_limit_is_exact_whatever_arrives_in_one_read(port: int, size: int, status: int) -> None:
    response = call(port, "GET", "/api/chat-threads/", [auth(), ("X-Big", "a" * size)])
    assert response.status == status
    if status == 400:
        assert response.json() == {
            "detail": f"Request line and headers too large: the limit is {MAX_HEADER_BYTES} bytes."
        }
