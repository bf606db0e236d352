"""The narrow interface between the chat service and any reply engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mockserver.engine.records import Record

TurnKind = Literal["message", "reload", "edit", "title"]


@dataclass(frozen=True)
class ReplyRequest:
    """What the upstream LLM would be asked, plus the mock's own per-request selectors."""

    input: str
    kind: TurnKind = "message"
    turn: int = 1  # 1-based number of this user turn in its thread
    history: tuple[tuple[str, str], ...] = ()  # (role, content) pairs sent as context
    username: str = ""
    blocked: bool = False  # injection detector said high/critical: no upstream call
    scenario: str | None = None  # X-Mock-Scenario
    faults: tuple[str, ...] = field(default_factory=tuple)  # X-Mock-Fault and global faults


class ReplyStream(Protocol):
    """Async iterator of content records (markdown, load, code, table, raw `c`, `e`)."""

    def __aiter__(self) -> AsyncIterator[Record]: ...

    @property
    def stored_text(self) -> str:
        """The raw upstream text so far: what is persisted as the assistant message."""
        ...

    @property
    def usage_tokens(self) -> int:
        """Input plus output tokens the upstream reported, for quota accounting."""
        ...


class ReplyEngine(Protocol):
    def reply(self, request: ReplyRequest) -> ReplyStream: ...
