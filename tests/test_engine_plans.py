"""Plans computed once and shared; the record stream waking once per record, at absolute deadlines."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from mockserver.engine.adapters.waldur_records import (
    RecordSchedule,
    paced_record_stream,
    record_schedule,
    record_stream,
)
from mockserver.engine.base import ReplyRequest, StreamFrame
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer, Timing
from mockserver.engine.plans import PlanCache
from mockserver.engine.records import Record
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.scripts.loader import load_scripts_text
from mockserver.engine.scripts.model import Chunk, Script, ScriptSet
from mockserver.engine.upstream import TextChunk, TimedText, UpstreamEvent, plan_script, play
from mockserver.resources import SCRIPT_DIR
from tests.test_engine_parser import fixture_tools

LONG_A, LONG_D = "a" * 60, "d" * 60  # each long enough to flush one markdown record at once
# Records at 0.1 s (chunk 1) and 0.17 s (chunk 4); chunks 2 and 3 only fill the buffer.
SCRIPT = Script(
    name="s",
    file="<test>",
    chunks=(Chunk(LONG_A, 100), Chunk(" b", 20), Chunk(" c", 20), Chunk(LONG_D, 30)),
)
TEMPLATED = Script(name="t", file="<test>", text="You asked ${input}, here it is.", timing=Timing(seed=3, jitter_ms=5))
REQUEST = ReplyRequest(input="question", speed=1.0)
DEFAULT_SCRIPTS = (SCRIPT_DIR / "default.yaml").read_text()
START = 100.0


class FakeClockPacer(Pacer):
    """A pacer on a fake clock: each wake-up is recorded and arrives `late` seconds after its deadline."""

    def __init__(self, speed: float = 1.0, late: float = 0.0):
        super().__init__(speed)
        self.clock = START
        self.late = late
        self.wakeups: list[float] = []

    def now(self) -> float:
        return self.clock

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self.clock:
            self.wakeups.append(deadline)
            self.clock = deadline + self.late


def _frame(stored: list[tuple[str, int]]) -> StreamFrame:
    def finish(text: str, tokens: int) -> Record:
        stored.append((text, tokens))
        return {"m": {"assistant_message_uuid": "2" * 32}}

    return StreamFrame({"m": {"thread_uuid": "3" * 32}}, finish)


def _timed_records(
    events: list[UpstreamEvent], pacer: FakeClockPacer, schedule: RecordSchedule | None = None
) -> tuple[list[tuple[float, Record]], list]:
    """Each record with the fake time it was yielded at, and what was stored."""
    stored: list[tuple[str, int]] = []

    async def collect() -> list[tuple[float, Record]]:
        tools = fixture_tools().runner("")
        stream = paced_record_stream(events, pacer, REQUEST, _frame(stored), tools, schedule=schedule)
        return [(round(pacer.clock - START, 6), record) async for record in stream]

    return asyncio.run(collect()), stored


# -- the cache ---------------------------------------------------------------------------------
def test_a_plan_is_computed_once_and_shared() -> None:
    cache: PlanCache[TimedText] = PlanCache()
    first = plan_script(SCRIPT, REQUEST, Faults(), cache)
    again = plan_script(SCRIPT, REQUEST, Faults(), cache)
    assert first == again == plan_script(SCRIPT, REQUEST, Faults())  # the same events as uncached
    assert all(a is b for a, b in zip(first[:-1], again[:-1], strict=True))  # the very same chunk objects
    assert (cache.misses, cache.hits, len(cache)) == (1, 1, 1)


def test_the_plan_follows_the_rendered_text_and_the_script_object() -> None:
    cache: PlanCache[TimedText] = PlanCache()
    one = plan_script(TEMPLATED, ReplyRequest(input="one"), Faults(), cache)
    two = plan_script(TEMPLATED, ReplyRequest(input="two"), Faults(), cache)
    assert "".join(e.text for e in one if isinstance(e, TextChunk)) == "You asked one, here it is."
    assert "".join(e.text for e in two if isinstance(e, TextChunk)) == "You asked two, here it is."
    # An equal script loaded again (scripts replaced) is a new object: its own entry, not a stale one.
    reloaded = replace(TEMPLATED, text="Replaced ${input}.")
    three = plan_script(reloaded, ReplyRequest(input="one"), Faults(), cache)
    assert "".join(e.text for e in three if isinstance(e, TextChunk)) == "Replaced one."
    assert cache.misses == 3


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache: PlanCache[str] = PlanCache(size=2)
    built: list[str] = []

    def build(key: str) -> str:
        built.append(key)
        return key.upper()

    owner = object()
    for key in ["a", "b", "a", "c", "a", "b"]:  # "c" evicts "b" (least recently used); "b" then evicts "c"
        assert cache.get(owner, key, lambda key=key: build(key)) == key.upper()
    assert built == ["a", "b", "c", "b"]
    assert len(cache) == 2
    with pytest.raises(ValueError):
        PlanCache(size=0)


def test_the_cache_is_bounded_by_weight_and_skips_plans_too_heavy_to_share() -> None:
    """An `${input}` script echoing long inputs cannot make the cache hold more than its budget."""
    cache: PlanCache[str] = PlanCache(size=100, weight=1600)
    owner = object()
    for key in range(5):
        cache.get(owner, key, lambda: "plan", weight=100)  # 5 x 100, within the budget
    assert len(cache) == 5
    assert cache.get(owner, "heavy", lambda: "heavy", weight=101) == "heavy"  # above 1600 / 16: built, not kept
    assert len(cache) == 5 and not cache.keeps(101) and cache.keeps(100)
    for key in range(5, 20):
        cache.get(owner, key, lambda: "plan", weight=100)
    assert len(cache) == 16  # 16 x 100 = the whole budget; the oldest went first
    cache.get(owner, 0, lambda: "rebuilt", weight=100)
    assert cache.misses == 22 and cache.get(owner, 19, lambda: "x", weight=100) == "plan"


def test_a_long_echoed_input_is_planned_per_turn_and_parsed_as_it_streams() -> None:
    engine = ScriptedEngine(ScriptSet(load_scripts_text(DEFAULT_SCRIPTS, "default.yaml")), fixture_tools())
    huge = ReplyRequest(input="word " * 10_000, speed=0)  # the fallback script echoes the input
    reply = engine.plan(huge)
    assert reply.script is not None and reply.script.name == "fallback"
    assert len(engine.plans) == 0 and engine._schedule(huge, reply) is None
    stored: list[tuple[str, int]] = []

    async def collect() -> list:
        return [item async for item in engine.stream(huge, _frame(stored))]

    items = asyncio.run(collect())
    assert stored[0][0].count("word") == 10_000 and len(items) > 3


def test_faults_apply_to_the_shared_plan_without_changing_it() -> None:
    cache: PlanCache[TimedText] = PlanCache()
    cut = plan_script(SCRIPT, REQUEST, Faults(upstream_error_after_chunks=2), cache)
    whole = plan_script(SCRIPT, REQUEST, Faults(), cache)
    assert len(cut) == 3 and len(whole) == 5  # two chunks and the failure; four chunks and the usage
    assert cut[:2] == whole[:2]


def test_the_engine_shares_one_plan_between_turns_of_the_long_answer() -> None:
    engine = ScriptedEngine(ScriptSet(load_scripts_text(DEFAULT_SCRIPTS, "default.yaml")), fixture_tools())
    request = ReplyRequest(input="explain projects", speed=1.0)
    first, second = engine.plan(request), engine.plan(replace(request, turn=2))
    assert first.script is not None and first.script.name == "long-answer"
    assert len(first.events) > 200
    assert all(a is b for a, b in zip(first.events[:-1], second.events[:-1], strict=True))


# -- per-record timing on a fake clock ---------------------------------------------------------
@pytest.mark.parametrize("scheduled", [False, True], ids=["fed", "looked-up"])
def test_one_wake_up_per_record_at_absolute_deadlines(scheduled: bool) -> None:
    pacer = FakeClockPacer()
    events = plan_script(SCRIPT, REQUEST, Faults())
    schedule = record_schedule([e for e in events if isinstance(e, TextChunk)]) if scheduled else None
    timed, stored = _timed_records(events, pacer, schedule)
    assert pacer.wakeups == [pytest.approx(START + 0.1), pytest.approx(START + 0.17)]
    assert [(t, r.get("c", r.get("m"))) for t, r in timed] == [
        (0.0, {"thread_uuid": "3" * 32}),
        (0.1, LONG_A),
        (0.17, " b c" + LONG_D),
        (0.17, {"assistant_message_uuid": "2" * 32}),
    ]
    assert stored[0][0] == LONG_A + " b c" + LONG_D


def test_late_wake_ups_do_not_add_up() -> None:
    """Every wake-up 5 ms late: each record is 5 ms late, not 5 ms more than the one before."""
    chunks = tuple(Chunk("x" * 50, 100) for _ in range(10))
    pacer = FakeClockPacer(late=0.005)
    timed, _ = _timed_records(plan_script(Script(name="n", file="<t>", chunks=chunks), REQUEST, Faults()), pacer)
    assert pacer.wakeups == [pytest.approx(START + 0.1 * k) for k in range(1, 11)]
    content_times = [t for t, r in timed if "c" in r]
    assert content_times == [pytest.approx(0.1 * k + 0.005) for k in range(1, 11)]


def test_speed_scales_deadlines_and_stalls_stay_unscaled() -> None:
    pacer = FakeClockPacer(speed=2.0)
    events = plan_script(SCRIPT, REQUEST, Faults(stall_after_chunks=3, stall_seconds=1.0))
    _timed_records(events, pacer)
    # chunk 1 at 0.1 / 2; the stall (1 s, unscaled) comes before chunk 4: 0.17 / 2 + 1.0
    assert pacer.wakeups == [pytest.approx(START + 0.05), pytest.approx(START + 1.085)]


def test_an_upstream_error_comes_at_the_time_of_the_chunk_before_it() -> None:
    pacer = FakeClockPacer()
    timed, stored = _timed_records(plan_script(SCRIPT, REQUEST, Faults(upstream_error_after_chunks=3)), pacer)
    assert [(t, next(iter(r))) for t, r in timed] == [(0.0, "m"), (0.1, "k"), (0.14, "e"), (0.14, "m")]
    assert stored[0][0] == LONG_A + " b c"  # the text after the last record is stored, as before


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(upstream_error_after_chunks=2), Faults(stall_after_chunks=1, stall_seconds=0.5)],
    ids=["whole", "upstream-error", "stall"],
)
def test_the_same_records_and_stored_text_as_playing_every_chunk(faults: Faults) -> None:
    """The per-record path against the per-chunk one (`record_stream` over `play`), at speed 0."""
    for script in load_scripts_text(DEFAULT_SCRIPTS, "default.yaml"):
        events = plan_script(script, ReplyRequest(input="explain", speed=0), faults)
        ours, ours_stored = _timed_records(events, FakeClockPacer(speed=0))
        theirs_stored: list[tuple[str, int]] = []

        async def per_chunk(events: list[UpstreamEvent] = events, stored: list = theirs_stored) -> list[Record]:
            played = play(events, Pacer(0))
            stream = record_stream(played, REQUEST, _frame(stored), fixture_tools().runner(""))
            return [record async for record in stream]

        assert [r for _, r in ours] == asyncio.run(per_chunk()), script.name
        assert ours_stored == theirs_stored, script.name
        if not script.literal:  # the records looked up in the plan's schedule: the same again
            chunks = [
                e for e in plan_script(script, ReplyRequest(input="explain"), Faults()) if isinstance(e, TextChunk)
            ]
            schedule = record_schedule(chunks)
            if schedule is not None:
                scheduled, scheduled_stored = _timed_records(events, FakeClockPacer(speed=0), schedule)
                assert scheduled == ours and scheduled_stored == ours_stored, script.name


def test_a_schedule_is_shared_but_what_a_stream_sends_is_its_own() -> None:
    schedule = record_schedule([e for e in plan_script(SCRIPT, REQUEST, Faults()) if isinstance(e, TextChunk)])
    assert schedule is not None and len(schedule.made) == 4 and schedule.made[1] == ()
    first, _ = _timed_records(plan_script(SCRIPT, REQUEST, Faults()), FakeClockPacer(), schedule)
    first[1][1]["c"] = "changed by one stream"
    again, _ = _timed_records(plan_script(SCRIPT, REQUEST, Faults()), FakeClockPacer(), schedule)
    assert again[1][1]["c"] == LONG_A


def test_tool_output_has_no_schedule() -> None:
    """Output starting with `{` goes to the user's tools at the end: parsed per stream, not looked up."""
    assert record_schedule([TextChunk('{"tool": '), TextChunk('"x"}')]) is None


