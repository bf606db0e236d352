"""The stream part for an SSE chat API (Waldur 7.9.4's `invoke` and SSE `stream`).

Checks, each under a stable name: the invoke placeholder, the refusals before a stream
(401, 400 bodies), the SSE framing and `data:` payloads of a plain reply, the error
event on an upstream failure (only where the target is the mock and can be told to fail),
and the timing: time to first event, and whether the body really streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mockserver.contract.behaviour import MARK, Budget
from mockserver.contract.findings import CheckResult, ContractViolation, Step
from mockserver.contract.scenarios import Skipped, attempt
from mockserver.contract.streams import StreamTiming
from mockserver.contract.target import StreamCapture, Target
from mockserver.openapi.sequential import EVENT_STREAM, SseLines, sequential_media_type

SSE_STREAM_PART_STREAMS = 2  # a plain reply and, against the mock, a failing upstream
INVOKE_PATH = "/api/chat/invoke/"
INVOKE_ANSWER = "Invoke chat response"
ERROR_EVENT = (
    b'event: error\ndata: {"detail":"Chat processing was interrupted due to a technical problem. '
    b'Please try again later."}\n\n'
)
REQUIRED = {"input": ["This field is required."]}
BLANK = {"input": ["This field may not be blank."]}
ItemCheck = Callable[[Any], list[str]]


class SseStreamScenarios:
    def __init__(self, target: Target, check_item: ItemCheck, budget: Budget, tick: Callable[[], None]):
        self.target = target
        self.check_item = check_item
        self.budget = budget
        self.tick = tick
        self.timing = StreamTiming()

    def run(self) -> list[CheckResult]:
        scenarios: list[tuple[str, Callable[[], str | None]]] = [
            ("stream.invoke", self.invoke),
            ("stream.refusals", self.refusals),
            ("stream.sse_reply", self.plain_reply),
            ("stream.sse_error_event", self.error_event),
        ]
        results = []
        for name, scenario in scenarios:
            results.append(attempt("stream", name, scenario, self.target))
            self.tick()
        results.append(self.timing_result())
        return results

    # -- without streaming ----------------------------------------------------------
    def invoke(self) -> str:
        response = self.target.request("POST", INVOKE_PATH, token=self.target.tokens.user, json={"input": "x"})
        step = self.target.step(response, {"input": "x"}, response.text[:200])
        if response.status_code != 200 or _json(response) != INVOKE_ANSWER:
            raise ContractViolation("stream.invoke.answer", f"expected 200 {INVOKE_ANSWER!r}", [step])
        anonymous = self.target.request("POST", INVOKE_PATH)
        if anonymous.status_code != 401:
            raise ContractViolation(
                "stream.invoke.auth", "an anonymous invoke must get 401", [self.target.step(anonymous)]
            )
        return "200 with the placeholder string; 401 without a token"

    def refusals(self) -> str:
        path, token = self.target.stream_path, self.target.tokens.user
        cases: list[tuple[str, dict[str, Any], str | None, int, Any]] = [
            ("stream.refusals.anonymous", {"input": f"{MARK} hi"}, None, 401, None),
            ("stream.refusals.required", {}, token, 400, REQUIRED),
            ("stream.refusals.blank", {"input": "   "}, token, 400, BLANK),
        ]
        for rule, body, who, status, expected in cases:
            response = self.target.request("POST", path, json=body, token=who)
            got = _json(response)
            if response.status_code != status or (expected is not None and got != expected):
                want = f"{status} {expected}" if expected is not None else str(status)
                step = self.target.step(response, body, response.text[:200])
                raise ContractViolation(rule, f"expected {want}, got {response.status_code} {got}", [step])
        return "401 anonymous; 400 with DRF's bodies for a missing and a blank input"

    # -- streams --------------------------------------------------------------------
    def _stream(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[StreamCapture, Step]:
        if not self.budget.take():
            raise Skipped("no stream budget left for this check", "budget")
        capture = self.target.stream(body, token=self.target.tokens.user, headers=headers)
        step = self.target.broken(capture, body) or Step(
            "POST", self.target.stream_path, capture.status, body, capture.body[:200].decode("utf-8", "replace")
        )
        if capture.timed_out:
            raise ContractViolation("stream.deadline", "the stream did not end within the deadline", [step])
        if capture.error:
            raise ContractViolation("stream.connection", f"the connection broke: {capture.error}", [step])
        return capture, step

    def plain_reply(self) -> str:
        body = {"input": f"{MARK} Hello"}
        capture, step = self._stream(body)
        payloads = self._framed(capture, step)
        self.timing.add(capture, step)
        if not payloads or any("detail" in p for p in payloads):
            raise ContractViolation("stream.sse.reply", "a plain reply must have chunks and no error event", [step])
        text = "".join(p.get("content", "") for p in payloads)
        if not text.strip():
            raise ContractViolation("stream.sse.reply", "the chunks' content is empty", [step])
        return f"{len(payloads)} data events, {len(text)} characters"

    def error_event(self) -> str:
        if not self._is_mock():
            raise Skipped("the target cannot be told to fail its upstream (not this mock)", "not_applicable")
        body = {"input": f"{MARK} fail"}
        capture, step = self._stream(body, headers={"X-Mock-Fault": "upstream_error_after_chunks=1"})
        self._framed(capture, step)
        if not capture.body.endswith(ERROR_EVENT):
            raise ContractViolation("stream.sse.error_event", f"the stream must end with {ERROR_EVENT!r}", [step])
        return "event: error with Waldur's detail, then the end of the body"

    def _framed(self, capture: StreamCapture, step: Step) -> list[dict[str, Any]]:
        """Status, media type, and every line by the SSE grammar; returns the parsed payloads."""
        if capture.status != 200:
            raise ContractViolation("stream.status", f"expected 200, got {capture.status}", [step])
        content_type = capture.headers.get("content-type", "")
        if sequential_media_type(content_type) != EVENT_STREAM:
            raise ContractViolation("stream.content_type", f"Content-Type is {content_type!r}, expected SSE", [step])
        payloads: list[dict[str, Any]] = []
        lines = SseLines(lambda item: _collect(payloads, item, self.check_item), frozenset({"error"}))
        *complete, rest = capture.body.split(b"\n")
        problems = [problem for line in complete for problem in lines.line(line)] + lines.end(rest)
        if problems:
            rule = "stream.sse.data" if any(p.startswith("data") for p in problems) else "stream.sse.framing"
            raise ContractViolation(rule, problems[0], [step])
        return payloads

    def _is_mock(self) -> bool:
        try:
            response = self.target.request("GET", "/__mock__/health")
        except Exception:
            return False
        return response.status_code == 200 and isinstance(_json(response), dict)

    def timing_result(self) -> CheckResult:
        name = "stream.timing"
        if self.target.in_process:
            reason = "not measured: an in-process target's transport delivers each body whole"
            return CheckResult("stream", name, "skipped", reason, skip="not_applicable")
        timing = self.timing
        if not timing.first_record_ms:
            return CheckResult("stream", name, "skipped", "no stream was measured", skip="not_checked")
        if timing.one_piece:
            message = f"{timing.one_piece} stream(s) arrived in one piece although they took a while: buffered"
            return CheckResult("stream", name, "failed", message, list(timing.steps), rule="stream.really_streamed")
        return CheckResult("stream", name, "passed", timing.summary(), figures=timing.figures())


def _collect(payloads: list[dict[str, Any]], item: Any, check: ItemCheck) -> list[str]:
    if isinstance(item, dict):
        payloads.append(item)
    return check(item)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
