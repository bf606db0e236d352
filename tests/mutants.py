"""Deliberately broken variants of the mock ("mutants") that the contract suite must catch.

Each mutant is a bug a real implementation of the chat API could plausibly have, injected
into one fresh `MockApp` only: either an ASGI wrapper around `app.asgi` that changes what
goes over the wire (status, headers, JSON bodies, stream bytes), or a monkeypatch of a
store or service method on that instance. Nothing here touches the mock's code, so a
mutant can never leak into another test.

A mutant also says which part of the suite must catch it (`Profile`, kept small so the
whole file stays fast) and which check names diagnose it (`catches`).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.app import MockApp
from mockserver.openapi.loader import WALDUR_SPEC
from mockserver.store import Message as Row
from mockserver.store import Thread, User

Headers = list[tuple[bytes, bytes]]
Query = list[tuple[str, str]]
STREAM = "/api/chat/stream/"
INJECTION_FIELDS = {
    "is_flagged": True,
    "injection_score": 0.0,
    "injection_severity": "none",
    "injection_categories": [],
}


# -- how a mutant is checked -------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """Which part of the suite runs against a mutant, and how hard.

    `paths` narrows the spec given to the suite to those paths (schema part only): the
    schema part's coverage phase costs 10-20 s over the whole spec whatever max_examples is,
    and an operation the mutant does not touch cannot catch it anyway.
    """

    only: tuple[str, ...]
    max_examples: int = 1
    paths: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        narrowed = f"[{','.join(self.paths)}]" if self.paths else ""
        return f"{'+'.join(self.only)}{narrowed}-x{self.max_examples}"


STREAM_PART = Profile(only=("stream",))
BEHAVIOUR_PART = Profile(only=("behaviour",), max_examples=10)  # verify's default
CONFIGURATION_PART = Profile(only=("configuration",))
SCHEMA_SESSIONS = Profile(
    only=("schema",), max_examples=2, paths=("/api/chat-sessions/current/", "/api/chat-sessions/{uuid}/")
)


@dataclass(frozen=True)
class Mutant:
    id: str
    bug: str  # what is wrong, in the words of a bug report
    injection: str  # how the bug is put into the mock
    catches: tuple[str, ...]  # check names that diagnose it; the first is the one the suite reports today
    profile: Profile
    inject: Callable[[MockApp], ASGIApp]  # returns the ASGI app the suite is run against
    gap: str | None = None  # why the suite misses it today (the test is then a strict xfail)


# -- ASGI plumbing -------------------------------------------------------------------
@dataclass
class Answer:
    """A complete response as a wrapper sees it (streams are buffered whole), with the request body."""

    status: int
    headers: Headers
    body: bytes
    request: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.headers if k.lower() == wanted), None)

    def without(self, name: str) -> Headers:
        wanted = name.lower().encode()
        return [(k, v) for k, v in self.headers if k.lower() != wanted]


def _path(scope: Scope) -> str:
    return str(scope.get("path", ""))


def _token(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"authorization":
            parts = value.decode("latin-1").split()
            return parts[1] if len(parts) == 2 else None
    return None


class Rewrite:
    """Buffers the answer to matching requests and sends `change(scope, answer)` instead.

    Content-Length is recomputed when the body changes, so clients read the new body whole.
    """

    def __init__(self, app: ASGIApp, when: Callable[[Scope], bool], change: Callable[[Scope, Answer], Answer]):
        self.app = app
        self.when = when
        self.change = change

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.when(scope):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        request: list[bytes] = []

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.append(message.get("body", b""))
            return message

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receiving, capture)
        original = Answer(start["status"], list(start.get("headers", [])), b"".join(chunks), b"".join(request))
        answer = self.change(scope, original)
        headers = answer.headers
        if answer.body != original.body and answer.header("content-length") is not None:
            headers = [*answer.without("content-length"), (b"content-length", str(len(answer.body)).encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})


class RewriteQuery:
    """Changes the query string of matching requests before the app sees it."""

    def __init__(self, app: ASGIApp, when: Callable[[Scope], bool], change: Callable[[Query], Query]):
        self.app = app
        self.when = when
        self.change = change

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.when(scope):
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            scope = {**scope, "query_string": urlencode(self.change(query)).encode("latin-1")}
        await self.app(scope, receive, send)


class ShortCircuit:
    """Answers matching requests itself (a JSON error) before the app sees them."""

    def __init__(
        self, app: ASGIApp, when: Callable[[Scope], bool], status: int, detail: str, headers: Headers | None = None
    ):
        self.app = app
        self.when = when
        self.status = status
        self.body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
        self.headers = [(b"content-type", b"application/json"), *(headers or [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.when(scope):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def _json_body(change: Callable[[Any], Any]) -> Callable[[Scope, Answer], Answer]:
    """A body rewrite for JSON answers (other answers pass unchanged)."""

    def rewrite(scope: Scope, answer: Answer) -> Answer:
        if not (answer.header("content-type") or "").startswith("application/json"):
            return answer
        body = json.dumps(change(json.loads(answer.body)), ensure_ascii=False, separators=(",", ":")).encode()
        return Answer(answer.status, answer.headers, body, answer.request)

    return rewrite


def _stream_lines(change: Callable[[list[bytes]], list[bytes]]) -> Callable[[Scope, Answer], Answer]:
    """A rewrite of a 200 stream's newline-terminated lines (errors before streaming pass)."""

    def rewrite(scope: Scope, answer: Answer) -> Answer:
        if answer.status != 200:
            return answer
        lines = answer.body.split(b"\n")[:-1]
        return Answer(answer.status, answer.headers, b"".join(line + b"\n" for line in change(lines)), answer.request)

    return rewrite


