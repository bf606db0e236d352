"""The cassette codec: what the recorder writes reads back to the same interactions, and a torn file still reads."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockserver.errors import ConfigurationError
from mockserver.replay.cassette import (
    CassetteWriter,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamLine,
    parse_cassette,
    read_cassette,
)
from mockserver.replay.recorder import ResponseCapture

names = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=12)
texts = st.text(max_size=40)
pairs = st.lists(st.tuples(names, texts), max_size=3).map(tuple)
offsets = st.integers(min_value=0, max_value=10**7).map(lambda n: n / 1000)  # ms with 3 decimals, as written

requests = st.builds(
    RecordedRequest,
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
    path=st.text(min_size=1, max_size=30).map(lambda p: "/" + p),
    query=pairs,
    headers=pairs,
    user=st.none() | st.sampled_from(["user-1", "user-2"]),
    body=st.none() | texts,
)
plain = st.builds(
    RecordedResponse, status=st.integers(100, 599), headers=pairs, headers_ms=offsets, body=texts, cut=st.booleans()
)
streamed = st.builds(
    RecordedResponse,
    status=st.integers(100, 599),
    headers=pairs,
    headers_ms=offsets,
    body=st.none(),
    lines=st.lists(st.builds(StreamLine, at_ms=offsets, text=st.text(max_size=30).filter(lambda t: "\n" not in t))).map(
        tuple
    ),
    unterminated=st.booleans(),
    cut=st.booleans(),
)
interactions = st.builds(Interaction, request=requests, response=plain | streamed)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recorded=st.lists(interactions, max_size=5), redacted=st.lists(names, max_size=2).map(tuple))
def test_what_the_writer_appends_reads_back_identically(
    tmp_path: Path, recorded: list[Interaction], redacted: tuple[str, ...]
) -> None:
    path = tmp_path / "c.jsonl"
    writer = CassetteWriter(path, redacted, "http://target:8000")
    for interaction in recorded:
        writer.append(interaction)
    writer.close()
    cassette = read_cassette(path)
    assert cassette.interactions == recorded
    assert cassette.redacted == redacted
    assert cassette.target == "http://target:8000"


@given(body=st.text(max_size=200), cuts=st.lists(st.integers(0, 800), max_size=8))
def test_a_stream_captured_in_any_chunks_gives_back_its_bytes_even_cut_inside_a_character(
    body: str, cuts: list[int]
) -> None:
    raw = body.encode("utf-8")
    bounds = sorted({0, len(raw), *(c for c in cuts if c <= len(raw))})
    capture = ResponseCapture(stream=True, started=0.0)
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        capture.add(raw[start:end], number / 100)
    _, lines, unterminated = capture.finish(1.0)
    response = RecordedResponse(200, lines=lines, unterminated=unterminated)
    assert response.body_bytes() == raw
    assert [line.at_ms for line in lines or ()] == sorted(line.at_ms for line in lines or ())


def test_a_killed_recorder_leaves_a_readable_cassette(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    writer = CassetteWriter(path, (), "http://t")
    done = Interaction(RecordedRequest("GET", "/api/chat-threads/"), RecordedResponse(200, body="[]"))
    writer.append(done)
    # The process dies halfway through the next line: nothing closes the file.
    path.write_text(path.read_text() + '{"request":{"method":"GE', encoding="utf-8")
    assert read_cassette(path).interactions == [done]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a cassette"),
        ('{"format":"something-else"}\n', "not a cassette"),
        ('{"format":"waldur-chat-mock-cassette","version":99}\n', "version 99"),
        ('{"format":"waldur-chat-mock-cassette","version":1}\n{"request":{}}\n', ":2: not an interaction"),
    ],
)
def test_a_bad_cassette_is_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        parse_cassette(text, "bad.jsonl")


def test_the_format_is_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    writer = CassetteWriter(path, ("password",), "http://t")
    writer.append(
        Interaction(RecordedRequest("POST", "/x", body="{}"), RecordedResponse(200, lines=(StreamLine(1.5, "{}"),)))
    )
    writer.close()
    header, entry = (json.loads(line) for line in path.read_text().splitlines())
    assert header == {
        "format": "waldur-chat-mock-cassette",
        "version": 1,
        "target": "http://t",
        "redacted": ["password"],
    }
    assert entry["response"]["lines"] == [[1.5, "{}"]]
