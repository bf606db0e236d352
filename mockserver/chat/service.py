"""One chat turn, from validated request to persisted messages (server notes, sections 2-3).

`ChatService.prepare` runs the checks that still may refuse the request (steps 5-8 of
section 2.2) and stores the user message before anything streams; `ChatService.records`
then yields every wire record, and persists the assistant message in a `finally`, so a
client that disconnects still leaves both messages behind.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from mockserver.chat.deployment import DeploymentSettings, QuotaBook
from mockserver.chat.injection import CLEAN, HISTORY_EXCLUSION_THRESHOLD, Detection, InjectionDetector
from mockserver.engine.base import DropConnection, ReplyEngine, ReplyRequest, StreamFrame, StreamItem, TurnKind
from mockserver.engine.faults import Faults
from mockserver.engine.records import Record, thread_record, uuids_record
from mockserver.errors import ApiError, Conflict, FailedDependency, NotFound, ValidationFailed
from mockserver.store import AnswerSlot, ChatStore, Message, Thread, User

TITLE_MAX_LENGTH = 150


@dataclass(frozen=True)
class StreamRequest:
    """The body of `POST /api/chat/stream/` after field validation (uuids as 32 hex)."""

    input: str
    thread_uuid: str | None = None
    update_thread_name: str | None = None
    mode: str | None = None
    edit_message_uuid: str | None = None

    def cross_field_errors(self) -> dict[str, list[str]]:
        """The serializer's `validate()` rules, checked only once every field is valid."""
        if self.mode and not self.thread_uuid:
            return {"mode": ["mode requires thread_uuid to be provided."]}
        if self.mode == "edit" and not self.edit_message_uuid:
            return {"edit_message_uuid": ["edit_message_uuid is required when mode='edit'."]}
        if self.edit_message_uuid and self.mode != "edit":
            return {"edit_message_uuid": ["edit_message_uuid is only valid with mode='edit'."]}
        return {}


@dataclass
class PreparedTurn:
    user: User
    kind: TurnKind
    thread: Thread
    request: ReplyRequest
    user_message: Message | None = None  # stored before streaming (None for reload and title)
    replaced_assistant: Message | None = None  # the answer a reload or edit supersedes, as seen at the start
    answer_slot: AnswerSlot | None = None  # where a new turn's answer goes (the store set it aside)
    epoch: int = 0  # the store's reset count when prepared: a reset since means the turn's state is gone

    @property
    def bound(self) -> bool:
        """Title calls are bound to no thread: no `m` records, nothing persisted."""
        return self.kind != "title"


