"""`StreamParser` against hand-made upstream chunk sequences (server notes, sections 2.3-2.6).

The upstream may cut its output anywhere, so every expectation is checked for several
chunkings. Markdown records are deltas whose size depends on the chunking (the 50-character
buffer), so chunkings are compared after joining adjacent markdown records; the size rule
itself is checked separately. The helpers at the top are shared with
`test_engine_properties.py`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

from mockserver.engine.parser import StreamParser
from mockserver.engine.records import CANNED_REFUSAL, Record, encode_record, markdown
from mockserver.engine.tools import TABLE_HEADERS, Resource, ToolExecutor, load_resources

RESOURCES_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "resources.yaml"
FLUSH_AT = 50  # section 2.5: a markdown record goes out once 50 characters are buffered
TOOL_CALL = '{"tool": "show_user_resources", "arguments": {}}'
FENCED = "Intro\n```python\nprint('hi')\n```\nAfter"
FENCED_RECORDS: list[Record] = [
    {"k": "markdown", "c": "Intro\n"},
    {"k": "load", "t": "code"},
    {"k": "code", "c": "print('hi')\n", "t": "python"},
    {"k": "markdown", "c": "\nAfter"},
]

Chunker = Callable[[str], list[str]]


# -- helpers shared with test_engine_properties.py ----------------------------------------------
@functools.cache
def fixture_tools() -> ToolExecutor:
    """The real tool executor over fixtures/resources.yaml (read once: property tests call this a lot)."""
    return ToolExecutor(load_resources(RESOURCES_FILE))


def tool_runner(username: str = "alice") -> Callable[[str], Record | None]:
    """The tool runner as the engine wires it for one user."""
    return fixture_tools().runner(username)


def feed_all(chunks: Iterable[str], username: str = "alice") -> list[Record]:
    """Every record one upstream response produces: all `feed` results, then `finish`."""
    parser = StreamParser(tool_runner(username))
    records: list[Record] = []
    for chunk in chunks:
        records.extend(parser.feed(chunk))
    return records + parser.finish()


def feed_steps(chunks: Iterable[str]) -> tuple[list[list[Record]], list[Record]]:
    """What each `feed` call returned, and what `finish` returned: when records go out matters."""
    parser = StreamParser(tool_runner())
    steps = [parser.feed(chunk) for chunk in chunks]
    return steps, parser.finish()


def join_markdown(records: Iterable[Record]) -> list[Record]:
    """Adjacent markdown deltas merged: what the client renders, independent of buffering."""
    joined: list[Record] = []
    for record in records:
        if record.get("k") == "markdown" and joined and joined[-1].get("k") == "markdown":
            joined[-1] = markdown(joined[-1]["c"] + record["c"])
        else:
            joined.append(dict(record))
    return joined


def short_markdown_problems(records: list[Record]) -> list[str]:
    """Markdown records under 50 characters that are neither the last markdown nor just before a load."""
    problems = []
    for index, record in enumerate(records):
        if record.get("k") != "markdown" or len(record["c"]) >= FLUSH_AT:
            continue
        following = records[index + 1 :]
        before_load = bool(following) and following[0].get("k") == "load"
        last_markdown = not any(r.get("k") == "markdown" for r in following)
        if not (before_load or last_markdown):
            problems.append(f"record {index} has {len(record['c'])} characters: {record!r}")
    return problems


def whole(text: str) -> list[str]:
    return [text]


def by_char(text: str) -> list[str]:
    return list(text)


CHUNKERS: dict[str, Chunker] = {"whole": whole, "by_char": by_char}


def expected_rows(username: str) -> list[list[str]]:
    """Rows read straight from fixtures/resources.yaml: not terminated, visible to the user, at most 10."""
    entries = yaml.safe_load(RESOURCES_FILE.read_text(encoding="utf-8"))["resources"]
    visible = [
        e for e in entries if str(e["state"]).lower() != "terminated" and (not e.get("users") or username in e["users"])
    ]
    return [
        [str(e[key]) for key in ("name", "category", "offering", "organization", "project", "state")] for e in visible
    ][:10]


# -- fences across chunk boundaries --------------------------------------------------------------
@pytest.mark.parametrize("cut", range(len(FENCED) + 1))
def test_fence_split_anywhere_in_two_chunks(cut: int) -> None:
    """Section 2.5: fences are recognised even when split across upstream chunks."""
    records = feed_all([FENCED[:cut], FENCED[cut:]])
    assert join_markdown(records) == FENCED_RECORDS
    assert not short_markdown_problems(records)


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_fence_in_one_chunk_or_char_by_char(chunker: Chunker) -> None:
    """The extremes of chunking give the records of section 2.8 (b)."""
    records = feed_all(chunker(FENCED))
    assert join_markdown(records) == FENCED_RECORDS
    assert not short_markdown_problems(records)


def test_literal_example_b_gives_exactly_the_documented_records() -> None:
    """Section 2.8 (b), record for record, with the documented upstream chunks."""
    chunks = ["Sure! Here is an example:\n", "```python\nprint('hi')\n```", "\nAnything else?"]
    assert feed_all(chunks) == [
        {"k": "markdown", "c": "Sure! Here is an example:\n"},
        {"k": "load", "t": "code"},
        {"k": "code", "c": "print('hi')\n", "t": "python"},
        {"k": "markdown", "c": "\nAnything else?"},
    ]


def test_literal_example_a_short_reply_is_one_record() -> None:
    """Section 2.8 (a): a 44-character reply arrives as a single markdown record."""
    text = "Hello! How can I help you with Waldur today?"
    assert feed_all(by_char(text)) == [markdown(text)]


def test_load_waits_for_the_newline_that_ends_the_tag_line() -> None:
    """Section 2.5: `load` is sent once the tag line is complete, not when the fence appears."""
    steps, final = feed_steps(["Intro\n```python", "\nprint('hi')\n", "```\nAfter"])
    assert steps == [
        [],
        [markdown("Intro\n"), {"k": "load", "t": "code"}],
        [{"k": "code", "c": "print('hi')\n", "t": "python"}],
    ]
    assert final == [markdown("\nAfter")]


def test_tag_split_inside_the_word_is_reassembled() -> None:
    """The fence tag itself may be cut by the upstream: `pyt` + `hon` is still `python`."""
    records = feed_all(["```pyt", "hon\nx = 1\n``", "`"])
    assert records == [{"k": "load", "t": "code"}, {"k": "code", "c": "x = 1\n", "t": "python"}]


@pytest.mark.parametrize(
    ("tag", "load_t", "block"),
    [
        ("python", "code", {"k": "code", "c": "body\n", "t": "python"}),
        ("json", "code", {"k": "code", "c": "body\n", "t": "json"}),
        ("bash", "code", {"k": "code", "c": "body\n", "t": "bash"}),
        ("", "code", {"k": "code", "c": "body\n", "t": "code"}),
        ("mermaid", "mermaid", {"k": "mermaid", "c": "body\n"}),
    ],
    ids=["python", "json", "bash", "bare", "mermaid"],
)
@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_block_kinds(tag: str, load_t: str, block: Record, chunker: Chunker) -> None:
    """Section 2.4: `load.t` is the component key; a bare fence gives t=code; mermaid has no `t`."""
    records = feed_all(chunker(f"See:\n```{tag}\nbody\n```"))
    assert records == [markdown("See:\n"), {"k": "load", "t": load_t}, block]
    assert list(records[-1]) == list(block), "key order: k first, then c, t (section 2.4)"


def test_mermaid_diagram_records() -> None:
    """Section 2.4: load t=mermaid, then the whole diagram source in one record without `t`."""
    diagram = "graph TD\n  A[Order] --> B{Approval?}\n  B --> C[Done]\n"
    records = feed_all(by_char(f"Here is the flow:\n```mermaid\n{diagram}```\nDone."))
    assert join_markdown(records) == [
        markdown("Here is the flow:\n"),
        {"k": "load", "t": "mermaid"},
        {"k": "mermaid", "c": diagram},
        markdown("\nDone."),
    ]
    assert "t" not in records[2]


# -- the 50-character markdown buffer ------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "chunker", "sizes"),
    [
        (49, whole, [49]),
        (50, whole, [50]),
        (51, whole, [51]),
        (49, by_char, [49]),
        (50, by_char, [50]),
        (51, by_char, [50, 1]),
    ],
    ids=["49-whole", "50-whole", "51-whole", "49-by-char", "50-by-char", "51-by-char"],
)
def test_markdown_record_boundaries(length: int, chunker: Chunker, sizes: list[int]) -> None:
    """Section 2.5: the whole buffer goes out once it holds >= 50 characters; the rest at the end."""
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    records = feed_all(chunker(text))
    assert [len(r["c"]) for r in records] == sizes
    assert all(r["k"] == "markdown" for r in records)
    assert "".join(r["c"] for r in records) == text
    assert not short_markdown_problems(records)


@pytest.mark.parametrize("length", [49, 50, 51])
def test_markdown_is_sent_during_the_stream_only_from_50_characters(length: int) -> None:
    """Below 50 characters nothing is sent until the end; from 50 the record leaves with the chunk."""
    steps, final = feed_steps(["x" * length])
    sent_early = length >= FLUSH_AT
    assert steps == ([[markdown("x" * length)]] if sent_early else [[]])
    assert final == ([] if sent_early else [markdown("x" * length)])


def test_buffer_is_flushed_whatever_its_size_before_a_load() -> None:
    """Section 2.5: pending text is flushed just before a fenced block opens, even a few characters."""
    records = feed_all(by_char("ab\n```\nc\n```\n" + "d" * 60))
    assert records[:2] == [markdown("ab\n"), {"k": "load", "t": "code"}]
    assert not short_markdown_problems(records)


# -- fences at the end of the stream -------------------------------------------------------------
@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
@pytest.mark.parametrize(
    "tail", ["print(1)\n", "print(1)\n`", "", "print(1)"], ids=["body", "backtick", "empty", "no-nl"]
)
def test_unclosed_fence_sends_load_but_no_block(chunker: Chunker, tail: str) -> None:
    """Section 2.5: an unclosed fence at the end: `load` was sent, the half-read block is not."""
    records = feed_all(chunker("Intro\n```python\n" + tail))
    assert records == [markdown("Intro\n"), {"k": "load", "t": "code"}]


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
@pytest.mark.parametrize("text", ["Hello `", "Hello ``", "Hello\n```", "Hello\n```pyth"])
def test_pending_fence_fragment_is_flushed_as_text(chunker: Chunker, text: str) -> None:
    """Section 2.5: a fence fragment still pending at the end goes out as markdown, nothing opens."""
    assert join_markdown(feed_all(chunker(text))) == [markdown(text)]


# -- output starting with `{`: tool calls and raw JSON ------------------------------------------
@pytest.mark.parametrize("username", ["alice", "bob"])
@pytest.mark.parametrize(
    "output",
    [
        TOOL_CALL,
        '{"tool": "show_user_resources"}',
        "  \n\t" + TOOL_CALL,
        TOOL_CALL + "\nLet me know if you need more.",
    ],
    ids=["bare", "no-arguments", "leading-whitespace", "trailing-text"],
)
@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_tool_call_becomes_one_table_record(output: str, username: str, chunker: Chunker) -> None:
    """Sections 2.5-2.6: held to the end, then one table of non-terminated resources; n = rows."""
    rows = expected_rows(username)
    parser = StreamParser(tool_runner(username))
    assert all(parser.feed(chunk) == [] for chunk in chunker(output)), "tool output is never streamed"
    assert parser.finish() == [{"k": "table", "h": TABLE_HEADERS, "r": rows, "n": len(rows)}]
    assert TABLE_HEADERS == ["Name", "Category", "Offering", "Organization", "Project", "State"]
    assert rows and all(row[5] != "Terminated" for row in rows)


def test_table_key_order_is_k_h_r_n() -> None:
    """Section 2.4: the table's fields follow `k` in schema order h, r, n."""
    (table,) = feed_all([TOOL_CALL])
    assert list(table) == ["k", "h", "r", "n"]
    assert encode_record(table).startswith(b'{"k":"table","h":["Name",')


