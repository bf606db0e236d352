"""Run the contract suite against a target and collect one verdict per check.

Parts: `schema` (schemathesis), `stream` (fixed stream scenarios), `behaviour` (the state
machine) and `configuration` (only where the target can be switched); a profile lists the
parts that apply to it and its traits choose what they expect. Safe against real
deployments: streams are capped by `max_streams`, inputs carry a recognisable prefix,
nothing runs in parallel (but a cancel sent during its own stream), every stream has a
deadline, and the threads the suite created are archived at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from mockserver.contract.behaviour import MARK, Budget, message_text
from mockserver.contract.findings import CheckResult, ContractViolation, Step
from mockserver.contract.machines import run_behaviour
from mockserver.contract.operations import OperationScenarios
from mockserver.contract.scenarios import ConfigurationScenarios, StreamScenarios
from mockserver.contract.schema import run_schema_checks
from mockserver.contract.sse import INVOKE_PATH, SSE_STREAM_PART_STREAMS, SseStreamScenarios
from mockserver.contract.streams import StreamChecker
from mockserver.contract.target import Target, Tokens
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.sequential import EVENT_STREAM
from mockserver.openapi.validation import record_problems
from mockserver.profiles import DEFAULT_API, get_profile

if TYPE_CHECKING:
    from mockserver.profiles.base import ApiProfile, ApiTraits

PARTS = ("schema", "stream", "behaviour", "operations", "configuration")
# Streams reserved before the schema part takes what is left (see `plan_budget`).
STREAM_PART_STREAMS = 5  # new thread, follow-up, reload, edit, title call (see `stream_part_streams`)
BEHAVIOUR_STREAMS = 4  # a new thread, a follow-up, a reload and an edit: every model rule
OPERATIONS_STREAMS = 2  # usage after a stream; a stream under a daily limit of 0 (staff only)

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2  # bad usage, or a target that cannot be checked at all
EXIT_INCOMPLETE = 3  # no violation, but checks that apply were not run (budget, prerequisites)


class TargetUnreachable(Exception):
    """The target does not answer, or does not accept the token: nothing can be checked."""


class UsageError(Exception):
    """The options cannot give a meaningful verdict (e.g. one token given for two users)."""


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
    api: str = DEFAULT_API  # the API profile the target implements (`verify --api`)
    spec: Path | None = None  # default: the profile's spec
    app: Any = None  # an ASGI app to check in-process instead of base_url
    preflight_timeout: float = 10.0  # seconds the first requests may take: a dead target is told quickly


@dataclass
class PartBudget:
    granted: int
    used: int
    left_out: int


@dataclass
class Report:
    results: list[CheckResult] = field(default_factory=list)
    archived: int = 0
    max_streams: int = 0
    budget: dict[str, PartBudget] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    @property
    def incomplete(self) -> list[CheckResult]:
        return [r for r in self.results if r.incomplete]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def outcome(self) -> str:
        """violated | incomplete | honoured: the verdict never says more than was checked."""
        if self.failed:
            return "violated"
        return "incomplete" if self.incomplete else "honoured"

    def exit_code(self, allow_skips: bool = False) -> int:
        if self.failed:
            return EXIT_VIOLATION
        return EXIT_INCOMPLETE if self.incomplete and not allow_skips else EXIT_OK

    def names(self, verdict: str = "failed") -> set[str]:
        """Check names with that verdict; for failures the rule that was broken."""
        return {r.diagnosis for r in self.results if r.verdict == verdict}


class Progress(Protocol):
    """What a run tells while it goes (see `contract.progress` for the terminal views)."""

    def part_started(self, part: str, streams: int) -> None: ...

    def case_done(self, part: str, streams_used: int) -> None: ...

    def part_finished(self, part: str, results: list[CheckResult], seconds: float) -> None: ...


class _Silent:
    def part_started(self, part: str, streams: int) -> None:
        pass

    def case_done(self, part: str, streams_used: int) -> None:
        pass

    def part_finished(self, part: str, results: list[CheckResult], seconds: float) -> None:
        pass


def stream_part_streams(traits: ApiTraits) -> int:
    """The stream part's streams: new thread, follow-up, reload and edit, then a title call
    where clients name threads and a cancelled stream where threads can be cancelled."""
    return 4 + (traits.thread_naming == "client") + traits.cancel


def plan_budget(max_streams: int, parts: tuple[str, ...], stream_streams: int = STREAM_PART_STREAMS) -> dict[str, int]:
    """Share `--max-streams` between the parts that stream.

    The stream part's (`stream_streams`) and the behaviour part's streams are reserved first
    (their checks cannot run without them); the schema part takes what is left, and what it
    does not use goes on to the behaviour part. A part that does not run reserves nothing;
    without the schema part the behaviour part takes the rest."""
    left = max_streams
    plan = {part: 0 for part in PARTS}
    if "stream" in parts:
        plan["stream"] = min(stream_streams, left)
        left -= plan["stream"]
    if "operations" in parts:
        plan["operations"] = min(OPERATIONS_STREAMS, left)
        left -= plan["operations"]
    if "behaviour" in parts:
        plan["behaviour"] = min(BEHAVIOUR_STREAMS, left) if "schema" in parts else left
        left -= plan["behaviour"]
    if "schema" in parts:
        plan["schema"] = left
    return plan


def check_tokens(options: VerifyOptions) -> None:
    """One token for two roles makes the separation checks meaningless: refuse it up front."""
    named = [("--token", options.token), ("--other-token", options.other_token)]
    if options.staff_token is not None:
        named.append(("--staff-token", options.staff_token))
    for i, (flag, token) in enumerate(named):
        for other_flag, other in named[i + 1 :]:
            if token == other:
                raise UsageError(f"{flag} and {other_flag} are the same token: each must belong to a different user")


def verify(options: VerifyOptions, progress: Progress | None = None) -> Report:
    check_tokens(options)
    profile = get_profile(options.api)
    options = replace(options, spec=options.spec or profile.spec_file, only=_profile_parts(options, profile))
    sink = progress or _Silent()
    sse = profile.encoder.media_type == EVENT_STREAM
    created: dict[str, set[str]] = {"user": set(), "other": set()}
    stream_streams = SSE_STREAM_PART_STREAMS if sse else stream_part_streams(profile.traits)
    plan = plan_budget(options.max_streams, options.only, stream_streams)
    budgets = {part: Budget(plan[part], created) for part in PARTS}
    report = Report(max_streams=options.max_streams)
    started = time.monotonic()
    tokens = Tokens(options.token, options.other_token, options.staff_token)
    target = Target(
        options.base_url,
        tokens,
        app=options.app,
        stream_timeout=options.stream_timeout,
        stream_path=profile.stream_path,
    )
    with target:
        if sse:
            _verify_sse(options, profile, target=target, budgets=budgets, report=report, sink=sink)
        else:
            _verify_threads(options, profile, target=target, budgets=budgets, report=report, sink=sink)
    streaming = [p for p in ("schema", "stream", "behaviour", "operations") if p in options.only]
    report.budget = {p: PartBudget(budgets[p].granted, budgets[p].used, budgets[p].left_out) for p in streaming}
    report.seconds = time.monotonic() - started
    return report


def _verify_threads(
    options: VerifyOptions,
    profile: ApiProfile,
    *,
    target: Target,
    budgets: dict[str, Budget],
    report: Report,
    sink: Progress,
) -> None:
    """A chat API with sessions and threads (NDJSON stream): every part it has."""
    checker = StreamChecker(_stream_item_validator(options, profile), profile.traits)
    _preflight(target, options.preflight_timeout)
    usage = _token_usage(target)
    created = budgets["stream"].created
    try:
        _run_parts(options, target=target, checker=checker, budgets=budgets, report=report, sink=sink)
    finally:
        report.archived = _archive_created(target, created)
        _restore_token_usage(target, usage)


def _stream_item_validator(options: VerifyOptions, profile: ApiProfile) -> Any:
    """The schema of one streamed item (a record, an SSE payload) in the spec under test."""
    assert options.spec is not None
    return SpecIndex.from_file(options.spec).schema_validator(profile.stream_item_schema)


def _profile_parts(options: VerifyOptions, profile: ApiProfile) -> tuple[str, ...]:
    """All of the profile's parts by default; a part the profile has not is a usage error."""
    if options.only == PARTS:
        return tuple(p for p in PARTS if p in profile.contract_parts)
    missing = [p for p in options.only if p not in profile.contract_parts]
    if missing:
        have = ", ".join(profile.contract_parts)
        raise UsageError(f"--api {profile.name} has no {', '.join(missing)} part (it has: {have})")
    return options.only


