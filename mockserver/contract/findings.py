"""What the suite reports: checks with a verdict, and the requests that reproduce a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["passed", "failed", "skipped"]
# Why a check was skipped. Only "not_applicable" (the target cannot have what the check
# looks at, e.g. no /__mock__/config, no --staff-token) leaves a verdict complete; "budget"
# (--max-streams ran out) and "not_checked" (a prerequisite failed or the target refused a
# set-up) mean that something that applies was not checked.
SkipKind = Literal["budget", "not_applicable", "not_checked"]


@dataclass
class Step:
    """One request of a reproduction, with the part of the answer that matters."""

    method: str
    path: str
    status: int | None = None
    body: Any = None
    excerpt: str = ""

    def render(self) -> str:
        line = f"{self.method} {self.path}"
        if self.body is not None:
            line += f" {_compact(self.body)}"
        if self.status is not None:
            line += f" -> {self.status}"
        if self.excerpt:
            line += f"  {self.excerpt}"
        return line


@dataclass
class CheckResult:
    part: str  # schema | stream | behaviour | configuration
    check: str  # a stable name, the same whether it passes or fails, e.g. "stream.new_thread"
    verdict: Verdict
    message: str = ""
    steps: list[Step] = field(default_factory=list)
    skip: SkipKind | None = None  # set when verdict is "skipped"
    duration: float = 0.0  # seconds the check took
    figures: dict[str, Any] = field(default_factory=dict)  # measurements, e.g. stream timing
    rule: str = ""  # for a failure, the rule that was broken, e.g. "stream.grammar.final_m_last"

    def __post_init__(self) -> None:
        if self.verdict == "skipped" and self.skip is None:
            self.skip = "not_checked"

    @property
    def failed(self) -> bool:
        return self.verdict == "failed"

    @property
    def diagnosis(self) -> str:
        """The broken rule of a failure, else the check's name."""
        return self.rule or self.check

    @property
    def incomplete(self) -> bool:
        """Skipped although it applies to the target: the verdict cannot vouch for it."""
        return self.verdict == "skipped" and self.skip != "not_applicable"


class Skipped(Exception):
    """Raised inside a check that cannot run; carries why (see `SkipKind`)."""

    def __init__(self, reason: str, kind: SkipKind = "not_checked"):
        self.kind: SkipKind = kind
        super().__init__(reason)


class ContractViolation(AssertionError):
    """Raised inside a part when the target breaks the contract; carries the check name."""

    def __init__(self, check: str, message: str, steps: list[Step] | None = None):
        self.check = check
        self.message = message
        self.steps = steps or []
        super().__init__(f"[{check}] {message}")


def _compact(value: Any) -> str:
    import json

    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
