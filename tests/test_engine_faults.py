"""Faults on demand and the timing of chunks (server notes, section 2.7; docs/scripts.md "Faults").

Wire faults (a dropped connection, a malformed line) break the body on purpose; upstream
faults (an error after N chunks, a stall) follow Waldur's error path: `e`, persistence,
then the final `m`. Timing is unit-tested: the HTTP fixture runs at speed 0.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.app import MockApp
from mockserver.engine.base import DropConnection, RawLine, ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.faults import DEFAULT_MALFORMED_LINE, Faults, FaultSyntaxError, parse_fault_header
from mockserver.engine.pacing import Pacer, Timing, count_tokens
from mockserver.engine.records import UPSTREAM_INTERRUPTED, Record
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.scripts import ScriptSet, load_scripts_text
from tests.support import Client, Clients
from tests.test_engine_parser import fixture_tools
from tests.test_engine_scripts import (
    QUESTION,
    assert_bound_stream,
    configure,
    messages,
    sent_markdown,
    stored_reply,
    tokens,
    upstream_chunks,
)

STREAM_URL = "/api/chat/stream/"


def stream_lines(client: Client, scenario: str, fault: str) -> list[str] | None:
    """The body's lines, or None when the transport itself raised (how a cut connection may surface)."""
    try:
        response = client.post(
            STREAM_URL, json={"input": QUESTION}, headers={"X-Mock-Scenario": scenario, "X-Mock-Fault": fault}
        )
    except (ConnectionDroppedOnPurpose, httpx.TransportError, OSError):
        return None
    assert response.status_code == 200, response.text
    return response.text.splitlines()


def only_turn(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """The single user/assistant pair of the caller (the thread uuid may never have reached the client)."""
    rows = messages(client)
    assert [m["role"] for m in rows] == ["user", "assistant"], rows
    assert len({m["thread"] for m in rows}) == 1
    return rows[0], rows[1]


# -- drop_after_records --------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["code-block", "greeting", "table"])
@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_dropped_connection_still_persists_both_messages(clients: Clients, scenario: str, after: int) -> None:
    """Section 2.7: a cut body holds at most N whole records; persistence still runs."""
    lines = stream_lines(clients.alice, scenario, f"drop_after_records={after}")
    if lines is not None:
        assert len(lines) <= after
        records = [json.loads(line) for line in lines]  # every line that arrived is whole
        assert not records or records[0]["m"]["thread_uuid"]
    user, assistant = only_turn(clients.alice)
    assert user["content"] == QUESTION
    assert "".join(upstream_chunks(scenario)).startswith(assistant["content"])


def test_drop_after_the_last_record_changes_nothing(clients: Clients) -> None:
    """A drop point beyond the stream's end never triggers: the normal stream arrives."""
    lines = stream_lines(clients.alice, "greeting", "drop_after_records=50")
    assert lines is not None
    assert_bound_stream([json.loads(line) for line in lines])


# -- upstream_error_after_chunks -----------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["greeting", "code-block", "long-answer", "mermaid", "table", "fallback"])
@pytest.mark.parametrize("after", [0, 1, 2])
def test_upstream_error_after_chunks(clients: Clients, scenario: str, after: int) -> None:
    """Section 2.7: e then m; the stored content is the chunks that arrived, even the unsent part."""
    result = clients.alice.stream(
        input=QUESTION, headers={"X-Mock-Scenario": scenario, "X-Mock-Fault": f"upstream_error_after_chunks={after}"}
    )
    assert_bound_stream(result.records)
    assert result.records[-2] == {"e": UPSTREAM_INTERRUPTED}
    arrived = "".join(upstream_chunks(scenario)[:after])
    stored = stored_reply(clients.alice, result.thread_uuid)["content"]
    assert stored == arrived
    assert stored.startswith(sent_markdown(result.records))


def test_upstream_error_after_the_first_chunk_of_a_short_reply_sends_only_e(clients: Clients) -> None:
    """Section 2.8 (e): nothing reached 50 characters, so the stream is m, e, m; the chunk is stored."""
    result = clients.alice.stream(
        input=QUESTION, headers={"X-Mock-Scenario": "greeting", "X-Mock-Fault": "upstream_error_after_chunks=1"}
    )
    assert tokens(result.records) == "TEU"
    assert stored_reply(clients.alice, result.thread_uuid)["content"] == upstream_chunks("greeting")[0]


def test_zero_chunks_then_error_stores_an_empty_assistant_message(clients: Clients) -> None:
    """Section 9: a stream of metadata only stores an assistant message with content ""."""
    clients.alice.stream(input=QUESTION, headers={"X-Mock-Fault": "upstream_error_after_chunks=0"})
    assert only_turn(clients.alice)[1]["content"] == ""


# -- malformed lines -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "after", "line"),
    [
        ("malformed_line_after_records=1; malformed_line=garbage{", 1, "garbage{"),
        ('malformed_line_after_records=2, malformed_line={"k":"markdown"', 2, '{"k":"markdown"'),
        ("malformed_line_after_records=1", 1, DEFAULT_MALFORMED_LINE),
        ("malformed_line_after_records=3;malformed_line=data: x=1", 3, "data: x=1"),
    ],
    ids=["garbage", "truncated-json", "default", "sse-like"],
)
def test_malformed_line_is_inserted_exactly(clients: Clients, fault: str, after: int, line: str) -> None:
    """The raw line appears once, after record N; every other line is a valid record in Waldur's order."""
    lines = stream_lines(clients.alice, "code-block", fault)
    assert lines is not None
    assert lines[after] == line
    assert lines.count(line) == 1
    assert_bound_stream([json.loads(x) for i, x in enumerate(lines) if i != after])


