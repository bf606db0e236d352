"""Waldur 7.9.4: `invoke` and the SSE passthrough stream, nothing persisted, 404 when disabled."""

from __future__ import annotations

import json

from mockserver.api.langserve_endpoints import HANDLERS
from mockserver.engine.adapters.langserve_sse import SSE_ENCODER, SseEvent, sse_item
from mockserver.engine.base import ReplyRequest
from mockserver.engine.faults import Faults
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.scripts.loader import ScriptError
from mockserver.engine.upstream import plan_script
from mockserver.errors import NotFound
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.validation import record_problems
from mockserver.profiles.base import ApiProfile
from mockserver.resources import SPEC_DIR

DATA_SCHEMA = "#/components/schemas/StreamData"


def check_sse_scripts(engine: ScriptedEngine, spec: SpecIndex) -> None:
    """Every `data:` payload a script would send must be a valid `StreamData` (a plain loop)."""
    validator = spec.schema_validator(DATA_SCHEMA)
    request = ReplyRequest(input="sample input", speed=0)
    for script in engine.scripts.scripts:
        for event in plan_script(script, request, Faults()):
            item = sse_item(event)
            problems = record_problems(validator, json.loads(item.data)) if isinstance(item, SseEvent) else []
            if problems:
                reason = f"script {script.name!r} would send invalid data: {problems[0]}"
                raise ScriptError(script.file, script.line, reason)


PROFILE = ApiProfile(
    name="7.9.4",
    spec_file=SPEC_DIR / "waldur-chat-7.9.4.yaml",
    handlers=HANDLERS,
    encoder=SSE_ENCODER,
    stream_item_schema=DATA_SCHEMA,
    check_scripts=check_sse_scripts,
    chat_disabled=NotFound,
    stream_path="/api/chat/stream/",
    summary="invoke and the SSE stream (no threads, nothing persisted)",
    contract_parts=("schema", "stream"),
)