def test_the_engine_streams_scheduled_records_once_per_plan() -> None:
    engine = ScriptedEngine(ScriptSet(load_scripts_text(DEFAULT_SCRIPTS, "default.yaml")), fixture_tools())
    request = ReplyRequest(input="explain projects", speed=0)
    stored: list[tuple[str, int]] = []

    async def collect() -> list:
        return [item async for item in engine.stream(request, _frame(stored))]

    first, second = asyncio.run(collect()), asyncio.run(collect())
    assert first == second and len(first) > 10
    assert len(engine.schedules) == 1 and engine.schedules.hits == 1
    assert stored[0] == stored[1] and stored[0][0].startswith("Waldur organises")


@pytest.mark.parametrize("scheduled", [False, True], ids=["fed", "looked-up"])
def test_a_client_gone_while_waiting_stores_the_text_sent_by_then(scheduled: bool) -> None:
    """Cancelled at 0.15 s, in the wait for chunk 4 (0.17 s): chunks 2 and 3 (0.12, 0.14 s) had arrived."""

    class LeavesAt(FakeClockPacer):
        async def sleep_until(self, deadline: float) -> None:
            if deadline > START + 0.15:
                self.clock = START + 0.15
                raise asyncio.CancelledError
            await super().sleep_until(deadline)

    stored: list[tuple[str, int]] = []
    pacer = LeavesAt()

    async def consume() -> None:
        events = plan_script(SCRIPT, REQUEST, Faults())
        schedule = record_schedule([e for e in events if isinstance(e, TextChunk)]) if scheduled else None
        stream = paced_record_stream(
            events, pacer, REQUEST, _frame(stored), fixture_tools().runner(""), schedule=schedule
        )
        with pytest.raises(asyncio.CancelledError):
            async for _record in stream:
                pass

    asyncio.run(consume())
    assert [text for text, _ in stored] == [LONG_A + " b c"]


def test_the_long_answer_wakes_per_record_not_per_chunk() -> None:
    scripts = ScriptSet(load_scripts_text(DEFAULT_SCRIPTS, "default.yaml"))
    events = plan_script(scripts.by_name["long-answer"], REQUEST, Faults())
    pacer = FakeClockPacer()
    timed, _ = _timed_records(events, pacer)
    content = [r for _, r in timed if "k" in r]
    assert len(events) > 200 and len(content) < 30
    assert len(pacer.wakeups) <= len(content) + 1
    last_deadline = START + sum(e.delay for e in events if isinstance(e, TextChunk))
    assert pacer.wakeups[-1] == pytest.approx(last_deadline)


def test_real_pacer_sleeps_only_what_remains_to_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("mockserver.engine.pacing.asyncio.sleep", fake_sleep)
    monkeypatch.setattr("mockserver.engine.pacing.monotonic", lambda: 10.0)
    pacer = Pacer(2.0)
    asyncio.run(pacer.sleep_until(10.25))
    asyncio.run(pacer.sleep_until(9.0))  # already past: no sleep at all
    assert slept == [0.25]
    assert (pacer.scaled(1.0), Pacer(0).scaled(1.0)) == (0.5, 0.0)