# -- refused selectors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Mock-Fault": "explode=1"},
        {"X-Mock-Fault": "drop_after_records=two"},
        {"X-Mock-Fault": "drop_after_records"},
        {"X-Mock-Fault": "drop_after_records=-1"},
        {"X-Mock-Fault": "stall_seconds=soon"},
        {"X-Mock-Scenario": "no-such-script"},
        {"X-Mock-Scenario": "greeting", "X-Mock-Fault": "bogus=1"},
    ],
    ids=["unknown", "not-int", "no-value", "negative", "not-number", "unknown-scenario", "good-scenario-bad-fault"],
)
def test_bad_selectors_are_refused_and_nothing_is_stored(clients: Clients, headers: dict[str, str]) -> None:
    """400 {"detail": ...} before anything streams: no thread, no message."""
    response = clients.alice.post(STREAM_URL, json={"input": QUESTION}, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"]
    assert clients.alice.get("/api/chat-threads/").json() == []
    assert messages(clients.alice) == []


def test_bad_selector_on_an_existing_thread_stores_nothing_more(clients: Clients) -> None:
    """A refused request in an existing thread leaves it as it was."""
    thread = clients.alice.stream(input=QUESTION).thread_uuid
    before = messages(clients.alice, thread)
    response = clients.alice.post(
        STREAM_URL, json={"input": "again", "thread_uuid": thread}, headers={"X-Mock-Fault": "nope"}
    )
    assert response.status_code == 400
    assert messages(clients.alice, thread) == before


# -- precedence: script, then global config, then header (docs/scripts.md) ----------------------
@pytest.mark.parametrize(
    ("config", "header", "after"),
    [({}, None, 12), ({"upstream_error_after_chunks": 2}, None, 2), ({"upstream_error_after_chunks": 2}, "3", 3)],
    ids=["script", "global-over-script", "header-over-global"],
)
def test_fault_precedence(clients: Clients, config: dict[str, int], header: str | None, after: int) -> None:
    """The upstream-error script fails after 10 chunks unless global config or the header say otherwise."""
    if config:
        configure(clients, faults=config)
    headers = {"X-Mock-Scenario": "upstream-error"}
    if header:
        headers["X-Mock-Fault"] = f"upstream_error_after_chunks={header}"
    result = clients.alice.stream(input=QUESTION, headers=headers)
    stored = stored_reply(clients.alice, result.thread_uuid)["content"]
    assert stored == "".join(upstream_chunks("upstream-error")[:after])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", Faults()),
        ("drop_after_records=2", Faults(drop_after_records=2)),
        (
            " drop-after-records = 2 ; stall_seconds=1.5 ",
            Faults(drop_after_records=2, stall_seconds=1.5, stall_after_chunks=0),
        ),
        (
            "malformed_line_after_records=0,malformed_line=a=b",
            Faults(malformed_line_after_records=0, malformed_line="a=b"),
        ),
        ("first_byte_delay_ms=250", Faults(first_byte_delay_ms=250.0)),
    ],
)
def test_parse_fault_header(header: str, expected: Faults) -> None:
    """`name=value` items split on `,` or `;`; a stall without a position stalls before the first chunk."""
    assert parse_fault_header(header) == expected