def _verify_sse(
    options: VerifyOptions,
    profile: ApiProfile,
    *,
    target: Target,
    budgets: dict[str, Budget],
    report: Report,
    sink: Progress,
) -> None:
    """A chat API without sessions or threads (SSE stream): the schema part and the SSE stream part."""
    validator = _stream_item_validator(options, profile)
    _preflight_invoke(target, options.preflight_timeout)
    runs: dict[str, Callable[[], list[CheckResult]]] = {
        "schema": lambda: _schema(options, budgets["schema"], lambda: sink.case_done("schema", 0)),
        "stream": lambda: SseStreamScenarios(
            target,
            lambda item: record_problems(validator, item),
            budgets["stream"],
            lambda: sink.case_done("stream", 0),
        ).run(),
    }
    for part in options.only:
        report.results += _run_part(part, runs[part], target, budgets[part], sink)


def _run_part(
    part: str, run: Callable[[], list[CheckResult]], target: Target, budget: Budget, sink: Progress
) -> list[CheckResult]:
    """One part, told to the progress view as it starts and ends."""
    sink.part_started(part, budget.granted)
    began = time.monotonic()
    results = _guarded(part, run, target)
    sink.part_finished(part, results, time.monotonic() - began)
    return results


def _preflight_invoke(target: Target, timeout: float) -> None:
    """Without sessions, each token must be accepted by `invoke`; anything else is one line and exit 2."""
    tokens = target.tokens
    for flag, token in (("--token", tokens.user), ("--other-token", tokens.other)):
        url = f"{target.base_url}{INVOKE_PATH}"
        try:
            response = target.request("POST", INVOKE_PATH, token=token, timeout=timeout)
        except Exception as exc:
            raise TargetUnreachable(f"cannot reach {target.base_url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise TargetUnreachable(
                f"{url} answered {response.status_code} for {flag} (expected 200): {_one_line(response.text)}"
            )


