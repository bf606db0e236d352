"""Fixed scenarios: the stream contract on each kind of stream, visibility, and configuration.

Part 2 makes one stream of each kind (new thread, follow-up, reload, edit, and a title
call where clients name threads) and checks each with `StreamChecker`; where the server
names threads it checks the name instead, and where threads can be cancelled it checks
who may cancel and a cancel that arrives mid-stream. With a staff token it also checks
what staff see.
Part 4 switches the target through `/__mock__/config` where it can be switched, and
checks the order of 424/401/409/400 on the stream where that order is settled (else each
answer alone), and the role gate and the global budget where the API has them; elsewhere
it is skipped with a reason.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mockserver.contract.behaviour import MARK, Budget
from mockserver.contract.findings import CheckResult, ContractViolation, SkipKind, Skipped, Step
from mockserver.contract.streams import StreamChecker, StreamExpectation
from mockserver.contract.target import Interruption, StreamCapture, Target
from mockserver.profiles.base import ApiTraits

DEFAULT_THREAD_NAME = "New chat"  # what a thread is called before anything names it
# Waldur looks for a cancel every 5 content chunks, so up to that many may follow the cancel.
CANCEL_POLL_RECORDS = 5
# Against the mock, a long scripted answer with an (unscaled) pause after its first records
# leaves time to cancel mid-stream even at speed 0; a real server ignores both headers.
LONG_SCENARIO = "long-answer"
LONG_STREAM_FAULT = "stall_after_chunks=20; stall_seconds=0.5"
# The role gate's refusals by the mock's `enabled_roles` switch: Waldur's texts, stated here
# and not taken from the mock, so that a wrong text in the mock is caught.
ROLE_REFUSALS = {
    "none": "AI Assistant is not available.",
    "staff": "AI Assistant is available to staff users only.",
    "staff_and_support": "AI Assistant is available to staff and support users only.",
    "misconfigured": "AI Assistant access is not configured correctly.",
}


def attempt(part: str, name: str, body: Callable[[], str | None], target: Target) -> CheckResult:
    """Run one scenario under its stable name: passed (with an optional note), skipped (a
    `Skipped`, with its kind), or failed (a violation names the rule it broke)."""
    began = time.monotonic()
    target.last = None
    try:
        result = CheckResult(part, name, "passed", body() or "")
    except Skipped as skip:
        result = CheckResult(part, name, "skipped", str(skip), skip=skip.kind)
    except ContractViolation as violation:
        result = CheckResult(part, name, "failed", violation.message, violation.steps, rule=violation.check)
    except Exception as error:  # a timeout, a body that is not JSON...: a finding with its request, not a crash
        steps = [target.last] if target.last is not None else []
        result = CheckResult(part, name, "failed", f"{type(error).__name__}: {error}"[:500], steps)
    result.duration = time.monotonic() - began
    return result


class StreamScenarios:
    def __init__(self, target: Target, checker: StreamChecker, budget: Budget, tick: Callable[[], None]):
        self.target = target
        self.checker = checker
        self.traits = checker.traits
        self.budget = budget
        self.tick = tick
        self.thread: str | None = None
        self.name: str | None = None  # the thread's name once the server named it
        self.first: dict[str, str] = {}  # final m of the first turn
        self.last: dict[str, str] = {}  # final m of the latest turn

    def stream(self, body: dict[str, Any], expect: StreamExpectation, token: str | None = None) -> list[dict[str, Any]]:
        token = token or self.target.tokens.user
        capture, step = self.send(body, token)
        records = self.checker.check(capture, expect, step)
        self.checker.check_rest(self.target, token, records, expect)
        return records

    def send(
        self,
        body: dict[str, Any],
        token: str,
        headers: dict[str, str] | None = None,
        during: Interruption | None = None,
    ) -> tuple[StreamCapture, Step]:
        """One stream out of the budget that answered 200 and was read to its end."""
        if not self.budget.take():
            raise Skipped("stream budget (--max-streams) exhausted", "budget")
        capture = self.target.stream(body, token=token, headers=headers, interruption=during)
        step = self.target.broken(capture, body) or Step("POST", self.target.stream_path, capture.status, body)
        if capture.error:
            raise ContractViolation("stream.connection", f"the connection broke mid-stream: {capture.error}", [step])
        if capture.status != 200:
            step.excerpt = capture.body[:300].decode("utf-8", "replace")
            raise ContractViolation("stream.status", f"expected 200, got {capture.status}", [step])
        return capture, step

    def scenarios(self) -> list[tuple[str, Callable[[], str | None]]]:
        """The scenarios that apply to the API, in the order they build on each other."""
        server_naming = self.traits.thread_naming == "server"
        scenarios: list[tuple[str, Callable[[], str | None]]] = [("stream.new_thread", self.new_thread)]
        if server_naming:
            scenarios.append(("stream.server_names_thread", self.server_names_thread))
        scenarios += [
            ("stream.follow_up", self.follow_up),
            ("stream.reload", self.reload),
            ("stream.edit_refusals", self.edit_refusals),
            ("stream.edit", self.edit),
        ]
        if not server_naming:
            scenarios.append(("stream.title_call", self.title_call))
        scenarios.append(("stream.staff_visibility", self.staff_visibility))
        if self.traits.cancel:
            scenarios += [
                ("stream.cancel_mid_stream", self.cancel_mid_stream),
                ("stream.cancel_owner_only", self.cancel_owner_only),
                ("stream.cancel_idempotent", self.cancel_idempotent),
            ]
        return scenarios

    def run(self) -> list[CheckResult]:
        scenarios = self.scenarios()
        results = []
        for name, scenario in scenarios:
            results.append(attempt("stream", name, scenario, self.target))
            self.tick()
        results.append(self.timing())
        return results

    def timing(self) -> CheckResult:
        """Stream timing over the network; a verdict only where it was really measured."""
        timing = self.checker.timing
        name = "stream.timing"
        if self.target.in_process:
            reason = "not measured: an in-process target's transport delivers each body whole"
            return CheckResult("stream", name, "skipped", reason, skip="not_applicable")
        if not timing.first_record_ms:
            return CheckResult("stream", name, "skipped", "no stream was measured", skip=self.prerequisite())
        if timing.one_piece:
            message = (
                f"{timing.one_piece} stream(s) arrived in one piece although they took a while: "
                "something between client and server buffers the body"
            )
            return CheckResult("stream", name, "failed", message, list(timing.steps), rule="stream.really_streamed")
        return CheckResult("stream", name, "passed", timing.summary(), figures=timing.figures())

    def prerequisite(self) -> SkipKind:
        """Why a check that needs an earlier stream could not run: the budget, or a failure."""
        return "budget" if self.budget.left_out else "not_checked"

    def need_thread(self) -> str:
        if self.thread is None:
            raise Skipped("no thread: the new-thread stream did not succeed", self.prerequisite())
        return self.thread

    def new_thread(self) -> None:
        text = f"{MARK} hello"
        records = self.stream({"input": text}, StreamExpectation(input=text))
        self.thread = records[0]["m"]["thread_uuid"]
        self.budget.created["user"].add(self.thread)
        self.last = records[-1]["m"]

    def thread_name(self, thread: str) -> tuple[Any, Step]:
        response = self.target.request("GET", f"/api/chat-threads/{thread}/", token=self.target.tokens.user)
        step = self.target.step(response)
        if response.status_code != 200:
            raise ContractViolation("stream.thread_retrievable", "cannot retrieve the stream's thread", [step])
        name = _json(response).get("name")
        step.excerpt = f"name {name!r}"
        return name, step

    def server_names_thread(self) -> str:
        """The server names a new thread itself (a second upstream call) before the final `m`."""
        name, step = self.thread_name(self.need_thread())
        self.name = name if isinstance(name, str) else None
        if not isinstance(name, str) or not name.strip() or name == DEFAULT_THREAD_NAME:
            raise ContractViolation(
                "stream.server_names_thread", f"after its first answer the thread is named {name!r}", [step]
            )
        return f"named {name!r}"

    def follow_up(self) -> None:
        """Where the server names threads, `update_thread_name` is an unknown field: ignored, and
        a follow-up never renames the thread."""
        self.first = dict(self.last)
        thread = self.need_thread()
        text = f"{MARK} and then?"
        body = {"input": text, "thread_uuid": thread}
        if self.traits.thread_naming == "server":
            body["update_thread_name"] = thread
        records = self.stream(body, StreamExpectation(input=text))
        self.last = records[-1]["m"]
        if self.name is not None:
            name, step = self.thread_name(thread)
            if name != self.name:
                message = f"a follow-up renamed the thread from {self.name!r} to {name!r}"
                raise ContractViolation("stream.follow_up_keeps_name", message, [step])

    def edit_refusals(self) -> str:
        """Editing an earlier user message or an assistant message: 400 with a bare list, nothing stored."""
        if "user_message_uuid" not in self.first or "user_message_uuid" not in self.last:
            raise Skipped("needs two user turns in one thread", self.prerequisite())
        cases = [
            ("stream.edit_not_last_refused", self.first["user_message_uuid"], ["Can only edit the last user message."]),
            ("stream.edit_assistant_refused", self.last["assistant_message_uuid"], ["Can only edit user messages."]),
        ]
        for check, message, answer in cases:
            body = {
                "input": f"{MARK} edited",
                "thread_uuid": self.need_thread(),
                "mode": "edit",
                "edit_message_uuid": message,
            }
            response = self.target.request("POST", self.target.stream_path, json=body, token=self.target.tokens.user)
            if response.status_code != 400 or _json(response) != answer:
                got = f"{response.status_code} {response.text[:200]}"
                raise ContractViolation(check, f"expected 400 {answer}, got {got}", [self.target.step(response, body)])
        return "400 for a non-last user message and for an assistant message"

    def reload(self) -> None:
        body = {"input": f"{MARK} and then?", "thread_uuid": self.need_thread(), "mode": "reload"}
        final = self.stream(body, StreamExpectation())[-1]["m"]
        if set(final) != {"assistant_message_uuid"}:
            raise ContractViolation(
                "stream.reload_final_m",
                f"reload's final m has {sorted(final)}",
                [Step("POST", self.target.stream_path, 200, body)],
            )
        self.last = {**self.last, **final}

    def edit(self) -> None:
        if "user_message_uuid" not in self.last:
            raise Skipped("no user message to edit", self.prerequisite())
        body = {
            "input": f"{MARK} edited",
            "thread_uuid": self.need_thread(),
            "mode": "edit",
            "edit_message_uuid": self.last["user_message_uuid"],
        }
        final = self.stream(body, StreamExpectation(input=body["input"]))[-1]["m"]
        if set(final) != {"user_message_uuid", "assistant_message_uuid"}:
            raise ContractViolation(
                "stream.edit_final_m",
                f"edit's final m has {sorted(final)}",
                [Step("POST", self.target.stream_path, 200, body)],
            )

    def title_call(self) -> None:
        thread = self.need_thread()
        before = self.target.request("GET", f"/api/chat-threads/{thread}/", token=self.target.tokens.user).json()
        self.stream(
            {"input": f"{MARK} a title please", "update_thread_name": thread}, StreamExpectation(title_call=True)
        )
        after = self.target.request("GET", f"/api/chat-threads/{thread}/", token=self.target.tokens.user)
        if after.json().get("message_count") != before.get("message_count"):
            raise ContractViolation(
                "stream.title_persists_nothing", "a title call stored messages", [self.target.step(after)]
            )

    def staff_visibility(self) -> str:
        staff = self.target.tokens.staff
        if staff is None:
            raise Skipped("no --staff-token given", "not_applicable")
        thread = self.need_thread()
        response = self.target.request("GET", f"/api/chat-threads/{thread}/", token=staff)
        if response.status_code != 200:
            raise ContractViolation(
                "stream.staff_sees_threads", "staff cannot retrieve a user's thread", [self.target.step(response)]
            )
        rows = self.target.request("GET", "/api/chat-messages/", token=staff, params={"thread": thread})
        fields = set(self.traits.staff_message_fields)
        if rows.status_code != 200 or not rows.json() or any(not set(r) >= fields for r in rows.json()):
            raise ContractViolation(
                "stream.staff_sees_injection_fields",
                "staff's message rows lack the injection fields",
                [self.target.step(rows)],
            )
        owner = self.target.request("GET", "/api/chat-sessions/current/", token=self.target.tokens.user).json()
        listed = self.target.request(
            "GET", "/api/chat-threads/", token=staff, params={"user": owner["user"], "page_size": 300}
        )
        names = {t["user_username"] for t in listed.json()} if listed.status_code == 200 else {"?"}
        if names - {owner["user_username"]}:
            raise ContractViolation(
                "stream.staff_user_filter",
                f"user= filter listed threads of {sorted(names)}",
                [self.target.step(listed)],
            )
        return "staff see the thread, injection fields, and the user filter narrows to one owner"

    def cancel_path(self, thread: str) -> str:
        return f"/api/chat-threads/{thread}/cancel/"

    def cancel(self, thread: str, token: str) -> tuple[int, Step]:
        response = self.target.request("POST", self.cancel_path(thread), token=token)
        return response.status_code, self.target.step(response, excerpt=response.text[:200])

    def cancel_owner_only(self) -> str:
        """Another user's thread and an unknown uuid are both 404 (the thread's existence is not told)."""
        thread = self.need_thread()
        tokens = self.target.tokens
        for who, target_thread, token in (
            ("another user's thread", thread, tokens.other),
            ("an unknown uuid", uuid.uuid4().hex, tokens.user),
        ):
            status, step = self.cancel(target_thread, token)
            if status != 404:
                raise ContractViolation("stream.cancel_owner_only", f"cancel of {who} answered {status}", [step])
        return "404 for another user's thread and for an unknown uuid"

    def cancel_idempotent(self) -> str:
        thread = self.need_thread()
        for attempt_number in (1, 2):
            status, step = self.cancel(thread, self.target.tokens.user)
            if status != 200:
                message = f"the owner's cancel #{attempt_number} answered {status}, expected 200"
                raise ContractViolation("stream.cancel_idempotent", message, [step])
        return "the owner's cancel answers 200, twice"

    def long_stream_headers(self) -> dict[str, str]:
        """The mock's long scripted answer with a pause, where the target offers it (else nothing)."""
        response = self.target.request("GET", "/__mock__/scripts")
        listed = _json(response) if response.status_code == 200 else None
        scripts = listed.get("scripts") if isinstance(listed, dict) else None
        names = {s.get("name") for s in scripts if isinstance(s, dict)} if isinstance(scripts, list) else set()
        if LONG_SCENARIO not in names:
            return {}
        return {"X-Mock-Scenario": LONG_SCENARIO, "X-Mock-Fault": LONG_STREAM_FAULT}

    def cancel_mid_stream(self) -> str:
        """A cancel sent once the first content record arrived: content stops (give or take a poll),
        the final `m` still comes, and the partial answer is stored."""
        thread = self.need_thread()
        token = self.target.tokens.user
        text = f"{MARK} tell me about Waldur: a long answer, please"
        body = {"input": text, "thread_uuid": thread}
        during = Interruption("POST", self.cancel_path(thread), token, ready=_has_content)
        capture, step = self.send(body, token, self.long_stream_headers(), during)
        if during.response is None or during.answered_at is None:
            raise Skipped("the stream ended before its first content record arrived: no cancel was sent")
        cancel_step = self.target.step(during.response, excerpt=during.response.text[:200])
        if during.response.status_code != 200:
            message = f"the owner's cancel answered {during.response.status_code} during the stream"
            raise ContractViolation("stream.cancel_answered", message, [step, cancel_step])
        if during.answered_at >= capture.ended_at:
            raise Skipped("the stream had ended before the cancel was answered: nothing was left to stop")
        received = capture.records()
        if not received or "assistant_message_uuid" not in received[-1].get("m", {}):
            raise ContractViolation("stream.cancel_final_m", "no final m record after the cancel", [step, cancel_step])
        records = self.checker.check(capture, StreamExpectation(input=text, cancelled=True), step)
        late = _content_after(capture, during.answered_at)
        if late > CANCEL_POLL_RECORDS:
            message = f"{late} content records came after the cancel was answered (at most {CANCEL_POLL_RECORDS})"
            raise ContractViolation("stream.cancel_stops_content", message, [step, cancel_step])
        self.checker.check_rest(self.target, token, records, StreamExpectation(input=text, cancelled=True))
        self.last = records[-1]["m"]
        before = sum(1 for record in records if "k" in record) - late
        return (
            f"cancelled after {before} content records, {late} came after it; "
            "the final m came and the partial answer is stored"
        )