def test_table_lists_at_most_ten_resources() -> None:
    """Section 2.6: at most 10 resources; `n` counts the rows sent."""
    many = [Resource(f"vm-{i:02}", "VMs", "OpenStack VM", "Acme", "Demo", "OK") for i in range(13)]
    record = ToolExecutor(many).runner("alice")(TOOL_CALL)
    assert record is not None
    assert len(record["r"]) == 10
    assert record["n"] == 10


@pytest.mark.parametrize(
    "output",
    ['{"tool": "delete_everything", "arguments": {}}', '{"tool": "show_user_resources", "arguments": "all"}'],
    ids=["unknown-tool", "bad-arguments"],
)
def test_tool_errors_send_nothing(output: str) -> None:
    """Section 2.6: tool errors are never shown: no record at all for the tool."""
    assert feed_all(by_char(output)) == []
    assert feed_all([output]) == []


@pytest.mark.parametrize(
    "output",
    ['{"answer": 42}', "{not json at all", '{"a": 1}\n```python\nx\n```\n' + "y" * 60, "{}"],
    ids=["object-without-tool", "not-json", "fence-after-brace", "empty-object"],
)
@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_non_tool_output_starting_with_brace_is_one_raw_record(output: str, chunker: Chunker) -> None:
    """Section 2.4: no `k`, the whole raw output once at the end; fences inside are not parsed."""
    steps, final = feed_steps(chunker(output))
    assert all(step == [] for step in steps)
    assert final == [{"c": output}]


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_tool_json_inside_a_fence_is_a_code_block(chunker: Chunker) -> None:
    """Output starting with a fence is text (section 2.5 checks the first non-blank character)."""
    records = feed_all(chunker(f"```json\n{TOOL_CALL}\n```"))
    assert records == [{"k": "load", "t": "code"}, {"k": "code", "c": TOOL_CALL + "\n", "t": "json"}]


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_tool_json_inside_prose_is_markdown(chunker: Chunker) -> None:
    """Prose first: the tool JSON is just text and is streamed as markdown."""
    text = f"I would call the tool like this: {TOOL_CALL} but I will not."
    records = feed_all(chunker(text))
    assert join_markdown(records) == [markdown(text)]
    assert not short_markdown_problems(records)


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_leading_whitespace_before_text_is_kept(chunker: Chunker) -> None:
    """Whitespace held while the parser decides between text and tool output is not lost."""
    text = "  \n  Hello there"
    assert join_markdown(feed_all(chunker(text))) == [markdown(text)]


