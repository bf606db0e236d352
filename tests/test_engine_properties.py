"""Property-based checks of the stream engine (server notes, sections 2.3, 2.5, 2.7).

The upstream decides where its chunks end, so nothing the client renders may depend on it:
for any text and any chunking the records are the same once adjacent markdown deltas are
joined, the 50-character rule holds, and every encoded record is exactly one JSON line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockserver.engine.base import ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.faults import NO_FAULTS, Faults
from mockserver.engine.pacing import count_tokens, split_text
from mockserver.engine.parser import StreamParser
from mockserver.engine.records import Record, encode_record, markdown
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.scripts.model import Script, ScriptSet
from tests.test_engine_parser import feed_all, fixture_tools, join_markdown, short_markdown_problems, tool_runner

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINE_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that exercise the parser's states: fences (whole and partial), tags, tool JSON, unicode.
FRAGMENTS = st.sampled_from(
    [
        "`",
        "``",
        "```",
        "````",
        "```python\n",
        "```mermaid\n",
        "```\n",
        "\n",
        " ",
        "{",
        "}",
        '{"tool": "show_user_resources", "arguments": {}}',
        '"tool"',
        "hello world ",
        "ü",
        "🚀",
        "日本",
        "\u2028",
        "x" * 49,
    ]
)
TEXTS = st.lists(FRAGMENTS | st.text(max_size=8), max_size=25).map("".join)
SCRIPT_TEXTS = TEXTS.map(lambda text: text.replace("$", ""))  # `$` would be a template placeholder


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text and one arbitrary way of cutting it into chunks (empty chunks included)."""
    text = draw(TEXTS)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@PROPERTY_SETTINGS
@given(chunked())
def test_chunking_never_changes_what_the_client_renders(case: tuple[str, list[str]]) -> None:
    """Section 2.5: fences are recognised across chunks; only markdown delta sizes may differ."""
    text, chunks = case
    assert join_markdown(feed_all(chunks)) == join_markdown(feed_all([text]))


@PROPERTY_SETTINGS
@given(chunked())
def test_short_markdown_only_last_or_before_a_load(case: tuple[str, list[str]]) -> None:
    """Section 2.5: a markdown record under 50 characters is the last markdown or comes just before `load`."""
    _, chunks = case
    assert short_markdown_problems(feed_all(chunks)) == []


@PROPERTY_SETTINGS
@given(chunked())
def test_every_record_is_one_ascii_json_line(case: tuple[str, list[str]]) -> None:
    """Section 2.3: one compact object per line, non-ASCII escaped, so the wire never holds a partial line."""
    _, chunks = case
    for record in feed_all(chunks):
        _assert_one_line(record)


@PROPERTY_SETTINGS
@given(st.text(), st.sampled_from(["markdown", "code", "mermaid", "raw"]))
def test_encode_record_round_trips_any_text(text: str, kind: str) -> None:
    """Newlines, U+2028, quotes, emoji: any content stays inside one line and decodes to itself."""
    records: dict[str, Record] = {
        "markdown": markdown(text),
        "code": {"k": "code", "c": text, "t": "python"},
        "mermaid": {"k": "mermaid", "c": text},
        "raw": {"c": text},
    }
    _assert_one_line(records[kind])


@PROPERTY_SETTINGS
@given(chunked())
def test_raw_text_is_the_concatenation_of_the_chunks(case: tuple[str, list[str]]) -> None:
    """Sections 2.6 and 3.2: the stored assistant content is the raw LLM output, whatever was sent."""
    text, chunks = case
    parser = StreamParser(tool_runner())
    for chunk in chunks:
        parser.feed(chunk)
    parser.finish()
    assert parser.raw_text == text


