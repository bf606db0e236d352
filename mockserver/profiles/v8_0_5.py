"""Waldur 8.0.5: twelve operations, the NDJSON record stream, persistence, 424 when disabled."""

from __future__ import annotations

from mockserver.api.endpoints import HANDLERS
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.engine.scripted import ScriptedEngine
from mockserver.errors import FailedDependency
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.validation import record_problems
from mockserver.profiles.base import ApiProfile
from mockserver.resources import WALDUR_SPEC

RECORD_SCHEMA = "#/components/schemas/ChatResponse"


def check_record_scripts(engine: ScriptedEngine, spec: SpecIndex) -> None:
    """Every record a script would send must be a valid `ChatResponse`."""
    validator = spec.schema_validator(RECORD_SCHEMA)
    engine.check(lambda record: record_problems(validator, record))


PROFILE = ApiProfile(
    name="8.0.5",
    spec_file=WALDUR_SPEC,
    handlers=HANDLERS,
    encoder=NDJSON_ENCODER,
    stream_item_schema=RECORD_SCHEMA,
    check_scripts=check_record_scripts,
    chat_disabled=FailedDependency,
    stream_path="/api/chat/stream/",
    summary="sessions, threads, messages, quota, tools and the NDJSON stream",
    contract_parts=("schema", "stream", "behaviour", "operations", "configuration"),
    live_upstream=True,
)
