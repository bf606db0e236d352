"""Pure-ASGI request and response validation against the spec, without buffering streams.

Requests: the body is read once and replayed downstream (only for callers with a valid
token: Waldur authenticates before DRF reads a body); the operation's validators, compiled
at load with openapi-core's verdicts (openapi/compiled.py), check the parameters sent and
the body, and the result is left in `scope["state"]["request_check"]`
as a `RequestCheck` that the endpoint raises at the point where Waldur runs the same
check (for the stream: after the feature flag, authentication and upstream checks).

Responses (when enabled): JSON bodies are buffered and validated whole; bodies of a
sequential media type (NDJSON, SSE) pass through chunk by chunk, and every complete line
is checked as it goes by against the item schema under that media type in the spec.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.protocols import Validator
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.errors import ApiError, NotFound, ParseError, UnsupportedMediaType, ValidationFailed
from mockserver.openapi.bodies import media_type, parse_json, request_charset
from mockserver.openapi.compiled import BodyProblems, Finding, MissingBody, ParameterProblem, UnsupportedBodyType
from mockserver.openapi.drf_errors import body_errors, query_message
from mockserver.openapi.loader import HTTP_METHODS, Operation, SpecIndex
from mockserver.openapi.sequential import SEQUENTIAL_MEDIA_TYPES, LineGrammar, line_grammar, sequential_media_type

log = logging.getLogger("mockserver.validation")
FORM = "application/x-www-form-urlencoded"
# Set in the ASGI scope state by whoever injects a wire fault on purpose: from then on the
# response is known to break the spec, and is not reported as a violation.
WIRE_FAULT_FLAG = "wire_fault_injected"


def record_problems(validator: Validator, record: Any) -> list[str]:
    """Why a stream record breaks the schema, in words that name the real problem.

    The record schema is a oneOf of variants; "not valid under any of the given schemas"
    helps nobody, so report the errors of the variant the record came closest to.
    """
    errors = list(validator.iter_errors(record))
    if not errors:
        return []
    error = errors[0]
    if error.validator == "oneOf" and error.context:
        branches: dict[Any, list[SchemaError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        error = min(branches.values(), key=len)[0]
    where = error.json_path if error.json_path != "$" else "the record"
    return [f"{error.message} (at {where})"]


@dataclass
class RequestCheck:
    """The verdict of request validation, raised by the endpoint in Waldur's check order."""

    operation: Operation
    path_params: dict[str, str]
    body: Any = None
    error: ApiError | None = None
    path_error: ApiError | None = None

    @classmethod
    def empty(cls) -> RequestCheck:
        """For requests that match no operation (refused methods): nothing to report."""
        return cls(Operation("", "", ""), {})

    def raise_for_path(self) -> None:
        if self.path_error:
            raise self.path_error

    def raise_for_errors(self) -> None:
        self.raise_for_path()
        if self.error:
            raise self.error


@dataclass
class Violation:
    operation: str
    status: int
    message: str
    line: int | None = None


@dataclass
class ViolationLog:
    """Response-validation findings; the test suite fails on any of them."""

    entries: list[Violation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, violation: Violation) -> None:
        log.error("response violates the spec: %s", violation)
        with self._lock:
            self.entries.append(violation)

    def drain(self) -> list[Violation]:
        with self._lock:
            found, self.entries = self.entries, []
            return found


class _CoreRequest:
    """The request protocol openapi-core expects, built from an ASGI scope."""

    def __init__(self, scope: Scope, operation: Operation, path_params: dict[str, str], body: bytes):
        headers = Headers(scope=scope)
        self._headers = headers
        self._path_params = path_params
        # Empty query values mean "no filter" to django-filter and DRF: drop them before validation.
        # Starlette's QueryParams parsing, without building the multidict only to list it again.
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        self.query_pairs = [(k, v) for k, v in pairs if v != ""]
        self.host_url = "http://mock"
        self.path = scope["path"]
        self.path_pattern = operation.path
        self.method = operation.method.lower()
        self.body = body or None
        # The header as sent names the media type in a 415; openapi-core gets `type/subtype`
        # only (it raises on a parameter without `=`, and DRF ignores parameters anyway).
        self.content_type_header = headers.get("content-type") or "application/json"
        self.media_type, self.media_params = media_type(self.content_type_header)
        self.content_type = self.media_type

    @functools.cached_property
    def parameters(self) -> Any:
        """openapi-core's RequestParameters: built only when openapi-core validates."""
        from openapi_core.datatypes import RequestParameters

        # Authentication is ours (exact Waldur 401s); keep openapi-core's security check satisfied.
        raw_headers = [*self._headers.raw, (b"authorization", b"Token validated-elsewhere")]
        return RequestParameters(
            query=QueryParams(self.query_pairs), header=Headers(raw=raw_headers), path=self._path_params
        )


