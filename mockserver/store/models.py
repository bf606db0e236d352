"""Plain records of the chat state, mirroring Waldur's Django models field for field."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class User:
    uuid: str
    username: str
    token: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    is_staff: bool = False
    is_support: bool = False
    password: str | None = None
    token_expired: bool = False  # Waldur's per-user token lifetime ran out: 401 "Token has expired."

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def sees_everything(self) -> bool:
        """Staff and support see every session, thread and message (section 5.2)."""
        return self.is_staff or self.is_support


@dataclass
class ChatSession:
    uuid: str
    user: User
    created: datetime
    modified: datetime


@dataclass
class Thread:
    uuid: str
    session: ChatSession
    created: datetime
    modified: datetime
    name: str = "New chat"
    flags: dict[str, object] = field(default_factory=dict)
    is_archived: bool = False
    # 8.1 only (other profiles never read them): cancel requests and title-generation usage.
    cancel_requested_at: datetime | None = None
    cancel_requests: int = 0  # bumped by every cancel: a stream compares it with its start value
    questions: int = 0  # user messages stored: a stream that sees a newer one stops ("superseded")
    title_gen_input_tokens: int | None = None
    title_gen_output_tokens: int | None = None

    @property
    def owner(self) -> User:
        return self.session.user

    @property
    def is_flagged(self) -> bool:
        """From `flags`, as Waldur's serializer derives it (default false)."""
        return bool(self.flags.get("is_flagged", False))

    @property
    def max_injection_score(self) -> float:
        value = self.flags.get("max_injection_score", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0


@dataclass
class Message:
    uuid: str
    thread: Thread
    role: Role
    content: str
    sequence_index: int
    created: datetime
    replaces: Message | None = None
    replaced_by: Message | None = None
    is_flagged: bool = False
    injection_score: float = 0.0
    injection_categories: list[str] = field(default_factory=list)
    # 8.1 only: the persisted blocks, the PII warning, token counts and the user's feedback.
    # `blocks` is None until an 8.1 turn stores what it streamed (seed data is shown from `content`).
    blocks: list[dict[str, object]] | None = None
    warning: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    feedback_score: bool | None = None
    feedback_comment: str | None = None
    feedback_category: str | None = None
    feedback_submitted_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.replaced_by is None


@dataclass(frozen=True)
class AnswerSlot:
    """The sequence index the store set aside for an answer still being streamed.

    Taken together with the question's index, so a follow-up sent meanwhile lands after it.
    """

    thread: Thread
    index: int


@dataclass
class SystemPrompt:
    """Waldur 8.1's staff-managed system prompt; at most one is active at a time."""

    uuid: str
    name: str
    description: str
    custom_instructions: str
    created: datetime
    modified: datetime
    is_active: bool = False
