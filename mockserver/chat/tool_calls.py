"""`POST /api/chat-tools/execute/` as Waldur 8.0.5 runs it: name check, then the executor.

An unknown tool name is a validation error on `tool` (400, a plain string, not a list);
any error the executor reports (injected or unreadable arguments) is 422 `{"detail": ...}`.
"""

from __future__ import annotations

from typing import Any

from mockserver.engine.tools import KNOWN_TOOLS, ToolExecutor, ToolResult
from mockserver.errors import UnprocessableEntity, ValidationFailed


def execute_tool(executor: ToolExecutor, username: str, tool: str, arguments: Any) -> ToolResult:
    if tool not in KNOWN_TOOLS:
        raise ValidationFailed({"tool": f"Tool '{tool}' is not recognized."})
    result = executor.execute(username, tool, arguments)
    if result.get("type") == "error":
        raise UnprocessableEntity(result.get("error") or None)
    return result