class _CoreResponse:
    def __init__(self, status: int, headers: Headers, body: bytes):
        self.status_code = status
        self.headers = headers
        self.data = body
        self.content_type = headers.get("content-type") or ""


class RequestValidator:
    """Validates with the operation's compiled validator, or with openapi-core where there is none.

    `compiled=False` validates everything with openapi-core: the reference the compiled
    validators are tested against.
    """

    def __init__(self, spec: SpecIndex, *, compiled: bool = True):
        self.spec = spec
        self.use_compiled = compiled

    def check(self, scope: Scope, operation: Operation, path_params: dict[str, str], body: bytes) -> RequestCheck:
        check = RequestCheck(operation, path_params)
        # DRF parses a body only when the view reads `request.data`: never for an operation
        # without a request body (a GET with a body is answered as if it had none).
        unread = operation.body_ignored or not operation.body_media_types
        request = _CoreRequest(scope, operation, path_params, b"" if unread else body)
        if request.body is not None:
            try:
                self._parse_body(request, operation, check)
            except ParseError as exc:
                check.error = exc
                return check
        field_errors: dict[str, list[str]] = {}
        for finding in self._findings(request, operation, check):
            self._absorb(finding, request, check, field_errors)
        if check.error is None and field_errors:
            check.error = ValidationFailed(field_errors)
        return check

    def _findings(self, request: _CoreRequest, operation: Operation, check: RequestCheck) -> list[Finding]:
        compiled = self.spec.compiled(operation) if self.use_compiled else None
        if compiled is None:
            found = map(_core_finding, self.spec.openapi.iter_request_errors(request))
            return [finding for finding in found if finding is not None]
        query: dict[str, list[str]] = {}
        for name, value in request.query_pairs:
            query.setdefault(name, []).append(value)
        media = None if request.body is None else request.content_type
        return compiled.findings(query, check.path_params, check.body, media)

    @staticmethod
    def _parse_body(request: _CoreRequest, operation: Operation, check: RequestCheck) -> None:
        """Parse JSON (or a form the operation accepts) as DRF does, strip trimmed fields, and
        hand openapi-core the normalised JSON so it validates what the view will see."""
        media = request.media_type
        raw = request.body or b""
        charset = request_charset(request.media_params)
        if media == FORM and FORM in operation.body_media_types:
            form = dict(_parse_form(raw, charset))
            # DRF's Field.get_value: in form data an empty value of a nullable field is null.
            check.body = {k: None if v == "" and k in operation.nullable_fields else v for k, v in form.items()}
        elif media == "application/json" or media.endswith("+json"):
            check.body = parse_json(raw, charset)
        else:
            return  # openapi-core answers for media types the operation does not take
        if isinstance(check.body, dict):
            for name in operation.trimmed_fields & check.body.keys():
                if isinstance(check.body[name], str):
                    check.body[name] = check.body[name].strip()
        request.body = json.dumps(check.body).encode()
        request.content_type = "application/json"

    def _absorb(self, finding: Finding, request: _CoreRequest, check: RequestCheck, out: dict[str, list[str]]) -> None:
        """Turn one finding into Waldur's answer: a 404, a 415, or per-field messages."""
        if isinstance(finding, ParameterProblem):
            if finding.location == "path":
                # DRF's get_object_or_404 turns a malformed lookup value into a plain 404.
                check.path_error = NotFound()
            elif finding.location == "query" and finding.name not in check.operation.lenient_params:
                raw = ",".join(value for name, value in request.query_pairs if name == finding.name)
                out.setdefault(finding.name, []).append(query_message(self._param_schema(check, finding), raw))
        elif isinstance(finding, MissingBody):
            found = body_errors(self._schema_errors_for({}, check), {})
            out.update(found or {})
            check.body = {}
        elif isinstance(finding, UnsupportedBodyType):
            check.error = UnsupportedMediaType(request.content_type_header)
        elif finding.errors:
            errors = [e for e in finding.errors if not _checked_by_view(e, check.operation)]
            out.update(body_errors(errors, check.body) or {})
        else:
            out.update(body_errors([], check.body) or {"non_field_errors": ["Invalid data."]})

    def _param_schema(self, check: RequestCheck, error: ParameterProblem) -> dict[str, Any]:
        item = self.spec.document["paths"][check.operation.path]
        params = [*item.get("parameters", []), *item[check.operation.method.lower()].get("parameters", [])]
        for param in map(self.spec.resolve, params):
            if param["name"] == error.name and param["in"] == error.location:
                schema = dict(self.spec.resolve(param.get("schema", {})))
                if "items" in schema:
                    schema["items"] = self.spec.resolve(schema["items"])
                return schema
        return {}

    def _schema_errors_for(self, body: Any, check: RequestCheck) -> list[SchemaError]:
        op = self.spec.document["paths"][check.operation.path][check.operation.method.lower()]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        pointer = schema["$ref"].removeprefix("#") if "$ref" in schema else None
        if pointer is None:
            return []
        return list(self.spec.schema_validator(pointer).iter_errors(body))