@PROPERTY_SETTINGS
@given(chunked())
def test_text_without_backticks_or_leading_brace_is_streamed_verbatim(case: tuple[str, list[str]]) -> None:
    """Plain prose: the markdown deltas concatenate to exactly the upstream text, nothing else is sent."""
    text, chunks = case
    if "`" in text or text.lstrip().startswith("{") or not text.strip():
        return
    records = feed_all(chunks)
    assert all(r.get("k") == "markdown" for r in records)
    assert "".join(r["c"] for r in records) == text


@PROPERTY_SETTINGS
@given(st.text(), st.one_of(st.sampled_from(["word", "token", "none"]), st.integers(1, 20)))
def test_split_text_loses_nothing(text: str, rule: str | int) -> None:
    """The simulated upstream's chunks are a partition of the reply text: no empty chunk, nothing lost."""
    chunks = split_text(text, rule)
    assert "".join(chunks) == text
    assert all(chunks)
    if rule == "token":
        assert len(chunks) == count_tokens(text)


# -- the scripted engine end to end, without HTTP ------------------------------------------------
def run_engine(script: Script, faults: Faults = NO_FAULTS) -> tuple[list[StreamItem], list[str]]:
    """Drive `ScriptedEngine.stream` at speed 0; returns the items and what `finish` was given."""
    stored: list[str] = []

    def finish(text: str, tokens: int) -> Record:
        stored.append(text)
        return {"m": {"user_message_uuid": "u" * 32, "assistant_message_uuid": "a" * 32}}

    engine = ScriptedEngine(ScriptSet([script]), fixture_tools())
    request = ReplyRequest(input="question", username="alice", scenario=script.name, faults=faults, speed=0)
    frame = StreamFrame({"m": {"thread_uuid": "t" * 32}}, finish)

    async def collect() -> list[StreamItem]:
        return [item async for item in engine.stream(request, frame)]

    return asyncio.run(collect()), stored


def text_script(text: str, size: int) -> Script:
    return Script(name="prop", file="<test>", line=1, text=text, chunking=size)


@ENGINE_SETTINGS
@given(SCRIPT_TEXTS, st.integers(1, 30))
def test_engine_stream_is_framed_and_stores_the_raw_text(text: str, size: int) -> None:
    """Sections 2.5 and 3.2: m(thread) first, m(uuids) last, no `e`; the stored content is the raw text."""
    items, stored = run_engine(text_script(text, size))
    assert items[0] == {"m": {"thread_uuid": "t" * 32}}
    assert set(items[-1]) == {"m"} and "assistant_message_uuid" in items[-1]["m"]
    content = items[1:-1]
    assert all(isinstance(item, dict) and "m" not in item and "e" not in item for item in content)
    assert join_markdown(content) == join_markdown(feed_all([text]))
    assert stored == [text]


@ENGINE_SETTINGS
@given(st.text(alphabet="abc xyz\n", min_size=1, max_size=200), st.integers(1, 30), st.integers(0, 12))
def test_upstream_error_stores_what_arrived_and_ends_with_e_then_m(text: str, size: int, after: int) -> None:
    """Section 2.7: `e` then `m`; buffered text is not flushed on the wire but is stored."""
    chunks = split_text(text, size)
    items, stored = run_engine(text_script(text, size), Faults(upstream_error_after_chunks=after))
    arrived = "".join(chunks[:after])
    assert stored == [arrived]
    assert items[-2] == {"e": "Chat processing was interrupted. Please try again later."}
    assert "m" in items[-1]
    sent = "".join(r["c"] for r in items if isinstance(r, dict) and r.get("k") == "markdown")
    assert arrived.startswith(sent)
    assert len(arrived) - len(sent) < 50, "at most one partial buffer can be lost"


def _assert_one_line(record: Record) -> None:
    """Exactly one line: a single final `\n`, no raw CR, ASCII only, decoding back to the record."""
    encoded = encode_record(record)
    assert encoded.endswith(b"\n")
    assert b"\n" not in encoded[:-1] and b"\r" not in encoded
    assert encoded.isascii()
    decoded: Any = json.loads(encoded)
    assert decoded == record
