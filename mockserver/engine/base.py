"""The narrow interface between the chat service and any reply engine.

The service owns state: it supplies the opening record (the thread `m`) and a `finish`
callback that persists the turn and returns the closing record. The engine owns the
stream: it plans the upstream events (`ReplyEngine.plan`), and the record adapter turns
them into records and calls `finish` exactly once (in a `finally`, so a dropped client
still persists); the writer applies the wire faults.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from mockserver.engine.faults import NO_FAULTS, Faults
from mockserver.engine.records import Record

if TYPE_CHECKING:  # upstream imports this module's request type
    from mockserver.engine.upstream import UpstreamReply

TurnKind = Literal["message", "reload", "edit", "title"]


@dataclass(frozen=True)
class ReplyRequest:
    """What the upstream LLM would be asked, plus the mock's per-request selectors."""

    input: str
    kind: TurnKind = "message"
    turn: int = 1  # 1-based number of this user turn in its thread
    history: tuple[tuple[str, str], ...] = ()  # (role, content) pairs sent as context
    username: str = ""
    blocked: bool = False  # the injection detector said high/critical: no upstream call
    scenario: str | None = None  # X-Mock-Scenario
    faults: Faults = NO_FAULTS
    speed: float = 1.0  # playback speed of scripted delays; 0 = instant
    # Told about anything worth a warning on this request (e.g. no script matched); the HTTP
    # layer shows it in the request's journal entry.
    warn: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RawLine:
    """A wire fault: bytes written as they are (a malformed line)."""

    data: bytes


@dataclass(frozen=True)
class DropConnection:
    """A wire fault: the connection is cut here, without terminating the body."""


StreamItem = Record | RawLine | DropConnection


@dataclass(frozen=True)
class StreamFrame:
    opening: Record | None  # sent first (the thread `m`), None for title calls
    finish: Callable[[str, int], Record | None]  # (stored text, usage tokens) -> closing record


class ReplyEngine(Protocol):
    """Plans replies (stage 1: upstream events) and streams Waldur's records from them."""

    def scenario_names(self) -> list[str]: ...

    def plan(self, request: ReplyRequest) -> UpstreamReply: ...

    def stream(self, request: ReplyRequest, frame: StreamFrame) -> AsyncGenerator[StreamItem, None]: ...
