"""What a loaded reply script is: matchers, a reply plan and faults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Template
from typing import Any

from mockserver.engine.base import ReplyRequest, TurnKind
from mockserver.engine.faults import NO_FAULTS, Faults
from mockserver.engine.pacing import Timing, split_text


@dataclass(frozen=True)
class InputMatcher:
    kind: str  # exact | contains | regex
    value: str
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        if self.kind == "regex":
            assert self.pattern is not None
            return self.pattern.search(text) is not None
        subject, wanted = (text.lower(), self.value.lower()) if self.ignore_case else (text, self.value)
        return subject == wanted if self.kind == "exact" else wanted in subject


@dataclass(frozen=True)
class Match:
    """All given conditions must hold; a list of input matchers matches when any does."""

    inputs: tuple[InputMatcher, ...] = ()
    turn_min: int | None = None
    turn_max: int | None = None
    modes: frozenset[TurnKind] = frozenset()

    def matches(self, request: ReplyRequest) -> bool:
        if self.inputs and not any(m.matches(request.input) for m in self.inputs):
            return False
        if self.turn_min is not None and request.turn < self.turn_min:
            return False
        if self.turn_max is not None and request.turn > self.turn_max:
            return False
        return not self.modes or request.kind in self.modes

    @property
    def is_catch_all(self) -> bool:
        """No conditions (`match: {}`): matches every request."""
        return not self.inputs and self.turn_min is None and self.turn_max is None and not self.modes


@dataclass(frozen=True)
class Chunk:
    text: str
    delay_ms: float | None = None  # explicit delay before this chunk (recordings keep theirs)


@dataclass(frozen=True)
class LiteralStep:
    """Escape hatch: one literal wire record, or a pause when `record` is None."""

    record: dict[str, Any] | None = None
    delay_ms: float = 0.0
    line: int | None = None  # where it was written, for load-time errors


@dataclass(frozen=True)
class Script:
    name: str
    file: str  # where the script was written, for messages
    line: int | None = None
    match: Match | None = None  # None: selectable by name only
    text: str | None = None
    chunking: str | int = "token"
    chunks: tuple[Chunk, ...] = ()
    records: tuple[LiteralStep, ...] = ()
    timing: Timing = field(default_factory=Timing)
    faults: Faults = NO_FAULTS
    description: str = ""
    # What the model says once a tool result comes back (function calling in the upstream mode).
    after_tool: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def literal(self) -> bool:
        return bool(self.records)

    def upstream_chunks(self, request: ReplyRequest) -> list[Chunk]:
        """The text chunks the simulated upstream sends for this request."""
        return self.chunks_of(self.rendered(request))

    def rendered(self, request: ReplyRequest) -> tuple[str, ...]:
        """The request's rendering of the reply text (one per written chunk): all a plan depends on."""
        if self.chunks:
            return tuple(render(c.text, request) for c in self.chunks)
        return (render(self.text or "", request),)

    def chunks_of(self, rendered: tuple[str, ...]) -> list[Chunk]:
        """The upstream chunks of a rendering from `rendered`."""
        if self.chunks:
            return [Chunk(text, c.delay_ms) for text, c in zip(rendered, self.chunks, strict=True)]
        return [Chunk(piece) for piece in split_text(rendered[0], self.chunking)]


def render(template: str, request: ReplyRequest) -> str:
    """`${input}`, `${turn}`, `${username}`, `${mode}` and `${words}` (first six words of the input)."""
    return Template(template).safe_substitute(
        input=request.input,
        turn=request.turn,
        username=request.username,
        mode=request.kind,
        words=" ".join(request.input.split()[:6]),
    )


class ScriptSet:
    """Scripts in order: a scenario name selects one directly, otherwise the first match wins."""

    def __init__(self, scripts: list[Script]):
        self.scripts = list(scripts)
        self.by_name = {s.name: s for s in self.scripts}

    def select(self, request: ReplyRequest) -> Script | None:
        if request.scenario:
            return self.by_name.get(request.scenario)
        return next((s for s in self.scripts if s.match is not None and s.match.matches(request)), None)

    def names(self) -> list[str]:
        return [s.name for s in self.scripts]
