"""One chat turn, from validated request to persisted messages (server notes, sections 2-3).

`ChatService.prepare` runs the checks that still may refuse the request (steps 5-8 of
section 2.2) and stores the user message before anything streams; `ChatService.records`
then yields every wire record, and persists the assistant message in a `finally`, so a
client that disconnects still leaves both messages behind.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from mockserver.chat.deployment import DeploymentSettings, QuotaBook
from mockserver.chat.injection import CLEAN, HISTORY_EXCLUSION_THRESHOLD, Detection, InjectionDetector
from mockserver.engine.base import ReplyEngine, ReplyRequest, StreamFrame, StreamItem, TurnKind
from mockserver.engine.faults import Faults
from mockserver.engine.records import Record, thread_record, uuids_record
from mockserver.errors import Conflict, FailedDependency, NotFound, ValidationFailed
from mockserver.store import ChatStore, Message, Thread, User

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
    replaced_assistant: Message | None = None  # superseded by this turn's answer
    assistant_index: int = 0

    @property
    def bound(self) -> bool:
        """Title calls are bound to no thread: no `m` records, nothing persisted."""
        return self.kind != "title"


class ChatService:
    def __init__(self, store: ChatStore, engine: ReplyEngine, settings: DeploymentSettings):
        self.store = store
        self.engine = engine
        self.settings = settings
        self.quota = QuotaBook(settings)

    # -- checks before the body is read (steps 1 and 3) ----------------------
    def ensure_enabled(self) -> None:
        if not self.settings.chat_enabled:
            raise FailedDependency()

    def ensure_upstream_configured(self) -> None:
        if not self.settings.upstream_url_configured:
            raise Conflict("LLM inference API URL is not configured.")
        if not self.settings.upstream_token_configured:
            raise Conflict("LLM inference API token is not configured.")

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
            return PreparedTurn(user=user, kind="title", thread=thread, request=request)

        thread = self._owned_thread(body.thread_uuid, user) if body.thread_uuid else self.store.create_thread(user)
        history = self._history(thread)
        with self.store.transaction():
            turn = self._store_user_side(user, thread, body, detection)
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
            user_message = self._add_user_message(thread, body.input, edited.sequence_index, detection, edited)
            replaced = self.store.last_active(thread, "assistant")
            index = replaced.sequence_index if replaced else edited.sequence_index + 1
            return PreparedTurn(user, "edit", thread, placeholder, user_message, replaced, index)
        if body.mode == "reload":
            replaced = self.store.last_active(thread, "assistant")
            if replaced is not None:
                return PreparedTurn(user, "reload", thread, placeholder, None, replaced, replaced.sequence_index)
            # Fallback: an empty thread reloads as a normal turn, stored without detection fields.
            detection = CLEAN
        index = self.store.next_sequence_index(thread)
        user_message = self._add_user_message(thread, body.input, index, detection, None)
        return PreparedTurn(user, "message", thread, placeholder, user_message, None, index + 1)

    def _add_user_message(
        self, thread: Thread, content: str, index: int, detection: Detection, replaces: Message | None
    ) -> Message:
        flagged = detection.is_flagged
        message = self.store.add_message(
            thread,
            "user",
            content,
            index,
            replaces=replaces,
            is_flagged=flagged,
            injection_score=detection.score if flagged else 0.0,
            injection_categories=detection.categories if flagged else (),
        )
        if flagged:
            self.store.record_flag(thread, detection.score)
        return message

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
    def stream(self, turn: PreparedTurn) -> AsyncGenerator[StreamItem, None]:
        """Every item of the response body, in Waldur's order; the engine persists via `finish`."""
        opening = thread_record(turn.thread.uuid) if turn.bound else None
        return self.engine.stream(
            turn.request, StreamFrame(opening, lambda text, tokens: self._finish(turn, text, tokens))
        )

    def _finish(self, turn: PreparedTurn, text: str, tokens: int) -> Record | None:
        """Persist the turn (also when the client went away) and return the closing record."""
        self.quota.add_usage(turn.user.username, tokens)
        if turn.kind == "title":
            title = text.strip()[:TITLE_MAX_LENGTH]
            if title:
                self.store.rename_thread(turn.thread, title)
            return None
        with self.store.transaction():
            replaced, index = turn.replaced_assistant, turn.assistant_index
            if turn.kind in ("reload", "edit"):
                # Chosen at the end, as Waldur does: a concurrent reload may have replaced it meanwhile.
                replaced = self.store.last_active(turn.thread, "assistant") or replaced
                index = replaced.sequence_index if replaced else index
            assistant = self.store.add_message(turn.thread, "assistant", text, index, replaces=replaced)
            self.store.touch_thread(turn.thread)
        return uuids_record(assistant.uuid, turn.user_message.uuid if turn.user_message else None)
