"""The compiled request validators against openapi-core, the source of truth.

Every operation of the chat spec is compiled; a generated request (declared and unknown
parameters, repeated and empty values, good and bad formats, bodies of any JSON shape in
several media types) must get the same verdict from both: the same error class and body,
the same 404 for a malformed lookup value, the same normalised body.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockserver.openapi.loader import WALDUR_SPEC, Operation, SpecIndex
from mockserver.openapi.validation import RequestCheck, RequestValidator

SPEC = SpecIndex.from_file(WALDUR_SPEC)
FAST = RequestValidator(SPEC)
CORE = RequestValidator(SPEC, compiled=False)
OPERATIONS = [op for route in SPEC.routes for op in route.operations.values()]
UUID = "0f8fad5bd9cb469fa16570867728950e"

# Values that exercise every cast and format: good ones, near misses, and what Python's
# int()/float() accept that a stricter parser would not.
TRICKY_VALUES = [
    *["1", "0", "-1", "10", "300", "+3", " 7", "1_0", "1.5", "nan", "inf", "abc", "last", "١٢"],
    *["true", "false", "True", "FALSE", "yes", "no", "on", "off", "t", "f", "2", "3", "y"],
    *[UUID, UUID.upper(), "0f8fad5b-d9cb-469f-a165-70867728950e", UUID[:-1], "not-a-uuid", UUID + "\n"],
    *["2026-10-25", "2026-02-30", "10/25/2026", "2026-1-5"],
    *["created", "-created", "modified,-created", "created,bogus", "name", "uuid", "message_count"],
    *["none", "low", "critical", "HIGH", "x", "%", "a b", "é"],
]


def declared_names(operation: Operation) -> list[str]:
    item = SPEC.document["paths"][operation.path]
    params = [*item.get("parameters", []), *item[operation.method.lower()].get("parameters", [])]
    return [p["name"] for p in map(SPEC.resolve, params) if p["in"] == "query"]


@st.composite
def query_strings(draw: st.DrawFn, operation: Operation) -> bytes:
    names = [*declared_names(operation), "unknown", "format"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))  # few names: repeats
    values = st.one_of(st.sampled_from(TRICKY_VALUES), st.just(""), st.text(max_size=6))
    pairs = draw(st.lists(st.tuples(st.sampled_from(chosen), values), max_size=6))
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()


def body_schema_fields(operation: Operation) -> list[str]:
    spec_op = SPEC.document["paths"][operation.path][operation.method.lower()]
    content = SPEC.resolve(spec_op.get("requestBody", {})).get("content", {})
    schema = SPEC.resolve(content.get("application/json", {}).get("schema", {}))
    return list(schema.get("properties", {}))


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(TRICKY_VALUES),
    st.text(max_size=8),
)


@st.composite
def bodies(draw: st.DrawFn, operation: Operation) -> tuple[bytes, str | None]:
    fields = [*body_schema_fields(operation), "extra"]
    value = draw(
        st.one_of(
            st.dictionaries(st.sampled_from(fields), JSON_LEAVES | st.lists(JSON_LEAVES, max_size=3), max_size=5),
            JSON_LEAVES,
            st.lists(JSON_LEAVES, max_size=2),
        )
    )
    how = draw(st.sampled_from(["json", "json", "json", "empty", "garbage", "form", "text", "plus-json", "none"]))
    if how == "empty":
        return b"", "application/json"
    if how == "garbage":
        return b"{not json", "application/json"
    if how == "form" and isinstance(value, dict):
        pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()]
        return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode(), "application/x-www-form-urlencoded"
    raw = json.dumps(value).encode()
    media = {"text": "text/plain", "plus-json": "application/vnd.api+json; charset=utf-8", "none": None}
    return raw, media.get(how, "application/json")


@st.composite
def path_values(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([UUID, UUID.upper(), "0f8fad5b-d9cb-469f-a165-70867728950e", "nope", "1", UUID[:5]]))


def scope_for(operation: Operation, query: bytes, media: str | None, path_params: dict[str, str]) -> dict[str, Any]:
    path = re.sub(r"\{(\w+)\}", lambda m: path_params[m.group(1)], operation.path)
    headers = [(b"content-type", media.encode())] if media is not None else []
    return {"type": "http", "method": operation.method, "path": path, "query_string": query, "headers": headers}


def verdict(check: RequestCheck) -> tuple[Any, ...]:
    def described(error: Any) -> Any:
        return None if error is None else (type(error).__name__, getattr(error, "status_code", None), error.body)

    return described(check.error), described(check.path_error), check.body


def both(operation: Operation, query: bytes, body: bytes, media: str | None, path: dict[str, str]) -> RequestCheck:
    scope = scope_for(operation, query, media, path)
    fast = FAST.check(scope, operation, dict(path), body)
    core = CORE.check(scope, operation, dict(path), body)
    assert verdict(fast) == verdict(core), (operation.operation_id, query, body, media, path)
    return fast


def test_every_chat_operation_is_compiled() -> None:
    """Otherwise the fast path silently is not one: openapi-core would validate it per request."""
    assert [op.operation_id for op in OPERATIONS if SPEC.compiled(op) is None] == []


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.operation_id)
def test_compiled_verdicts_equal_openapi_core(operation: Operation) -> None:
    names = re.findall(r"\{(\w+)\}", operation.path)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        query=query_strings(operation),
        payload=bodies(operation),
        path=st.lists(path_values(), min_size=len(names), max_size=len(names)),
    )
    def check(query: bytes, payload: tuple[bytes, str | None], path: list[str]) -> None:
        both(operation, query, payload[0], payload[1], dict(zip(names, path, strict=True)))

    check()


def op(operation_id: str) -> Operation:
    return SPEC.operation(operation_id)


def errors_of(check: RequestCheck) -> Any:
    return None if check.error is None else check.error.body


def test_absent_optional_parameters_are_not_checked() -> None:
    assert errors_of(both(op("chat_threads_list"), b"", b"", None, {})) is None
    assert errors_of(both(op("chat_threads_list"), b"page_size=&created=&user=", b"", None, {})) is None


def test_repeated_parameters_use_openapi_cores_value() -> None:
    """A scalar takes its last value; a list (`field`) every value; the message names them all."""
    listing = op("chat_threads_list")
    assert errors_of(both(listing, b"user=bad&user=" + UUID.encode(), b"", None, {})) is None
    assert errors_of(both(listing, b"user=" + UUID.encode() + b"&user=bad", b"", None, {})) == {
        "user": ["Enter a valid UUID."]
    }
    assert errors_of(both(listing, b"o=created&o=bogus", b"", None, {})) == {
        "o": ["Select a valid choice. bogus is not one of the available choices."]
    }
    assert errors_of(both(listing, b"field=uuid&field=nope", b"", None, {})) is None  # lenient: ignored


def test_bad_formats_in_query_and_path() -> None:
    listing = op("chat_threads_list")
    assert errors_of(both(listing, b"created=2026-02-30", b"", None, {})) == {"created": ["Enter a valid date."]}
    assert errors_of(both(listing, b"max_severity=HIGH", b"", None, {})) == {
        "max_severity": ["Select a valid choice. HIGH is not one of the available choices."]
    }
    retrieve = both(op("chat_threads_retrieve"), b"", b"", None, {"uuid": "nope"})
    assert retrieve.path_error is not None and retrieve.path_error.status_code == 404
    assert both(op("chat_threads_retrieve"), b"", b"", None, {"uuid": UUID.upper()}).path_error is None


def test_bad_bodies() -> None:
    stream = op("chat_stream")
    missing = both(stream, b"", b"", "application/json", {})
    assert errors_of(missing) == {"input": ["This field is required."]}
    wrong_type = both(stream, b"", b'{"input": 5}', "application/json", {})
    assert errors_of(wrong_type) == {"input": ["Not a valid string."]}
    not_a_dict = both(stream, b"", b"[1]", "application/json", {})
    assert errors_of(not_a_dict) == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}
    unsupported = both(stream, b"", b"input=hi", "text/plain", {})
    assert type(unsupported.error).__name__ == "UnsupportedMediaType"
    assert errors_of(both(stream, b"", b"{bad", "application/json", {}))["detail"].startswith("JSON parse error")