@pytest.mark.parametrize("header", ["explode=1", "drop_after_records=x", "stall_seconds", "drop_after_records=-2"])
def test_parse_fault_header_refusals(header: str) -> None:
    with pytest.raises(FaultSyntaxError):
        parse_fault_header(header)


# -- the engine's faults without HTTP: what is yielded, what is slept ---------------------------
SLEEP_SCRIPTS = """
scripts:
  - name: slow
    reply:
      chunks: ["one two three ", "four five ", "six"]
      timing: {first_chunk_ms: 5000, inter_chunk_ms: 5000}
"""


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Every asyncio.sleep the pacer asks for, recorded instead of slept, on a fake clock it advances."""
    recorded: list[float] = []
    clock = [1000.0]

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr("mockserver.engine.pacing.asyncio.sleep", fake_sleep)
    monkeypatch.setattr("mockserver.engine.pacing.monotonic", lambda: clock[0])
    yield recorded


def run_slow_script(faults: Faults, speed: float) -> tuple[list[StreamItem], list[str]]:
    stored: list[str] = []

    def finish(text: str, tokens: int) -> Record:
        stored.append(text)
        return {"m": {"user_message_uuid": "1" * 32, "assistant_message_uuid": "2" * 32}}

    engine = ScriptedEngine(ScriptSet(load_scripts_text(SLEEP_SCRIPTS, "slow.yaml")), fixture_tools())
    request = ReplyRequest(input="q", scenario="slow", faults=faults, speed=speed)

    async def collect() -> list[StreamItem]:
        return [item async for item in engine.stream(request, StreamFrame({"m": {"thread_uuid": "3" * 32}}, finish))]

    return asyncio.run(collect()), stored


def test_speed_zero_never_sleeps_for_pacing(sleeps: list[float]) -> None:
    """Speed 0 plays a script with 5-second delays at once."""
    items, stored = run_slow_script(Faults(), speed=0)
    assert sleeps == []
    assert stored == ["one two three four five six"]
    assert_bound_stream([item for item in items if isinstance(item, dict)])


def test_speed_scales_script_delays(sleeps: list[float]) -> None:
    """Speed 2 halves every scripted delay: the chunks make one record at the end, so one wake-up at 15 s / 2."""
    run_slow_script(Faults(), speed=2)
    assert sleeps == [7.5]


def test_faults_are_not_scaled_by_speed(sleeps: list[float]) -> None:
    """docs/scripts.md: a stall of T seconds stays T seconds even at speed 0; so does a first-byte delay."""
    run_slow_script(Faults(stall_after_chunks=1, stall_seconds=1.5, first_byte_delay_ms=250), speed=0)
    assert sleeps == [0.25, 1.5]


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_engine_drop_yields_n_records_then_drop_and_finishes_once(after: int) -> None:
    """The engine's side of the drop fault: N records, one DropConnection, and persistence exactly once."""
    items, stored = run_slow_script(Faults(drop_after_records=after), speed=0)
    assert isinstance(items[-1], DropConnection)
    assert len(items) == after + 1
    assert all(isinstance(item, dict) for item in items[:-1])
    assert len(stored) == 1


