"""The spec is valid OpenAPI, loads in every tool we use, and is compatible with Waldur's own schema.

Compatibility is checked mechanically against the published 8.0.5 schema (chat part, kept in
tests/data/waldur-published so that this runs in every clone): every published operation is
served, with the same parameter names, types and required flags, enum values and response
fields. Where ours is deliberately different (more precise), the difference is listed in
DEVIATIONS with the reason; any other difference fails. The 7.9.4 schema checks that what
7.9.4 had is either still served the same way or listed as removed, and the 7.9.4 profile's
own spec gets the same mechanical check against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from mockserver.openapi.loader import CONTROL_SPEC, WALDUR_SPEC, SpecIndex
from mockserver.profiles import get_profile

PUBLISHED_DIR = Path(__file__).resolve().parent / "data" / "waldur-published"
REFERENCE_SPEC = PUBLISHED_DIR / "waldur-8.0.5-chat.yaml"
REFERENCE_SPEC_7_9_4 = PUBLISHED_DIR / "waldur-7.9.4-chat.yaml"
SPEC_7_9_4 = get_profile("7.9.4").spec_file

# 7.9.4 operations that 8.0.5 no longer has -> the release that removed them.
REMOVED_SINCE_7_9_4 = {"chat_invoke": "8.0.0"}

# (schema or operation, field, aspect) -> why ours differs from the published schema.
DEVIATIONS = {
    ("Message", "replaces", "nullable"): "the real serializer sends null on original messages (allow_null)",
    ("Message", "is_flagged", "required"): "removed from the answer for users who are not staff or support",
    ("Message", "injection_score", "required"): "removed for users who are not staff or support",
    ("Message", "injection_severity", "required"): "removed for users who are not staff or support",
    ("Message", "injection_categories", "required"): "removed for users who are not staff or support",
    ("chat_quota_usage_retrieve", "user_uuid", "required"): "the view reads it only when given (own usage without)",
    ("ToolExecuteRequest", "tool", "enum"): "8.0.5 has one tool; other names are refused by the view (400)",
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return load(WALDUR_SPEC)


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return load(REFERENCE_SPEC)


def published_operation_ids() -> list[str]:
    return sorted(operations(load(REFERENCE_SPEC)))


@pytest.mark.parametrize("path", [WALDUR_SPEC, SPEC_7_9_4, CONTROL_SPEC], ids=lambda p: p.name)
def test_spec_is_valid_openapi(path: Path) -> None:
    validate(load(path))


def test_spec_serves_every_published_operation_and_loads_in_schemathesis() -> None:
    import schemathesis

    published = set(published_operation_ids())
    assert len(published) == 12, "the published 8.0.5 chat schema has twelve operations"
    index = SpecIndex.from_file(WALDUR_SPEC)
    assert {op.operation_id for r in index.routes for op in r.operations.values()} == published
    loaded = schemathesis.openapi.from_path(str(WALDUR_SPEC))
    assert sum(1 for _ in loaded.get_all_operations()) == len(published)


def test_what_7_9_4_had_is_served_or_listed_as_removed(ours: dict) -> None:
    old = operations(load(REFERENCE_SPEC_7_9_4))
    current = operations(ours)
    assert set(REMOVED_SINCE_7_9_4) <= set(old), "a removal listed for an operation 7.9.4 never had"
    for operation_id, (path, method, _) in old.items():
        if operation_id in REMOVED_SINCE_7_9_4:
            assert operation_id not in current and path not in ours["paths"], f"{operation_id} was removed"
        else:
            assert current[operation_id][:2] == (path, method), f"{operation_id} kept its path and method"


class Resolver:
    def __init__(self, document: dict[str, Any]):
        self.document = document

    def __call__(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def types(self, schema: Any) -> set[str]:
        """JSON types a schema admits, through $ref, allOf, oneOf/anyOf, `nullable` and type lists."""
        schema = self(schema)
        if not isinstance(schema, dict):
            return set()
        found: set[str] = set()
        declared = schema.get("type")
        if isinstance(declared, str):
            found.add(declared)
        elif isinstance(declared, list):
            found.update(declared)
        if schema.get("nullable"):
            found.add("null")
        if "enum" in schema and not declared:
            found.update("null" if v is None else "string" for v in schema["enum"])
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(key, []):
                found |= self.types(sub)
        return found

    def enum(self, schema: Any) -> set[Any] | None:
        schema = self(schema)
        if not isinstance(schema, dict):
            return None
        if "enum" in schema:
            return {v for v in schema["enum"] if v is not None}
        if schema.get("type") == "array":
            return self.enum(schema.get("items"))
        for key in ("allOf", "oneOf", "anyOf"):
            values = [self.enum(sub) for sub in schema.get(key, [])]
            if any(v is not None for v in values):
                return set().union(*(v for v in values if v))
        return None

    def properties(self, schema: Any) -> tuple[dict[str, Any], set[str]]:
        """Properties and required names, merged through `items` and `allOf`."""
        schema = self(schema)
        if "items" in schema:
            return self.properties(schema["items"])
        properties, required = dict(schema.get("properties", {})), set(schema.get("required", []))
        for part in schema.get("allOf", []):
            more, more_required = self.properties(part)
            properties.update(more)
            required |= more_required
        return properties, required


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        op["operationId"]: (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


def parameters(document: dict[str, Any], op: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    resolve = Resolver(document)
    return {(p["name"], p["in"]): p for p in map(resolve, op.get("parameters", []))}


def test_the_7_9_4_spec_serves_every_published_7_9_4_operation_and_loads_in_schemathesis() -> None:
    import schemathesis

    published = set(operations(load(REFERENCE_SPEC_7_9_4)))
    assert published == {"chat_invoke", "chat_stream"}
    index = SpecIndex.from_file(SPEC_7_9_4)
    assert {op.operation_id for r in index.routes for op in r.operations.values()} == published
    loaded = schemathesis.openapi.from_path(str(SPEC_7_9_4))
    assert sum(1 for _ in loaded.get_all_operations()) == len(published)


@pytest.mark.parametrize("operation_id", sorted(operations(load(REFERENCE_SPEC_7_9_4))))
def test_7_9_4_operation_matches_the_published_7_9_4_schema(operation_id: str) -> None:
    check_operation(operation_id, load(SPEC_7_9_4), load(REFERENCE_SPEC_7_9_4))


@pytest.mark.parametrize("operation_id", published_operation_ids())
def test_operation_matches_the_published_schema(operation_id: str, ours: dict, real: dict) -> None:
    check_operation(operation_id, ours, real)


def check_operation(operation_id: str, ours: dict, real: dict) -> None:
    """Same path and method, parameters, documented statuses and media types, fields and types."""
    our_path, our_method, our_op = operations(ours)[operation_id]
    real_path, real_method, real_op = operations(real)[operation_id]
    assert (our_path, our_method) == (real_path, real_method)

    our_r, real_r = Resolver(ours), Resolver(real)
    our_params, real_params = parameters(ours, our_op), parameters(real, real_op)
    assert set(our_params) == set(real_params), "same parameter names and locations"
    for key, real_param in real_params.items():
        ours_schema, real_schema = our_params[key].get("schema"), real_param.get("schema")
        assert real_r.types(real_schema) <= our_r.types(ours_schema) | {"null"}, f"type of parameter {key}"
        assert our_r.enum(ours_schema) == real_r.enum(real_schema), f"enum of parameter {key}"
        if (operation_id, key[0], "required") not in DEVIATIONS:
            assert our_params[key].get("required", False) == real_param.get("required", False), f"required {key}"

    for status, real_response in real_op["responses"].items():
        assert status in our_op["responses"], f"{operation_id} must document {status}"
        real_content = real_r(real_response).get("content", {})
        our_content = our_r(our_op["responses"][status]).get("content", {})
        assert set(real_content) <= set(our_content), f"media types of {status}"
        for media, real_media in real_content.items():
            compare_response_schema(our_r, our_content[media]["schema"], real_r, real_media["schema"])

    if "requestBody" in real_op:
        real_body = real_r(real_op["requestBody"])["content"]["application/json"]["schema"]
        our_body = our_r(our_op["requestBody"])["content"]["application/json"]["schema"]
        real_props, real_required = real_r.properties(real_body)
        our_props, our_required = our_r.properties(our_body)
        assert set(our_props) == set(real_props)
        assert our_required == real_required
        for name, real_prop in real_props.items():
            assert real_r.types(real_prop) <= our_r.types(our_props[name]), f"request field {name}"
            if (body_name(real_body), name, "enum") not in DEVIATIONS:
                assert our_r.enum(our_props[name]) == real_r.enum(real_prop), f"enum of request field {name}"


def body_name(schema: Any) -> str:
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def compare_response_schema(our_r: Resolver, ours: Any, real_r: Resolver, real: Any) -> None:
    """Same field names and types; ours may only narrow, except for the listed deviations."""
    name = real.get("items", real).get("$ref", "").rsplit("/", 1)[-1]
    real_props, real_required = real_r.properties(real)
    if not real_props and real_r(real).get("type") == "object":
        assert our_r.types(ours) == {"object"}, f"{name}: a free-form object in the real schema"
        return  # any object is valid there: ours may say which fields it has
    our_schema = our_r(ours)
    if "oneOf" in our_r(our_schema.get("items", our_schema)):
        return check_record_union(our_r, our_r(our_schema.get("items", our_schema)), real_r, real_r(real))
    our_props, our_required = our_r.properties(ours)
    assert set(our_props) == set(real_props), f"fields of {name}"
    for field, real_prop in real_props.items():
        our_types, real_types = our_r.types(our_props[field]), real_r.types(real_prop)
        extra = our_types - real_types - ({"null"} if (name, field, "nullable") in DEVIATIONS else set())
        assert not extra or not real_types, f"{name}.{field}: {our_types} is wider than {real_types}"
        if real_types:
            assert our_types & real_types, f"{name}.{field}: {our_types} vs {real_types}"
        if real_r.enum(real_prop) is not None:  # where the real schema is loose, ours may add an enum
            assert our_r.enum(our_props[field]) == real_r.enum(real_prop), f"enum of {name}.{field}"
    for field in real_required - our_required:
        assert (name, field, "required") in DEVIATIONS, f"{name}.{field} must stay required"


def check_record_union(our_r: Resolver, ours: dict[str, Any], real_r: Resolver, real: dict[str, Any]) -> None:
    """Every stream record variant of ours is a valid instance of the real, loose ChatResponse."""
    real_props = real["properties"]
    for variant in map(our_r, ours["oneOf"]):
        props = variant.get("properties", {})
        assert set(props) <= set(real_props), f"record keys {set(props)} unknown to the real schema"
        for key, prop in props.items():
            assert our_r.types(prop) <= real_r.types(real_props[key]) or not our_r.types(prop), key


def test_deviations_are_real_differences(ours: dict, real: dict) -> None:
    """Each listed deviation still exists; stale entries would hide future regressions."""
    our_r, real_r = Resolver(ours), Resolver(real)
    for schema, field, aspect in DEVIATIONS:
        if schema in operations(real):
            real_param = parameters(real, operations(real)[schema][2])[(field, "query")]
            our_param = parameters(ours, operations(ours)[schema][2])[(field, "query")]
            assert real_param.get(aspect, False) != our_param.get(aspect, False)
            continue
        our_s, real_s = our_r(ours["components"]["schemas"][schema]), real_r(real["components"]["schemas"][schema])
        if aspect == "enum":
            assert our_r.enum(our_s["properties"][field]) and real_r.enum(real_s["properties"][field]) is None
        elif aspect == "nullable":
            assert "null" in our_r.types(our_s["properties"][field])
            assert "null" not in real_r.types(real_s["properties"][field])
        else:
            assert field in real_s.get("required", []) and field not in our_s.get("required", [])


@pytest.mark.parametrize("spec_file", sorted(Path(WALDUR_SPEC).parent.glob("waldur-chat-*.yaml")), ids=lambda p: p.name)
def test_every_pattern_compiles_where_schemathesis_checks_it(spec_file: Path) -> None:
    """Schemathesis validates with jsonschema-rs (ECMA-like regexes): a pattern it cannot compile is
    skipped there, so the contract suite generated inputs the server refuses (a false 'schema-valid
    request rejected' for a NUL in `input`, once the pattern also named lone surrogates)."""
    import jsonschema_rs

    def patterns(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
            return own + [p for value in node.values() for p in patterns(value)]
        if isinstance(node, list):
            return [p for value in node for p in patterns(value)]
        return []

    found = patterns(yaml.safe_load(spec_file.read_text()))
    assert found
    for pattern in found:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})  # raises if it cannot compile
