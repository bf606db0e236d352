"""Extract the chat part of an unpacked `waldur-api-client` wheel into JSON test data.

Usage: pip download --no-deps waldur-api-client==8.1.3 -d /tmp/w && unzip -q /tmp/w/*.whl -d /tmp/w/x
       python extract_client_chat.py /tmp/w/x/waldur_api_client > waldur-8.1.3-client-chat.json

Reads the generated sources with `ast` (nothing is imported): per operation its method, URL
template, query parameter names, body model and the status codes it parses; per model its
fields with required/nullable; per enum its values.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

CHAT_API_DIRS = (
    "anonymous_chat_feedbacks",
    "anonymous_chat_interactions",
    "chat",
    "chat_messages",
    "chat_quota",
    "chat_sessions",
    "chat_system_prompts",
    "chat_threads",
    "chat_tools",
    "marketplace_chat",
)


def _operation(path: Path) -> dict[str, object]:
    source = path.read_text(encoding="utf-8")
    method = re.search(r'"method": "(\w+)"', source)
    url = re.search(r'"url": f?"([^"]+)"', source)
    body = re.search(r"body: (?:Union\[)?(\w+)", source)
    return {
        "method": method.group(1).upper() if method else None,
        "url": url.group(1) if url else None,
        "query": sorted(set(re.findall(r'^\s+params\["(\w+)"\] =', source, re.MULTILINE))),
        "body": body.group(1) if body else None,
        "statuses": sorted(set(int(s) for s in re.findall(r"response.status_code == (\d+)", source))),
    }


def _model(tree: ast.Module) -> tuple[str, dict[str, object]] | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any("Enum" in b for b in bases):
                values = [ast.literal_eval(s.value) for s in node.body if isinstance(s, ast.Assign)]
                return node.name, {"enum": values}
            fields = {}
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    name = stmt.target.id
                    if name == "additional_properties":
                        continue
                    annotation = ast.unparse(stmt.annotation)
                    fields[name] = {
                        "required": stmt.value is None,
                        "nullable": "None" in annotation,
                        "type": annotation,
                    }
            return node.name, {"fields": fields}
    return None


def extract(package: Path) -> dict[str, object]:
    operations = {}
    for folder in CHAT_API_DIRS:
        for path in sorted((package / "api" / folder).glob("*.py")):
            if path.name != "__init__.py":
                operations[path.stem] = _operation(path)
    used = {op["body"] for op in operations.values()} | set()
    models = {}
    for path in sorted((package / "models").glob("*.py")):
        found = _model(ast.parse(path.read_text(encoding="utf-8")))
        if found is not None:
            models[found[0]] = found[1]
    wanted = {
        "Message",
        "MessageBlocksItem",
        "MessageBlocksItemKey",
        "MessageFeedbackRequest",
        "FeedbackCategoryEnum",
        "ThreadSession",
        "ThreadSessionOEnum",
        "ThreadSessionScopeEnum",
        "ChatRequestRequest",
        "ChatRequestModeEnum",
        "ChatResponse",
        "ChatThreadStatsResponse",
        "SystemPrompt",
        "SystemPromptRequest",
        "ChatSession",
        "ActionTakenEnum",
        "InjectionSeverityEnum",
    } | {u for u in used if u}
    return {
        "source": f"waldur-api-client {_version(package)} (generated from Waldur's published OpenAPI schema)",
        "operations": operations,
        "models": {name: models[name] for name in sorted(wanted) if name in models},
    }


def _version(package: Path) -> str:
    meta = next(package.parent.glob("waldur_api_client-*.dist-info"), None)
    return meta.name.split("-")[1].removesuffix(".dist") if meta else "unknown"


if __name__ == "__main__":
    json.dump(extract(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
