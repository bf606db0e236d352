"""The 8.1 spec is valid and compatible with Waldur's published 8.1.3 schema, checked mechanically.

The published schema is represented by the chat part of the official `waldur-api-client`
8.1.3 (generated from it), extracted into tests/data/waldur-published. Every published chat
operation is either served with the same method, path and query parameter names, or listed
in NOT_SERVED with the reason; the models' field names, required flags and enums match ours,
with the few deliberate differences listed beside the checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from mockserver.profiles import get_profile

PUBLISHED = json.loads(
    (Path(__file__).resolve().parent / "data" / "waldur-published" / "waldur-8.1.3-client-chat.json").read_text()
)
SPEC_FILE = get_profile("8.1").spec_file

# Published operations the mock leaves out (404), with the reason.
ANALYTICS = "staff analytics of the anonymous chat (KPIs, conversations, judge verdicts, budget): not mocked"
NOT_SERVED: dict[str, str] = {
    name: ANALYTICS
    for name in PUBLISHED["operations"]
    if name.startswith(("anonymous_chat_interactions_", "anonymous_chat_feedbacks_"))
}
# Published query parameters our spec leaves out, per operation, with the reason.
UNDECLARED_QUERY = {
    "chat_sessions_current_retrieve": {"field"},  # serialized without request context: `field` has no effect
}
# Record keys homeport reads (clients notes) that the published ChatResponse does not declare.
UNDECLARED_RECORD_KEYS = {"links", "questions", "context"}
# Published model -> our schema of the same object.
MODELS = {
    "Message": "Message",
    "ThreadSession": "ThreadSession",
    "ChatRequestRequest": "ChatRequestRequest",
    "MessageFeedbackRequest": "MessageFeedbackRequest",
    "ChatThreadStatsResponse": "ChatThreadStatsResponse",
    "SystemPrompt": "SystemPrompt",
    "SystemPromptRequest": "SystemPromptRequest",
    "PatchedSystemPromptRequest": "PatchedSystemPromptRequest",
    "AnonymousChatStreamRequestRequest": "AnonymousChatStreamRequestRequest",
    "AnonymousChatFeedbackRequestRequest": "AnonymousChatFeedbackRequestRequest",
    "AnonymousChatClickRequestRequest": "AnonymousChatClickRequestRequest",
}
ENUMS = {
    "FeedbackCategoryEnum": "FeedbackCategoryEnum",
    "ThreadSessionOEnum": "ThreadSessionOEnum",
    "ThreadSessionScopeEnum": "ThreadSessionScopeEnum",
    "MessageBlocksItemKey": "MessageBlockKeyEnum",
    "ChatRequestModeEnum": "ChatRequestModeEnum",
    "ActionTakenEnum": "ActionTakenEnum",
    "InjectionSeverityEnum": "InjectionSeverityEnum",
}


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def our_operations(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":  # path-level parameters, not an operation
                continue
            found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def query_names(spec: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    names = set()
    for listed in operation.get("parameters", []):
        parameter = spec["components"]["parameters"][listed["$ref"].rsplit("/", 1)[1]] if "$ref" in listed else listed
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return names


def test_spec_is_valid_openapi(ours: dict[str, Any]) -> None:
    validate(ours)


def test_every_published_operation_is_served_or_listed(ours: dict[str, Any]) -> None:
    served = set(our_operations(ours))
    published = set(PUBLISHED["operations"])
    assert published - served == set(NOT_SERVED), "published but neither served nor listed"
    assert served <= published, f"served but not published: {served - published}"
    assert len(served) == 27
    assert len(NOT_SERVED) == 10


@pytest.mark.parametrize("name", sorted(set(PUBLISHED["operations"]) - set(NOT_SERVED)))
def test_operation_matches_the_published_one(ours: dict[str, Any], name: str) -> None:
    published = PUBLISHED["operations"][name]
    method, path, operation = our_operations(ours)[name]
    template = re.sub(r"\{\w+\}", "{uuid}", published["url"])
    assert (method, path) == (published["method"], template)
    assert query_names(ours, operation) == set(published["query"]) - UNDECLARED_QUERY.get(name, set())
    # The generator parses 404 on every operation; the success codes are the ones that say something.
    for status in published["statuses"]:
        if 200 <= status < 300:
            assert str(status) in operation["responses"], f"{name}: published status {status} missing"


@pytest.mark.parametrize(("theirs", "mine"), sorted(MODELS.items()))
def test_model_fields_match(ours: dict[str, Any], theirs: str, mine: str) -> None:
    published = PUBLISHED["models"][theirs]["fields"]
    schema = ours["components"]["schemas"][mine]
    properties = schema["properties"]
    published_names = {"input" if n == "input_" else n for n in published}
    assert set(properties) == published_names
    for field, facts in published.items():
        name = "input" if field == "input_" else field
        assert (name in schema.get("required", [])) == facts["required"], (theirs, name)
        types = properties[name].get("type")
        nullable_ours = (isinstance(types, list) and "null" in types) or any(
            alt.get("type") == "null" for alt in properties[name].get("oneOf", [])
        )
        if facts["nullable"] and "Unset" not in facts["type"]:
            assert nullable_ours, f"{theirs}.{name} is nullable in the published schema"


@pytest.mark.parametrize(("theirs", "mine"), sorted(ENUMS.items()))
def test_enums_match(ours: dict[str, Any], theirs: str, mine: str) -> None:
    assert sorted(ours["components"]["schemas"][mine]["enum"]) == sorted(PUBLISHED["models"][theirs]["enum"])


def test_stream_record_keys_are_published_chat_response_keys(ours: dict[str, Any]) -> None:
    """Every property of our record union is a key of the published `ChatResponse`."""
    published = set(PUBLISHED["models"]["ChatResponse"]["fields"])
    schemas = ours["components"]["schemas"]
    for ref in schemas["ChatResponse"]["oneOf"]:
        record = schemas[ref["$ref"].rsplit("/", 1)[1]]
        assert set(record["properties"]) <= published | UNDECLARED_RECORD_KEYS, ref


def test_the_8_0_5_only_parts_are_gone(ours: dict[str, Any]) -> None:
    schemas = ours["components"]["schemas"]
    assert "update_thread_name" not in schemas["ChatRequestRequest"]["properties"]
    assert "content" not in schemas["Message"]["properties"]
    assert not {"LoadRecord", "TableRecord"} & set(schemas)
    assert not {"created", "modified"} & query_names(ours, ours["paths"]["/api/chat-threads/"]["get"])
