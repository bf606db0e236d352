"""Tool calls in the doc era: one tool, `show_user_resources`, rendered as a `table` record.

Output that starts with `{` is parsed at the end: a JSON object with `"tool"` (bare,
inside a markdown fence, or inside surrounding text together with `"arguments"`) is a
tool call; anything else is sent back raw as `{"c": ...}`. Tool errors send nothing.
"""

from __future__ import annotations

import json
import re
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


class ToolExecutor:
    """Runs a parsed tool call for one user; returns the component record or None on any error."""

    def __init__(self, resources: list[Resource]):
        self.resources = resources

    def runner(self, username: str):
        def run(raw: str) -> Record | None:
            call = parse_tool_call(raw)
            if call is None:
                return {"c": raw}
            if call.get("tool") != "show_user_resources" or not isinstance(call.get("arguments", {}), dict):
                return None  # unknown tool or bad arguments: errors are never shown
            return self.table(username)

        return run

    def table(self, username: str) -> Record:
        rows = [
            r.row() for r in self.resources if r.state.lower() != "terminated" and (not r.users or username in r.users)
        ][:MAX_ROWS]
        return {"k": "table", "h": list(TABLE_HEADERS), "r": rows, "n": len(rows)}