def _is_stream(scope: Scope) -> bool:
    return scope["method"] == "POST" and _path(scope) == STREAM


def _is_messages(scope: Scope) -> bool:
    return scope["method"] == "GET" and _path(scope) == "/api/chat-messages/"


def _is_thread_list(scope: Scope) -> bool:
    return scope["method"] == "GET" and _path(scope) == "/api/chat-threads/"


def _compact(record: Any) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _staff(app: MockApp) -> User:
    return next(u for u in app.store.users if u.sees_everything)


# -- wire mutants (ASGI wrappers) ----------------------------------------------------
def archive_answers_200(app: MockApp) -> ASGIApp:
    """DRF action written as `return Response({"status": "archived"})`: 200 with a body."""

    def change(scope: Scope, answer: Answer) -> Answer:
        if answer.status != 204:
            return answer
        return Answer(200, [*answer.headers, (b"content-type", b"application/json")], b'{"status":"archived"}')

    return Rewrite(app.asgi, lambda s: s["method"] == "POST" and _path(s).endswith("/archive/"), change)


def anonymous_gets_403(app: MockApp) -> ASGIApp:
    """DRF's classic: an authentication class without `authenticate_header` turns 401 into 403."""

    def change(scope: Scope, answer: Answer) -> Answer:
        if answer.status != 401:
            return answer
        return Answer(403, answer.without("www-authenticate"), answer.body)

    return Rewrite(app.asgi, lambda s: True, change)


def session_created_as_timestamp(app: MockApp) -> ASGIApp:
    """A serializer that emits `created` as a Unix timestamp instead of an ISO 8601 string."""

    def change(data: Any) -> Any:
        for row in data if isinstance(data, list) else [data]:
            if isinstance(row, dict) and isinstance(row.get("created"), str):
                row["created"] = 1767225600.123456
        return data

    return Rewrite(
        app.asgi, lambda s: s["method"] == "GET" and _path(s).startswith("/api/chat-sessions/"), _json_body(change)
    )


def link_header_dropped(app: MockApp) -> ASGIApp:
    """A proxy or a hand-written paginator that forgets the `Link` header."""
    return Rewrite(app.asgi, _is_thread_list, lambda s, a: Answer(a.status, a.without("link"), a.body))


