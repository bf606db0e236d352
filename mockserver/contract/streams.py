"""The stream contract (part 2): framing, record schema, grammar, REST consistency, reassembly, timing.

Every stream the suite makes goes through `StreamChecker.check`, which raises a
`ContractViolation` naming the first broken rule, and records timing figures. The API's
traits choose the grammar (`load` records, the `w` warning) and how the stored answer is
compared with the records (raw `content`, or `blocks`).
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from jsonschema.protocols import Validator

from mockserver.chat.blocks import TEXT_KINDS, TOOL_RESULT_KINDS, join_markdown, records_of_blocks
from mockserver.contract.findings import ContractViolation, Step
from mockserver.contract.target import StreamCapture, Target
from mockserver.openapi.sequential import NDJSON
from mockserver.profiles.base import ApiTraits

HEX32 = frozenset("0123456789abcdef")
BLOCK_COMPLETE = "complete"


@dataclass
class StreamTiming:
    first_record_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    one_piece: int = 0  # streams that arrived as a single burst although they took a while
    steps: list[Step] = field(default_factory=list)  # the requests of those streams

    def add(self, capture: StreamCapture, request: Step) -> None:
        if not capture.timed:
            return
        times = capture.line_times()
        if not times:
            return
        self.first_record_ms.append(times[0] * 1000)
        self.gaps_ms.extend((b - a) * 1000 for a, b in itertools.pairwise(times))
        if len(times) > 2 and times[-1] > 0.2 and (times[-1] - times[0]) < 0.005:
            self.one_piece += 1
            self.steps.append(request)

    def figures(self) -> dict[str, float | int]:
        """The measurements, in milliseconds (for the JSON and JUnit reports)."""
        gaps = sorted(self.gaps_ms) or [0.0]
        return {
            "streams": len(self.first_record_ms),
            "first_record_ms_p50": round(statistics.median(self.first_record_ms), 1),
            "first_record_ms_max": round(max(self.first_record_ms), 1),
            "gap_ms_p50": round(statistics.median(gaps), 1),
            "gap_ms_max": round(gaps[-1], 1),
            "one_piece": self.one_piece,
        }

    def summary(self) -> str:
        f = self.figures()
        return (
            f"{f['streams']} streams timed: time to first record p50 {f['first_record_ms_p50']} ms, "
            f"max {f['first_record_ms_max']} ms; inter-record gap p50 {f['gap_ms_p50']} ms, "
            f"max {f['gap_ms_max']} ms; streams arriving in one piece: {f['one_piece']}"
        )


def is_hex_uuid(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and set(value) <= HEX32


@dataclass
class StreamExpectation:
    """What the suite knows about the stream it asked for."""

    title_call: bool = False
    input: str | None = None  # the user message the turn stores (None: no new user message is checked)
    cancelled: bool = False  # a cancel came mid-stream: the stored answer is a prefix of the records


class StreamChecker:
    def __init__(self, record_validator: Validator, traits: ApiTraits | None = None):
        self.record_validator = record_validator
        self.traits = traits or ApiTraits()
        self.timing = StreamTiming()

    def check(self, capture: StreamCapture, expect: StreamExpectation, request: Step) -> list[dict[str, Any]]:
        """Validate one 200 stream; return its records. Raises ContractViolation on the first broken rule."""
        steps = [request]

        def fail(check: str, message: str) -> ContractViolation:
            request.status = capture.status
            request.excerpt = _excerpt(capture.body)
            return ContractViolation(check, message, steps)

        if capture.timed_out:
            raise fail("stream.time_limit", "the stream did not end within the time limit")
        content_type = capture.headers.get("content-type", "")
        if content_type != NDJSON:
            raise fail("stream.content_type", f"Content-Type is {content_type!r}, expected exactly {NDJSON!r}")
        if not capture.body.endswith(b"\n"):
            raise fail("stream.framing.terminated", "the last line is not terminated by \\n")
        records = []
        for number, line in enumerate(capture.body[:-1].split(b"\n"), start=1):
            if not line.strip():
                raise fail("stream.framing.blank_line", f"line {number} is blank")
            try:
                record = json.loads(line)
            except ValueError:
                raise fail("stream.framing.json", f"line {number} is not JSON: {line[:80]!r}") from None
            compact = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode()
            if compact != line:
                raise fail("stream.framing.compact", f"line {number} is not compact ASCII JSON: {line[:80]!r}")
            if not self.traits.load_records and isinstance(record, dict) and record.get("k") == "load":
                raise fail("stream.grammar.no_load", f"line {number} is a load record, which this API never sends")
            error = next(iter(self.record_validator.iter_errors(record)), None)
            if error is not None:
                raise fail("stream.record_schema", f"line {number} {record!r} breaks the record schema")
            records.append(record)
        self._grammar(records, expect, fail)
        self.timing.add(capture, request)
        return records

    def _grammar(self, records: list[dict[str, Any]], expect: StreamExpectation, fail: Any) -> None:
        metas = [i for i, r in enumerate(records) if "m" in r]
        errors = [i for i, r in enumerate(records) if "e" in r]
        if expect.title_call:
            if metas:
                raise fail("stream.grammar.no_m_for_title", "a title call (update_thread_name) sent an m record")
            return
        if not records or "thread_uuid" not in records[0].get("m", {}):
            raise fail("stream.grammar.thread_first", "the first record is not the thread m record")
        if not is_hex_uuid(records[0]["m"]["thread_uuid"]):
            raise fail("stream.grammar.thread_first", "thread_uuid is not 32 lowercase hex characters")
        final = records[-1].get("m", {})
        if len(records) < 2 or "assistant_message_uuid" not in final:
            raise fail("stream.grammar.final_m_last", "the last record is not the message-uuids m record")
        if metas != [0, len(records) - 1]:
            raise fail("stream.grammar.m_only_first_and_last", f"m records at positions {metas}")
        if any(i != len(records) - 2 for i in errors):
            raise fail("stream.grammar.error_before_final", "an e record is not right before the final m record")
        warnings = [i for i, r in enumerate(records) if "w" in r]
        if self.traits.warning_record and any(i != 1 for i in warnings):
            raise fail("stream.grammar.warning_after_thread", f"w records at positions {warnings}, only 1 is allowed")
        for key, value in final.items():
            if not is_hex_uuid(value):
                raise fail("stream.grammar.final_m_last", f"{key} is not 32 lowercase hex characters")

    def check_rest(self, target: Target, token: str, records: list[dict[str, Any]], expect: StreamExpectation) -> None:
        """The uuids the stream announced are what the REST endpoints show, and the stored
        messages are consistent with the records (reassembly invariant)."""
        if expect.title_call:
            return
        thread = records[0]["m"]["thread_uuid"]
        final = records[-1]["m"]
        response = target.request(
            "GET", "/api/chat-messages/", token=token, params={"thread": thread, "include_history": "true"}
        )
        step = target.step(response)
        if response.status_code != 200:
            raise ContractViolation("stream.uuids_match_rest", "cannot list the thread's messages", [step])
        rows = {row["uuid"]: row for row in response.json()}
        for key, role in (("user_message_uuid", "user"), ("assistant_message_uuid", "assistant")):
            uuid = final.get(key)
            if uuid is None:
                continue
            row = rows.get(uuid)
            if row is None or row["role"] != role or row["thread"] != thread:
                step.excerpt = f"{key}={uuid} not listed as a {role} message of thread {thread}"
                raise ContractViolation("stream.uuids_match_rest", step.excerpt, [step])
        assistant = rows[final["assistant_message_uuid"]]
        if self.traits.message_body == "blocks":
            problem = _blocks_problem(records, assistant, rows.get(final.get("user_message_uuid", "")), expect)
        else:
            text = reassembly_problem(records, assistant["content"])
            problem = ("stream.reassembly", text) if text else None
        if problem:
            step.excerpt = problem[1]
            raise ContractViolation(problem[0], problem[1], [step])


def _blocks_problem(
    records: list[dict[str, Any]],
    assistant: dict[str, Any],
    user: dict[str, Any] | None,
    expect: StreamExpectation,
) -> tuple[str, str] | None:
    """(rule, what is wrong) of stored blocks against the stream, or None when they agree."""
    blocks = assistant.get("blocks")
    shape = block_shape_problem(blocks)
    if shape:
        return "stream.block_shapes", shape
    if user is not None and expect.input is not None:
        wanted = [{"id": "blk_0", "key": "markdown", "status": BLOCK_COMPLETE, "content": expect.input}]
        if user.get("blocks") != wanted:
            return "stream.user_message_blocks", f"the user message's blocks are {user.get('blocks')!r}, not {wanted!r}"
    assert isinstance(blocks, list)
    # A tool block stands for its result record (the call itself is never on the wire).
    stored = records_of_blocks(blocks)
    streamed = join_markdown(records)
    if expect.cancelled:
        if not is_prefix(stored, streamed):
            return "stream.cancel_keeps_partial", f"stored {_brief(stored)} is not a prefix of {_brief(streamed)}"
    elif stored != streamed:
        return "stream.reassembly", f"stored blocks {_brief(stored)} are not the streamed records {_brief(streamed)}"
    return None


def block_shape_problem(blocks: Any) -> str | None:
    """Persisted blocks: `blk_N` ids in order, a known key, `complete` (a vm_order keeps its own
    status), text in `content` (and the language in `tag` for code)."""
    if not isinstance(blocks, list):
        return f"blocks is {type(blocks).__name__}, not a list"
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("id") != f"blk_{index}":
            return f"block {index} is not an object with id blk_{index}: {_brief(block)}"
        key = block.get("key")
        if key in TEXT_KINDS:
            if not isinstance(block.get("content"), str) or (key == "code" and not isinstance(block.get("tag"), str)):
                return f"text block {index} lacks its content (or a code block its tag): {_brief(block)}"
        elif key not in (*TOOL_RESULT_KINDS, "tool"):
            return f"block {index} has key {key!r}"
        if key != "vm_order" and block.get("status") != BLOCK_COMPLETE:
            return f"block {index} has status {block.get('status')!r}, not {BLOCK_COMPLETE!r}"
    return None


def is_prefix(stored: list[dict[str, Any]], streamed: list[dict[str, Any]]) -> bool:
    """`stored` is what was streamed up to some point (its last markdown block may be cut short)."""
    if len(stored) > len(streamed):
        return False
    if not stored:
        return True
    *whole, last = stored
    if whole != streamed[: len(whole)]:
        return False
    candidate = streamed[len(whole)]
    if last.get("k") == "markdown" and candidate.get("k") == "markdown":
        return str(candidate["c"]).startswith(str(last["c"]))
    return last == candidate


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 200 else text[:197] + "..."


def reassembly_problem(records: list[dict[str, Any]], stored: str) -> str | None:
    """Each content record must appear, in order, in the stored raw text."""
    position = 0
    for record in records:
        kind = record.get("k")
        if kind == "markdown":
            needles = [record["c"]]
        elif kind == "code":
            needles = [f"```{record['t'] if record['t'] != 'code' else ''}", record["c"], "```"]
        elif kind == "mermaid":
            needles = ["```mermaid", record["c"], "```"]
        elif kind is None and "c" in record:
            needles = [record["c"]]
        elif kind == "table":
            needles = ['"tool"']
        else:
            continue
        for needle in needles:
            found = stored.find(needle, position)
            if found < 0:
                return f"stored assistant content lacks {needle[:60]!r} after offset {position}"
            position = found + len(needle)
    return None


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= 300 else text[:297] + "..."
