"""The twelve chat operations, keyed by the spec's operationId."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from starlette.responses import Response

from mockserver.api.context import Call, Handler, registrar
from mockserver.api.filters import filter_messages, filter_threads, order_threads
from mockserver.api.pagination import paginate
from mockserver.api.rendering import json_response, no_content
from mockserver.api.serializers import message_json, quota_usage_json, restrict_fields, session_json, thread_json
from mockserver.api.streaming import WireStreamResponse
from mockserver.chat.deployment import PERIODS
from mockserver.chat.quota import ensure_may_set_quota, usage_subject, user_by_uuid
from mockserver.chat.service import StreamRequest
from mockserver.chat.tool_calls import execute_tool
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.engine.faults import Faults, FaultSyntaxError, parse_fault_header
from mockserver.errors import NotFound, ParseError
from mockserver.store import ChatStore, Thread, User
from mockserver.util import normalize_uuid

HANDLERS: dict[str, Handler] = {}


operation = registrar(HANDLERS)


# -- sessions -----------------------------------------------------------------
@operation("chat_sessions_list")
async def chat_sessions_list(call: Call) -> Response:
    user = call.authenticated()
    page, headers = paginate(call.store.sessions_visible_to(user), call.request.url)
    fields = call.request.query_params.getlist("field")
    return json_response([restrict_fields(session_json(s), fields) for s in page], headers=headers)


@operation("chat_sessions_current_retrieve")
async def chat_sessions_current_retrieve(call: Call) -> Response:
    user = call.authenticated()
    # Serialized without request context in Waldur, so `field` is ignored here.
    return json_response(session_json(call.store.get_or_create_session(user)))


@operation("chat_sessions_retrieve")
async def chat_sessions_retrieve(call: Call) -> Response:
    user = call.authenticated()
    session = call.store.session_visible_to(call.path_uuid(), user)
    if session is None:
        raise NotFound("No ChatSession matches the given query.")
    return json_response(restrict_fields(session_json(session), call.request.query_params.getlist("field")))


# -- threads ------------------------------------------------------------------
def visible_thread(call: Call, user: User) -> Thread:
    thread = call.store.thread_visible_to(call.path_uuid(), user)
    if thread is None:
        raise NotFound("No ThreadSession matches the given query.")
    return thread


@dataclass(frozen=True)
class ThreadShapes:
    """What a version's thread list and retrieve differ in; `thread_readers` is the one pair of handlers."""

    select: Callable[[Call, User], Sequence[Thread]]  # the caller's threads, the list's filters applied
    order: Callable[[Call, Sequence[Thread]], Sequence[Thread]]  # `o`
    to_json: Callable[[Thread, ChatStore], dict[str, Any]]


def thread_readers(shapes: ThreadShapes) -> dict[str, Handler]:
    async def chat_threads_list(call: Call) -> Response:
        user = call.authenticated()
        page, headers = paginate(shapes.order(call, shapes.select(call, user)), call.request.url)
        fields = call.request.query_params.getlist("field")
        return json_response([restrict_fields(shapes.to_json(t, call.store), fields) for t in page], headers=headers)

    async def chat_threads_retrieve(call: Call) -> Response:
        user = call.authenticated()
        data = shapes.to_json(visible_thread(call, user), call.store)
        return json_response(restrict_fields(data, call.request.query_params.getlist("field")))

    return {"chat_threads_list": chat_threads_list, "chat_threads_retrieve": chat_threads_retrieve}


THREADS_8_0_5 = ThreadShapes(
    select=lambda call, user: filter_threads(call.store.threads_newest_first(user), call.request.query_params),
    order=lambda call, threads: order_threads(threads, call.request.query_params.get("o")),
    to_json=thread_json,
)
HANDLERS.update(thread_readers(THREADS_8_0_5))


@operation("chat_threads_archive")
async def chat_threads_archive(call: Call) -> Response:
    user = call.authenticated()
    call.store.set_archived(visible_thread(call, user), True)
    return no_content()


