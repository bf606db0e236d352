"""Waldur 8.1: blocks on messages, server-side thread names, cancel, feedback, stats, the global budget.

The record stream is 8.0.5's NDJSON pipeline with 8.1's turn around it (no `load`
records, cancel, blocks and names in `finish`); the default scripts exercise the new
record kinds (`homeport_nav`, `resource_list`, `ask_user_form`, `vm_order`, the `w` warning).
"""

from __future__ import annotations

from mockserver.api.endpoints_v8_1 import HANDLERS
from mockserver.chat.blocks import is_tool_call, tool_call_problems
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.engine.records import Record
from mockserver.engine.scripted import ScriptedEngine
from mockserver.errors import FailedDependency
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.validation import record_problems
from mockserver.profiles.base import ApiProfile, ApiTraits
from mockserver.profiles.v8_0_5 import RECORD_SCHEMA
from mockserver.resources import SCRIPT_DIR_8_1, SPEC_DIR


def check_record_scripts(engine: ScriptedEngine, spec: SpecIndex) -> None:
    """Every record a script would send must be a valid 8.1 `ChatResponse`; `load` is never sent,
    and a tool call (`load` of kind `tool`) must say which tool."""
    validator = spec.schema_validator(RECORD_SCHEMA)

    def problems(record: Record) -> list[str]:
        if is_tool_call(record):
            return tool_call_problems(record)
        return [] if record.get("k") == "load" else record_problems(validator, record)

    engine.check(problems)


PROFILE = ApiProfile(
    name="8.1",
    spec_file=SPEC_DIR / "waldur-chat-8.1.yaml",
    handlers=HANDLERS,
    encoder=NDJSON_ENCODER,
    stream_item_schema=RECORD_SCHEMA,
    check_scripts=check_record_scripts,
    chat_disabled=FailedDependency,
    stream_path="/api/chat/stream/",
    summary="blocks, server-side thread names, cancel, feedback, stats, system prompts and the NDJSON stream",
    contract_parts=("schema", "stream", "behaviour", "configuration"),
    default_scripts=SCRIPT_DIR_8_1,
    upstream_missing=("AI Assistant API URL is not configured.", "AI Assistant API token is not configured."),
    traits=ApiTraits(
        thread_naming="server",
        message_body="blocks",
        load_records=False,
        warning_record=True,
        cancel=True,
        feedback=True,
        stats=True,
        thread_filters="bounds",
        role_gate=True,
        global_budget=True,
        pre_stream_order_known=False,  # Waldur's newest view may validate the body first: unsettled
        staff_message_fields=("is_flagged", "severity", "injection_categories", "pii_categories", "action_taken"),
    ),
)
