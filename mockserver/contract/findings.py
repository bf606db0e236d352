"""What the suite reports: checks with a verdict, and the requests that reproduce a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["passed", "failed", "skipped"]


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
    check: str  # a stable name, e.g. "stream.final_m_last"
    verdict: Verdict
    message: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict == "failed"


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