def test_engine_malformed_line_is_a_raw_line_item() -> None:
    """The malformed line is handed to the transport as bytes, newline-terminated."""
    items, _ = run_slow_script(Faults(malformed_line_after_records=1, malformed_line="oops"), speed=0)
    assert items[1] == RawLine(b"oops\n")
    assert sum(isinstance(item, RawLine) for item in items) == 1


# -- Timing and Pacer ----------------------------------------------------------------------------
CHUNKS = ["Hello", " world", ", how", " are", " you", "?"]


def test_first_and_inter_chunk_delays() -> None:
    """first_chunk_ms before the first chunk, inter_chunk_ms before each later one (seconds out)."""
    assert Timing(first_chunk_ms=400, inter_chunk_ms=25).delays(CHUNKS) == [0.4] + [0.025] * 5


def test_tokens_per_second_replaces_inter_chunk_ms() -> None:
    """A later chunk waits its token count divided by the rate."""
    delays = Timing(first_chunk_ms=100, inter_chunk_ms=999, tokens_per_second=50).delays(CHUNKS)
    assert delays[0] == pytest.approx(0.1)
    assert delays[1:] == pytest.approx([count_tokens(c) / 50 for c in CHUNKS[1:]])


def test_explicit_per_chunk_delays_win() -> None:
    """Recorded delays are kept as they are (no jitter); a missing one falls back to the timing."""
    timing = Timing(first_chunk_ms=400, inter_chunk_ms=25, jitter_ms=10, seed=3)
    explicit: list[float | None] = [412, None, 95, None, 0, 60]
    delays = timing.delays(CHUNKS, explicit)
    assert [delays[i] for i in (0, 2, 4, 5)] == [0.412, 0.095, 0.0, 0.06]
    assert all(0.015 <= delays[i] <= 0.035 for i in (1, 3))


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_delays_are_deterministic_for_a_seed(seed: int) -> None:
    """The same seed gives the same delays every time; jitter stays within +-jitter_ms and never below 0."""
    timing = Timing(first_chunk_ms=5, inter_chunk_ms=20, jitter_ms=10, seed=seed)
    first = timing.delays(CHUNKS * 5)
    assert first == Timing(first_chunk_ms=5, inter_chunk_ms=20, jitter_ms=10, seed=seed).delays(CHUNKS * 5)
    assert first[0] >= 0 and all(0.010 <= d <= 0.030 for d in first[1:])
    assert first != Timing(first_chunk_ms=5, inter_chunk_ms=20, jitter_ms=10, seed=seed + 1).delays(CHUNKS * 5)


def test_no_chunks_no_delays() -> None:
    assert Timing(first_chunk_ms=100).delays([]) == []


@pytest.mark.parametrize(
    ("speed", "seconds", "expected"),
    [(0, 5.0, []), (0, 0.0, []), (1, 0.0, []), (1, 0.3, [0.3]), (2, 1.0, [0.5]), (0.5, 1.0, [2.0])],
)
def test_pacer_sleep(sleeps: list[float], speed: float, seconds: float, expected: list[float]) -> None:
    """`Pacer(0)` never sleeps; otherwise delays are divided by the speed; zero delays are skipped."""
    asyncio.run(Pacer(speed).sleep(seconds))
    assert sleeps == expected


@pytest.mark.parametrize("speed", [0, 1, 4])
def test_pacer_sleep_unscaled_ignores_speed(sleeps: list[float], speed: float) -> None:
    asyncio.run(Pacer(speed).sleep_unscaled(1.25))
    assert sleeps == [1.25]


def test_app_fixture_runs_at_speed_zero(app: MockApp) -> None:
    """The HTTP tests above rely on speed 0 (no pacing)."""
    assert app.settings.speed == 0