# -- non-ASCII, encoding, empty output, raw text -------------------------------------------------
UNICODE_TEXT = "Grüße aus Zürich, naïve café ✓ — 日本語のテキスト and emoji 🚀🌍 at the end of a long line"


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS.keys())
def test_non_ascii_and_emoji_pass_through_unchanged(chunker: Chunker) -> None:
    """Characters (not bytes) are counted and passed on; a code point is never split."""
    records = feed_all(chunker(UNICODE_TEXT))
    assert join_markdown(records) == [markdown(UNICODE_TEXT)]
    assert not short_markdown_problems(records)


@pytest.mark.parametrize(
    ("record", "wire"),
    [
        (markdown("Grüße 🚀"), b'{"k":"markdown","c":"Gr\\u00fc\\u00dfe \\ud83d\\ude80"}\n'),
        ({"k": "code", "c": "print('hi')\n", "t": "python"}, b'{"k":"code","c":"print(\'hi\')\\n","t":"python"}\n'),
        ({"k": "load", "t": "mermaid"}, b'{"k":"load","t":"mermaid"}\n'),
        ({"m": {"thread_uuid": "a" * 32}}, b'{"m":{"thread_uuid":"' + b"a" * 32 + b'"}}\n'),
        (markdown(CANNED_REFUSAL), b'{"k":"markdown","c":"' + CANNED_REFUSAL.encode() + b'"}\n'),
    ],
    ids=["non-ascii", "code", "load", "meta", "refusal"],
)
def test_encode_record_is_compact_ascii_and_newline_terminated(record: Record, wire: bytes) -> None:
    """Section 2.3: compact separators, ensure_ascii escapes (surrogate pairs above U+FFFF), one `\\n`."""
    encoded = encode_record(record)
    assert encoded == wire
    assert encoded.count(b"\n") == 1
    assert encoded.isascii()
    assert json.loads(encoded) == record


@pytest.mark.parametrize("chunks", [[], [""], ["", "", ""]], ids=["no-chunks", "one-empty", "three-empty"])
def test_empty_upstream_output_sends_no_records(chunks: list[str]) -> None:
    """Nothing from the upstream: no content record at all (only the frame's `m` records)."""
    assert feed_all(chunks) == []


@pytest.mark.parametrize(
    "chunks",
    [
        ["Intro\n```py", "thon\nprint('hi')\n`", "``\nAfter"],
        [" ", TOOL_CALL[:10], TOOL_CALL[10:]],
        list(UNICODE_TEXT),
        ["{not ", "json"],
        ["Intro\n```python\nunclosed"],
    ],
    ids=["fence", "tool", "unicode", "raw-json", "unclosed"],
)
def test_raw_text_is_the_concatenated_chunks(chunks: list[str]) -> None:
    """What is persisted is the raw LLM output (sections 2.6, 3.2), whatever was sent on the wire."""
    parser = StreamParser(tool_runner())
    for chunk in chunks:
        parser.feed(chunk)
    parser.finish()
    assert parser.raw_text == "".join(chunks)
