"""The admission gate: a burst of new requests is let in slice by slice, in arrival order, and
the loop's other callbacks (a stream's record falling due) run between the slices.

The clock is a fake one that the simulated requests advance by their cost, so what is measured
is the interleaving, never this machine's speed.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mockserver.api.admission import AdmissionGate
from mockserver.app import ServerOptions, create_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_burst(gate: AdmissionGate | None, clock: FakeClock, requests: int, cost: float) -> list[str]:
    """`requests` started at once, each costing `cost` of loop time after admission, beside a
    stream in flight whose record is due on every pass: the order in which things ran."""
    log: list[str] = []

    async def request(number: int) -> None:
        if gate is not None:
            await gate.admit()
        log.append(f"start {number}")
        clock.now += cost  # the request's synchronous work: validation, the store, the first record

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def record_due() -> None:  # a paced stream's timer, due again on every pass
            log.append("record")
            if not done.is_set():
                loop.call_soon(record_due)

        loop.call_soon(record_due)
        await asyncio.gather(*(request(n) for n in range(requests)))
        done.set()

    asyncio.run(main())
    return log


def most_starts_between_records(log: list[str]) -> int:
    longest = run = 0
    for entry in log:
        run = 0 if entry == "record" else run + 1
        longest = max(longest, run)
    return longest


def test_without_a_gate_a_burst_runs_in_one_pass() -> None:
    """The failure the gate exists for: every start runs before the due record gets its turn."""
    log = run_burst(None, FakeClock(), requests=200, cost=0.001)
    assert most_starts_between_records(log) == 200


def test_a_burst_is_let_in_slice_by_slice_in_arrival_order() -> None:
    clock = FakeClock()
    gate = AdmissionGate(slice_seconds=0.004, clock=clock)
    log = run_burst(gate, clock, requests=200, cost=0.001)
    starts = [int(entry.split()[1]) for entry in log if entry != "record"]
    assert starts == list(range(200))  # none lost, none overtaken
    # At most one slice of work (4 ms of 1 ms requests) plus the one that crossed it, then the record.
    assert most_starts_between_records(log) <= 5
    assert gate.waiting == 0


def test_a_request_that_finds_the_gate_idle_does_not_suspend() -> None:
    """The common case costs no pass of the loop: the coroutine finishes on its first step."""

    async def main() -> None:
        gate = AdmissionGate()
        for _ in range(3):  # the first opens a slice, the next two fit in it
            step = gate.admit()
            with pytest.raises(StopIteration):
                step.send(None)

    asyncio.run(main())


def test_without_an_asyncio_loop_the_gate_lets_everything_through() -> None:
    """Under another async library (trio through anyio) there is no asyncio loop to be fair to."""
    gate = AdmissionGate(slice_seconds=0.0)
    for _ in range(3):
        step = gate.admit()
        with pytest.raises(StopIteration):
            step.send(None)
    assert gate.waiting == 0


def test_a_waiter_cancelled_in_the_queue_does_not_stall_the_others() -> None:
    clock = FakeClock()
    gate = AdmissionGate(slice_seconds=0.001, clock=clock)
    admitted: list[int] = []

    async def request(number: int) -> None:
        await gate.admit()
        admitted.append(number)
        clock.now += 0.002

    async def main() -> None:
        tasks = [asyncio.create_task(request(n)) for n in range(6)]
        await asyncio.sleep(0)  # all six have reached the gate; the first went through
        assert gate.waiting == 5
        tasks[2].cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert isinstance(results[2], asyncio.CancelledError)

    asyncio.run(main())
    assert admitted == [0, 1, 3, 4, 5]


def test_a_gate_moved_to_a_new_loop_does_not_wait_for_the_old_loops_pass() -> None:
    """An embedding test may serve the app from one loop, then another: a pass scheduled on the
    first loop never runs, and the second loop's requests must not wait for it."""
    clock = FakeClock()
    gate = AdmissionGate(slice_seconds=0.001, clock=clock)

    async def first() -> None:
        await gate.admit()  # opens a slice; its closing pass is scheduled on this loop
        clock.now += 0.01  # ... and used up; the loop ends before the pass runs

    async def second() -> None:
        await asyncio.wait_for(gate.admit(), 2)

    asyncio.run(first())
    asyncio.run(second())


def test_the_app_answers_every_request_of_a_burst_that_queues() -> None:
    """Through the whole middleware stack, with a slice so small that every request but one waits."""
    app = create_app(ServerOptions(speed=0))
    app.admission.slice_seconds = 0.0

    async def main() -> tuple[list[int], int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            headers = {"Authorization": "Token alice-token"}
            before = int((await client.get("/api/chat-threads/", headers=headers)).headers["X-Result-Count"])
            posts = [client.post("/api/chat/stream/", json={"input": f"hello {n}"}, headers=headers) for n in range(5)]
            lists = [client.get("/api/chat-threads/", headers=headers) for _ in range(20)]
            responses = await asyncio.gather(*posts, *lists)
            after = int((await client.get("/api/chat-threads/", headers=headers)).headers["X-Result-Count"])
        return [response.status_code for response in responses], before, after

    statuses, before, after = asyncio.run(main())
    assert statuses == [200] * 25
    assert after == before + 5  # every stream POST created its thread
