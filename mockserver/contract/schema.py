"""Schema conformance (part 1): schemathesis over every operation, all phases, all checks.

The spec is adapted in memory before schemathesis sees it:
- a stream body (NDJSON, or SSE) is read as the array of its items (lines, or `data:`
  payloads) and each is validated against the item schema under its media type
  (schemathesis validates a body against the media schema whole);
- negative cases that only mutated parameters the real server treats leniently
  (`x-waldur-on-invalid`) do not count as "accepted invalid data";
- authentication is configured for the `tokenAuth` scheme, so negative cases stay meaningful;
- positive stream calls are capped by the run's stream budget and marked with the prefix.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from mockserver.contract.behaviour import MARK, Budget
from mockserver.contract.findings import CheckResult, Step
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.sequential import EVENT_STREAM, NDJSON, SEQUENTIAL_MEDIA_TYPES

LENIENT = "x-waldur-on-invalid"
STREAM_OPERATION = "chat_stream"


@schemathesis.deserializer(NDJSON)
def _ndjson(ctx: Any, response: Any) -> list[Any]:
    """A stream body as the JSON array of its lines (how the spec's links address it)."""
    text = response.content.decode(response.encoding or "utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@schemathesis.deserializer(EVENT_STREAM)
def _event_stream(ctx: Any, response: Any) -> list[Any]:
    """An SSE body as the JSON array of its `data:` payloads."""
    text = response.content.decode(response.encoding or "utf-8")
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def adapt_spec(document: dict[str, Any]) -> dict[str, Any]:
    """Wrap each stream item schema (NDJSON, SSE) as an array of items, in a copy of the spec."""
    adapted = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            media = node.get("content")
            for name in SEQUENTIAL_MEDIA_TYPES:
                if isinstance(media, dict) and isinstance(media.get(name), dict) and "schema" in media[name]:
                    media[name]["schema"] = {"type": "array", "items": media[name]["schema"]}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(adapted.get("paths", {}))
    walk(adapted.get("components", {}).get("responses", {}))
    return adapted


def _lenient_parameters(case: Any) -> set[tuple[str, str]]:
    """Parameters the real server does not refuse: marked lenient, or empty where empty means absent."""
    lenient = set()
    for param in case.operation.iter_parameters():
        definition = getattr(param, "definition", None) or {}
        location, name = param.location.value, param.name
        values = getattr(case, location, None) or {}
        empty = definition.get("x-waldur-empty-is-absent") and values.get(name) in ("", [""])
        if LENIENT in definition or empty:
            lenient.add((location, name))
    return lenient


def _mutated(case: Any) -> set[tuple[str, str]]:
    """(location, name) of what a negative case mutated; empty when unknown or positive."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return set()
    data = meta.phase.data
    found = {(m.parameter_location.value, m.parameter) for m in getattr(data, "mutations", ()) if m.parameter}
    if not found and getattr(data, "parameter", None) and data.parameter_location is not None:
        found = {(data.parameter_location.value, data.parameter)}
    return found


def _only_lenient_mutated(case: Any, spec: SpecIndex) -> bool:
    """True when every invalid part of a negative case is one the real server accepts."""
    negative_locations = {loc.value for loc, part in case.meta.components.items() if part.mode.is_negative}
    if "body" in negative_locations and _body_accepted(case, spec):
        negative_locations.discard("body")
        if not negative_locations:
            return True
    mutated = {m for m in _mutated(case) if m[0] != "body"}
    lenient = _lenient_parameters(case)
    return bool(mutated) and mutated <= lenient and negative_locations <= {loc for loc, _ in mutated}


def _body_accepted(case: Any, spec: SpecIndex) -> bool:
    """The body is never read (`x-waldur-body-ignored`), or is valid once normalised as DRF does
    (fields marked `x-waldur-trim-whitespace` stripped)."""
    definition = case.operation.definition.raw
    if definition.get("x-waldur-body-ignored"):
        return True
    schema = definition.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    body = case.body
    if "$ref" not in schema or not isinstance(body, dict):
        return False
    trimmed = spec.operation(definition["operationId"]).trimmed_fields
    normalised = {k: v.strip() if k in trimmed and isinstance(v, str) else v for k, v in body.items()}
    return not any(True for _ in spec.schema_validator(schema["$ref"]).iter_errors(normalised))


@dataclass
class _RunState:
    """What the hooks of the current run need; hooks are process-wide in schemathesis."""

    budget: Budget | None = None
    stream_deadline: float = 60.0
    spec: SpecIndex | None = None
    left_out: set[str] = field(default_factory=set)  # ids of stream cases sent without `input`


_STATE = _RunState()
_STATE_LOCK = threading.Lock()


def _deadline_reader(response: Any, *args: Any, **kwargs: Any) -> Any:
    """Over the network, read a stream against a wall-clock deadline (requests' timeout is per read)."""
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media not in SEQUENTIAL_MEDIA_TYPES or response._content_consumed:
        return response
    deadline = time.monotonic() + _STATE.stream_deadline
    body = bytearray()
    cut = False
    try:
        while chunk := response.raw.read1(64 * 1024, decode_content=True):
            body += chunk
            if time.monotonic() >= deadline:
                cut = True
                break
    finally:
        if cut:
            response.close()
    if cut:
        end = body.rfind(b"\n")
        body = body[: end + 1] if end >= 0 else bytearray()
    response._content = bytes(body)
    response._content_consumed = True
    return response


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Runs before every call of every phase (global on purpose: schemathesis dispatches
    `before_call` only from global hooks). Streams get a read deadline, and stream bodies
    the mark and the budget."""
    kwargs.setdefault("hooks", {}).setdefault("response", []).append(_deadline_reader)
    if _STATE.spec is not None and case.operation.definition.raw.get("operationId") == STREAM_OPERATION:
        _shape_stream_body(case, _STATE.spec)


def _shape_stream_body(case: Any, spec: SpecIndex) -> None:
    """Mark the input; and once the part's stream budget is spent, send instead a body the
    server must refuse (no `input`), so no LLM call is made, and count the case as left out.

    The body is replaced, never edited in place: the body of an examples-phase case is the
    spec's example object itself, so an in-place edit changed the example for every later
    case (the coverage phase then sent `{}` as a positive case: a false "Schema-valid
    request rejected"). And schemathesis re-judges an edited case only for the components
    it generated: a left-out spec example is still judged as positive, so that judgement
    is dropped for left-out cases (`_judged_on_what_was_sent`); every other check applies.
    A hook cannot skip a call: schemathesis turns any exception raised here into an error."""
    body = case.body
    if not isinstance(body, dict):
        return
    shaped = dict(body)
    if isinstance(body.get("input"), str):
        shaped["input"] = f"{MARK} {body['input'].strip()}"[:50000]
    case.body = shaped
    if _STATE.budget is not None and _body_accepted(case, spec) and not _STATE.budget.take():
        case.body = {k: v for k, v in shaped.items() if k != "input"}
        _STATE.left_out.add(case.id)


def _judged_on_what_was_sent(failure: Any, case: Any, spec: SpecIndex, response: Any = None) -> bool:
    """False for a failure that judges a case as other than the request really sent.

    A documented state refusal (e.g. 424 while a feature is off, answered before the body
    is read) is neither a rejected valid request nor an accepted invalid one."""
    if isinstance(failure, RejectedPositiveData) and case.id in _STATE.left_out:
        return False
    if isinstance(failure, (RejectedPositiveData, AcceptedNegativeData)) and _state_refusal(case, response):
        return False
    return not (isinstance(failure, AcceptedNegativeData) and _only_lenient_mutated(case, spec))


def _state_refusal(case: Any, response: Any) -> bool:
    """A refusal that depends on stored state no schema can express (`x-waldur-state-refusals`:
    the exact status and body, e.g. feedback on a user message): not a rejected valid request."""
    if response is None:
        return False
    refusals = case.operation.definition.raw.get("x-waldur-state-refusals", [])
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return any(r.get("status") == response.status_code and r.get("body") == body for r in refusals)


def _load(spec_path: Path, config: dict[str, Any], app: Any, base_url: str | None) -> Any:
    spec = SpecIndex.from_file(spec_path)
    document = adapt_spec(spec.document)
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(config))
    # Bind before any operation is touched: operations are cached with their app and base URL.
    if app is not None:
        schema.app = app
    if base_url is not None:
        schema.config.update(base_url=base_url)

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        return _judged_on_what_was_sent(failure, case, spec, response)

    return schema


def run_config(token: str, *, seed: int | None, max_examples: int, request_timeout: float) -> dict[str, Any]:
    config: dict[str, Any] = {
        "generation": {"max-examples": max_examples},
        "auth": {"openapi": {"tokenAuth": {"api_key": f"Token {token}"}}},
        "request-timeout": request_timeout,
        "workers": 1,  # never in parallel against a real deployment
    }
    if seed is not None:
        config["seed"] = seed
    return config


@contextmanager
def _run_state(budget: Budget | None, stream_deadline: float, spec: SpecIndex) -> Iterator[None]:
    with _STATE_LOCK:
        previous = (_STATE.budget, _STATE.stream_deadline, _STATE.spec, _STATE.left_out)
        _STATE.budget, _STATE.stream_deadline, _STATE.spec, _STATE.left_out = budget, stream_deadline, spec, set()
        try:
            yield
        finally:
            _STATE.budget, _STATE.stream_deadline, _STATE.spec, _STATE.left_out = previous


def run_schema_checks(
    spec_path: Path,
    token: str,
    *,
    app: Any = None,
    base_url: str | None = None,
    budget: Budget | None = None,
    seed: int | None = None,
    max_examples: int = 20,
    request_timeout: float = 30.0,
    tick: Callable[[], None] = lambda: None,
) -> list[CheckResult]:
    """Run every phase with every check: one result per schemathesis check that ran (its name
    stays the same whether it passes or fails), one for engine errors, and one that says how
    many stream cases the budget left out. `tick` is called after each scenario."""
    config = run_config(token, seed=seed, max_examples=max_examples, request_timeout=request_timeout)
    failures: dict[str, list[CheckResult]] = {}
    ran: set[str] = set()
    errors: list[CheckResult] = []
    seen: set[tuple[str, str, str]] = set()
    began = time.monotonic()
    with _run_state(budget, request_timeout, SpecIndex.from_file(spec_path)):
        schema = _load(spec_path, config, app, base_url)
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                ran |= {node.name for nodes in event.recorder.checks.values() for node in nodes}
                for failure in _failures(event, seen):
                    failures.setdefault(failure.check, []).append(failure)
                tick()
            elif isinstance(event, events.FatalError | events.NonFatalError):
                errors.append(_error(event))
        left_out = len(_STATE.left_out)
    seconds = time.monotonic() - began
    results = [_per_check(f"schema.{name}", failures.get(f"schema.{name}", [])) for name in sorted(ran)]
    results.append(_per_check("schema.errors", errors, "no error in the engine or the transport"))
    results.append(_stream_cases(budget, left_out))
    # Schemathesis runs every check on every response, so no check has a time of its own: the
    # part's time is shared equally (the JUnit suite's total stays the part's real time).
    for result in results:
        result.duration = seconds / len(results)
    return results


def _per_check(name: str, failures: list[CheckResult], note: str = "no failure in any phase") -> CheckResult:
    """One stable result per check: its first failure with steps, the others named in the message."""
    if not failures:
        return CheckResult("schema", name, "passed", note)
    first, others = failures[0], failures[1:]
    message = first.message
    if others:
        message += f"; {len(others)} more: " + "; ".join(f.message for f in others[:5])
    return CheckResult("schema", name, "failed", message, first.steps, rule=first.rule)


def _stream_cases(budget: Budget | None, left_out: int) -> CheckResult:
    """Say what the schema part's share of the stream budget left unchecked."""
    name = "schema.stream_cases"
    if budget is None:
        return CheckResult("schema", name, "passed", "no stream budget set")
    figures = {"streams": budget.used, "left_out": left_out}
    if budget.used == 0 and left_out:
        reason = f"no stream budget left for this part: {left_out} positive stream cases sent without `input`"
        return CheckResult("schema", name, "skipped", reason, skip="budget", figures=figures)
    note = f"{budget.used} positive stream cases streamed"
    if left_out:
        note += f"; {left_out} left out for budget (sent without `input`, judged as such)"
    return CheckResult("schema", name, "passed", note, figures=figures)


def _failures(event: Any, seen: set[tuple[str, str, str]]) -> Iterator[CheckResult]:
    recorder = event.recorder
    for case_id, nodes in recorder.checks.items():
        for node in nodes:
            if node.status != Status.FAILURE or node.failure_info is None:
                continue
            failure = node.failure_info.failure
            key_id = failure.case_id or case_id
            case = recorder.cases[key_id].value
            key = (node.name, case.operation.label, failure.title)
            if key in seen:
                continue
            seen.add(key)
            interaction = recorder.interactions.get(key_id)
            status = interaction.response.status_code if interaction and interaction.response else None
            body = None if type(case.body).__name__ == "NotSet" else case.body
            path = case.formatted_path + (f"?{_query(case.query)}" if case.query else "")
            steps = [Step(s.method, s.path, None, None, s.curl) for s in node.failure_info.steps[:-1]]
            answer = _answer(interaction)
            steps.append(Step(case.method, path, status, body, f"{failure.title}; response: {answer}"))
            yield CheckResult(
                "schema",
                f"schema.{node.name}",
                "failed",
                f"{case.operation.label} ({event.phase.value} phase): {failure.title}",
                steps,
                rule=f"schema.{node.name}",
            )


def _answer(interaction: Any) -> str:
    """The offending part of the response: its body, cut short."""
    content = getattr(getattr(interaction, "response", None), "content", b"") or b""
    text = content.decode("utf-8", errors="replace")
    return text if len(text) <= 300 else text[:297] + "..."


def _query(query: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(query, doseq=True)


def _error(event: Any) -> CheckResult:
    """An engine or transport error (e.g. a connection dropped mid-stream), with the request."""
    label = getattr(event, "label", None) or "schemathesis"
    info = getattr(event, "info", None)
    message = str(getattr(info, "message", None) or getattr(event, "exception", "") or event)
    method, _, path = label.partition(" ")
    notes = " ".join(getattr(getattr(event, "value", None), "__notes__", ()))
    sample = str(getattr(info, "code_sample", None) or notes.replace("Reproduce with:", "").strip())
    step = Step(method, path, None, None, f"{message[:200]}; {sample}" if sample else message[:300])
    step = step if path.startswith("/") else None
    return CheckResult("schema", "schema.errors", "failed", f"{label}: {message[:500]}", [step] if step else [])
