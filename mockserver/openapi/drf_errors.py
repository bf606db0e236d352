"""Translate openapi-core / jsonschema findings into the bodies Waldur (DRF) sends.

Bodies use DRF serializer messages; query parameters use django-filter's form messages.
Nothing of openapi-core's own error format ever reaches a client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaError

from mockserver.util import text_problems

FieldErrors = dict[str, list[str]]

_TYPE_MESSAGES = {
    "string": "Not a valid string.",
    "boolean": "Must be a valid boolean.",
    "integer": "A valid integer is required.",
    "number": "A valid number is required.",
    "array": 'Expected a list of items but got type "{kind}".',
    "object": 'Expected a dictionary of items but got type "{kind}".',
}


def _kind(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


def _leaf(error: SchemaError) -> SchemaError:
    """For oneOf/anyOf (e.g. `mode`: enum or null) report the most telling sub-error."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        non_null = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        return _leaf(min(non_null or error.context, key=lambda e: e.validator == "type"))
    return error


def body_messages(error: SchemaError) -> list[str]:
    """The DRF serializer messages for one schema error on a body field.

    A text pattern fails once however many forbidden characters the value holds, but DRF
    runs every CharField validator and reports each: NUL and lone surrogates both."""
    leaf = _leaf(error)
    is_text_check = leaf.validator == "pattern" or (leaf.validator == "format" and leaf.validator_value == "drf-text")
    if is_text_check and isinstance(leaf.instance, str) and leaf.instance.strip():
        return text_problems(leaf.instance) or [body_message(leaf)]
    return [body_message(leaf)]


def body_message(error: SchemaError) -> str:
    """The DRF serializer message for one schema error on a body field."""
    error = _leaf(error)
    value = error.instance
    match error.validator:
        case "type":
            if value is None:
                return "This field may not be null."
            expected = (
                error.validator_value
                if isinstance(error.validator_value, str)
                else next((t for t in error.validator_value if t != "null"), "string")
            )
            return _TYPE_MESSAGES.get(expected, "Invalid value.").format(kind=_kind(value))
        case "maxLength":
            return f"Ensure this field has no more than {error.validator_value} characters."
        case "minLength" | "pattern" if isinstance(value, str) and not value.strip():
            return "This field may not be blank."
        case "format" if error.validator_value == "uuid":
            return "Must be a valid UUID."
        case "enum" | "const":
            return f'"{value}" is not a valid choice.'
        case "minimum":
            return f"Ensure this value is greater than or equal to {error.validator_value}."
        case "maximum":
            return f"Ensure this value is less than or equal to {error.validator_value}."
    return "Invalid value."


def body_errors(errors: Iterable[SchemaError], body: Any) -> FieldErrors | None:
    """Per-field lists for a JSON body, in DRF's shape; None when there is nothing to say."""
    result: FieldErrors = {}
    if not isinstance(body, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {_kind(body)}."]}
    for error in errors:
        if "then" in error.absolute_schema_path:
            continue  # cross-field rules: the serializer's validate(), run after the fields (chat service)
        if error.validator == "required" and not error.path:
            # jsonschema reports each missing field once, every time with the whole `required` list.
            for name in error.validator_value:
                if name not in body and "This field is required." not in result.setdefault(name, []):
                    result[name].append("This field is required.")
            continue
        if error.validator == "additionalProperties":
            continue  # DRF ignores unknown keys
        name = str(error.path[0]) if error.path else "non_field_errors"
        for message in body_messages(error):
            if message not in result.setdefault(name, []):
                result[name].append(message)
    return result or None


def query_message(schema: dict[str, Any], raw_value: str) -> str:
    """django-filter's message for a query parameter value it cannot use."""
    items = schema.get("items", {}) if schema.get("type") == "array" else schema
    fmt = items.get("format")
    if fmt == "date":
        return "Enter a valid date."
    if fmt == "uuid":
        return "Enter a valid UUID."
    if "enum" in items:
        allowed = {str(v) for v in items["enum"]}
        bad = next((part for part in raw_value.split(",") if part not in allowed), raw_value)
        return f"Select a valid choice. {bad} is not one of the available choices."
    if items.get("type") == "integer":
        return "Enter a whole number."
    if items.get("type") == "boolean":
        return "Enter a valid boolean."
    return "Enter a valid value."
