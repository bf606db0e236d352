"""Waldur 8.1's persisted message blocks, built from the content records as they are streamed.

Waldur's accumulator (`_chunk_to_block`, `_absorb_block`) turns the stream into `blocks`:
consecutive markdown deltas make one markdown block, a code or mermaid record one block,
a tool-result record (`vm_order`, `resource_list`, `homeport_nav`, `ask_user_form`) one
top-level block with the record's fields. Ids are `blk_0`, `blk_1`, ... in stream order.
Only what was streamed is collected, so a cancelled answer keeps the blocks sent so far.

A tool call is a `{"k": "load", "t": "tool", "tool": {name, arguments?, summary?, call_id?}}`
record, never sent on the wire (Waldur absorbs its loading block into the accumulator
only). It opens a `tool` block; the tool-result record right after it becomes that
block's `result` (id `blk_N_r`). A tool without a UI result (text, another call or the
end comes next) gets Waldur's empty markdown result. A call still open when the turn was
cancelled is dropped, as Waldur drops a tool block that never got its result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from mockserver.engine.records import Record

TEXT_KINDS = ("markdown", "code", "mermaid")
TOOL_RESULT_KINDS = ("vm_order", "resource_list", "homeport_nav", "ask_user_form")
CONTENT_KINDS = (*TEXT_KINDS, *TOOL_RESULT_KINDS)
COMPLETE = "complete"

Block = dict[str, Any]


def text_block(index: int, key: str, content: str) -> Block:
    return {"id": f"blk_{index}", "key": key, "status": COMPLETE, "content": content}


def user_blocks(text: str) -> list[Block]:
    """A user message is stored as one markdown block `blk_0`."""
    return [text_block(0, "markdown", text)]


def is_content(record: Record) -> bool:
    return record.get("k") in CONTENT_KINDS


def is_tool_call(record: Record) -> bool:
    """A script's tool call: a `load` record of kind `tool` (the accumulator's, not the wire's)."""
    return record.get("k") == "load" and record.get("t") == "tool"


TOOL_CALL_KEYS = {"k", "t", "tool"}
TOOL_FIELDS = {"name": str, "arguments": dict, "summary": str, "call_id": str}


def tool_call_problems(record: Record) -> list[str]:
    """Why a script's tool-call record is malformed (empty: it is fine)."""
    extra = sorted(set(record) - TOOL_CALL_KEYS)
    if extra:
        return [f"a tool call has only k, t and tool, not {', '.join(extra)}"]
    tool = record.get("tool")
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
        return ["a tool call needs tool.name, a non-empty string"]
    for name, value in tool.items():
        kind = TOOL_FIELDS.get(name)
        if kind is None:
            return [f"unknown tool field {name!r}; known: {', '.join(TOOL_FIELDS)}"]
        if not isinstance(value, kind):
            return [f"tool.{name} must be a {'mapping' if kind is dict else 'string'}"]
    return []


def _call_metadata(record: Record) -> dict[str, Any]:
    """Waldur's `tool` part: the call id the upstream gave, name, parsed arguments, the result's summary."""
    tool = record.get("tool") or {}
    return {
        "call_id": str(tool.get("call_id") or f"call_{uuid.uuid4().hex[:24]}"),
        "name": str(tool.get("name", "")),
        "arguments": dict(tool.get("arguments") or {}),
        "summary": str(tool.get("summary", "")),
    }


@dataclass
class BlockCollector:
    """Feeds on the records a client received; `blocks` and `warning` are what Waldur stores."""

    blocks: list[Block] = field(default_factory=list)
    warning: str = ""
    open_tool: Block | None = None  # a tool block waiting for its result record

    def add(self, record: Record) -> None:
        if "w" in record:
            self.warning = str(record["w"])
            return
        kind = record.get("k")
        if self.open_tool is not None and kind in TOOL_RESULT_KINDS:
            self.open_tool["result"] = _result_block(f"{self.open_tool['id']}_r", record)
            self.open_tool = None
            return
        self.close()
        if is_tool_call(record):
            self.open_tool = {"id": f"blk_{len(self.blocks)}", "key": "tool", "status": COMPLETE}
            self.open_tool["tool"] = _call_metadata(record)
            self.blocks.append(self.open_tool)
        elif kind == "markdown":
            last = self.blocks[-1] if self.blocks else None
            if last is not None and last["key"] == "markdown":
                last["content"] += record["c"]
            else:
                self.blocks.append(text_block(len(self.blocks), "markdown", record["c"]))
        elif kind in ("code", "mermaid"):
            block = text_block(len(self.blocks), kind, record["c"])
            if kind == "code":
                block["tag"] = record["t"]
            self.blocks.append(block)
        elif kind in TOOL_RESULT_KINDS:  # a result without a call before it: a top-level block
            self.blocks.append(_result_block(f"blk_{len(self.blocks)}", record))

    def close(self) -> None:
        """The end of a tool round: an open call had no UI result, so it gets Waldur's empty markdown one."""
        if self.open_tool is not None:
            empty = {"id": f"{self.open_tool['id']}_r", "key": "markdown", "status": COMPLETE, "content": ""}
            self.open_tool["result"] = empty
            self.open_tool = None

    def drop_open_call(self) -> None:
        """A cancel cut the call off before its result: Waldur persists no tool block without one."""
        if self.open_tool is not None:
            self.blocks.remove(self.open_tool)
            self.open_tool = None


def _result_block(block_id: str, record: Record) -> Block:
    fields = {k: v for k, v in record.items() if k != "k"}
    # A vm_order's own status (preview/success/error) is the block's status, as homeport merges it.
    return {"id": block_id, "key": record["k"], "status": COMPLETE, **fields}


def records_of_blocks(blocks: list[Block]) -> list[Record]:
    """The content records a list of blocks stands for: compared with a stream's records,
    markdown deltas joined (the inverse of `BlockCollector` up to the splitting of deltas).

    A tool block stands for its result record. A tool without UI (an empty markdown result)
    was never on the wire, so the markdown on either side of it ran together there and is
    joined here; two markdown blocks side by side are not (the accumulator would have made
    them one block: a store that keeps deltas apart must not pass for one that joins them).
    """
    records: list[Record] = []
    glue = False  # the block before was a tool without UI
    for stored in blocks:
        block = stored["result"] if stored["key"] == "tool" else stored
        if block is not stored and block["key"] == "markdown" and not block["content"]:
            glue = True
            continue
        record = _record_of_block(block)
        if glue and record["k"] == "markdown" and records and records[-1]["k"] == "markdown":
            records[-1] = {"k": "markdown", "c": records[-1]["c"] + record["c"]}
        elif record:
            records.append(record)
        glue = False
    return records


def _record_of_block(block: Block) -> Record:
    """The record one content block holds (empty for a key that is not content)."""
    key = block["key"]
    if key in ("markdown", "mermaid"):
        return {"k": key, "c": block["content"]}
    if key == "code":
        return {"k": "code", "c": block["content"], "t": block["tag"]}
    if key in TOOL_RESULT_KINDS:
        fields = {k: v for k, v in block.items() if k not in ("id", "key")}
        if key != "vm_order":
            fields.pop("status", None)
        return {"k": key, **fields}
    return {}


def join_markdown(records: list[Record]) -> list[Record]:
    """Consecutive markdown deltas joined into one record (what a block holds)."""
    joined: list[Record] = []
    for record in records:
        if record.get("k") == "markdown" and joined and joined[-1].get("k") == "markdown":
            joined[-1] = {"k": "markdown", "c": joined[-1]["c"] + record["c"]}
        elif is_content(record):
            joined.append(dict(record))
    return joined