def _core_finding(error: Exception) -> Finding | None:
    """openapi-core's exception as a finding (None: nothing Waldur would report)."""
    from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
    from openapi_core.validation.request.exceptions import (
        InvalidRequestBody,
        MissingRequiredRequestBody,
        ParameterValidationError,
        RequestBodyValidationError,
    )
    from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

    if isinstance(error, ParameterValidationError):
        return ParameterProblem(error.location, error.name)
    if isinstance(error, MissingRequiredRequestBody):
        return MissingBody()
    if isinstance(error, RequestBodyValidationError):
        cause = error.__cause__
        if isinstance(cause, MediaTypeNotFound):
            return UnsupportedBodyType()
        if isinstance(cause, InvalidSchemaValue):
            return BodyProblems(tuple(cause.schema_errors))
        if isinstance(error, InvalidRequestBody):
            return BodyProblems(())
    return None


def _checked_by_view(error: SchemaError, operation: Operation) -> bool:
    """`x-waldur-view-checks`: the serializer accepts the value and the view answers for it
    (null stays the serializer's: DRF refuses it before any view code runs)."""
    field = str(error.path[0]) if len(error.path) == 1 else None
    refused_null = error.validator == "type" and error.instance is None
    return (field, error.validator) in operation.view_checks and not refused_null


# Django's DATA_UPLOAD_MAX_NUMBER_FIELDS and the message of its TooManyFieldsSent (a 400).
MAX_FORM_FIELDS = 1000


def _parse_form(raw: bytes, charset: str) -> list[tuple[str, str]]:
    """Django's QueryDict: decode with the charset (Latin-1 if that fails), then the pairs."""
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding=charset, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise ParseError("The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.") from None


class ValidationMiddleware:
    """Runs request validation for spec operations and, optionally, response validation."""

    def __init__(
        self,
        app: ASGIApp,
        spec: SpecIndex,
        *,
        validate_responses: bool = False,
        violations: ViolationLog | None = None,
        caller_known: Callable[[Scope], bool] = lambda scope: True,
    ):
        self.app = app
        self.spec = spec
        self.caller_known = caller_known
        self.open_operations = _open_operations(spec.document)
        self.requests = RequestValidator(spec)
        self.validate_responses = validate_responses
        if validate_responses:
            _ = spec.openapi  # built now, not on the first response
        self.violations = violations or ViolationLog()
        self.stream_items = _stream_item_schemas(spec)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.spec.find(scope["path"])
        operation = found[0].operations.get(scope["method"]) if found else None
        if found is None or operation is None:
            await self.app(scope, receive, send)
            return
        if operation.operation_id in self.open_operations or self.caller_known(scope):
            buffered = await buffer_request(receive)
            if buffered is None:
                return  # the client went away (or passed the body limit) before the body ended
            body, receive = buffered
            check = self.requests.check(scope, operation, found[1], body)
        else:
            # Waldur authenticates before DRF reads the body: an anonymous or bad token gets
            # its 401 without the body being read, parsed or validated (no work to be had).
            check = RequestCheck(operation, found[1])
        scope.setdefault("state", {})["request_check"] = check
        if self.validate_responses:
            send = _ResponseChecker(self, scope, operation, send).send
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class StreamItems:
    """The item schema of one operation's sequential media type, and its documented SSE event names."""

    validator: Validator
    event_names: frozenset[str]

    def grammar(self, media_type: str) -> LineGrammar:
        return line_grammar(media_type, lambda item: record_problems(self.validator, item), self.event_names)