class ConfigurationScenarios:
    """Part 4, only where the target exposes the mock's `/__mock__/config`.

    Where the order of the checks before a stream is not settled, only their answers are
    checked (each switch alone, on an otherwise valid request), never which comes first."""

    SWITCHES = (
        "chat_enabled",
        "upstream_url_configured",
        "upstream_token_configured",
        "enabled_roles",
        "global_requests_per_minute",
        "global_daily_token_budget",
    )

    def __init__(self, target: Target, tick: Callable[[], None], traits: ApiTraits | None = None):
        self.target = target
        self.tick = tick
        self.traits = traits or ApiTraits()
        self.original: dict[str, Any] = {}

    def scenarios(self, user: str) -> list[tuple[str, Callable[[], str | None]]]:
        """The checks that apply to the API, each under its stable name."""
        scenarios: list[tuple[str, Callable[[], str | None]]] = []
        if self.traits.pre_stream_order_known:
            scenarios += [
                ("configuration.chat_disabled", self.chat_disabled),
                ("configuration.upstream_not_configured", self.upstream_not_configured),
            ]
        else:
            scenarios.append(("configuration.chat_disabled", self.chat_disabled_answer))
        scenarios.append(("configuration.token_quota", lambda: self.token_quota(user)))
        if self.traits.role_gate:
            scenarios.append(("configuration.role_gate", self.role_gate))
        if self.traits.global_budget:
            scenarios.append(("configuration.global_budget", self.global_budget))
        return scenarios

    def run(self) -> list[CheckResult]:
        probe = self.target.request("GET", "/__mock__/config")
        original = _json(probe) if probe.status_code == 200 else None
        if not isinstance(original, dict) or "chat_enabled" not in original:
            reason = (
                "the target cannot be switched (no /__mock__/config); a real deployment is configured by its admins"
            )
            names = [name for name, _ in self.scenarios("")]
            return [CheckResult("configuration", n, "skipped", reason, skip="not_applicable") for n in names]
        self.original = original
        session = _json(self.target.request("GET", "/api/chat-sessions/current/", token=self.target.tokens.user))
        user = session["user_username"]  # the preflight checked it is there
        results = []
        try:
            for name, scenario in self.scenarios(user):
                results.append(attempt("configuration", name, scenario, self.target))
                self.tick()
            return results
        finally:
            restore = {k: original[k] for k in self.SWITCHES if k in original}
            restore["token_limits"] = {user: original.get("token_limits", {}).get(user)}
            restore["token_usage"] = {user: original.get("token_usage", {}).get(user)}
            self.target.request("PATCH", "/__mock__/config", json=restore)

    def restoring(self, patch: dict[str, Any]) -> dict[str, Any]:
        """What undoes `patch`: the values the run started with."""
        return {key: self.original.get(key) for key in patch}

    def configure(self, patch: dict[str, Any]) -> None:
        response = self.target.request("PATCH", "/__mock__/config", json=patch)
        if response.status_code != 200:
            raise Skipped(f"the target refused the configuration {patch}: {response.status_code}")

    @contextmanager
    def switched(self, patch: dict[str, Any], restore: dict[str, Any]) -> Iterator[None]:
        """Apply a switch for one scenario and undo it even when the scenario fails."""
        self.configure(patch)
        try:
            yield
        finally:
            self.target.request("PATCH", "/__mock__/config", json=restore)

    def expect(self, check: str, body: Any, token: str | None, status: int, answer: Any) -> None:
        response = self.target.request("POST", self.target.stream_path, json=body, token=token)
        step = self.target.step(response, body, response.text[:200])
        if response.status_code != status or _json(response) != answer:
            raise ContractViolation(
                check, f"expected {status} {answer}, got {response.status_code} {response.text[:200]}", [step]
            )

    def chat_disabled(self) -> str:
        disabled = {"detail": "Extension is disabled."}
        with self.switched({"chat_enabled": False}, {"chat_enabled": True}):
            self.expect("configuration.chat_disabled_before_auth", {"input": f"{MARK} x"}, None, 424, disabled)
            self.expect("configuration.chat_disabled_before_body", {}, self.target.tokens.user, 424, disabled)
        return "424 before authentication and before body validation"

    def upstream_not_configured(self) -> str:
        tokens = self.target.tokens
        with self.switched({"upstream_url_configured": False}, {"upstream_url_configured": True}):
            self.expect(
                "configuration.auth_before_upstream",
                {"input": f"{MARK} x"},
                None,
                401,
                {"detail": "Authentication credentials were not provided."},
            )
            self.expect(
                "configuration.upstream_url_before_body",
                {},
                tokens.user,
                409,
                {"detail": "LLM inference API URL is not configured."},
            )
        with self.switched({"upstream_token_configured": False}, {"upstream_token_configured": True}):
            self.expect(
                "configuration.upstream_token_before_body",
                {},
                tokens.user,
                409,
                {"detail": "LLM inference API token is not configured."},
            )
        return "401 before 409, 409 before 400"

    def token_quota(self, user: str) -> str:
        tokens = self.target.tokens
        for period in ("daily", "weekly", "monthly"):
            at_limit = {"token_limits": {user: {f"{period}_limit": 10}}, "token_usage": {user: {period: 10}}}
            with self.switched(at_limit, {"token_limits": {user: None}, "token_usage": {user: None}}):
                self.expect(
                    "configuration.body_before_quota", {}, tokens.user, 400, {"input": ["This field is required."]}
                )
                self.expect(
                    f"configuration.{period}_quota",
                    {"input": f"{MARK} x"},
                    tokens.user,
                    409,
                    {"detail": f"{period.capitalize()} token limit exceeded."},
                )
        return "400 before 409; daily, weekly and monthly limits answer 409"

    def chat_disabled_answer(self) -> str:
        disabled = {"detail": "Extension is disabled."}
        with self.switched({"chat_enabled": False}, {"chat_enabled": True}):
            self.expect("configuration.chat_disabled", {"input": f"{MARK} x"}, self.target.tokens.user, 424, disabled)
        return "424 for a valid request while chat is disabled"

    def role_gate(self) -> str:
        """Each role setting that leaves a regular user out answers 403 with its own text."""
        for roles, text in ROLE_REFUSALS.items():
            patch = {"enabled_roles": roles}
            with self.switched(patch, self.restoring(patch)):
                self.expect(
                    f"configuration.role_gate_{roles}",
                    {"input": f"{MARK} x"},
                    self.target.tokens.user,
                    403,
                    {"detail": text},
                )
        return f"403 with its text for each of {', '.join(ROLE_REFUSALS)}"

    def global_budget(self) -> str:
        """A used-up global budget: 429, the rate-limit body and a `Retry-After` that agrees with it."""
        for patch, code in (
            ({"global_requests_per_minute": 0}, "global_minute_burst"),
            ({"global_daily_token_budget": 0}, "global_daily_token"),
        ):
            with self.switched(patch, self.restoring(patch)):
                body = {"input": f"{MARK} x"}
                response = self.target.request(
                    "POST", self.target.stream_path, json=body, token=self.target.tokens.user
                )
                problem = rate_limit_problem(response, code)
                if problem:
                    step = self.target.step(response, body, response.text[:200])
                    raise ContractViolation(f"configuration.global_budget_{code}", problem, [step])
        return "429 with the rate-limit body and Retry-After, per minute and per day"


