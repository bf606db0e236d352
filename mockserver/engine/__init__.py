"""The stream engine: turns one chat turn into Waldur's content records.

It knows nothing of HTTP or of the store. The chat service hands it a `ReplyRequest`
and iterates the `ReplyStream` it returns; after iteration (complete, failed or
cancelled) `stored_text` is the raw upstream text Waldur would persist.
"""

from mockserver.engine.base import ReplyEngine, ReplyRequest, ReplyStream
from mockserver.engine.records import Record, encode_record

__all__ = ["Record", "ReplyEngine", "ReplyRequest", "ReplyStream", "encode_record"]