def result_count_of_page(app: MockApp) -> ASGIApp:
    """`X-Result-Count` counts the page instead of the whole filtered list."""

    def change(scope: Scope, answer: Answer) -> Answer:
        if answer.status != 200:
            return answer
        count = str(len(json.loads(answer.body))).encode()
        return Answer(answer.status, [*answer.without("x-result-count"), (b"x-result-count", count)], answer.body)

    return Rewrite(app.asgi, _is_thread_list, change)


def include_history_ignored(app: MockApp) -> ASGIApp:
    """The message filterset lacks `include_history`: replaced rows are never listed."""
    return RewriteQuery(app.asgi, _is_messages, lambda q: [(k, v) for k, v in q if k != "include_history"])


def page_size_ignored(app: MockApp) -> ASGIApp:
    """The paginator lacks `page_size_query_param`: every page has the default size."""
    return RewriteQuery(app.asgi, _is_thread_list, lambda q: [(k, v) for k, v in q if k != "page_size"])


def is_archived_filter_ignored(app: MockApp) -> ASGIApp:
    """The thread filterset lacks `is_archived`: archived and active threads are listed alike."""
    return RewriteQuery(app.asgi, _is_thread_list, lambda q: [(k, v) for k, v in q if k != "is_archived"])


def injection_fields_for_everyone(app: MockApp) -> ASGIApp:
    """The staff-only injection fields are serialized for every user."""

    def change(data: Any) -> Any:
        return [{**INJECTION_FIELDS, **row} for row in data] if isinstance(data, list) else data

    return Rewrite(app.asgi, _is_messages, _json_body(change))


def staff_without_injection_fields(app: MockApp) -> ASGIApp:
    """The staff check in the message serializer never matches: staff miss the injection fields."""

    def change(data: Any) -> Any:
        if not isinstance(data, list):
            return data
        return [{k: v for k, v in row.items() if k not in INJECTION_FIELDS} for row in data]

    return Rewrite(app.asgi, lambda s: _is_messages(s) and _token(s) == _staff(app).token, _json_body(change))


def stream_without_final_m(app: MockApp) -> ASGIApp:
    """The generator returns before yielding the message-uuids `m` record."""
    return Rewrite(app.asgi, _is_stream, _stream_lines(lambda lines: lines[:-1]))


def stream_unterminated(app: MockApp) -> ASGIApp:
    """Records joined with "\\n" as a separator: the last line has no terminator."""

    def change(scope: Scope, answer: Answer) -> Answer:
        body = answer.body.removesuffix(b"\n") if answer.status == 200 else answer.body
        return Answer(answer.status, answer.headers, body)

    return Rewrite(app.asgi, _is_stream, change)


def record_before_thread_m(app: MockApp) -> ASGIApp:
    """The thread `m` record is written after the first upstream chunk instead of first."""
    return Rewrite(app.asgi, _is_stream, _stream_lines(lambda lines: [lines[1], lines[0], *lines[2:]]))


def stream_not_compact(app: MockApp) -> ASGIApp:
    """Records serialized with `json.dumps` defaults: spaces after `:` and `,`."""
    loosen = _stream_lines(lambda lines: [json.dumps(json.loads(line)).encode() for line in lines])
    return Rewrite(app.asgi, _is_stream, loosen)


def stream_content_type_charset(app: MockApp) -> ASGIApp:
    """A framework default appends `; charset=utf-8` to the NDJSON content type."""

    def change(scope: Scope, answer: Answer) -> Answer:
        if answer.status != 200:
            return answer
        headers = [*answer.without("content-type"), (b"content-type", b"application/x-ndjson; charset=utf-8")]
        return Answer(answer.status, headers, answer.body)

    return Rewrite(app.asgi, _is_stream, change)


def final_m_announces_unsaved_uuid(app: MockApp) -> ASGIApp:
    """The final `m` record carries a uuid generated before saving, not the stored row's uuid."""

    def swap(lines: list[bytes]) -> list[bytes]:
        final = json.loads(lines[-1])
        final["m"]["assistant_message_uuid"] = uuid.uuid4().hex
        return [*lines[:-1], _compact(final)]

    return Rewrite(app.asgi, _is_stream, _stream_lines(swap))


