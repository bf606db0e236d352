"""A deterministic placeholder engine: one markdown record per reply.

It keeps the server usable and testable before (and without) the scripted engine;
anything richer plugs in through the same `ReplyEngine` interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mockserver.engine.base import ReplyRequest
from mockserver.engine.records import CANNED_REFUSAL, Record, markdown


def approximate_tokens(text: str) -> int:
    """About four characters per token, as a rough stand-in for upstream usage metadata."""
    return (len(text) + 3) // 4


class SimpleReplyStream:
    def __init__(self, request: ReplyRequest):
        self._request = request
        self._text = ""

    @property
    def stored_text(self) -> str:
        return self._text

    @property
    def usage_tokens(self) -> int:
        return approximate_tokens(self._request.input) + approximate_tokens(self._text)

    def reply_text(self) -> str:
        request = self._request
        if request.blocked:
            return CANNED_REFUSAL
        if request.kind == "title":
            return request.input.strip().splitlines()[0][:60] if request.input.strip() else "Chat"
        return f"Mock reply to turn {request.turn}: {request.input}"

    async def __aiter__(self) -> AsyncIterator[Record]:
        text = self.reply_text()
        self._text = text
        if text:
            yield markdown(text)


class SimpleEngine:
    def reply(self, request: ReplyRequest) -> SimpleReplyStream:
        return SimpleReplyStream(request)
