"""Sequential media types (a body that is a series of items): how to check them line by line.

The spec's schema under such a media type is the schema of one item, not of the body:
an NDJSON line, or the JSON payload of one SSE `data:` line. Checking goes line by line
as the body passes, so a stream is never buffered to be validated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
SEQUENTIAL_MEDIA_TYPES = (NDJSON, EVENT_STREAM)

ItemCheck = Callable[[Any], list[str]]  # one parsed item -> schema problems


def sequential_media_type(content_type: str) -> str | None:
    """The sequential media type a Content-Type header names (parameters ignored), or None."""
    base = content_type.split(";", 1)[0].strip().lower()
    return base if base in SEQUENTIAL_MEDIA_TYPES else None


class NdjsonLines:
    """Each line one JSON item; the last line must end with a newline too."""

    def __init__(self, check_item: ItemCheck):
        self.check_item = check_item

    def line(self, line: bytes) -> list[str]:
        try:
            item = json.loads(line)
        except ValueError:
            return [f"line is not JSON: {line[:80]!r}"]
        return [f"record {item!r}: {problem}" for problem in self.check_item(item)]

    def end(self, rest: bytes) -> list[str]:
        return [f"unterminated last line: {rest[:80]!r}"] if rest else []


class SseLines:
    """`data: <JSON item>` lines, `event: <name>` lines with a documented name, blank lines, comments."""

    def __init__(self, check_item: ItemCheck, event_names: frozenset[str]):
        self.check_item = check_item
        self.event_names = event_names
        self.last_blank = True

    def line(self, raw: bytes) -> list[str]:
        line = raw.removesuffix(b"\r")
        self.last_blank = not line
        if not line or line.startswith(b":"):
            return []
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"event":
            name = value.decode("utf-8", "replace")
            return [] if name in self.event_names else [f"undocumented event name {name!r}"]
        if field != b"data":
            return [f"not a data or event line: {line[:80]!r}"]
        try:
            item = json.loads(value)
        except ValueError:
            return [f"data is not JSON: {value[:80]!r}"]
        return [f"data {item!r}: {problem}" for problem in self.check_item(item)]

    def end(self, rest: bytes) -> list[str]:
        if rest:
            return [f"unterminated last line: {rest[:80]!r}"]
        return [] if self.last_blank else ["the last event is not ended by a blank line"]


LineGrammar = NdjsonLines | SseLines


def line_grammar(media_type: str, check_item: ItemCheck, event_names: frozenset[str] = frozenset()) -> LineGrammar:
    """A fresh checker for one body of the given sequential media type."""
    if media_type == EVENT_STREAM:
        return SseLines(check_item, event_names)
    return NdjsonLines(check_item)