def title_call_with_thread_m(app: MockApp) -> ASGIApp:
    """The view writes the thread `m` record first for every stream, title calls included."""

    def change(scope: Scope, answer: Answer) -> Answer:
        thread = json.loads(answer.request or b"{}").get("update_thread_name")
        if answer.status != 200 or not thread:
            return answer
        opening = _compact({"m": {"thread_uuid": thread}}) + b"\n"
        return Answer(answer.status, answer.headers, opening + answer.body, answer.request)

    return Rewrite(app.asgi, _is_stream, change)


def auth_before_feature_flag(app: MockApp) -> ASGIApp:
    """The feature flag is checked in the view, after DRF authenticated: 401 where Waldur says 424."""
    return ShortCircuit(
        app.asgi,
        lambda s: _is_stream(s) and _token(s) is None,
        401,
        "Authentication credentials were not provided.",
        [(b"www-authenticate", b"Token")],
    )


def upstream_before_auth(app: MockApp) -> ASGIApp:
    """The upstream configuration is checked before authentication: 409 where Waldur says 401."""
    return ShortCircuit(
        app.asgi,
        lambda s: _is_stream(s) and not app.settings.upstream_url_configured,
        409,
        "LLM inference API URL is not configured.",
    )


# -- state mutants (monkeypatches on one instance) ------------------------------------
def message_count_off_by_one(app: MockApp) -> ASGIApp:
    """`message_count` also counts the system prompt."""
    count = app.store.message_count
    app.store.message_count = lambda thread: count(thread) + 1  # type: ignore[method-assign]
    return app


def message_count_active_only(app: MockApp) -> ASGIApp:
    """`message_count` counts active rows only, although Waldur counts replaced rows too."""
    rows = app.store.thread_messages
    app.store.message_count = lambda thread: sum(m.is_active for m in rows(thread))  # type: ignore[method-assign]
    return app


def foreign_thread_visible(app: MockApp) -> ASGIApp:
    """The detail route's queryset is not filtered by owner: any thread is retrievable by uuid."""
    visible, staff = app.store.thread_visible_to, _staff(app)
    app.store.thread_visible_to = lambda thread_uuid, viewer: visible(thread_uuid, staff)  # type: ignore[method-assign]
    return app


def foreign_messages_visible(app: MockApp) -> ASGIApp:
    """The message list's queryset is not filtered by owner: `?thread=` shows anyone's rows."""
    visible, in_thread, staff = app.store.messages_visible_to, app.store.thread_messages_visible_to, _staff(app)
    app.store.messages_visible_to = lambda viewer: visible(staff)  # type: ignore[method-assign]
    app.store.thread_messages_visible_to = lambda uuid, viewer: in_thread(uuid, staff)  # type: ignore[method-assign]
    return app


def reload_deletes_replaced(app: MockApp) -> ASGIApp:
    """Reload deletes the old assistant row and inserts a fresh one, instead of keeping both.

    As with `old.delete()` and a nullable foreign key: the new row replaces nothing any more.
    The store has no delete, hence its private lists (all, per thread, per owner).
    """
    finish, store = app.chat._finish, app.store

    def finished(turn: Any, text: str, tokens: int) -> Any:
        record = finish(turn, text, tokens)
        old: Row | None = turn.replaced_assistant
        if turn.kind == "reload" and old is not None and old.replaced_by is not None:
            old.replaced_by.replaces = None
            for rows in (
                store._messages,
                store._messages_of_thread[old.thread.uuid],
                store._messages_of_owner[old.thread.owner.uuid],
            ):
                rows.remove(old)
        return record

    app.chat._finish = finished  # type: ignore[method-assign]
    return app


def archive_not_persisted(app: MockApp) -> ASGIApp:
    """Archive answers 204 but the flag is never saved (e.g. `save(update_fields=["modified"])`)."""
    set_archived = app.store.set_archived
    app.store.set_archived = lambda thread, archived: set_archived(  # type: ignore[method-assign]
        thread, thread.is_archived and archived
    )
    return app


