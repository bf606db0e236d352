"""The Waldur 8.1 chat operations: 8.0.5's table with the changed ones replaced and the new ones added.

Sessions, quota and tools are 8.0.5's handlers as they are; thread list and retrieve are 8.0.5's
handlers with 8.1's `ThreadShapes`. Threads and messages use the
8.1 shapes and filters; the stream runs 8.1's gates and turn (`mockserver.chat.turn_v8_1`).
System prompts are staff-managed state (any user reads them). The anonymous marketplace chat
is `mockserver.api.marketplace_chat`; its staff analytics (`/api/anonymous-chat-*`) are not served.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.responses import Response

from mockserver.api.context import Call, Handler, registrar
from mockserver.api.endpoints import HANDLERS as HANDLERS_8_0_5
from mockserver.api.endpoints import STREAM_HEADERS, ThreadShapes, mock_selectors, thread_readers
from mockserver.api.filters import filter_messages
from mockserver.api.marketplace_chat import HANDLERS as MARKETPLACE_CHAT_HANDLERS
from mockserver.api.pagination import paginate
from mockserver.api.rendering import json_response, no_content
from mockserver.api.shapes_v8_1 import (
    filter_messages_by_feedback,
    filter_threads,
    message_json,
    order_threads,
    stats_json,
    thread_json,
)
from mockserver.api.streaming import WireStreamResponse
from mockserver.chat.service import StreamRequest
from mockserver.chat.turn_v8_1 import Turn81, ensure_role_allowed, take_global_budget
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.errors import NotFound, PermissionDenied, ValidationFailed
from mockserver.store import Message, SystemPrompt, Thread, User
from mockserver.util import format_datetime, normalize_uuid

HANDLERS: dict[str, Handler] = dict(HANDLERS_8_0_5) | MARKETPLACE_CHAT_HANDLERS

FEEDBACK_ROLE_ERROR = "Feedback can only be given on assistant messages."
FEEDBACK_CATEGORY_ERROR = "Category can only be set for negative feedback."


operation = registrar(HANDLERS)


# -- threads ------------------------------------------------------------------
def _filtered_threads(call: Call, user: User) -> list[Thread]:
    return filter_threads(call.store.threads_visible_to(user), call.request.query_params, call.store, user)


THREADS_8_1 = ThreadShapes(
    select=_filtered_threads,
    order=lambda call, threads: order_threads(list(threads), call.request.query_params.get("o"), call.store),
    to_json=thread_json,
)
HANDLERS.update(thread_readers(THREADS_8_1))


@operation("chat_threads_stats_retrieve")
async def chat_threads_stats_retrieve(call: Call) -> Response:
    user = call.authenticated()
    return json_response(stats_json(_filtered_threads(call, user), call.store))


@operation("chat_threads_cancel")
async def chat_threads_cancel(call: Call) -> Response:
    """Owner only (staff included: another user's thread is 404); idempotent; 200, empty body."""
    user = call.authenticated()
    thread = call.store.thread_owned_by(call.path_uuid(), user)
    if thread is None:
        raise NotFound("No ThreadSession matches the given query.")
    call.store.request_cancel(thread)
    return Response(status_code=200)


# -- messages -----------------------------------------------------------------
@operation("chat_messages_list")
async def chat_messages_list(call: Call) -> Response:
    user = call.authenticated()
    query = call.request.query_params
    messages = filter_messages_by_feedback(filter_messages(call.store.messages_visible_to(user), query), query)
    return json_response([message_json(m, user) for m in messages])


def _own_message(call: Call, user: User) -> Message:
    try:
        # A body error hides openapi-core's path error, so a malformed uuid can still get here.
        wanted = call.path_uuid()
    except ValueError:
        raise NotFound("No Message matches the given query.") from None
    found = next(
        (m for m in call.store.messages_visible_to(user) if m.uuid == wanted and m.thread.owner.uuid == user.uuid),
        None,
    )
    if found is None:
        raise NotFound("No Message matches the given query.")
    return found


@operation("chat_messages_feedback")
async def chat_messages_feedback(call: Call) -> Response:
    """404 (not the caller's), then the body (400), then the role and category rules (400)."""
    user = call.authenticate()
    message = _own_message(call, user)
    call.check.raise_for_errors()
    body = call.body()
    if message.role != "assistant":
        raise ValidationFailed([FEEDBACK_ROLE_ERROR])
    score = bool(body["score"])
    category = body.get("category")
    if score and category is not None:
        raise ValidationFailed({"category": [FEEDBACK_CATEGORY_ERROR]})
    comment = body.get("comment")
    call.store.set_feedback(message, score, comment if isinstance(comment, str) else None, category)  # type: ignore[arg-type]
    return json_response(message_json(message, user))


# -- stream -------------------------------------------------------------------
def _optional_uuid(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    return normalize_uuid(value) if isinstance(value, str) and value else None


@operation("chat_stream")
async def chat_stream(call: Call) -> WireStreamResponse:
    """401, then (unlike 8.0.5) the body first: 415/400, 424, 403 role gate, 409 upstream, 429
    global budget, then 8.0.5's steps (quota 409, 404 thread, edit checks)."""
    chat = call.services.chat
    user = call.authenticate()
    call.check.raise_for_errors()
    body = call.body()
    chat.ensure_enabled()
    ensure_role_allowed(call.services.settings, user)
    chat.ensure_upstream_configured()
    request = StreamRequest(
        input=str(body["input"]).strip(),
        thread_uuid=_optional_uuid(body, "thread_uuid"),
        mode=body.get("mode") or None,  # type: ignore[arg-type]
        edit_message_uuid=_optional_uuid(body, "edit_message_uuid"),
    )
    scenario, faults = mock_selectors(call, chat.engine.scenario_names())
    take_global_budget(call.services.settings, call.store.clock.now())
    turn = chat.prepare(user, request, scenario=scenario, faults=faults)
    turn.request = replace(turn.request, warn=call.warn)
    items = Turn81(chat, turn, new_thread=request.thread_uuid is None).stream()
    return WireStreamResponse(items, NDJSON_ENCODER, headers=STREAM_HEADERS)


# -- system prompts -------------------------------------------------------------
SYSTEM_PROMPT_FIELDS = ("name", "description", "custom_instructions")


def system_prompt_json(prompt: SystemPrompt) -> dict[str, object]:
    return {
        "uuid": prompt.uuid,
        "name": prompt.name,
        "description": prompt.description,
        "custom_instructions": prompt.custom_instructions,
        "is_active": prompt.is_active,
        "created": format_datetime(prompt.created),
        "modified": format_datetime(prompt.modified),
    }


def _staff(call: Call) -> User:
    """Managing system prompts is staff-only (reading is open to any authenticated user).

    DRF checks permissions before it parses the body, so a non-staff caller gets 403 even
    with a bad body.
    """
    user = call.authenticate()
    if not user.is_staff:
        raise PermissionDenied()
    call.check.raise_for_errors()
    return user


def _system_prompt(call: Call) -> SystemPrompt:
    prompt = call.store.system_prompt(call.path_uuid())
    if prompt is None:
        raise NotFound("No SystemPrompt matches the given query.")
    return prompt


def _prompt_fields(call: Call) -> dict[str, str]:
    body = call.body()
    return {name: str(body[name]) for name in SYSTEM_PROMPT_FIELDS if name in body}


@operation("chat_system_prompts_list")
async def chat_system_prompts_list(call: Call) -> Response:
    call.authenticated()
    page, headers = paginate(call.store.system_prompts(), call.request.url)
    return json_response([system_prompt_json(p) for p in page], headers=headers)


@operation("chat_system_prompts_count")
async def chat_system_prompts_count(call: Call) -> Response:
    """HEAD: the list's headers, no body."""
    call.authenticated()
    _, headers = paginate(call.store.system_prompts(), call.request.url)
    return Response(status_code=200, headers=headers)


@operation("chat_system_prompts_retrieve")
async def chat_system_prompts_retrieve(call: Call) -> Response:
    call.authenticated()
    return json_response(system_prompt_json(_system_prompt(call)))


@operation("chat_system_prompts_create")
async def chat_system_prompts_create(call: Call) -> Response:
    _staff(call)
    fields = _prompt_fields(call)
    prompt = call.store.create_system_prompt(
        fields["name"], fields.get("description", ""), fields.get("custom_instructions", "")
    )
    return json_response(system_prompt_json(prompt), status=201)


async def _update(call: Call) -> Response:
    _staff(call)
    prompt = _system_prompt(call)
    call.store.update_system_prompt(prompt, **_prompt_fields(call))
    return json_response(system_prompt_json(prompt))


HANDLERS["chat_system_prompts_update"] = _update
HANDLERS["chat_system_prompts_partial_update"] = _update


@operation("chat_system_prompts_destroy")
async def chat_system_prompts_destroy(call: Call) -> Response:
    _staff(call)
    call.store.delete_system_prompt(_system_prompt(call))
    return no_content()


@operation("chat_system_prompts_activate")
async def chat_system_prompts_activate(call: Call) -> Response:
    _staff(call)
    prompt = _system_prompt(call)
    call.store.set_system_prompt_active(prompt, True)
    return json_response(system_prompt_json(prompt))


@operation("chat_system_prompts_deactivate")
async def chat_system_prompts_deactivate(call: Call) -> Response:
    _staff(call)
    prompt = _system_prompt(call)
    call.store.set_system_prompt_active(prompt, False)
    return json_response(system_prompt_json(prompt))
