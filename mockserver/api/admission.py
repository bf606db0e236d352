"""Admission of new requests in slices, so that a burst of them cannot hold up streams in flight.

asyncio runs every callback that is ready in one pass of the event loop before it looks at its
timers again. uvicorn starts a task per request, and a task runs until its first real await: for
a stream POST that is validation, the journal, the thread, two messages and the first record,
all in one step. Measured with 2,000 stream POSTs sent at once: about 0.9 s of such steps ran in
one pass, and the records of streams already running that fell due meanwhile (the scripted gaps
of a paced answer) left that much late.

The gate lets new requests in while the work admitted in the current pass stays under a slice
(a few milliseconds); past it, requests wait in arrival order and are let in one per pass, so
the loop gets back to its timers between any two of them. A request that finds the gate idle
goes straight through (no await that suspends), which is every request of a client that is not
sending a burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

# Work admitted in one pass of the loop before new requests queue: the lag it can add to a
# record that falls due meanwhile. A speed-0 stream POST costs about 1 ms, so a client with a
# few connections in parallel is never queued.
ADMISSION_SLICE_SECONDS = 0.004


class AdmissionGate:
    """FIFO admission in slices of loop time (see the module docstring); one per app."""

    def __init__(self, slice_seconds: float = ADMISSION_SLICE_SECONDS, clock: Callable[[], float] = time.perf_counter):
        self.slice_seconds = slice_seconds
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._slice_started = float("-inf")
        self._pass_scheduled = False

    @property
    def waiting(self) -> int:
        """Requests queued right now (for tests and the benchmark's curiosity)."""
        return sum(1 for future in self._waiting if not future.done())

    async def admit(self) -> None:
        """Return when the caller may start its work: at once while the current slice has room."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # served by another async library (trio through anyio): no gate
            return
        if loop is not self._loop:  # a new loop (an embedding test's): nothing queued on the old one survives
            self._reset(loop)
        if not self._waiting and self._clock() - self._slice_started < self.slice_seconds:
            return
        if not self._waiting and not self._pass_scheduled:
            self._open_slice(loop)  # the first request of a pass after an idle spell
            return
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(future)
        self._schedule_pass(loop)
        await future

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting.clear()
        self._slice_started = float("-inf")
        self._pass_scheduled = False

    def _open_slice(self, loop: asyncio.AbstractEventLoop) -> None:
        """A slice starts now and ends with this pass of the loop."""
        self._slice_started = self._clock()
        self._schedule_pass(loop)

    def _schedule_pass(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pass_scheduled:
            self._pass_scheduled = True
            # call_soon from inside a pass runs in the next one, after the loop's timers.
            loop.call_soon(self._next_pass, loop)

    def _next_pass(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once per pass while anything waits: let the oldest waiter in, with a fresh slice."""
        if loop is not self._loop:
            return  # scheduled on a loop this gate has left
        self._pass_scheduled = False
        while self._waiting and self._waiting[0].done():  # cancelled while waiting
            self._waiting.popleft()
        if not self._waiting:
            self._slice_started = float("-inf")
            return
        self._waiting.popleft().set_result(None)  # it runs in the next pass, before the next call here
        self._slice_started = self._clock()
        self._schedule_pass(loop)


class AdmissionMiddleware:
    """Every HTTP request passes the app's gate before any of the app's work."""

    def __init__(self, app: ASGIApp, gate: AdmissionGate | None = None):
        self.app = app
        self.gate = gate or AdmissionGate()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.gate.admit()
        await self.app(scope, receive, send)