def _run_parts(
    options: VerifyOptions,
    *,
    target: Target,
    checker: StreamChecker,
    budgets: dict[str, Budget],
    report: Report,
    sink: Progress,
) -> None:
    def used() -> int:
        return sum(b.used for b in budgets.values())

    def tick(part: str) -> Callable[[], None]:
        return lambda: sink.case_done(part, used())

    runs: dict[str, Callable[[], list[CheckResult]]] = {
        "schema": lambda: _schema(options, budgets["schema"], tick("schema")),
        "stream": lambda: StreamScenarios(target, checker, budgets["stream"], tick("stream")).run(),
        "behaviour": lambda: [
            _behaviour(target, checker, budgets["behaviour"], options, tick("behaviour"), traits=checker.traits)
        ],
        "operations": lambda: OperationScenarios(target, budgets["operations"], tick("operations")).run(),
        "configuration": lambda: ConfigurationScenarios(target, tick("configuration"), checker.traits).run(),
    }
    for part in PARTS:
        if part not in options.only:
            continue
        report.results += _run_part(part, runs[part], target, budgets[part], sink)
        if part == "schema" and "behaviour" in options.only:
            budgets["behaviour"].grant(budgets["schema"].streams_left)  # what the schema part did not need
            budgets["schema"].grant(-budgets["schema"].streams_left)


def _guarded(part: str, run: Callable[[], list[CheckResult]], target: Target) -> list[CheckResult]:
    """A part that breaks on an answer it did not expect is a failure with the request, not a crash."""
    try:
        return run()
    except Exception as error:
        # The schema part sends through schemathesis, not `target`: its last request is unrelated.
        steps = [target.last] if target.last is not None and part != "schema" else []
        return [CheckResult(part, f"{part}.error", "failed", f"{type(error).__name__}: {error}"[:500], steps)]


