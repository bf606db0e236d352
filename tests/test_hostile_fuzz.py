"""Property-based raw-HTTP fuzzer: hypothesis writes request bytes, a real socket carries them
to a uvicorn-served mock (run with `serve`'s limits), and every answer must be an answer.

Over every operation of the spec (plus the refused route, homeport's boot endpoints and the
control API's reads), with hostile paths, queries, headers, bodies and encodings: newlines,
NULs, lone surrogates, bad and truncated percent escapes, duplicate parameters, malformed
Content-Types, NaN, BOMs, UTF-16, deep nesting, oversized bodies and headers.

Asserted for every request: no 5xx, no traceback or source path in the body, an answer within
TIMEOUT seconds; after every write (and once at the end): every user's lists and the control
API still answer 200; at the end: no error was logged and no answer broke the spec.

Deterministic (derandomized) by default, so CI runs the same examples every time; set
HOSTILE_FUZZ_EXAMPLES=2000 HOSTILE_FUZZ_RANDOM=1 to explore further.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from urllib.parse import quote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockserver.api.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.openapi.loader import WALDUR_SPEC, SpecIndex
from tests.rawhttp import LEAK, exchange, http_scope, request_bytes, served

READS = (b"GET ", b"HEAD ", b"OPTIONS ")
TIMEOUT = 5.0  # seconds; streams run at speed 0, so any real answer takes milliseconds
TOKENS = ["alice-token", "bob-token", "staff-token", "support-token"]
EXAMPLES = int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "500"))

SPEC = SpecIndex.from_file(WALDUR_SPEC)
TARGETS = sorted(
    {(op.method, route.template) for route in SPEC.routes for op in route.operations.values()}
    | {
        ("GET", "/api/chat-messages/{uuid}/"),  # refused by the real router
        ("GET", "/api/users/me/"),
        ("POST", "/api-auth/password/"),
        ("GET", "/api/configuration/"),
        ("GET", "/__mock__/config"),
        ("GET", "/__mock__/requests"),
        ("GET", "/__mock__/health"),
    }
)
QUERY_NAMES = sorted(
    {
        p["name"]
        for item in SPEC.document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for p in map(SPEC.resolve, [*item.get("parameters", []), *op.get("parameters", [])])
        if p.get("in") == "query"
    }
    | {"x-auth-token", "limit"}
)
BODY_FIELDS = ["input", "thread_uuid", "update_thread_name", "mode", "edit_message_uuid", "username", "password"]

PIECES = [
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\x00",
    "\x7f",
    "\ud800",
    "\udfff",
    "\ud83d\ude00",
    "\u2028",
    "\ufeff",
    "ü",
    "%",
    "%0A",
    "%0a",
    "%00",
    "%ZZ",
    "%E2%82",
    "%ED%A0%80",
    "%C0%AE",
    "%25",
    "%2F",
    "..",
    "/",
    "//",
    "?",
    "#",
    ";",
    "=",
    "&",
    "+",
    '"',
    "'",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "<script>",
    " ",
    "null",
    "true",
    "-1",
    "0",
    "1e400",
    "NaN",
    "reload",
    "edit",
    "last",
    "-created",
    "6d3c1ad36c7b4bc5a1a4a3b0c2f0a001",
    "6d3c1ad3-6c7b-4bc5-a1a4-a3b0c2f0a002",
    "a" * 300,
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=punycode",
    "application/json; charset",
    "application/json;;",
    "text/plain; x",
    ";",
    "",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=x",
    "application/merge-patch+json",
    "*/*",
    "application/json; =x",
    'application/json; charset="',
    "application/x-ndjson",
]
AUTHORIZATIONS = [
    None,
    *(f"Token {t}" for t in TOKENS),
    "Token",
    "Token a b",
    "token alice-token",
    "Bearer alice-token",
    "Token expired-or-unknown",
    "Token \x7f",
    "Basic YWxpY2U6YWxpY2U=",
]


def hostile_text(max_pieces: int = 6) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=max_pieces).map("".join)


def encoded(text: str, how: str) -> bytes:
    """Text as it may appear in a request target: percent-encoded, or raw (even if invalid)."""
    if how == "quoted":
        return quote(text.encode("utf-8", "surrogatepass"), safe="%/=&?;").encode("ascii")
    return text.encode("utf-8", "surrogatepass")


@st.composite
def path_bytes(draw: st.DrawFn, template: str, uuids: list[str]) -> bytes:
    suffix = draw(st.sampled_from(["", "", "", "%0A", "\n", "%00", "/", "%", "%ZZ"]))
    how = draw(st.sampled_from(["quoted", "quoted", "raw"]))
    if "{uuid}" not in template:
        return encoded(template, how) + encoded(suffix, how)
    value = draw(st.one_of(st.sampled_from(uuids), hostile_text())) + suffix
    return encoded(template.replace("{uuid}", value), how)


@st.composite
def query_bytes(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), hostile_text(3)), max_size=5))
    if draw(st.booleans()) and pairs:
        pairs.append(pairs[0])  # duplicate parameter
    how = draw(st.sampled_from(["quoted", "quoted", "raw"]))
    query = b"&".join(encoded(name, how) + b"=" + encoded(value, how) for name, value in pairs)
    return b"?" + query if query else b""


def json_value(depth: int = 2) -> st.SearchStrategy[object]:
    scalars = st.one_of(
        hostile_text(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none()
    )
    if depth == 0:
        return scalars
    return st.one_of(scalars, st.lists(json_value(depth - 1), max_size=3))


@st.composite
def body_bytes(draw: st.DrawFn, uuids: list[str]) -> bytes:
    kind = draw(st.sampled_from(["none", "json", "json", "json", "form", "binary", "deep", "bom", "utf16", "huge"]))
    fields = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(BODY_FIELDS), hostile_text(2)),
            st.one_of(st.sampled_from(uuids), json_value()),
            max_size=5,
        )
    )
    document = json.dumps(fields)  # allow_nan and ensure_ascii: NaN and `\ud800` escapes on the wire
    if kind == "none":
        return b""
    if kind == "json":
        return document.encode()
    if kind == "form":
        return b"&".join(encoded(str(k), "quoted") + b"=" + encoded(str(v), "quoted") for k, v in fields.items())
    if kind == "binary":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        depth = draw(st.sampled_from([255, 257, 1000, 50_000]))
        return b'{"input": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bom":
        return "\ufeff".encode() + document.encode()
    if kind == "utf16":
        return document.encode("utf-16")
    return b'{"input": "' + b" " * draw(st.sampled_from([60_000, MAX_BODY_BYTES + 1])) + b'x"}'


@st.composite
def raw_requests(draw: st.DrawFn, uuids: list[str]) -> bytes:
    """Half of the requests are hostile everywhere; the other half are well-formed except for
    their values, so that they get past authentication and parsing into the chat domain."""
    if draw(st.booleans()):
        return draw(careful_requests(uuids))
    method, template = draw(st.sampled_from(TARGETS))
    method = draw(st.sampled_from([method, method, method, "GET", "POST", "OPTIONS", "HEAD", "DELETE", "BREW"]))
    target = draw(path_bytes(template, uuids)) + draw(query_bytes())
    headers: list[tuple[str, str | bytes]] = []
    authorization = draw(st.sampled_from(AUTHORIZATIONS))
    if authorization is not None:
        headers.append(("Authorization", authorization))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    for name in draw(st.lists(st.sampled_from(["X-Mock-Scenario", "Accept", "Origin", "X-Custom"]), max_size=2)):
        headers.append((name, encoded(draw(hostile_text(3)), "raw")))
    if draw(st.integers(0, 30)) == 0:
        headers.append(("X-Big", "b" * draw(st.sampled_from([MAX_HEADER_BYTES // 2, MAX_HEADER_BYTES + 1]))))
    body = draw(body_bytes(uuids))
    if body and draw(st.integers(0, 5)) == 0:
        headers.append(("Transfer-Encoding", "chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return request_bytes(method, target, headers, body)


@st.composite
def careful_requests(draw: st.DrawFn, uuids: list[str]) -> bytes:
    method, template = draw(st.sampled_from(TARGETS))
    target = encoded(template.replace("{uuid}", draw(st.sampled_from(uuids))), "quoted") + draw(query_bytes())
    token = draw(st.sampled_from(TOKENS))
    fields = draw(
        st.fixed_dictionaries(
            {"input": st.one_of(hostile_text(), st.sampled_from(["hi", "hello there", "show my resources"]))},
            optional={
                "thread_uuid": st.sampled_from(uuids),
                "update_thread_name": st.sampled_from(uuids),
                "mode": st.sampled_from(["reload", "edit", None]),
                "edit_message_uuid": st.sampled_from(uuids),
            },
        )
    )
    if draw(st.booleans()):
        content_type, body = "application/json", json.dumps(fields).encode()
    else:
        content_type = "application/x-www-form-urlencoded"
        body = b"&".join(encoded(k, "quoted") + b"=" + encoded(str(v or ""), "quoted") for k, v in fields.items())
    headers: list[tuple[str, str | bytes]] = [("Authorization", f"Token {token}"), ("Content-Type", content_type)]
    return request_bytes(method, target, headers, body if method != "GET" else b"")


class _Errors(logging.Handler):
    """Collects what the server logs at ERROR: a crash mid-stream is no 5xx but is a failure."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[MockApp, int, list[str]]]:
    app = create_app(ServerOptions(validate_responses=True, speed=0))
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("mockserver", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(errors)
    with served(app, log_level="error") as port:
        uuids = _seed_threads(port)
        yield app, port, uuids
    for logger in loggers:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records][:5]
    assert not app.violations.drain()


