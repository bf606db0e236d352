"""The three stages on their own: upstream planning is pure, adapters map events, the writer applies wire faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from mockserver.engine.adapters.langserve_sse import SSE_ENCODER, BlankLine, SseEvent, sse_stream
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.engine.base import DropConnection, RawLine, ReplyRequest
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer, count_tokens
from mockserver.engine.scripts.model import Chunk, Script
from mockserver.engine.upstream import Stall, TextChunk, UpstreamFailure, Usage, plan_script, play
from mockserver.engine.writer import with_wire_faults

SCRIPT = Script(name="s", file="<test>", line=1, chunks=(Chunk("one", 10), Chunk(" two", 20), Chunk(" three", 30)))
REQUEST = ReplyRequest(input="question", speed=0)
ONE, TWO, THREE = TextChunk("one", 0.01), TextChunk(" two", 0.02), TextChunk(" three", 0.03)


def test_planning_is_pure_and_needs_no_event_loop() -> None:
    """Timed chunks, then the usage; planned twice, the same events."""
    events = plan_script(SCRIPT, REQUEST, Faults())
    assert events == plan_script(SCRIPT, REQUEST, Faults())
    assert events == [
        ONE,
        TWO,
        THREE,
        Usage(count_tokens("question"), count_tokens("one two three")),
    ]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(upstream_error_after_chunks=1), [ONE, UpstreamFailure()]),
        (Faults(upstream_error_after_chunks=0), [UpstreamFailure()]),
        (Faults(upstream_error_after_chunks=3), [ONE, TWO, THREE, UpstreamFailure()]),
        (Faults(stall_after_chunks=2, stall_seconds=1.5), [ONE, TWO, Stall(1.5), THREE]),
    ],
)
def test_upstream_faults_are_part_of_the_plan(faults: Faults, expected: list[Any]) -> None:
    events = plan_script(SCRIPT, REQUEST, faults)
    assert events[: len(expected)] == expected
    assert (Usage in map(type, events)) == (not any(isinstance(e, UpstreamFailure) for e in events))


def test_play_waits_scaled_delays_and_unscaled_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    events = [TextChunk("a", 0.2), Stall(1.0), TextChunk("b", 0.4)]

    async def collect() -> list[Any]:
        return [e async for e in play(events, Pacer(2.0))]

    assert asyncio.run(collect()) == events
    assert slept == [0.1, 1.0, 0.2]


async def _items(*items: Any) -> AsyncGenerator[Any, None]:
    for item in items:
        yield item


def _run(generator: AsyncGenerator[Any, None]) -> list[Any]:
    async def collect() -> list[Any]:
        return [item async for item in generator]

    return asyncio.run(collect())


def test_sse_adapter_maps_each_event() -> None:
    events = plan_script(SCRIPT, REQUEST, Faults(upstream_error_after_chunks=1))
    items = _run(sse_stream(_items(*events)))
    assert [SSE_ENCODER.encode(i) for i in items] == [
        b'data: {"content": "one", "additional_kwargs": {}}\n\n',
        b'event: error\ndata: {"detail":"Chat processing was interrupted due to a technical problem. '
        b'Please try again later."}\n\n',
    ]
    completed = _run(sse_stream(_items(*plan_script(SCRIPT, REQUEST, Faults()))))
    assert isinstance(completed[-1], BlankLine) and "usage_metadata" in completed[-2].data


@pytest.mark.parametrize("encoder", [NDJSON_ENCODER, SSE_ENCODER], ids=["ndjson", "sse"])
def test_wire_faults_are_the_same_for_every_encoder(encoder: Any) -> None:
    items = [SseEvent("1"), SseEvent("2"), SseEvent("3")]
    malformed = _run(with_wire_faults(_items(*items), Faults(malformed_line_after_records=1), encoder))
    assert malformed == [items[0], RawLine(encoder.malformed(encoder.default_malformed)), *items[1:]]
    dropped = _run(with_wire_faults(_items(*items), Faults(drop_after_records=2), encoder))
    assert dropped == [*items[:2], DropConnection()]
    assert _run(with_wire_faults(_items(*items), Faults(drop_after_records=0), encoder)) == [DropConnection()]


def test_the_writer_closes_its_source_when_it_drops() -> None:
    """A drop closes the adapter, so its `finally` (persistence) runs."""
    closed: list[bool] = []

    async def source() -> AsyncGenerator[Any, None]:
        try:
            for n in range(10):
                yield SseEvent(str(n))
        finally:
            closed.append(True)

    assert len(_run(with_wire_faults(source(), Faults(drop_after_records=1), SSE_ENCODER))) == 2
    assert closed == [True]