def _schema(options: VerifyOptions, budget: Budget, tick: Callable[[], None]) -> list[CheckResult]:
    assert options.spec is not None
    return run_schema_checks(
        options.spec,
        options.token,
        app=options.app,
        base_url=None if options.app else options.base_url,
        budget=budget,
        seed=options.seed,
        max_examples=options.max_examples,
        request_timeout=options.stream_timeout,
        tick=tick,
    )


def _preflight(target: Target, timeout: float) -> None:
    """Each token must open a chat session of its own user; anything else is one line and exit 2.

    Only what the suite cannot do without is required here (a JSON object with `uuid` and
    `user_username`): anything else wrong with the session is a finding of the schema part."""
    owners: dict[str, str] = {}
    tokens = target.tokens
    named = [("--token", tokens.user), ("--other-token", tokens.other)]
    if tokens.staff is not None:
        named.append(("--staff-token", tokens.staff))
    for flag, token in named:
        url = f"{target.base_url}/api/chat-sessions/current/"
        try:
            response = target.request("GET", "/api/chat-sessions/current/", token=token, timeout=timeout)
        except httpx.TimeoutException:
            raise TargetUnreachable(f"cannot reach {target.base_url}: no answer within {timeout:g} s") from None
        except Exception as exc:
            raise TargetUnreachable(f"cannot reach {target.base_url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise TargetUnreachable(
                f"{url} answered {response.status_code} for {flag} (expected 200): {_one_line(response.text)}"
            )
        session = _json_or_none(response)
        if session is None:
            kind = response.headers.get("content-type", "no content type")
            raise TargetUnreachable(f"{url} answered 200 with {kind}, not JSON: {_one_line(response.text)}")
        problem = _missing(session, ("uuid", "user_username"))
        if problem:
            raise TargetUnreachable(f"{url} does not answer a Waldur chat session for {flag}: {problem}")
        owners[flag] = session["user_username"]
        _check_role(target, flag, token, timeout)
    flags = list(owners)
    for i, flag in enumerate(flags):
        for other in flags[i + 1 :]:
            if owners[flag] == owners[other]:
                raise UsageError(f"{flag} and {other} both belong to user {owners[flag]!r}")


def _check_role(target: Target, flag: str, token: str, timeout: float) -> None:
    """A staff token as --token, or a regular user's as --staff-token, would make rightful answers
    look like leaks or refusals: refuse it up front. Waldur tells a token's role at /api/users/me/;
    a target without that endpoint cannot be checked for this, and is taken as given."""
    response = target.request("GET", "/api/users/me/", token=token, timeout=timeout)
    me = _json_or_none(response) if response.status_code == 200 else None
    if not isinstance(me, dict) or not isinstance(me.get("is_staff"), bool):
        return
    privileged = bool(me.get("is_staff")) or bool(me.get("is_support"))
    who = me.get("username", "?")
    if flag == "--staff-token" and not privileged:
        raise UsageError(f"--staff-token belongs to {who!r}, who is neither staff nor support")
    if flag != "--staff-token" and privileged:
        raise UsageError(f"{flag} belongs to {who!r}, who is staff or support: it must be a regular user's token")


def _missing(session: Any, keys: tuple[str, ...]) -> str:
    """What a session the rest of the suite relies on lacks ("" when nothing)."""
    if not isinstance(session, dict):
        return f"not an object: {_one_line(str(session))}"
    absent = [key for key in keys if not isinstance(session.get(key), str)]
    return f"no {' and no '.join(absent)} in {_one_line(str(session))}" if absent else ""


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _token_usage(target: Target) -> dict[str, Any] | None:
    """The users' token usage where the target is the mock (every stream raises it), else None."""
    try:
        response = target.request("GET", "/__mock__/config")
    except httpx.HTTPError:
        return None
    config = _json_or_none(response) if response.status_code == 200 else None
    usage = config.get("token_usage") if isinstance(config, dict) else None
    return usage if isinstance(usage, dict) else None


