"""The in-memory store: every read and write of chat state goes through `ChatStore`.

A re-entrant lock makes each public method atomic, and `transaction()` lets a caller
group several steps (the edit checks and the new user message, as Waldur does inside
one database transaction). It never raises HTTP errors: lookups return None and the
caller decides what that means on the wire.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from mockserver.store.models import ChatSession, Message, Role, Thread, User


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


class ChatStore:
    """Users, sessions, threads and messages, with the visibility rules of section 5.2."""

    def __init__(self, users: Sequence[User], clock: Clock | None = None):
        self._users = list(users)
        self._by_token = {user.token: user for user in self._users}
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._sessions: dict[str, ChatSession] = {}
        self._threads: dict[str, Thread] = {}
        self._messages: list[Message] = []

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
            self._sessions.clear()
            self._threads.clear()
            self._messages.clear()

    # -- sessions ------------------------------------------------------------
    def get_or_create_session(self, user: User) -> ChatSession:
        with self._lock:
            session = next((s for s in self._sessions.values() if s.user.uuid == user.uuid), None)
            if session is None:
                now = self.clock.now()
                session = ChatSession(uuid=new_uuid(), user=user, created=now, modified=now)
                self._sessions[session.uuid] = session
            return session

    def sessions_visible_to(self, viewer: User) -> list[ChatSession]:
        with self._lock:
            sessions = [s for s in self._sessions.values() if _sees(viewer, s.user)]
        return sorted(sessions, key=lambda s: s.created, reverse=True)

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
            return thread

    def threads_visible_to(self, viewer: User) -> list[Thread]:
        with self._lock:
            return [t for t in self._threads.values() if _sees(viewer, t.owner)]

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

    # -- messages ------------------------------------------------------------
    def messages_visible_to(self, viewer: User) -> list[Message]:
        with self._lock:
            return [m for m in self._messages if _sees(viewer, m.thread.owner)]

    def thread_messages(self, thread: Thread) -> list[Message]:
        with self._lock:
            return [m for m in self._messages if m.thread is thread]

    def message_count(self, thread: Thread) -> int:
        """Every row of the thread, replaced ones included (section 3.8)."""
        return len(self.thread_messages(thread))

    def next_sequence_index(self, thread: Thread) -> int:
        """One more than the highest index over all rows, replaced ones included."""
        return max((m.sequence_index for m in self.thread_messages(thread)), default=0) + 1

    def last_active(self, thread: Thread, role: Role) -> Message | None:
        candidates = [m for m in self.thread_messages(thread) if m.role == role and m.is_active]
        return max(candidates, key=lambda m: m.sequence_index, default=None)

    def message_in_thread(self, message_uuid: str, thread: Thread) -> Message | None:
        return next((m for m in self.thread_messages(thread) if m.uuid == message_uuid), None)

    def add_message(
        self,
        thread: Thread,
        role: Role,
        content: str,
        sequence_index: int,
        *,
        replaces: Message | None = None,
        injection_score: float = 0.0,
        injection_categories: Sequence[str] = (),
        is_flagged: bool = False,
    ) -> Message:
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
            if replaces is not None:
                replaces.replaced_by = message
            self._messages.append(message)
            return message
