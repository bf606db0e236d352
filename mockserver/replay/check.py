"""`cassette check`: every recorded stream line a real Waldur stream could not contain, with why.

The API profile (`--api`, 8.0.5 by default) names the record schema and the grammar.

Reuses the spec's record validator (`record_problems`) for each line, the one NDJSON codec
for the compact form, and the contract suite's stream checker for the grammar of a stream.
"""

from __future__ import annotations

import json

import httpx

from mockserver.contract.findings import ContractViolation, Step
from mockserver.contract.streams import NDJSON, StreamChecker, StreamExpectation
from mockserver.contract.target import StreamCapture
from mockserver.engine.records import encode_record
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.sequential import EVENT_STREAM
from mockserver.openapi.validation import record_problems
from mockserver.profiles import DEFAULT_API, get_profile
from mockserver.profiles.base import ApiProfile
from mockserver.replay.cassette import Cassette, Interaction
from mockserver.replay.convert import request_fields


class NotARecordStream(ValueError):
    """The profile streams SSE, not NDJSON records: nothing here can check it."""


def check_cassette(cassette: Cassette, spec: SpecIndex | None = None, api: str = DEFAULT_API) -> list[str]:
    """One entry per problem: `interaction N line M: reason` (N counts from 1, as the cassette's entries)."""
    profile = get_profile(api)
    if profile.encoder.media_type == EVENT_STREAM:
        raise NotARecordStream(f"--api {api} streams SSE events; cassette check reads NDJSON record streams")
    validator = (spec or SpecIndex.from_file(profile.spec_file)).schema_validator(profile.stream_item_schema)
    checker = StreamChecker(validator, profile.traits)
    problems = []
    for number, interaction in enumerate(cassette.interactions, start=1):
        if _is_waldur_stream(interaction, profile):
            problems.extend(f"interaction {number} {p}" for p in _stream_problems(interaction, validator, checker))
    return problems


def _is_waldur_stream(interaction: Interaction, profile: ApiProfile) -> bool:
    response = interaction.response
    return interaction.request.path == profile.stream_path and response.status == 200 and response.is_stream


def _stream_problems(interaction: Interaction, validator: object, checker: StreamChecker) -> list[str]:
    response = interaction.response
    problems, good_lines = [], []
    content_type = dict(response.headers).get("content-type", "")
    if content_type != NDJSON:
        problems.append(f"(headers): Content-Type is {content_type!r}, a Waldur stream is {NDJSON!r}")
    for number, line in enumerate(response.lines or (), start=1):
        reason = _line_problem(line.text, validator)
        if reason is None and response.unterminated and number == len(response.lines or ()):
            reason = "the last line is not terminated by \\n (the connection was cut)"
        if reason:
            problems.append(f"line {number}: {reason}: {line.text[:80]!r}")
        else:
            good_lines.append(line.text)
    if response.cut:
        problems.append("(stream): the connection was cut before the body ended")
    grammar = _grammar_problem(good_lines, interaction, checker)
    if grammar:
        problems.append(f"(stream): {grammar}")
    return problems


def _line_problem(text: str, validator: object) -> str | None:
    if not text.strip():
        return "a blank line"
    try:
        record = json.loads(text)
    except ValueError:
        return "not JSON"
    if encode_record(record) != (text + "\n").encode("utf-8"):
        return "not compact ASCII JSON as Waldur writes it"
    problems = record_problems(validator, record)  # type: ignore[arg-type]
    return f"breaks the record schema: {problems[0]}" if problems else None


def _grammar_problem(lines: list[str], interaction: Interaction, checker: StreamChecker) -> str | None:
    """The stream grammar (m first and last, e before the final m) over the lines that are records."""
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    capture = StreamCapture(200, httpx.Headers({"content-type": NDJSON}), body, timed=False)
    expect = StreamExpectation(title_call=bool(request_fields(interaction.request).get("update_thread_name")))
    try:
        checker.check(capture, expect, Step(interaction.request.method, interaction.request.path))
    except ContractViolation as violation:
        return f"{violation.message} [{violation.check}]"
    return None
