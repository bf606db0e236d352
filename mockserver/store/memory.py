"""The in-memory store: every read and write of chat state goes through `ChatStore`.

A re-entrant lock makes each public method atomic, and `transaction()` lets a caller
group several steps (the edit checks and the new user message, as Waldur does inside
one database transaction). It never raises HTTP errors: lookups return None and the
caller decides what that means on the wire.

Sequence indexes are allocated here and nowhere else: a question takes the next free
index and sets aside the one after it for its answer (`AnswerSlot`), so answers that
are still streaming never share an index with a follow-up sent meanwhile. Waldur's
database constraint (one original row per index of a thread) is checked on every write.

Indexed so that no request costs more as the store grows: threads per owner and messages
per thread and per owner, each in creation order (which is `created` order: the clock
strictly increases), so a thread's count is a length and the default `-created` listing is
a reversed view, not a sort. Whatever scans remain are within one thread.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import overload

from mockserver.store.models import AnswerSlot, ChatSession, Message, Role, SystemPrompt, Thread, User


class Clock:
    """UTC timestamps that strictly increase and never have zero microseconds.

    Strictly increasing keeps `-created` ordering total and `modified` moving forward;
    a non-zero microsecond keeps DRF's output format (it drops `.000000`) stable.
    """

    def __init__(self, source: Callable[[], datetime] | None = None):
        self._source = source or (lambda: datetime.now(UTC))
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            value = self._source()
            if self._last is not None and value <= self._last:
                value = self._last + timedelta(microseconds=1)
            if value.microsecond == 0:
                value += timedelta(microseconds=1)
            self._last = value
            return value


def _sees(viewer: User, owner: User) -> bool:
    """Staff and support see everything; other users their own (section 5.2)."""
    return viewer.sees_everything or viewer.uuid == owner.uuid


def new_uuid() -> str:
    return uuid.uuid4().hex


class SequenceConflict(RuntimeError):
    """A second original row at one index of a thread: Waldur's unique constraint, broken by a bug here."""


class NewestFirst(Sequence[Thread]):
    """The first `size` items of an append-only list, seen newest first without a copy.

    The store only ever appends to these lists (a reset starts new ones), so the view
    stays the snapshot it was when taken."""

    def __init__(self, items: list[Thread], size: int):
        self._items = items
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Thread]:
        for index in range(self._size - 1, -1, -1):
            yield self._items[index]

    @overload
    def __getitem__(self, index: int) -> Thread: ...
    @overload
    def __getitem__(self, index: slice) -> list[Thread]: ...
    def __getitem__(self, index: int | slice) -> Thread | list[Thread]:
        size = self._size
        if isinstance(index, slice):
            return [self._items[size - 1 - i] for i in range(*index.indices(size))]
        if not -size <= index < size:
            raise IndexError(index)
        return self._items[size - 1 - (index % size)]