def rate_limit_problem(response: Any, code: str) -> str | None:
    """What is wrong with a global-budget refusal (None when nothing)."""
    body = _json(response)
    if response.status_code != 429 or not isinstance(body, dict):
        return f"expected 429 with a JSON object, got {response.status_code} {response.text[:200]}"
    if body.get("error") != "rate_limited" or body.get("code") != code:
        return f"expected error rate_limited, code {code}: {body}"
    seconds = body.get("retry_after_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return f"retry_after_seconds is {seconds!r}, not a whole number of seconds"
    if not isinstance(body.get("reset_at"), str) or not isinstance(body.get("detail"), str):
        return f"reset_at and detail must be strings: {body}"
    if response.headers.get("retry-after") != str(seconds):
        return f"Retry-After is {response.headers.get('retry-after')!r}, the body says {seconds}"
    return None


def _has_content(body: bytes) -> bool:
    """A complete content record (`k`) has arrived."""
    return any(_is_content_line(line) for line in body.split(b"\n")[:-1])


def _content_after(capture: StreamCapture, seconds: float) -> int:
    """Content records whose line arrived after `seconds` (from the stream's send)."""
    lines = capture.body.split(b"\n")[:-1]
    times = capture.line_times()
    return sum(1 for line, at in zip(lines, times, strict=False) if at > seconds and _is_content_line(line))


def _is_content_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "k" in record


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