@operation("chat_threads_unarchive")
async def chat_threads_unarchive(call: Call) -> Response:
    user = call.authenticated()
    call.store.set_archived(visible_thread(call, user), False)
    return no_content()


# -- messages -----------------------------------------------------------------
@operation("chat_messages_list")
async def chat_messages_list(call: Call) -> Response:
    user = call.authenticated()
    query = call.request.query_params
    thread = query.get("thread")
    visible = (
        call.store.thread_messages_visible_to(normalize_uuid(thread), user)
        if thread
        else call.store.messages_visible_to(user)
    )
    messages = filter_messages(visible, query)
    return json_response([message_json(m, user) for m in messages])


# -- quota and tools ------------------------------------------------------------


@operation("chat_quota_usage_retrieve")
async def chat_quota_usage_retrieve(call: Call) -> Response:
    viewer = call.authenticated()
    subject = usage_subject(viewer, call.request.query_params.get("user_uuid"), call.store.users)
    return json_response(quota_usage_json(call.services.chat.quota, subject.username, call.store.clock.now()))


@operation("chat_quota_set_quota")
async def chat_quota_set_quota(call: Call) -> Response:
    """Staff or support (403) before the body (400), as DRF checks permissions in `initial()`."""
    ensure_may_set_quota(call.authenticate())
    call.check.raise_for_errors()
    body = call.body()
    target = user_by_uuid(call.store.users, str(body["user_uuid"]))
    changes = {p: body[f"{p}_limit"] for p in PERIODS if f"{p}_limit" in body}
    call.services.chat.quota.set_limits(target.username, changes)  # type: ignore[arg-type]
    return Response(status_code=200)  # DRF's Response(status=200): empty body, no Content-Type


@operation("chat_tools_execute")
async def chat_tools_execute(call: Call) -> Response:
    user = call.authenticated()
    body = call.body()
    return json_response(execute_tool(call.services.tools, user.username, str(body["tool"]), body.get("arguments", {})))


# -- stream -------------------------------------------------------------------
STREAM_HEADERS = {
    # Not sent by the real server; they keep proxies (nginx, Vite) from buffering the stream.
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _optional_uuid(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    return normalize_uuid(value) if isinstance(value, str) and value else None


@operation("chat_stream")
async def chat_stream(call: Call) -> WireStreamResponse:
    """Checks in Waldur's order (section 2.2), then the NDJSON body."""
    chat = call.services.chat
    chat.ensure_enabled()
    user = call.authenticate()
    chat.ensure_upstream_configured()
    call.check.raise_for_errors()
    body = call.body()
    request = StreamRequest(
        input=str(body["input"]).strip(),
        thread_uuid=_optional_uuid(body, "thread_uuid"),
        update_thread_name=_optional_uuid(body, "update_thread_name"),
        mode=body.get("mode") or None,  # type: ignore[arg-type]
        edit_message_uuid=_optional_uuid(body, "edit_message_uuid"),
    )
    scenario, faults = mock_selectors(call, chat.engine.scenario_names())
    turn = chat.prepare(user, request, scenario=scenario, faults=faults)
    turn.request = replace(turn.request, warn=call.warn)  # the engine's warnings go to the journal
    return WireStreamResponse(chat.stream(turn), NDJSON_ENCODER, headers=STREAM_HEADERS)


def mock_selectors(call: Call, scenarios: list[str]) -> tuple[str | None, Faults]:
    """`X-Mock-Scenario` and `X-Mock-Fault`, refused with 400 before anything is stored."""
    headers = call.request.headers
    scenario = headers.get("x-mock-scenario") or None
    if scenario is not None and scenario not in scenarios:
        raise ParseError(f"Unknown X-Mock-Scenario {scenario!r}; known: {', '.join(scenarios)}.")
    try:
        faults = parse_fault_header(headers.get("x-mock-fault", ""))
    except FaultSyntaxError as exc:
        raise ParseError(f"Bad X-Mock-Fault header: {exc}.") from None
    return scenario, faults
