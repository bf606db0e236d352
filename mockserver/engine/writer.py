"""Stage 3 of the stream pipeline: wire items become bytes, with the wire faults applied.

The writer does not know which protocol it writes: an adapter's items go through an
`Encoder` (an NDJSON line, an SSE event). The wire faults are the same for every
protocol: a slow first byte (nothing at all is sent before it ends), a malformed item
after N items, a connection dropped after N items.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from mockserver.engine.base import DropConnection, RawLine
from mockserver.engine.faults import Faults
from mockserver.engine.pacing import Pacer


class Encoder(Protocol):
    """How one protocol's wire items look on the wire."""

    media_type: str
    default_malformed: str  # the broken item the `malformed_line` fault sends unless told otherwise

    def encode(self, item: Any) -> bytes: ...

    def malformed(self, text: str) -> bytes: ...


def encode_item(item: Any, encoder: Encoder) -> bytes:
    """The bytes of one item: a raw line (a wire fault) as it is, anything else encoded."""
    return item.data if isinstance(item, RawLine) else encoder.encode(item)


_END = object()


async def with_wire_faults(
    items: AsyncGenerator[Any, None], faults: Faults, encoder: Encoder
) -> AsyncGenerator[Any, None]:
    """The items with the wire faults inserted; `items` is always closed (its `finally` persists).

    The first item is produced before the first-byte delay: the adapter has started (so a
    client leaving during the delay still runs its clean-up), but nothing is sent yet.
    """
    try:
        first = await anext(items, _END)
        if faults.first_byte_delay_ms:
            await Pacer().sleep_unscaled(faults.first_byte_delay_ms / 1000)
        if faults.drop_after_records == 0:
            yield DropConnection()
            return
        if first is _END:
            return
        count = 0
        async for item in _chained(first, items):
            if isinstance(item, DropConnection | RawLine):
                yield item  # a cut decided upstream of the writer (a reset): passed on as it is
                if isinstance(item, DropConnection):
                    return
                continue
            count += 1
            yield item
            if faults.malformed_line_after_records == count:
                yield RawLine(encoder.malformed(faults.malformed_line or encoder.default_malformed))
            if faults.drop_after_records == count:
                yield DropConnection()
                return
    finally:
        await items.aclose()


async def _chained(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item