def _stream_item_schemas(spec: SpecIndex) -> dict[tuple[str, str], StreamItems]:
    """(operationId, media type) -> item schema, compiled once at start-up for every stream response."""
    found: dict[tuple[str, str], StreamItems] = {}
    for path, item in spec.document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation.get("responses", {}).items():
                for media, content in spec.resolve(response).get("content", {}).items():
                    if media in SEQUENTIAL_MEDIA_TYPES and "schema" in content:
                        pointer = "/".join(
                            ["/paths", _escape(path), method, "responses", str(status), "content", _escape(media)]
                        )
                        found[(operation["operationId"], media)] = StreamItems(
                            spec.schema_validator(pointer + "/schema"), frozenset(content.get("x-stream-events", []))
                        )
    return found


def _escape(token: str) -> str:
    """A JSON Pointer reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def _open_operations(document: dict[str, Any]) -> frozenset[str]:
    """Operations whose security admits anonymous callers (none in Waldur's chat API)."""
    default = document.get("security", [])
    return frozenset(
        op["operationId"]
        for item in document.get("paths", {}).values()
        for method, op in item.items()
        if method in HTTP_METHODS and _admits_anonymous(op.get("security", default))
    )


def _admits_anonymous(requirements: list[dict[str, Any]]) -> bool:
    return not requirements or {} in requirements


async def buffer_request(receive: Receive) -> tuple[bytes, Receive] | None:
    """The whole body and a `receive` that replays it; None if the client left before its end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class _ResponseChecker:
    """Wraps `send`: validates JSON bodies whole and sequential bodies (NDJSON, SSE) line by line, in passing."""

    def __init__(self, owner: ValidationMiddleware, scope: Scope, operation: Operation, send: Send):
        self.owner = owner
        self.scope = scope
        self.operation = operation
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.streaming = False
        self.lines: LineGrammar | None = None
        self.pending = b""
        self.line_number = 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            media = sequential_media_type(content_type)
            items = self.owner.stream_items.get((self.operation.operation_id, media or ""))
            self.streaming = media is not None
            if media is not None and items is not None:
                self.lines = items.grammar(media)
            elif media is not None:
                self._report(f"undocumented stream media type {media!r}")
            if self.streaming:
                await self.downstream(message)
            return
        if message["type"] != "http.response.body":
            await self.downstream(message)
            return
        if self.streaming:
            self._check_lines(message.get("body", b""), final=not message.get("more_body", False))
            await self.downstream(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        await self._finish_buffered()

    def _check_lines(self, chunk: bytes, *, final: bool) -> None:
        if self.lines is None:
            return
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")
        for line in lines:
            self.line_number += 1
            for problem in self.lines.line(line):
                self._report(problem, line=self.line_number)
        if final:
            for problem in self.lines.end(self.pending):
                self._report(problem, line=self.line_number + 1)

    async def _finish_buffered(self) -> None:
        assert self.start is not None
        body = b"".join(self.chunks)
        headers = Headers(raw=self.start.get("headers", []))
        status = self.start["status"]
        request = _CoreRequest(self.scope, self.operation, self.scope["state"]["request_check"].path_params, b"")
        problems = [
            str(e.__cause__ or e)
            for e in self.owner.spec.openapi.iter_response_errors(request, _CoreResponse(status, headers, body))
        ]
        if problems:
            message = "; ".join(problems)[:2000]
            self._report(message)
            payload = json.dumps({"detail": f"Mock response violates the spec: {message}"}).encode()
            await self.downstream(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await self.downstream({"type": "http.response.body", "body": payload})
            return
        await self.downstream(self.start)
        await self.downstream({"type": "http.response.body", "body": body})

    def _report(self, message: str, line: int | None = None) -> None:
        if self.scope.get("state", {}).get(WIRE_FAULT_FLAG):
            return  # a fault asked for on purpose (malformed line, dropped connection)
        status = self.start["status"] if self.start else 0
        self.owner.violations.add(Violation(self.operation.operation_id, status, message, line))