def unarchive_keeps_archived(app: MockApp) -> ASGIApp:
    """Unarchive touches the thread but never clears `is_archived`."""
    set_archived = app.store.set_archived
    app.store.set_archived = lambda thread, archived: set_archived(  # type: ignore[method-assign]
        thread, thread.is_archived or archived
    )
    return app


def edit_any_active_user_message(app: MockApp) -> ASGIApp:
    """The "last user message" check only asks whether the edited row is still active."""
    store, store_user_side = app.store, app.chat._store_user_side
    last_active = store.last_active

    def lenient(user: User, thread: Thread, body: Any, detection: Any) -> Any:
        edited = store.message_in_thread(body.edit_message_uuid or "", thread) if body.mode == "edit" else None
        if edited is None or edited.role != "user" or not edited.is_active:
            return store_user_side(user, thread, body, detection)
        store.last_active = lambda thread, role: edited if role == "user" else last_active(thread, role)  # type: ignore[method-assign]
        try:
            return store_user_side(user, thread, body, detection)
        finally:
            store.last_active = last_active  # type: ignore[method-assign]

    app.chat._store_user_side = lenient  # type: ignore[method-assign]
    return app


def assistant_saved_empty(app: MockApp) -> ASGIApp:
    """The assistant row is saved before the reply is accumulated: its content stays empty."""
    add = app.store.add_message

    def add_message(thread: Thread, role: Any, content: str, sequence_index: int, **kwargs: Any) -> Row:
        return add(thread, role, "" if role == "assistant" else content, sequence_index, **kwargs)

    app.store.add_message = add_message  # type: ignore[method-assign]
    return app