class ChatStore:
    """Users, sessions, threads and messages, with the visibility rules of section 5.2."""

    def __init__(self, users: Sequence[User], clock: Clock | None = None):
        self._users = list(users)
        self._by_token = {user.token: user for user in self._users}
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._sessions: dict[str, ChatSession] = {}
        self._session_of_user: dict[str, ChatSession] = {}
        self._threads: dict[str, Thread] = {}
        self._all_threads: list[Thread] = []  # in creation order; append-only (see NewestFirst)
        self._threads_of_owner: dict[str, list[Thread]] = {}  # owner uuid -> threads, in creation order
        self._messages: list[Message] = []
        self._messages_of_thread: dict[str, list[Message]] = {}  # in creation order
        self._messages_of_owner: dict[str, list[Message]] = {}
        self._reserved: dict[str, set[int]] = {}  # thread uuid -> indexes of answers still streaming
        self._system_prompts: dict[str, SystemPrompt] = {}  # in creation order
        self._epoch = 0

    # -- users ---------------------------------------------------------------
    @property
    def users(self) -> list[User]:
        return list(self._users)

    def user_by_token(self, token: str) -> User | None:
        return self._by_token.get(token)

    def user_by_username(self, username: str) -> User | None:
        return next((u for u in self._users if u.username == username), None)

    # -- lifecycle -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            yield

    def reset(self) -> None:
        with self._lock:
            for index in (self._sessions, self._session_of_user, self._threads, self._threads_of_owner):
                index.clear()
            self._all_threads = []  # not cleared in place: views handed out keep their snapshot
            self._messages.clear()
            self._messages_of_thread.clear()
            self._messages_of_owner.clear()
            self._reserved.clear()
            self._system_prompts.clear()
            self._epoch += 1

    @property
    def epoch(self) -> int:
        """Counts resets: a turn prepared in an older epoch belongs to state that is gone."""
        return self._epoch

    # -- sessions ------------------------------------------------------------
    def get_or_create_session(self, user: User) -> ChatSession:
        with self._lock:
            session = self._session_of_user.get(user.uuid)
            if session is None:
                now = self.clock.now()
                session = ChatSession(uuid=new_uuid(), user=user, created=now, modified=now)
                self._sessions[session.uuid] = session
                self._session_of_user[user.uuid] = session
            return session

    def sessions_visible_to(self, viewer: User) -> list[ChatSession]:
        """Newest first (creation order is `created` order)."""
        with self._lock:
            if viewer.sees_everything:
                return list(reversed(self._sessions.values()))
            own = self._session_of_user.get(viewer.uuid)
            return [own] if own else []

    def session_visible_to(self, session_uuid: str, viewer: User) -> ChatSession | None:
        session = self._sessions.get(session_uuid)
        return session if session and _sees(viewer, session.user) else None

    # -- threads -------------------------------------------------------------
    def create_thread(self, user: User) -> Thread:
        with self._lock:
            session = self.get_or_create_session(user)
            now = self.clock.now()
            thread = Thread(uuid=new_uuid(), session=session, created=now, modified=now)
            self._threads[thread.uuid] = thread
            self._all_threads.append(thread)
            self._threads_of_owner.setdefault(user.uuid, []).append(thread)
            return thread

    def threads_visible_to(self, viewer: User) -> list[Thread]:
        """In creation order (oldest first)."""
        with self._lock:
            return list(self._all_threads if viewer.sees_everything else self._threads_of_owner.get(viewer.uuid, ()))

    def threads_newest_first(self, viewer: User) -> Sequence[Thread]:
        """The visible threads in Waldur's default order (`-created`), without a copy or a sort.

        A snapshot: threads created later are not in it."""
        with self._lock:
            threads = self._all_threads if viewer.sees_everything else self._threads_of_owner.get(viewer.uuid, [])
            return NewestFirst(threads, len(threads))

    def thread_visible_to(self, thread_uuid: str, viewer: User) -> Thread | None:
        thread = self._threads.get(thread_uuid)
        return thread if thread and _sees(viewer, thread.owner) else None

    def thread_owned_by(self, thread_uuid: str, user: User) -> Thread | None:
        """Streaming uses only the caller's own threads, staff included (section 5.2)."""
        thread = self._threads.get(thread_uuid)
        return thread if thread and thread.owner.uuid == user.uuid else None

    def set_archived(self, thread: Thread, archived: bool) -> None:
        with self._lock:
            thread.is_archived = archived
            thread.modified = self.clock.now()

    def rename_thread(self, thread: Thread, name: str) -> None:
        """A queryset update in Waldur: `modified` does not move."""
        with self._lock:
            thread.name = name

    def touch_thread(self, thread: Thread) -> None:
        with self._lock:
            if self._holds(thread):
                thread.modified = self.clock.now()

    def _holds(self, thread: Thread) -> bool:
        """False for a thread dropped by a reset while a stream into it was still running."""
        return self._threads.get(thread.uuid) is thread

    def record_flag(self, thread: Thread, score: float) -> None:
        """Merge `is_flagged` and the running maximum score into the thread's flags."""
        with self._lock:
            previous = float(thread.flags.get("max_injection_score", 0.0) or 0.0)  # type: ignore[arg-type]
            thread.flags = {**thread.flags, "is_flagged": True, "max_injection_score": max(previous, score)}

    def request_cancel(self, thread: Thread) -> None:
        """8.1's cancel: `cancel_requested_at` is set, and a running stream sees the count move."""
        with self._lock:
            thread.cancel_requested_at = self.clock.now()
            thread.cancel_requests += 1

    def set_feedback(self, message: Message, score: bool, comment: str | None, category: str | None) -> None:
        """8.1's feedback on an assistant message: the last one given wins."""
        with self._lock:
            message.feedback_score = score
            message.feedback_comment = comment
            message.feedback_category = category
            message.feedback_submitted_at = self.clock.now()

    # -- messages ------------------------------------------------------------
    def messages_visible_to(self, viewer: User) -> list[Message]:
        """In creation order."""
        with self._lock:
            return list(self._messages if viewer.sees_everything else self._messages_of_owner.get(viewer.uuid, ()))

    def thread_messages_visible_to(self, thread_uuid: str, viewer: User) -> list[Message]:
        """The messages of one thread, in creation order; none if the viewer may not see it."""
        with self._lock:
            thread = self.thread_visible_to(thread_uuid, viewer)
            return list(self._rows(thread)) if thread else []

    def thread_messages(self, thread: Thread) -> list[Message]:
        """In creation order."""
        with self._lock:
            return list(self._rows(thread))

    def _rows(self, thread: Thread) -> list[Message]:
        """The thread's own list (not a copy: callers hold the lock and do not keep it)."""
        return self._messages_of_thread.get(thread.uuid, []) if self._holds(thread) else []

    def message_count(self, thread: Thread) -> int:
        """Every row of the thread, replaced ones included (section 3.8)."""
        with self._lock:
            return len(self._rows(thread))

    def last_active(self, thread: Thread, role: Role) -> Message | None:
        candidates = [m for m in self.thread_messages(thread) if m.role == role and m.is_active]
        return max(candidates, key=lambda m: m.sequence_index, default=None)

    def message_in_thread(self, message_uuid: str, thread: Thread) -> Message | None:
        return next((m for m in self.thread_messages(thread) if m.uuid == message_uuid), None)

    def add_question(
        self,
        thread: Thread,
        content: str,
        *,
        injection_score: float = 0.0,
        injection_categories: Sequence[str] = (),
        is_flagged: bool = False,
    ) -> tuple[Message, AnswerSlot]:
        """A new user message at the next free index, and its answer's index set aside, in one step."""
        with self._lock:
            index = self._next_index(thread)
            message = self.add_message(
                thread,
                "user",
                content,
                index,
                injection_score=injection_score,
                injection_categories=injection_categories,
                is_flagged=is_flagged,
            )
            slot = AnswerSlot(thread, index + 1)
            if self._holds(thread):
                self._reserved.setdefault(thread.uuid, set()).add(slot.index)
            return message, slot

    def fill_slot(self, slot: AnswerSlot, content: str) -> Message:
        """Store an answer at its reserved index.

        If an edit's answer took that index meanwhile (the question was edited while this
        answer still streamed), this late answer is filed as the index's oldest version.
        """
        with self._lock:
            self._reserved.get(slot.thread.uuid, set()).discard(slot.index)
            oldest = self._original_at(slot.thread, slot.index)
            return self.add_message(slot.thread, "assistant", content, slot.index, replaced_by=oldest)

    def replace_answer(self, thread: Thread, content: str, *, fallback_index: int | None = None) -> Message:
        """Reload: supersede the last active answer, chosen now as Waldur does (it may have changed).

        With no answer at all, a new one goes at `fallback_index` if free, else at the next index.
        """
        with self._lock:
            replaced = self.last_active(thread, "assistant")
            if replaced is not None:
                return self.add_message(thread, "assistant", content, replaced.sequence_index, replaces=replaced)
            index = self._next_index(thread) if fallback_index is None else self._free_or_next(thread, fallback_index)
            return self.add_message(thread, "assistant", content, index)

    def answer_edit(self, thread: Thread, question: Message, content: str) -> Message:
        """Edit: the answer belongs right after the edited question.

        An answer there is superseded; an answer there still streaming gives way (see
        `fill_slot`); with neither, Waldur's rule: the last active answer is superseded.
        """
        with self._lock:
            index = question.sequence_index + 1
            current = self._active_at(thread, index)
            if current is not None and current.role == "assistant":
                return self.add_message(thread, "assistant", content, index, replaces=current)
            if current is None and index in self._reserved.get(thread.uuid, ()):
                return self.add_message(thread, "assistant", content, index)
            return self.replace_answer(thread, content, fallback_index=index)

    def _next_index(self, thread: Thread) -> int:
        """One more than the highest index over all rows (replaced ones included) and reserved slots."""
        taken = [m.sequence_index for m in self._rows(thread)]
        taken.extend(self._reserved.get(thread.uuid, ()))
        return max(taken, default=0) + 1

    def _free_or_next(self, thread: Thread, index: int) -> int:
        free = self._original_at(thread, index) is None and index not in self._reserved.get(thread.uuid, ())
        return index if free else self._next_index(thread)

    def _original_at(self, thread: Thread, index: int) -> Message | None:
        """The row at `index` that replaces nothing: the one Waldur's unique constraint is about."""
        return next((m for m in self._rows(thread) if m.sequence_index == index and m.replaces is None), None)

    def _active_at(self, thread: Thread, index: int) -> Message | None:
        return next((m for m in self._rows(thread) if m.sequence_index == index and m.is_active), None)

    def add_message(
        self,
        thread: Thread,
        role: Role,
        content: str,
        sequence_index: int,
        *,
        replaces: Message | None = None,
        replaced_by: Message | None = None,
        injection_score: float = 0.0,
        injection_categories: Sequence[str] = (),
        is_flagged: bool = False,
    ) -> Message:
        """Store one row at a given index (seed data; the methods above choose the index)."""
        with self._lock:
            message = Message(
                uuid=new_uuid(),
                thread=thread,
                role=role,
                content=content,
                sequence_index=sequence_index,
                created=self.clock.now(),
                replaces=replaces,
                is_flagged=is_flagged,
                injection_score=injection_score,
                injection_categories=list(injection_categories),
            )
            if not self._holds(thread):
                return message  # the thread was reset away: answer, but store nothing
            if replaces is None and replaced_by is None and self._original_at(thread, sequence_index):
                raise SequenceConflict(f"thread {thread.uuid} already has an original row at {sequence_index}")
            if replaces is not None:
                replaces.replaced_by = message
            if replaced_by is not None:
                message.replaced_by, replaced_by.replaces = replaced_by, message
            if role == "user":
                thread.questions += 1
            self._messages.append(message)
            self._messages_of_thread.setdefault(thread.uuid, []).append(message)
            self._messages_of_owner.setdefault(thread.owner.uuid, []).append(message)
            return message

    # -- system prompts (8.1) ------------------------------------------------
    def system_prompts(self) -> list[SystemPrompt]:
        with self._lock:
            return list(self._system_prompts.values())

    def system_prompt(self, prompt_uuid: str) -> SystemPrompt | None:
        return self._system_prompts.get(prompt_uuid)

    def create_system_prompt(self, name: str, description: str, custom_instructions: str) -> SystemPrompt:
        with self._lock:
            now = self.clock.now()
            prompt = SystemPrompt(new_uuid(), name, description, custom_instructions, now, now)
            self._system_prompts[prompt.uuid] = prompt
            return prompt

    def update_system_prompt(self, prompt: SystemPrompt, **fields: str) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(prompt, name, value)
            prompt.modified = self.clock.now()

    def delete_system_prompt(self, prompt: SystemPrompt) -> None:
        with self._lock:
            self._system_prompts.pop(prompt.uuid, None)

    def set_system_prompt_active(self, prompt: SystemPrompt, active: bool) -> None:
        """Activating one deactivates the others: Waldur keeps at most one prompt active."""
        with self._lock:
            now = self.clock.now()
            if active:
                for other in self._system_prompts.values():
                    if other.is_active and other is not prompt:
                        other.is_active, other.modified = False, now
            prompt.is_active, prompt.modified = active, now

    def active_system_prompt(self) -> SystemPrompt | None:
        with self._lock:
            return next((p for p in self._system_prompts.values() if p.is_active), None)
