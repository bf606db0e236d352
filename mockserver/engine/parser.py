"""Waldur's StreamParser, re-implemented: upstream text chunks in, wire records out.

The rules (server notes, section 2.5): markdown is buffered to at least 50 characters
and flushed whole; the buffer is flushed before a fence opens and at the end; fences
are recognised across chunk boundaries (`load` when the tag line is complete, the whole
`code`/`mermaid` block when the fence closes, nothing for a fence left open); output
whose first non-blank character is `{` is held to the end and becomes one tool record
or one raw `{"c": ...}` record.
"""

from __future__ import annotations

from collections.abc import Callable

from mockserver.engine.records import Record, markdown

FENCE = "```"
MARKDOWN_FLUSH_AT = 50

ToolRunner = Callable[[str], Record | None]  # raw output -> component record, or None to send nothing


def _partial_fence_suffix(text: str) -> int:
    """Length of a trailing run of backticks that could still grow into a fence."""
    run = len(text) - len(text.rstrip("`"))
    return min(run, len(FENCE) - 1)


class StreamParser:
    def __init__(self, run_tool: ToolRunner):
        self._run_tool = run_tool
        self._markdown = ""  # text waiting to reach the flush threshold
        self._pending = ""  # unclassified text: a possible fence or tag line
        self._block: str | None = None  # fence tag while inside a block
        self._block_body = ""
        self._mode: str | None = None  # None (undecided), "text" or "tool"
        self._raw = ""

    @property
    def raw_text(self) -> str:
        return self._raw

    @property
    def is_tool_output(self) -> bool:
        """The output so far started with `{`: held to the end for the tool runner."""
        return self._mode == "tool"

    def feed(self, chunk: str) -> list[Record]:
        self._raw += chunk
        if self._mode is None:
            stripped = self._raw.lstrip()
            if not stripped:
                return []
            self._mode = "tool" if stripped.startswith("{") else "text"
            chunk = self._raw  # replay everything held while undecided
        if self._mode == "tool":
            return []
        self._pending += chunk
        return self._drain()

    def finish(self) -> list[Record]:
        """The end of a normal upstream response."""
        if self._mode == "tool":
            record = self._run_tool(self._raw)
            return [record] if record is not None else []
        out: list[Record] = []
        if self._block is None:
            self._markdown += self._pending  # only a fence fragment can be pending here
        self._pending = ""
        if self._markdown:
            out.append(markdown(self._markdown))
            self._markdown = ""
        return out

    def _drain(self) -> list[Record]:
        out: list[Record] = []
        while True:
            if self._block is None:
                if not self._scan_text(out):
                    return out
            elif not self._scan_block(out):
                return out

    def _scan_text(self, out: list[Record]) -> bool:
        """Move text to the markdown buffer; open a block when a complete fence line is seen."""
        start = self._pending.find(FENCE)
        if start < 0:
            keep = _partial_fence_suffix(self._pending)
            self._add_markdown(self._pending[: len(self._pending) - keep], out)
            self._pending = self._pending[len(self._pending) - keep :]
            return False
        self._add_markdown(self._pending[:start], out)
        self._pending = self._pending[start:]
        newline = self._pending.find("\n", len(FENCE))
        if newline < 0:
            return False  # the tag line is not complete yet
        tag = self._pending[len(FENCE) : newline].strip()
        if self._markdown:
            out.append(markdown(self._markdown))
            self._markdown = ""
        out.append({"k": "load", "t": "mermaid" if tag == "mermaid" else "code"})
        self._block, self._block_body = tag, ""
        self._pending = self._pending[newline + 1 :]
        return True

    def _scan_block(self, out: list[Record]) -> bool:
        end = self._pending.find(FENCE)
        if end < 0:
            keep = _partial_fence_suffix(self._pending)
            self._block_body += self._pending[: len(self._pending) - keep]
            self._pending = self._pending[len(self._pending) - keep :]
            return False
        body = self._block_body + self._pending[:end]
        tag = self._block or ""
        out.append({"k": "mermaid", "c": body} if tag == "mermaid" else {"k": "code", "c": body, "t": tag or "code"})
        self._block, self._block_body = None, ""
        self._pending = self._pending[end + len(FENCE) :]
        return True

    def _add_markdown(self, text: str, out: list[Record]) -> None:
        self._markdown += text
        if len(self._markdown) >= MARKDOWN_FLUSH_AT:
            out.append(markdown(self._markdown))
            self._markdown = ""