def _seed_threads(port: int) -> list[str]:
    """A thread for alice and bob, and their messages' uuids: real targets for the lookups."""
    found: list[str] = []
    for token in TOKENS[:2]:
        request = request_bytes(
            "POST",
            "/api/chat/stream/",
            [("Authorization", f"Token {token}"), ("Content-Type", "application/json")],
            b'{"input": "hello"}',
        )
        lines = [json.loads(line) for line in exchange(port, request).body.splitlines()]
        found += [lines[0]["m"]["thread_uuid"], *lines[-1]["m"].values()]
    return found


def assert_every_view_answers(port: int) -> None:
    for token in TOKENS:
        for path in ("/api/chat-threads/", "/api/chat-messages/?include_history=true", "/api/chat-sessions/"):
            response = exchange(port, request_bytes("GET", path, [("Authorization", f"Token {token}")]))
            assert response.status == 200, (token, path, response.body[:200])
            json.loads(response.body)
    for path in ("/__mock__/config", "/__mock__/requests?limit=5"):
        response = exchange(port, request_bytes("GET", path, []))
        assert response.status == 200, (path, response.body[:200])
        json.loads(response.body)


@pytest.mark.slow
def test_no_raw_request_breaks_the_mock(fuzzed: tuple[MockApp, int, list[str]]) -> None:
    _, port, uuids = fuzzed

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("HOSTILE_FUZZ_RANDOM"),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=raw_requests(uuids))
    def check(request: bytes) -> None:
        response = exchange(port, request, timeout=TIMEOUT)
        assert response.status < 500, (response.status, response.body[:300], request[:300])
        leak = LEAK.search(response.body)
        assert leak is None or leak.group() in request, (response.body[:300], request[:300])
        if not request.startswith(READS):  # only a write can leave a view broken
            assert_every_view_answers(port)

    check()
    assert_every_view_answers(port)


