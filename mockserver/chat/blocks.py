"""Waldur 8.1's persisted message blocks, built from the content records as they are streamed.

Waldur's accumulator (`_chunk_to_block`, `_absorb_block`) turns the stream into `blocks`:
consecutive markdown deltas make one markdown block, a code or mermaid record one block,
a tool-result record (`vm_order`, `resource_list`, `homeport_nav`, `ask_user_form`) one
top-level block with the record's fields. Ids are `blk_0`, `blk_1`, ... in stream order.
Only what was streamed is collected, so a cancelled answer keeps the blocks sent so far.
"""

from __future__ import annotations

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


@dataclass
class BlockCollector:
    """Feeds on the records a client received; `blocks` and `warning` are what Waldur stores."""

    blocks: list[Block] = field(default_factory=list)
    warning: str = ""

    def add(self, record: Record) -> None:
        if "w" in record:
            self.warning = str(record["w"])
            return
        kind = record.get("k")
        if kind == "markdown":
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
        elif kind in TOOL_RESULT_KINDS:
            fields = {k: v for k, v in record.items() if k != "k"}
            # A vm_order's own status (preview/success/error) is the block's status, as homeport merges it.
            self.blocks.append({"id": f"blk_{len(self.blocks)}", "key": kind, "status": COMPLETE, **fields})


def records_of_blocks(blocks: list[Block]) -> list[Record]:
    """The content records a list of blocks stands for (one markdown record per markdown block).

    The inverse of `BlockCollector` up to the splitting of markdown deltas: the contract
    suite compares it with a stream's records, markdown deltas joined.
    """
    records: list[Record] = []
    for block in blocks:
        key = block["key"]
        if key in ("markdown", "mermaid"):
            records.append({"k": key, "c": block["content"]})
        elif key == "code":
            records.append({"k": "code", "c": block["content"], "t": block["tag"]})
        elif key in TOOL_RESULT_KINDS:
            fields = {k: v for k, v in block.items() if k not in ("id", "key")}
            if key != "vm_order":
                fields.pop("status", None)
            records.append({"k": key, **fields})
    return records


def join_markdown(records: list[Record]) -> list[Record]:
    """Consecutive markdown deltas joined into one record (what a block holds)."""
    joined: list[Record] = []
    for record in records:
        if record.get("k") == "markdown" and joined and joined[-1].get("k") == "markdown":
            joined[-1] = {"k": "markdown", "c": joined[-1]["c"] + record["c"]}
        elif is_content(record):
            joined.append(dict(record))
    return joined