def _restore_token_usage(target: Target, original: dict[str, Any] | None) -> None:
    """Put the usage back as it was: the run's streams must not eat the users' quotas."""
    now = _token_usage(target)
    if original is None or now is None or now == original:
        return
    patch = {user: original.get(user) for user in set(now) | set(original)}
    target.request("PATCH", "/__mock__/config", json={"token_usage": patch})


def _behaviour(
    target: Target,
    checker: StreamChecker,
    budget: Budget,
    options: VerifyOptions,
    tick: Callable[[], None],
    *,
    traits: ApiTraits,
) -> CheckResult:
    began = time.monotonic()
    result = _behaviour_verdict(target, checker, budget, options, tick, traits=traits)
    result.duration = time.monotonic() - began
    return result


def _behaviour_verdict(
    target: Target,
    checker: StreamChecker,
    budget: Budget,
    options: VerifyOptions,
    tick: Callable[[], None],
    *,
    traits: ApiTraits,
) -> CheckResult:
    log: list[Step] = []
    try:
        run_behaviour(
            target,
            checker,
            budget,
            traits=traits,
            max_examples=options.max_examples,
            steps=options.behaviour_steps,
            seed=options.seed,
            on_example=tick,
            log=log,
        )
    except ContractViolation as violation:
        return CheckResult(
            "behaviour", "behaviour.model", "failed", violation.message, violation.steps, rule=violation.check
        )
    except Exception as error:  # hypothesis wraps failures it could not replay
        found = _find_violation(error)
        if found is None:
            message = f"{type(error).__name__}: {error}"[:500]
            return CheckResult("behaviour", "behaviour.model", "failed", message, list(log), rule="behaviour.error")
        note = " (not shrunk: its replay did not fail again, e.g. once the stream budget ran out)"
        return CheckResult(
            "behaviour", "behaviour.model", "failed", found.message + note, found.steps, rule=found.check
        )
    if budget.granted == 0:
        return CheckResult(
            "behaviour",
            "behaviour.model",
            "skipped",
            "no stream budget left for this part: the rules that stream (new thread, follow-up, reload, edit, "
            "title call) did not run; only reads, archive and refusals were checked (and, where the API has "
            "them, cancel, stats and filters: feedback needs an answer the run streamed)",
            skip="budget",
        )
    note = f"no difference between the target and the model ({budget.used} streams"
    note += f"; {budget.left_out} stream steps left out for budget)" if budget.left_out else ")"
    return CheckResult("behaviour", "behaviour.model", "passed", note, figures={"streams": budget.used})


def _find_violation(error: BaseException | None) -> ContractViolation | None:
    """The ContractViolation inside a hypothesis error (Flaky failures carry the originals)."""
    if error is None or isinstance(error, ContractViolation):
        return error
    for inner in getattr(error, "exceptions", ()):
        found = _find_violation(inner)
        if found is not None:
            return found
    return _find_violation(error.__cause__ or error.__context__)


def _archive_created(target: Target, created: dict[str, set[str]]) -> int:
    """Leave a real deployment tidy: archive every thread the suite created (there is no delete).

    Those are the threads it streamed into plus any thread holding a message with the
    suite's mark (schemathesis's positive stream calls carry it too)."""
    archived = 0
    for who, token in (("user", target.tokens.user), ("other", target.tokens.other)):
        threads = set(created[who])
        try:
            response = target.request("GET", "/api/chat-messages/", token=token)
            rows = _json_or_none(response) if response.status_code == 200 else None
            if isinstance(rows, list):
                threads |= {m["thread"] for m in rows if isinstance(m, dict) and _marked(m)}
            for thread in sorted(threads):
                if target.request("POST", f"/api/chat-threads/{thread}/archive/", token=token).status_code == 204:
                    archived += 1
        except httpx.HTTPError:
            continue  # tidying up is best effort: a target that went away keeps its threads
    return archived


def _marked(row: dict[str, Any]) -> bool:
    return message_text(row).startswith(MARK) and isinstance(row.get("thread"), str)
