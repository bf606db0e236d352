"""`verify --api 8.1`: its parts pass against the mock's 8.1 profile and catch 8.1 mutants.

The schema part is schemathesis over the 8.1 spec; the stream part checks 8.1's grammar
(no `load`, the `w` warning right after the thread), blocks against the streamed records,
the server's thread names and cancel; the behaviour part has its own tests
(test_contract_8_1_behaviour.py). A part the profile does not list is a usage error,
never a pass. A schema mutant is the mock with one answer rewritten by an ASGI wrapper; a
stream mutant is that, or the mock with one piece of its 8.1 turn replaced.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.api import endpoints_v8_1
from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.chat import turn_v8_1
from mockserver.chat.blocks import BlockCollector, text_block
from mockserver.chat.turn_v8_1 import Turn81
from mockserver.contract.findings import ContractViolation, Step
from mockserver.contract.runner import Report, UsageError, VerifyOptions, plan_budget, stream_part_streams, verify
from mockserver.contract.streams import StreamChecker, StreamExpectation, is_prefix
from mockserver.contract.target import StreamCapture
from mockserver.engine.base import StreamItem
from mockserver.engine.records import encode_record
from mockserver.errors import Conflict
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.sequential import NDJSON
from mockserver.profiles import get_profile
from mockserver.store import ChatStore, Thread
from tests.mutants import narrowed_spec
from tests.support import verify_in_process
from tests.test_contract_7_9_4 import Rewrite, Rewriting, _status

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed.yaml"


def app_8_1() -> MockApp:
    return create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))


def run(target: ASGIApp, **options: Any) -> Report:
    return verify_in_process(target, "8.1", **options)


def _body(old: bytes, new: bytes) -> Rewrite:
    """Replace bytes in a JSON answer, and drop `Content-Length` (the length changes)."""

    def rewrite(message: Message) -> Message:
        if message["type"] == "http.response.start":
            return {**message, "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"]}
        if message["type"] == "http.response.body":
            return {**message, "body": message.get("body", b"").replace(old, new)}
        return message

    return rewrite


MUTANTS: dict[str, tuple[tuple[str, str], Rewrite, str]] = {
    # 8.0.5's message shape: `content` instead of `blocks`.
    "messages_with_content": (
        ("GET", "/api/chat-messages/"),
        _body(b'"blocks":', b'"content":'),
        "schema.response_schema_conformance",
    ),
    # Stats without `satisfaction_rate`.
    "stats_incomplete": (
        ("GET", "/api/chat-threads/stats/"),
        _body(b',"satisfaction_rate":null', b""),
        "schema.response_schema_conformance",
    ),
    # A thread's `has_feedback` as a string.
    "threads_has_feedback_text": (
        ("GET", "/api/chat-threads/"),
        _body(b'"has_feedback":false', b'"has_feedback":"no"'),
        "schema.response_schema_conformance",
    ),
    # The stream's body errors answered as 422 instead of DRF's 400.
    "stream_refusal_status": (("POST", "/api/chat/stream/"), _status(400, 422), "schema.status_code_conformance"),
}


STREAM_CHECKS = (
    "stream.new_thread",
    "stream.server_names_thread",
    "stream.follow_up",
    "stream.reload",
    "stream.edit_refusals",
    "stream.edit",
    "stream.staff_visibility",
    "stream.cancel_mid_stream",
    "stream.cancel_owner_only",
    "stream.cancel_idempotent",
)


CONFIGURATION_CHECKS = (
    "configuration.chat_disabled",
    "configuration.token_quota",
    "configuration.role_gate",
    "configuration.global_budget",
)


def test_the_8_1_mock_passes() -> None:
    mock = app_8_1()
    report = run(mock, staff_token="staff-token", max_streams=15)  # stream 5, behaviour 4, schema 6
    assert report.outcome == "honoured", [(r.check, r.message) for r in report.failed + report.incomplete]
    checks = {r.check: r.verdict for r in report.results}
    assert checks["schema.response_schema_conformance"] == "passed"
    assert checks["schema.not_a_server_error"] == "passed"
    assert {name: checks.get(name) for name in STREAM_CHECKS} == dict.fromkeys(STREAM_CHECKS, "passed")
    assert "stream.title_call" not in checks, "8.1 has no client title call"
    assert {name: checks.get(name) for name in CONFIGURATION_CHECKS} == dict.fromkeys(CONFIGURATION_CHECKS, "passed")
    assert report.budget["stream"].used == stream_part_streams(get_profile("8.1").traits) == 5
    assert report.budget["schema"].granted == 6
    assert checks["behaviour.model"] == "passed"
    assert not mock.violations.drain()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_an_8_1_mutant_is_caught(name: str, tmp_path: Path) -> None:
    (method, path), rewrite, rule = MUTANTS[name]
    # The schema part alone over the rewritten operation only (the coverage phase over the whole
    # spec costs 10-20 s), on seeded threads and messages, which the rewrite needs to exist.
    spec = narrowed_spec((path,), tmp_path, source=get_profile("8.1").spec_file)

    def seeded() -> MockApp:
        return create_app(ServerOptions(api="8.1", speed=0, validate_responses=True, seed_data=SEED))

    honest = run(seeded(), only=("schema",), spec=spec)
    assert rule not in honest.names("failed"), "the unmutated mock must pass the same run"
    report = run(Rewriting(seeded(), method, path, rewrite), only=("schema",), spec=spec)
    assert rule in report.names("failed"), [(r.check, r.message) for r in report.results]


MARKETPLACE = ("/api/marketplace-chat/stream/", "/api/marketplace-chat/feedback/", "/api/marketplace-chat/click/")


def test_a_documented_state_refusal_is_neither_acceptance_nor_rejection(tmp_path: Path) -> None:
    """Off by default, the marketplace chat answers its documented 424 before it reads a body:
    not an accepted invalid body, not a rejected valid one; a 424 with another body is caught."""
    spec = narrowed_spec(MARKETPLACE, tmp_path, source=get_profile("8.1").spec_file)
    report = run(app_8_1(), only=("schema",), spec=spec, max_examples=2)
    checks = {r.check: r.verdict for r in report.results}
    assert checks["schema.negative_data_rejection"] == checks["schema.positive_data_acceptance"] == "passed"
    undocumented = _body(b"is not enabled", b"is switched off")
    mutant = Rewriting(app_8_1(), "POST", "/api/marketplace-chat/stream/", undocumented)
    assert "schema.negative_data_rejection" in run(mutant, only=("schema",), spec=spec, max_examples=2).names("failed")


@pytest.mark.parametrize("api", ["8.1", "7.9.4"])
def test_a_part_the_profile_does_not_list_is_a_usage_error(api: str) -> None:
    """Refused before any request (never reported as passed); 7.9.4 has no behaviour part at all."""
    listed = get_profile(api).contract_parts
    missing = [part for part in ("stream", "behaviour", "operations", "configuration") if part not in listed]
    assert missing or api == "8.1", f"{api} lists every part"
    for part in missing:
        options = VerifyOptions(base_url="http://127.0.0.1:9", token="a", other_token="b", api=api, only=(part,))
        with pytest.raises(UsageError, match=f"no {part} part"):
            verify(options)


def test_the_stream_part_reserves_its_streams_for_8_1() -> None:
    """New thread, follow-up, reload, edit and the cancelled stream; no title call."""
    streams = stream_part_streams(get_profile("8.1").traits)
    assert streams == 5 and stream_part_streams(get_profile("8.0.5").traits) == 5
    assert plan_budget(12, ("schema", "stream"), streams) == {
        "schema": 7,
        "stream": 5,
        "behaviour": 0,
        "operations": 0,
        "configuration": 0,
    }


# -- the stream part ----------------------------------------------------------------
def run_stream(target: ASGIApp) -> Report:
    return run(target, only=("stream",), max_streams=10, staff_token="staff-token")


def _records_after(match: bytes, extra: bytes) -> Rewrite:
    """Insert `extra` (whole lines) before or after each stream record that starts with `match`."""

    def rewrite(message: Message) -> Message:
        body = message.get("body", b"") if message["type"] == "http.response.body" else b""
        if body.startswith(match):
            return {**message, "body": extra.replace(b"$", body)}
        return message

    return rewrite


class Cancels:
    """The app, with the answers of `POST /api/chat-threads/{uuid}/cancel/` passed through `rewrite`."""

    def __init__(self, app: ASGIApp, rewrite: Rewrite):
        self.app, self.rewrite = app, rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/cancel/"):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            await send(self.rewrite(message))

        await self.app(scope, receive, sending)


async def _adapt_silent_after_cancel(self: Turn81, items: AsyncGenerator[StreamItem, None]) -> Any:
    """After a cancel nothing more is sent: no content, and no final m either."""
    async for item in items:
        if self.cancelled():
            continue
        if isinstance(item, dict) and "m" not in item:
            self.collector.add(item)
        yield item


async def _adapt_ignoring_cancel(self: Turn81, items: AsyncGenerator[StreamItem, None]) -> Any:
    """The cancel is recorded but the stream goes on to the end."""
    async for item in items:
        if isinstance(item, dict) and "m" not in item:
            self.collector.add(item)
        yield item


async def _adapt_collecting_unsent(self: Turn81, items: AsyncGenerator[StreamItem, None]) -> Any:
    """After a cancel the answer is stored whole, although only its start was sent."""
    async for item in items:
        if isinstance(item, dict) and "m" not in item:
            self.collector.add(item)
            if self.cancelled():
                continue
        yield item


def _collect_each_delta(self: BlockCollector, record: dict[str, Any]) -> None:
    """Each markdown delta stored as a block of its own (they are not joined)."""
    if record.get("k") == "markdown":
        self.blocks.append(text_block(len(self.blocks), "markdown", record["c"]))
    else:
        ORIGINAL["add"](self, record)


def _second_cancel_refused(self: ChatStore, thread: Thread) -> None:
    if thread.cancel_requests:
        raise Conflict("A cancel was already requested.")
    thread.cancel_requests += 1


def _role_gate_409(settings: Any, user: Any) -> None:
    if settings.enabled_roles != "all":
        raise Conflict("AI Assistant is not available.")


def _always_named(self: Turn81, closing: Any) -> None:
    self.new_thread = True
    ORIGINAL["after_finish"](self, closing)


STREAM = ("POST", "/api/chat/stream/")
ORIGINAL: dict[str, Callable[..., Any]] = {
    "after_finish": Turn81.after_finish,
    "add": BlockCollector.add,
    "capacity_error": turn_v8_1.CapacityError.__init__,
}
Patch = tuple[type, str, Callable[..., Any]]
# name: (patches of the mock, a wrapper around the app or None, the check, the rule it breaks)
STREAM_MUTANTS: dict[str, tuple[list[Patch], Callable[[ASGIApp], ASGIApp] | None, str, str]] = {
    # 8.0.5's tool-call marker left on the 8.1 wire.
    "load_record": (
        [],
        lambda app: Rewriting(
            app, "POST", "/api/chat/stream/", _records_after(b'{"k":', b'{"k":"load","t":"tool"}\n$')
        ),
        "stream.new_thread",
        "stream.grammar.no_load",
    ),
    # The PII warning sent after the answer started.
    "warning_after_content": (
        [],
        lambda app: Rewriting(app, *STREAM, _records_after(b'{"k":', b'${"w":"PII"}\n')),
        "stream.new_thread",
        "stream.grammar.warning_after_thread",
    ),
    # Stored blocks still streaming.
    "blocks_not_complete": (
        [],
        lambda app: Rewriting(
            app, "GET", "/api/chat-messages/", _body(b'"status":"complete"', b'"status":"streaming"')
        ),
        "stream.new_thread",
        "stream.block_shapes",
    ),
    # Markdown deltas stored one block each: the blocks no longer reassemble into the records.
    "blocks_not_joined": (
        [(BlockCollector, "add", _collect_each_delta)],
        None,
        "stream.new_thread",
        "stream.reassembly",
    ),
    # The server does not name a new thread.
    "thread_not_named": ([(Turn81, "_name_thread", lambda self: None)], None, "stream.server_names_thread", ""),
    # Every turn names the thread again, follow-ups included.
    "follow_up_renames": (
        [(Turn81, "after_finish", _always_named)],
        None,
        "stream.follow_up",
        "stream.follow_up_keeps_name",
    ),
    # A cancel mid-stream ends the stream without the final m.
    "cancel_drops_final_m": (
        [(Turn81, "adapt", _adapt_silent_after_cancel)],
        None,
        "stream.cancel_mid_stream",
        "stream.cancel_final_m",
    ),
    # A cancel mid-stream is answered 200 and ignored.
    "cancel_ignored": (
        [(Turn81, "adapt", _adapt_ignoring_cancel)],
        None,
        "stream.cancel_mid_stream",
        "stream.cancel_stops_content",
    ),
    # The whole answer is stored although the cancel cut it short on the wire.
    "cancel_stores_unsent": (
        [(Turn81, "adapt", _adapt_collecting_unsent)],
        None,
        "stream.cancel_mid_stream",
        "stream.cancel_keeps_partial",
    ),
    # Anyone may cancel any thread, unknown ones too.
    "cancel_not_owner_only": (
        [],
        lambda app: Cancels(app, _status(404, 200)),
        "stream.cancel_owner_only",
        "",
    ),
    # A second cancel of the same thread is refused.
    "cancel_not_idempotent": (
        [(ChatStore, "request_cancel", _second_cancel_refused)],
        None,
        "stream.cancel_idempotent",
        "",
    ),
}


@pytest.mark.parametrize("name", sorted(STREAM_MUTANTS))
def test_an_8_1_stream_mutant_is_caught(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    patches, wrap, check, rule = STREAM_MUTANTS[name]
    for owner, attribute, replacement in patches:
        monkeypatch.setattr(owner, attribute, replacement)
    mock = create_app(ServerOptions(api="8.1", speed=0, validate_responses=False))
    report = run_stream(wrap(mock) if wrap else mock)
    failed = {r.check: r for r in report.failed}
    assert check in failed, [(r.check, r.verdict, r.message) for r in report.results]
    assert failed[check].diagnosis == (rule or check), failed[check].message
    assert failed[check].steps, "a failure comes with the requests that reproduce it"


def test_the_unmutated_mock_passes_the_same_stream_runs() -> None:
    report = run_stream(create_app(ServerOptions(api="8.1", speed=0, validate_responses=False)))
    assert report.outcome == "honoured", [(r.check, r.message) for r in report.failed + report.incomplete]


class Buffering:
    """A proxy that holds each stream's body back and sends it in one piece at its end."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) != STREAM:
            await self.app(scope, receive, send)
            return
        held: list[bytes] = []

        async def sending(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif message.get("more_body", False):
                held.append(message.get("body", b""))
            else:
                await send({**message, "body": b"".join(held) + message.get("body", b"")})

        await self.app(scope, receive, sending)


def test_a_cancel_that_comes_too_late_is_skipped_not_passed() -> None:
    """Behind a buffering proxy the first content record arrives with the final m: the cancel
    is answered only after the stream ended, so the check says so and the verdict is incomplete."""
    report = run_stream(Buffering(app_8_1()))
    result = next(r for r in report.results if r.check == "stream.cancel_mid_stream")
    assert (result.verdict, result.skip) == ("skipped", "not_checked"), result.message
    assert "had ended before the cancel" in result.message
    assert report.outcome == "incomplete"


# -- the configuration part ---------------------------------------------------------
def _capacity_without_retry_after(self: turn_v8_1.CapacityError, *args: Any) -> None:
    ORIGINAL["capacity_error"](self, *args)
    self.headers = {}


def _capacity_as_503(self: turn_v8_1.CapacityError, status: int, *args: Any) -> None:
    ORIGINAL["capacity_error"](self, 503, *args)


CONFIGURATION_MUTANTS: dict[str, tuple[Patch, str]] = {
    # 8.0.5's 409 for a caller the role setting leaves out.
    "role_gate_409": ((endpoints_v8_1, "ensure_role_allowed", _role_gate_409), "configuration.role_gate_none"),
    # One role text taken for another.
    "role_gate_texts_mixed": (
        (
            turn_v8_1,
            "ROLE_REFUSALS",
            {**turn_v8_1.ROLE_REFUSALS, "staff": turn_v8_1.ROLE_REFUSALS["staff_and_support"]},
        ),
        "configuration.role_gate_staff",
    ),
    # The global budget's refusal without `Retry-After`.
    "budget_without_retry_after": (
        (turn_v8_1.CapacityError, "__init__", _capacity_without_retry_after),
        "configuration.global_budget_global_minute_burst",
    ),
    # The token budget as the docstring has it: 503.
    "token_budget_503": (
        (turn_v8_1.CapacityError, "__init__", _capacity_as_503),
        "configuration.global_budget_global_minute_burst",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGURATION_MUTANTS))
def test_an_8_1_configuration_mutant_is_caught(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (owner, attribute, replacement), rule = CONFIGURATION_MUTANTS[name]
    monkeypatch.setattr(owner, attribute, replacement)
    report = run(create_app(ServerOptions(api="8.1", speed=0, validate_responses=False)), only=("configuration",))
    assert rule in report.names("failed"), [(r.check, r.verdict, r.message) for r in report.results]
    assert all(r.steps for r in report.failed)


# -- the 8.1 grammar and the prefix rule, record by record ------------------------------
THREAD = "a" * 32
FINAL = {"m": {"user_message_uuid": "b" * 32, "assistant_message_uuid": "c" * 32}}


def check_8_1(*records: dict[str, Any]) -> list[dict[str, Any]]:
    profile = get_profile("8.1")
    validator = SpecIndex.from_file(profile.spec_file).schema_validator(profile.stream_item_schema)
    checker = StreamChecker(validator, profile.traits)
    body = b"".join(encode_record(record) for record in ({"m": {"thread_uuid": THREAD}}, *records, FINAL))
    capture = StreamCapture(200, httpx.Headers({"content-type": NDJSON}), body)
    return checker.check(capture, StreamExpectation(), Step("POST", "/api/chat/stream/"))


def test_a_warning_right_after_the_thread_is_8_1_grammar() -> None:
    records = check_8_1({"w": "Personal data."}, {"k": "markdown", "c": "Hi"})
    assert [next(iter(r)) for r in records] == ["m", "w", "k", "m"]


@pytest.mark.parametrize(
    ("records", "rule"),
    [
        (({"k": "markdown", "c": "Hi"}, {"w": "Personal data."}), "stream.grammar.warning_after_thread"),
        (({"k": "load", "t": "tool"}, {"k": "markdown", "c": "Hi"}), "stream.grammar.no_load"),
    ],
    ids=["warning_after_content", "load"],
)
def test_8_1_grammar_violations(records: tuple[dict[str, Any], ...], rule: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        check_8_1(*records)
    assert caught.value.check == rule


def test_a_cancelled_answer_is_a_prefix_of_the_stream() -> None:
    streamed = [{"k": "markdown", "c": "Hello there"}, {"k": "code", "c": "x = 1", "t": "python"}]
    assert is_prefix([], streamed)
    assert is_prefix([{"k": "markdown", "c": "Hello"}], streamed)  # the last markdown block cut short
    assert is_prefix(streamed, streamed)
    assert not is_prefix([{"k": "markdown", "c": "Help"}], streamed)
    assert not is_prefix([{"k": "markdown", "c": "Hello"}, {"k": "code", "c": "x = 1", "t": "python"}], streamed)
    assert not is_prefix([*streamed, {"k": "markdown", "c": "more"}], streamed)