# The 409 texts with no upstream URL / token; a profile may name them otherwise (8.1 renamed them).
UPSTREAM_MISSING = ("LLM inference API URL is not configured.", "LLM inference API token is not configured.")


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        engine: ReplyEngine,
        settings: DeploymentSettings,
        disabled: Callable[[], ApiError] = FailedDependency,
        upstream_missing: tuple[str, str] = UPSTREAM_MISSING,
    ):
        self.store = store
        self.engine = engine
        self.settings = settings
        self.quota = QuotaBook(settings)
        self.disabled = disabled  # the API profile's answer with chat off (424, or 404 before 8.0)
        self.upstream_missing = upstream_missing  # the profile's 409 texts: no upstream URL, no token

    # -- checks before the body is read (steps 1 and 3) ----------------------
    def ensure_enabled(self) -> None:
        if not self.settings.chat_enabled:
            raise self.disabled()

    def ensure_upstream_configured(self) -> None:
        if not self.settings.upstream_url_configured:
            raise Conflict(self.upstream_missing[0])
        if not self.settings.upstream_token_configured:
            raise Conflict(self.upstream_missing[1])

    # -- steps 4-8 ------------------------------------------------------------
    def prepare(
        self, user: User, body: StreamRequest, *, scenario: str | None = None, faults: Faults | None = None
    ) -> PreparedTurn:
        """Steps 4-8 of section 2.2; stores the user message. Faults: global config, then the request's."""
        faults = self.settings.faults.merged(faults or Faults())
        errors = body.cross_field_errors()
        if errors:
            raise ValidationFailed(errors)
        self.quota.ensure_within(user.username)
        detection = InjectionDetector(self.settings.injection_allowlist).scan(body.input)

        if body.update_thread_name:
            thread = self._owned_thread(body.update_thread_name, user)
            request = ReplyRequest(
                input=body.input,
                kind="title",
                username=user.username,
                blocked=detection.blocked,
                scenario=scenario,
                faults=faults,
                speed=self.settings.speed,
            )
            return PreparedTurn(user=user, kind="title", thread=thread, request=request, epoch=self.store.epoch)

        thread = self._owned_thread(body.thread_uuid, user) if body.thread_uuid else self.store.create_thread(user)
        history = self._history(thread)
        with self.store.transaction():
            turn = self._store_user_side(user, thread, body, detection)
            turn.epoch = self.store.epoch
        turn.request = ReplyRequest(
            input=body.input,
            kind=turn.kind,
            turn=self._turn_number(thread),
            history=history,
            username=user.username,
            blocked=detection.blocked,
            scenario=scenario,
            faults=faults,
            speed=self.settings.speed,
        )
        return turn

    def unbound_request(
        self, user: User, text: str, *, scenario: str | None = None, faults: Faults | None = None
    ) -> ReplyRequest:
        """A reply bound to no thread (the pre-8.0 stream): nothing stored, no quota, no scan."""
        return ReplyRequest(
            input=text,
            username=user.username,
            scenario=scenario,
            faults=self.settings.faults.merged(faults or Faults()),
            speed=self.settings.speed,
        )

    def _owned_thread(self, thread_uuid: str, user: User) -> Thread:
        thread = self.store.thread_owned_by(thread_uuid, user)
        if thread is None:
            raise NotFound("Thread not found.")
        return thread

    def _store_user_side(self, user: User, thread: Thread, body: StreamRequest, detection: Detection) -> PreparedTurn:
        placeholder = ReplyRequest(input=body.input)
        if body.mode == "edit":
            edited = self.store.message_in_thread(body.edit_message_uuid or "", thread)
            if edited is None:
                raise NotFound("Message not found.")
            if edited.role != "user":
                raise ValidationFailed(["Can only edit user messages."])
            if edited is not self.store.last_active(thread, "user"):
                raise ValidationFailed(["Can only edit the last user message."])
            user_message = self._add_edited_question(thread, body.input, detection, edited)
            replaced = self.store.last_active(thread, "assistant")
            return PreparedTurn(user, "edit", thread, placeholder, user_message, replaced)
        if body.mode == "reload":
            replaced = self.store.last_active(thread, "assistant")
            if replaced is not None:
                return PreparedTurn(user, "reload", thread, placeholder, None, replaced)
            # Fallback: an empty thread reloads as a normal turn, stored without detection fields.
            detection = CLEAN
        user_message, slot = self.store.add_question(thread, body.input, **_detection_fields(detection))
        self._record_flag(thread, detection)
        return PreparedTurn(user, "message", thread, placeholder, user_message, None, slot)

    def _add_edited_question(self, thread: Thread, content: str, detection: Detection, edited: Message) -> Message:
        message = self.store.add_message(
            thread, "user", content, edited.sequence_index, replaces=edited, **_detection_fields(detection)
        )
        self._record_flag(thread, detection)
        return message

    def _record_flag(self, thread: Thread, detection: Detection) -> None:
        if detection.is_flagged:
            self.store.record_flag(thread, detection.score)

    def _history(self, thread: Thread) -> tuple[tuple[str, str], ...]:
        """Active messages below the exclusion score, oldest first, the first N of them."""
        limit = self.settings.history_limit
        if limit <= 0:
            return ()
        active = sorted(
            (
                m
                for m in self.store.thread_messages(thread)
                if m.is_active and m.injection_score < HISTORY_EXCLUSION_THRESHOLD
            ),
            key=lambda m: m.sequence_index,
        )
        return tuple((m.role, m.content) for m in active[:limit])

    def _turn_number(self, thread: Thread) -> int:
        return sum(1 for m in self.store.thread_messages(thread) if m.role == "user" and m.is_active)

    # -- streaming -------------------------------------------------------------
    def stream(
        self,
        turn: PreparedTurn,
        adapt: Callable[[AsyncGenerator[StreamItem, None]], AsyncGenerator[StreamItem, None]] | None = None,
        after_finish: Callable[[Record], None] | None = None,
    ) -> AsyncGenerator[StreamItem, None]:
        """Every item of the response body, in Waldur's order; the engine persists via `finish`.

        A profile whose stream differs (8.1) passes `adapt`, which sees every engine item,
        and `after_finish`, which runs inside `finish` with the closing record (so it also
        runs when the client went away).
        """
        opening = thread_record(turn.thread.uuid) if turn.bound else None

        def finish(text: str, tokens: int) -> Record | None:
            closing = self._finish(turn, text, tokens)
            if closing is not None and after_finish is not None:
                after_finish(closing)
            return closing

        items = self.engine.stream(turn.request, StreamFrame(opening, finish))
        return self._cut_on_reset(turn, adapt(items) if adapt else items)

    async def _cut_on_reset(
        self, turn: PreparedTurn, items: AsyncGenerator[StreamItem, None]
    ) -> AsyncGenerator[StreamItem, None]:
        """A stream that outlives a reset is cut at its next item: what it would announce is gone."""
        try:
            async for item in items:
                if self.outlived_reset(turn):
                    yield DropConnection()
                    return
                yield item
        finally:
            await items.aclose()

    def _finish(self, turn: PreparedTurn, text: str, tokens: int) -> Record | None:
        """Persist the turn (also when the client went away) and return the closing record.

        After a reset nothing is stored or counted: the turn's thread, quota and config are gone.
        """
        if self.outlived_reset(turn):
            return None
        self.quota.add_usage(turn.user.username, tokens)
        if turn.kind == "title":
            title = text.strip()[:TITLE_MAX_LENGTH]
            if title:
                self.store.rename_thread(turn.thread, title)
            return None
        with self.store.transaction():
            assistant = self._store_answer(turn, text)
            self.store.touch_thread(turn.thread)
        return uuids_record(assistant.uuid, turn.user_message.uuid if turn.user_message else None)

    def _store_answer(self, turn: PreparedTurn, text: str) -> Message:
        """The store picks the index; the superseded answer is chosen now, as Waldur does at the end."""
        if turn.answer_slot is not None:
            return self.store.fill_slot(turn.answer_slot, text)
        if turn.kind == "edit" and turn.user_message is not None:
            return self.store.answer_edit(turn.thread, turn.user_message, text)
        return self.store.replace_answer(turn.thread, text)

    def outlived_reset(self, turn: PreparedTurn) -> bool:
        """True once `POST /__mock__/reset` ran after the turn was prepared: its thread is gone."""
        return turn.epoch != self.store.epoch


def _detection_fields(detection: Detection) -> dict[str, Any]:
    """The injection fields of a stored user message: Waldur sets them only on a flagged one."""
    if not detection.is_flagged:
        return {}
    return {"is_flagged": True, "injection_score": detection.score, "injection_categories": detection.categories}