# -- the catalogue ------------------------------------------------------------------
MUTANTS: list[Mutant] = [
    Mutant(
        id="archive-answers-200",
        bug="archive answers 200 with a body instead of 204 (wrong status code)",
        injection='ASGI wrapper: the 204 of `POST .../archive/` becomes 200 `{"status":"archived"}`',
        catches=("behaviour.archive_status",),
        profile=BEHAVIOUR_PART,
        inject=archive_answers_200,
    ),
    Mutant(
        id="anonymous-gets-403",
        bug="an anonymous request answers 403 instead of 401 (wrong status code)",
        injection="ASGI wrapper: every 401 becomes 403 without `WWW-Authenticate`",
        catches=("schema.status_code_conformance",),
        profile=SCHEMA_SESSIONS,
        inject=anonymous_gets_403,
    ),
    Mutant(
        id="session-created-as-number",
        bug="session `created` is a Unix timestamp, not a date-time string (field of the wrong type)",
        injection="ASGI wrapper rewrites the JSON of `GET /api/chat-sessions/...`",
        catches=("schema.response_schema_conformance",),
        profile=SCHEMA_SESSIONS,
        inject=session_created_as_timestamp,
    ),
    Mutant(
        id="message-count-off-by-one",
        bug="`message_count` is one too many",
        injection="monkeypatch `store.message_count` (+1)",
        catches=("behaviour.message_count",),
        profile=BEHAVIOUR_PART,
        inject=message_count_off_by_one,
    ),
    Mutant(
        id="message-count-active-only",
        bug="`message_count` leaves out replaced rows",
        injection="monkeypatch `store.message_count` (active rows only)",
        catches=("behaviour.message_count",),
        profile=BEHAVIOUR_PART,
        inject=message_count_active_only,
    ),
    Mutant(
        id="include-history-ignored",
        bug="`include_history` filter ignored: replaced rows are never listed",
        injection="ASGI wrapper drops `include_history` from the query of `GET /api/chat-messages/`",
        catches=("behaviour.include_history",),
        profile=BEHAVIOUR_PART,
        inject=include_history_ignored,
    ),
    Mutant(
        id="is-archived-filter-ignored",
        bug="`is_archived` filter ignored on the thread list",
        injection="ASGI wrapper drops `is_archived` from the query of `GET /api/chat-threads/`",
        catches=("behaviour.x_result_count", "behaviour.filter_is_archived", "behaviour.pages_partition"),
        profile=BEHAVIOUR_PART,
        inject=is_archived_filter_ignored,
    ),
    Mutant(
        id="link-header-dropped",
        bug="thread list without the `Link` header",
        injection="ASGI wrapper drops `Link` from `GET /api/chat-threads/`",
        catches=("behaviour.link_header",),
        profile=BEHAVIOUR_PART,
        inject=link_header_dropped,
    ),
    Mutant(
        id="page-size-ignored",
        bug="`page_size` ignored on the thread list: every page has the default size",
        injection="ASGI wrapper drops `page_size` from the query of `GET /api/chat-threads/`",
        catches=("behaviour.page_size", "behaviour.link_header"),
        profile=BEHAVIOUR_PART,
        inject=page_size_ignored,
    ),
    Mutant(
        id="result-count-of-page",
        bug="`X-Result-Count` counts the page, not the whole list",
        injection="ASGI wrapper sets `X-Result-Count` to the page's length",
        catches=("behaviour.x_result_count",),
        profile=BEHAVIOUR_PART,
        inject=result_count_of_page,
    ),
    Mutant(
        id="foreign-thread-visible",
        bug="another user's thread is retrievable by uuid",
        injection="monkeypatch `store.thread_visible_to` (every viewer checked as staff)",
        catches=("behaviour.foreign_thread_hidden",),
        profile=BEHAVIOUR_PART,
        inject=foreign_thread_visible,
    ),
    Mutant(
        id="foreign-messages-visible",
        bug="another user's messages are listed with `?thread=`",
        injection="monkeypatch `store.messages_visible_to` and `thread_messages_visible_to` (every viewer as staff)",
        catches=("behaviour.foreign_messages_hidden",),
        profile=BEHAVIOUR_PART,
        inject=foreign_messages_visible,
    ),
    Mutant(
        id="reload-deletes-replaced",
        bug="reload deletes the replaced assistant row instead of keeping it",
        injection="monkeypatch `chat._finish`: after a reload the old row is removed, the new one replaces nothing",
        catches=("behaviour.message_count", "behaviour.include_history", "behaviour.message_rows"),
        profile=BEHAVIOUR_PART,
        inject=reload_deletes_replaced,
    ),
    Mutant(
        id="archive-not-persisted",
        bug="archive answers 204 but the thread is not archived (archive not persisted)",
        injection="monkeypatch `store.set_archived` (never sets True)",
        catches=("behaviour.archive_flag",),
        profile=BEHAVIOUR_PART,
        inject=archive_not_persisted,
    ),
    Mutant(
        id="unarchive-keeps-archived",
        bug="unarchive does not clear `is_archived` (archive not toggling)",
        injection="monkeypatch `store.set_archived` (never sets False)",
        catches=("behaviour.archive_flag",),
        profile=BEHAVIOUR_PART,
        inject=unarchive_keeps_archived,
    ),
    Mutant(
        id="edit-not-last-accepted",
        bug="editing a user message that is not the last one is accepted",
        injection="monkeypatch `chat._store_user_side`: the last-user check passes for any active user row",
        catches=("stream.edit_not_last_refused", "behaviour.edit_not_last_refused"),
        profile=STREAM_PART,
        inject=edit_any_active_user_message,
    ),
    Mutant(
        id="injection-fields-for-users",
        bug="regular users see the staff-only injection fields",
        injection="ASGI wrapper adds the four fields to every row of `GET /api/chat-messages/`",
        catches=("behaviour.injection_fields_hidden",),
        profile=BEHAVIOUR_PART,
        inject=injection_fields_for_everyone,
    ),
    Mutant(
        id="staff-without-injection-fields",
        bug="staff do not see the injection fields",
        injection="ASGI wrapper strips the four fields from staff's `GET /api/chat-messages/`",
        catches=("stream.staff_sees_injection_fields",),
        profile=STREAM_PART,
        inject=staff_without_injection_fields,
    ),
    Mutant(
        id="stream-without-final-m",
        bug="the stream misses its final `m` record",
        injection="ASGI wrapper drops the stream's last line",
        catches=("stream.grammar.final_m_last",),
        profile=STREAM_PART,
        inject=stream_without_final_m,
    ),
    Mutant(
        id="stream-unterminated",
        bug="the stream's last line is not terminated by `\\n`",
        injection="ASGI wrapper strips the final `\\n`",
        catches=("stream.framing.terminated",),
        profile=STREAM_PART,
        inject=stream_unterminated,
    ),
    Mutant(
        id="record-before-thread-m",
        bug="a content record comes before the thread `m` record",
        injection="ASGI wrapper swaps the stream's first two lines",
        catches=("stream.grammar.thread_first",),
        profile=STREAM_PART,
        inject=record_before_thread_m,
    ),
    Mutant(
        id="stream-not-compact",
        bug="stream records are not compact JSON (`json.dumps` defaults)",
        injection="ASGI wrapper re-serializes each line with spaces after `:` and `,`",
        catches=("stream.framing.compact",),
        profile=STREAM_PART,
        inject=stream_not_compact,
    ),
    Mutant(
        id="stream-content-type-charset",
        bug="the stream's `Content-Type` has `; charset=utf-8`",
        injection="ASGI wrapper replaces the stream's `Content-Type`",
        catches=("stream.content_type",),
        profile=STREAM_PART,
        inject=stream_content_type_charset,
    ),
    Mutant(
        id="final-m-unsaved-uuid",
        bug="the final `m` announces an assistant uuid that is not stored",
        injection="ASGI wrapper puts a fresh uuid into the final `m`",
        catches=("stream.uuids_match_rest",),
        profile=STREAM_PART,
        inject=final_m_announces_unsaved_uuid,
    ),
    Mutant(
        id="assistant-saved-empty",
        bug="the stored assistant message lacks the streamed text",
        injection="monkeypatch `store.add_message` (assistant content saved empty)",
        catches=("stream.reassembly",),
        profile=STREAM_PART,
        inject=assistant_saved_empty,
    ),
    Mutant(
        id="title-call-with-thread-m",
        bug="a title call (`update_thread_name`) sends a thread `m` record",
        injection="ASGI wrapper prepends a thread `m` record to title-call streams",
        catches=("stream.grammar.no_m_for_title",),
        profile=STREAM_PART,
        inject=title_call_with_thread_m,
    ),
    Mutant(
        id="auth-before-feature-flag",
        bug="424 (chat disabled) checked after authentication",
        injection="ASGI wrapper answers 401 to an anonymous stream before the app runs",
        catches=("configuration.chat_disabled_before_auth",),
        profile=CONFIGURATION_PART,
        inject=auth_before_feature_flag,
    ),
    Mutant(
        id="upstream-before-auth",
        bug="409 (upstream URL not configured) checked before authentication",
        injection="ASGI wrapper answers 409 to any stream while the upstream URL is unset",
        catches=("configuration.auth_before_upstream",),
        profile=CONFIGURATION_PART,
        inject=upstream_before_auth,
    ),
]

PROFILES: list[Profile] = list(dict.fromkeys(m.profile for m in MUTANTS))

# Realistic bugs that `verify` must catch at its defaults (only the three tokens given):
# the budget plan must leave each part the streams its checks need.
CAUGHT_AT_DEFAULTS = ("foreign-thread-visible", "stream-without-final-m", "archive-not-persisted", "page-size-ignored")


def narrowed_spec(paths: tuple[str, ...], directory: Path, source: Path = WALDUR_SPEC) -> Path:
    """The spec with only `paths`, and without links to operations that left with the others."""
    document: dict[str, Any] = copy.deepcopy(yaml.safe_load(source.read_text(encoding="utf-8")))
    document["paths"] = {path: item for path, item in document["paths"].items() if path in paths}
    operations = [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]
    kept = {op.get("operationId") for op in operations}
    for response in (r for op in operations for r in (op.get("responses") or {}).values() if isinstance(r, dict)):
        if "links" in response:
            response["links"] = {k: v for k, v in response["links"].items() if v.get("operationId") in kept}
    target = directory / f"spec-{'-'.join(p.strip('/').replace('/', '_') for p in paths)}.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target
