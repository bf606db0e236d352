"""Tool calls in the doc era: one tool, `show_user_resources`, rendered as a `table` record.

Output that starts with `{` is parsed at the end: a JSON object with `"tool"` (bare,
inside a markdown fence, or inside surrounding text together with `"arguments"`) is a
tool call; anything else is sent back raw as `{"c": ...}`. Tool errors send nothing.

`ToolExecutor.execute` answers with Waldur's executor result (`type` success or error,
`summary`, `ui_component`, `ui_data`), the body of `POST /api/chat-tools/execute/`; the
stream's table record is its `ui_data`. Arguments are scanned for prompt injection first
(a blocked scan, or arguments that cannot be scanned, is an error: it fails closed).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mockserver.engine.records import Record
from mockserver.errors import ConfigurationError
from mockserver.resources import RESOURCES_FILE

TABLE_HEADERS = ["Name", "Category", "Offering", "Organization", "Project", "State"]
MAX_ROWS = 10
DEFAULT_RESOURCES_FILE = RESOURCES_FILE
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_EMBEDDED = re.compile(r"\{.*\"tool\".*\"arguments\".*\}", re.DOTALL)
KNOWN_TOOLS = ("show_user_resources",)
INJECTION_BLOCK_MESSAGE = "Unable to process this request. Please try rephrasing."
ToolResult = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    name: str
    category: str
    offering: str
    organization: str
    project: str
    state: str
    users: tuple[str, ...] = ()  # usernames that see it; empty: everyone

    def row(self) -> list[str]:
        return [self.name, self.category, self.offering, self.organization, self.project, self.state]

    def as_json(self) -> dict[str, Any]:
        """One entry of the result's `data.resources`; the uuids are stable across restarts."""
        return {
            "uuid": _stable_uuid(f"resource:{self.organization}/{self.project}/{self.name}"),
            "name": self.name,
            "category": self.category,
            "offering": self.offering,
            "organization": self.organization,
            "project": self.project,
            "project_uuid": _stable_uuid(f"project:{self.organization}/{self.project}"),
            "state": self.state,
        }


def _stable_uuid(key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"waldur-chat-mock:{key}").hex


def load_resources(path: Path = DEFAULT_RESOURCES_FILE) -> list[Resource]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read resources file {path}: {exc}") from None
    resources = []
    for index, entry in enumerate(document.get("resources", [])):
        try:
            resources.append(Resource(**{**entry, "users": tuple(entry.get("users", ()))}))
        except TypeError as exc:
            raise ConfigurationError(f"{path}: resources[{index}]: {exc}") from None
    return resources


def parse_tool_call(raw: str) -> dict[str, Any] | None:
    """The tool-call object in an LLM output, or None when it is not one."""
    for candidate in (raw.strip(), *(m.group(1) for m in _FENCED.finditer(raw))):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and "tool" in value:
            return value
    embedded = _EMBEDDED.search(raw)
    if embedded:
        try:
            value = json.loads(embedded.group(0))
        except ValueError:
            return None
        return value if isinstance(value, dict) and "tool" in value else None
    return None


def _error(message: str, summary: str | None = None) -> ToolResult:
    return {"type": "error", "error": message, "summary": summary or message}


def argument_text(arguments: dict[str, Any]) -> str:
    """What Waldur scans in tool arguments: string values, and lists/objects as JSON."""
    scanned = [v for v in arguments.values() if isinstance(v, str | list | dict)]
    return " ".join(v if isinstance(v, str) else json.dumps(v) for v in scanned)


class ToolExecutor:
    """Runs a tool call for one user, as Waldur's executor: a result dict, never an exception.

    `blocks_text` says whether text is a prompt injection to block (the chat domain's
    detector, read at call time); without it nothing is blocked."""

    def __init__(self, resources: list[Resource], blocks_text: Callable[[str], bool] | None = None):
        self.resources = resources
        self.blocks_text = blocks_text or (lambda _: False)

    def runner(self, username: str):
        def run(raw: str) -> Record | None:
            call = parse_tool_call(raw)
            if call is None:
                return {"c": raw}
            result = self.execute(username, call.get("tool"), call.get("arguments", {}))
            if result["type"] != "success":
                return None  # unknown tool, bad or injected arguments: errors are never shown
            return {"k": result["ui_component"], **result["ui_data"]}

        return run

    def execute(self, username: str, tool: Any, arguments: Any) -> ToolResult:
        if not isinstance(arguments, dict):
            return _error(INJECTION_BLOCK_MESSAGE)  # Waldur's scan cannot read it and fails closed
        text = argument_text(arguments)
        if text.strip() and self.blocks_text(text):
            return _error(INJECTION_BLOCK_MESSAGE)
        if tool == "show_user_resources":
            return self.show_user_resources(username)
        message = f"Unknown tool: {tool}"
        return {**_error(message), "ui_component": "markdown", "ui_data": {"c": message}}

    def show_user_resources(self, username: str) -> ToolResult:
        """At most 10 resources the user sees, terminated ones left out."""
        visible = [
            r for r in self.resources if r.state.lower() != "terminated" and (not r.users or username in r.users)
        ][:MAX_ROWS]
        total = len(visible)
        return {
            "type": "success",
            "data": {"resources": [r.as_json() for r in visible], "total": total},
            "summary": f"Found {total} resource{'s' if total != 1 else ''}",
            "ui_component": "table",
            "ui_data": {"h": list(TABLE_HEADERS), "r": [r.row() for r in visible], "n": total},
        }