# Keys whose values cannot slow the mock down (`speed` and `faults` can, on purpose).
CONFIG_KEYS = ["injection_allowlist", "token_limits", "token_usage", "history_limit", "system_token_limits"]


@st.composite
def config_patches(draw: st.DrawFn) -> bytes:
    keys = st.one_of(st.sampled_from(CONFIG_KEYS), hostile_text(2))
    value = st.one_of(
        json_value(),
        st.lists(hostile_text(), max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(["alice", "daily_limit", "daily"]), hostile_text(2)), json_value()),
    )
    return json.dumps(draw(st.dictionaries(keys, value, max_size=3))).encode()


@pytest.mark.slow
def test_no_config_patch_breaks_the_mock(fuzzed: tuple[MockApp, int, list[str]]) -> None:
    """The control API is unauthenticated by design: any JSON it accepts must keep it answering."""
    _, port, _ = fuzzed

    @settings(
        max_examples=EXAMPLES // 12,  # each example also streams and checks every view
        deadline=None,
        database=None,
        derandomize=not os.environ.get("HOSTILE_FUZZ_RANDOM"),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(patch=config_patches())
    def check(patch: bytes) -> None:
        headers = [("Content-Type", "application/json")]
        response = exchange(port, request_bytes("PATCH", "/__mock__/config", headers, patch), timeout=TIMEOUT)
        assert response.status in (200, 400), (response.status, response.body[:300], patch[:300])
        assert_every_view_answers(port)
        stream = request_bytes(
            "POST", "/api/chat/stream/", [("Authorization", "Token alice-token"), *headers], b'{"input": "hi"}'
        )
        assert exchange(port, stream, timeout=TIMEOUT).status in (200, 409)  # 409: a token limit reached

    check()
    assert exchange(port, request_bytes("POST", "/__mock__/reset", [])).status == 204


# -- ASGI level: what other servers may pass on (h11 refuses it before the application) --------
@st.composite
def asgi_scopes(draw: st.DrawFn) -> dict[str, object]:
    method, template = draw(st.sampled_from(TARGETS))
    path = template.replace("{uuid}", draw(hostile_text())) + draw(st.sampled_from(["", "\n", "\ud800", "\x00"]))
    raw_path = draw(st.one_of(st.just(encoded(path, "quoted")), st.binary(max_size=40).map(lambda b: b"/api/" + b)))
    headers = [(b"authorization", draw(st.sampled_from([b"Token alice-token", b"Token staff-token", b"\xff\x00"])))]
    headers += draw(
        st.lists(
            st.tuples(st.sampled_from([b"content-type", b"x-mock-scenario", b"host"]), st.binary(max_size=30)),
            max_size=3,
        )
    )
    query = draw(st.one_of(query_bytes(), st.binary(max_size=40))).lstrip(b"?")
    return http_scope(method, path, raw_path, query, headers)


@pytest.mark.slow
def test_no_asgi_scope_breaks_the_mock() -> None:
    """Bytes no HTTP/1.1 parser of ours lets through (non-ASCII targets, NULs in headers, a
    path with a lone surrogate): the application itself must still answer, never raise."""
    app = create_app(ServerOptions(validate_responses=True, speed=0))

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("HOSTILE_FUZZ_RANDOM")
    )
    @given(scope=asgi_scopes(), body=st.binary(max_size=60))
    def check(scope: dict[str, object], body: bytes) -> None:
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        anyio.run(app, scope, receive, send)
        assert sent[0]["type"] == "http.response.start"
        assert sent[0]["status"] < 500, sent
        assert not any(LEAK.search(m.get("body", b"")) for m in sent[1:])  # type: ignore[arg-type]

    check()
    assert not app.violations.drain()
