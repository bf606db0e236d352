"""The stream engine: turns one chat turn into wire items, with timing and faults.

A pipeline of three stages: `upstream` (reply script -> timed upstream events, planned
purely), `adapters` (events -> one protocol's wire items: Waldur's records, or SSE events)
and `writer` (wire faults, and the `Encoder` that gives the bytes). It knows nothing of
HTTP, the spec or the store: the chat service hands it a `ReplyRequest` (and for the
record stream a `StreamFrame`) and iterates what comes out.
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
from mockserver.engine.upstream import (
    LiteralRecord,
    Stall,
    TextChunk,
    UpstreamEvent,
    UpstreamFailure,
    UpstreamReply,
    Usage,
)

__all__ = [
    "DropConnection",
    "LiteralRecord",
    "RawLine",
    "Record",
    "ReplyEngine",
    "ReplyRequest",
    "Stall",
    "StreamFrame",
    "StreamItem",
    "TextChunk",
    "UpstreamEvent",
    "UpstreamFailure",
    "UpstreamReply",
    "Usage",
    "encode_record",
]
