"""Run the contract suite against a target and collect one verdict per check.

Parts: `schema` (schemathesis), `stream` (fixed stream scenarios), `behaviour` (the state
machine) and `configuration` (only where the target can be switched). Safe against real
deployments: streams are capped by `max_streams`, inputs carry a recognisable prefix,
nothing runs in parallel, every stream has a deadline, and the threads the suite created
are archived at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mockserver.contract.behaviour import MARK, Budget, run_behaviour
from mockserver.contract.findings import CheckResult, ContractViolation
from mockserver.contract.scenarios import ConfigurationScenarios, StreamScenarios
from mockserver.contract.schema import run_schema_checks
from mockserver.contract.streams import StreamChecker
from mockserver.contract.target import Target, Tokens
from mockserver.openapi.loader import WALDUR_SPEC, SpecIndex

PARTS = ("schema", "stream", "behaviour", "configuration")


class TargetUnreachable(Exception):
    """The target does not answer, or does not accept the token: nothing can be checked."""


@dataclass
class VerifyOptions:
    base_url: str
    token: str
    other_token: str
    staff_token: str | None = None
    max_streams: int = 12
    max_examples: int = 10
    seed: int | None = None
    only: tuple[str, ...] = PARTS
    stream_timeout: float = 60.0
    behaviour_steps: int = 10
    spec: Path = WALDUR_SPEC
    app: Any = None  # an ASGI app to check in-process instead of base_url


@dataclass
class Report:
    results: list[CheckResult] = field(default_factory=list)
    archived: int = 0

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def names(self, verdict: str = "failed") -> set[str]:
        return {r.check for r in self.results if r.verdict == verdict}


def verify(options: VerifyOptions, progress: Callable[[str], None] | None = None) -> Report:
    say = progress or (lambda _: None)
    tokens = Tokens(options.token, options.other_token, options.staff_token)
    spec = SpecIndex.from_file(options.spec)
    checker = StreamChecker(spec.schema_validator("/components/schemas/ChatResponse"))
    budget = Budget(options.max_streams)
    report = Report()
    target = Target(options.base_url, tokens, app=options.app, stream_timeout=options.stream_timeout)
    with target:
        _preflight(target)
        try:
            _run_parts(options, target=target, checker=checker, budget=budget, report=report, say=say)
        finally:
            report.archived = _archive_created(target, budget)
    return report


def _run_parts(
    options: VerifyOptions,
    *,
    target: Target,
    checker: StreamChecker,
    budget: Budget,
    report: Report,
    say: Callable[[str], None],
) -> None:
    if "schema" in options.only:
        say("schema: schemathesis, every operation, all phases and checks")
        report.results += run_schema_checks(
            options.spec,
            options.token,
            app=options.app,
            base_url=None if options.app else options.base_url,
            budget=budget,
            seed=options.seed,
            max_examples=options.max_examples,
            request_timeout=options.stream_timeout,
        )
    if "stream" in options.only:
        say("stream: one stream of each kind against the stream contract")
        report.results += StreamScenarios(target, checker, budget).run()
    if "behaviour" in options.only:
        say("behaviour: state machine against a model of two users' chats")
        report.results.append(_behaviour(target, checker, budget, options))
    if "configuration" in options.only:
        say("configuration: deployment switches, where the target has them")
        report.results += ConfigurationScenarios(target).run()


def _preflight(target: Target) -> None:
    try:
        response = target.request("GET", "/api/chat-sessions/current/", token=target.tokens.user)
    except Exception as exc:
        raise TargetUnreachable(f"cannot reach {target.base_url}: {exc}") from None
    if response.status_code != 200:
        raise TargetUnreachable(
            f"{target.base_url}/api/chat-sessions/current/ answered {response.status_code} for --token "
            f"(expected 200): {response.text[:200]}"
        )


def _behaviour(target: Target, checker: StreamChecker, budget: Budget, options: VerifyOptions) -> CheckResult:
    try:
        run_behaviour(
            target, checker, budget, max_examples=options.max_examples, steps=options.behaviour_steps, seed=options.seed
        )
    except ContractViolation as violation:
        return CheckResult("behaviour", violation.check, "failed", violation.message, violation.steps)
    except Exception as error:  # hypothesis wraps failures it could not replay
        found = _find_violation(error)
        if found is None:
            return CheckResult("behaviour", "behaviour.error", "failed", f"{type(error).__name__}: {error}"[:500])
        note = " (not shrunk: its replay did not fail again, e.g. once the stream budget ran out)"
        return CheckResult("behaviour", found.check, "failed", found.message + note, found.steps)
    note = "no difference between the target and the model"
    if budget.streams_left <= 0:
        note += " (the stream budget ran out: later examples read and archive only)"
    return CheckResult("behaviour", "behaviour.model", "passed", note)


def _find_violation(error: BaseException | None) -> ContractViolation | None:
    """The ContractViolation inside a hypothesis error (Flaky failures carry the originals)."""
    if error is None or isinstance(error, ContractViolation):
        return error
    for inner in getattr(error, "exceptions", ()):
        found = _find_violation(inner)
        if found is not None:
            return found
    return _find_violation(error.__cause__ or error.__context__)


def _archive_created(target: Target, budget: Budget) -> int:
    """Leave a real deployment tidy: archive every thread the suite created (there is no delete).

    Those are the threads it streamed into plus any thread holding a message with the
    suite's mark (schemathesis's positive stream calls carry it too)."""
    archived = 0
    for who, token in (("user", target.tokens.user), ("other", target.tokens.other)):
        threads = set(budget.created[who])
        response = target.request("GET", "/api/chat-messages/", token=token)
        if response.status_code == 200:
            threads |= {m["thread"] for m in response.json() if str(m.get("content", "")).startswith(MARK)}
        for thread in sorted(threads):
            if target.request("POST", f"/api/chat-threads/{thread}/archive/", token=token).status_code == 204:
                archived += 1
    return archived
