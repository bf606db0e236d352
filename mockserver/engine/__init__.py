"""The stream engine: turns one chat turn into Waldur's wire records, with timing and faults.

It knows nothing of HTTP or of the store: the chat service hands it a `ReplyRequest`
and a `StreamFrame` and iterates what `stream()` yields.
"""

from mockserver.engine.base import (
    DropConnection,
    RawLine,
    ReplyEngine,
    ReplyRequest,
    StreamFrame,
    StreamItem,
)
from mockserver.engine.records import Record, encode_record

__all__ = [
    "DropConnection",
    "RawLine",
    "Record",
    "ReplyEngine",
    "ReplyRequest",
    "StreamFrame",
    "StreamItem",
    "encode_record",
]
