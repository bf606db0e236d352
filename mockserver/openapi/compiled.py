"""Request validators compiled once per operation at start-up: openapi-core's verdicts, without its per-request cost.

openapi-core stays the loader and the source of truth, but per request it re-finds the path,
re-checks security, and builds a schema validator (deep-copying the format checker) for every
declared parameter, present or not: about 1 ms each. Here each operation gets, once, a
compiled JSON Schema validator per parameter and for the body; a request pays only for the
parameters it sends. The steps are openapi-core's own (which value of a repeated parameter,
how a string is cast, which media type is refused), so the findings are the same; the test
suite compares both on generated requests. An operation using anything not modelled here
(header or cookie parameters, `content` parameters, other styles, bodies in other media
types) is not compiled and stays with openapi-core.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.protocols import Validator
from openapi_schema_validator import OAS31Validator

# openapi-core's BOOLEAN_TRUE_VALUES and BOOLEAN_FALSE_VALUES (openapi_core.util), the
# strings its boolean caster accepts, compared lower-cased.
TRUE_STRINGS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_STRINGS = frozenset({"n", "no", "f", "false", "off", "0"})
SIMPLE_TYPES = frozenset({"string", "integer", "number", "boolean"})
CACHED_VERDICTS = 256  # per parameter
CACHED_VALUE_LENGTH = 256  # characters of the values sent; longer ones are checked every time
MAX_INLINE_DEPTH = 16  # parameter schemas nest two or three levels; deeper means a `$ref` cycle


# -- what validation finds, whoever found it -------------------------------------
@dataclass(frozen=True)
class ParameterProblem:
    location: str  # "query" or "path"
    name: str


@dataclass(frozen=True)
class MissingBody:
    """A required body that was empty or absent."""


@dataclass(frozen=True)
class UnsupportedBodyType:
    """The body's media type is not one the operation declares."""


@dataclass(frozen=True)
class BodyProblems:
    errors: tuple[SchemaError, ...]  # empty: the body could not be read as its media type


Finding = ParameterProblem | MissingBody | UnsupportedBodyType | BodyProblems


def format_checker(extra: Mapping[str, Callable[[object], bool]]) -> FormatChecker:
    """OAS 3.1's format checker with the spec's own formats, as openapi-core builds it per validator."""
    checker = copy.deepcopy(OAS31Validator.FORMAT_CHECKER)
    for name, check in extra.items():
        checker.checks(name)(check)
    return checker


# -- casts: openapi-core's casters, for one query or path string ------------------
def _as_boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in TRUE_STRINGS:
        return True
    if lowered in FALSE_STRINGS:
        return False
    raise ValueError("not a boolean")


def _as_string(value: str) -> str:
    return value


CASTS: dict[str | None, Callable[[str], Any]] = {
    "string": _as_string,
    "integer": int,
    "number": float,
    "boolean": _as_boolean,
    None: _as_string,
}


@dataclass(frozen=True)
class CompiledParameter:
    """One declared parameter: how its value is taken from the request, cast, and checked."""

    name: str
    location: str
    shape: str  # "scalar" (last value), "exploded" (every value), "comma" (last value, split)
    cast: Callable[[str], Any]
    validator: Validator
    required: bool
    default_valid: bool | None  # None: no default; else whether openapi-core's check of it passes
    # Verdicts by the values sent: a client polling one URL sends the same ones every time.
    _verdicts: dict[tuple[str, ...], bool] = field(default_factory=dict, compare=False, repr=False)

    def has_problem(self, values: list[str] | None) -> bool:
        """True where openapi-core reports this parameter (`values`: those sent, empty ones dropped)."""
        if not values:
            if self.required:
                return True
            return self.default_valid is False
        key = tuple(values)
        known = self._verdicts.get(key)
        if known is None:
            known = self._checked(values)
            if sum(map(len, key)) <= CACHED_VALUE_LENGTH:
                if len(self._verdicts) >= CACHED_VERDICTS:
                    self._verdicts.clear()  # bounded: a client sending ever new values gets no cache
                self._verdicts[key] = known
        return known

    def _checked(self, values: list[str]) -> bool:
        try:
            if self.shape == "exploded":
                value: Any = [self.cast(v) for v in values]
            elif self.shape == "comma":
                value = [self.cast(v) for v in values[-1].split(",")]
            else:
                value = self.cast(values[-1])
        except (ValueError, TypeError):
            return True
        return not self.validator.is_valid(value)


@dataclass(frozen=True)
class CompiledBody:
    required: bool
    media_types: frozenset[str]
    validator: Validator


@dataclass(frozen=True)
class CompiledOperation:
    parameters: tuple[CompiledParameter, ...]
    body: CompiledBody | None

    def findings(
        self, query: Mapping[str, list[str]], path: Mapping[str, str], body: Any, media: str | None
    ) -> list[Finding]:
        """What openapi-core would report, in its order: parameters, then the body.

        `body` is the parsed body; `media` the media type openapi-core would be given for
        it ("application/json" once parsed), None for an empty or absent body.
        """
        found: list[Finding] = []
        for param in self.parameters:
            values = query.get(param.name) if param.location == "query" else _one(path.get(param.name))
            if param.has_problem(values):
                found.append(ParameterProblem(param.location, param.name))
        if self.body is not None:
            found.extend(self._body_findings(body, media))
        return found

    def _body_findings(self, body: Any, media: str | None) -> list[Finding]:
        assert self.body is not None
        if media is None:
            return [MissingBody()] if self.body.required else []
        if media not in self.body.media_types:
            return [UnsupportedBodyType()]
        errors = tuple(self.body.validator.iter_errors(body))
        return [BodyProblems(errors)] if errors else []


def _one(value: str | None) -> list[str] | None:
    return None if value is None else [value]


class _NotInlinable(Exception):
    """A schema that keeps its `$ref`s (validated through the registry instead)."""


class OperationCompiler:
    """Builds `CompiledOperation`s from the raw document; None for what it does not model."""

    def __init__(
        self,
        document: dict[str, Any],
        resolve: Callable[[dict[str, Any]], dict[str, Any]],
        validator_for: Callable[[str, FormatChecker], Validator],
        checker: FormatChecker,
    ):
        self.document = document
        self.resolve = resolve
        self.validator_for = validator_for  # (JSON pointer, format checker) -> compiled validator
        self.checker = checker

    def compile(self, template: str, method: str) -> CompiledOperation | None:
        item = self.document["paths"][template]
        base = f"/paths/{_escape(template)}"
        declared = [(f"{base}/{method}/parameters/{i}", p) for i, p in enumerate(item[method].get("parameters", []))]
        declared += [(f"{base}/parameters/{i}", p) for i, p in enumerate(item.get("parameters", []))]
        parameters: list[CompiledParameter] = []
        seen: set[tuple[str, str]] = set()
        for place, node in declared:  # the operation's first, then the path item's: openapi-core's order
            pointer = node["$ref"].removeprefix("#") if "$ref" in node else place
            param = self.resolve(node)
            if (param["name"], param["in"]) in seen:
                continue
            seen.add((param["name"], param["in"]))
            compiled = self._parameter(param, pointer)
            if compiled is None:
                return None
            parameters.append(compiled)
        modelled, body = self._body(item[method], f"{base}/{method}/requestBody")
        return CompiledOperation(tuple(parameters), body) if modelled else None

    def _parameter(self, param: dict[str, Any], pointer: str) -> CompiledParameter | None:
        location = param["in"]
        if location not in ("query", "path") or "content" in param or "allowEmptyValue" in param:
            return None
        style = param.get("style", "form" if location == "query" else "simple")
        explode = param.get("explode", style == "form")
        schema = self.resolve(param.get("schema", {}))
        kind = schema.get("type")
        if kind == "array" and style == "form" and location == "query":
            items = self.resolve(schema.get("items", {}))
            if not _castable(items):
                return None
            shape, cast = ("exploded" if explode else "comma"), CASTS[items.get("type")]
        elif _castable(schema) and style in ("form", "simple"):
            shape, cast = "scalar", CASTS[kind]
        else:
            return None
        validator = self._validator(param.get("schema", {}), f"{pointer}/schema")
        default_valid = validator.is_valid(schema["default"]) if "default" in schema else None
        return CompiledParameter(
            name=param["name"],
            location=location,
            shape=shape,
            cast=cast,
            validator=validator,
            required=bool(param.get("required", False)),
            default_valid=default_valid,
        )

    def _validator(self, schema: dict[str, Any], pointer: str) -> Validator:
        """A validator for `schema`, inlined when it has no `$ref` cycle: without `$ref`s it needs
        no registry lookup per call (two thirds of the cost of checking a chat body). Errors are
        the same: jsonschema puts no `$ref` in an error's schema path."""
        inlined = self._inline(schema, depth=0)
        if inlined is None:
            return self.validator_for(pointer, self.checker)
        return OAS31Validator(inlined, format_checker=self.checker)

    def _inline(self, node: Any, depth: int) -> Any:
        """The schema with its local `$ref`s replaced by their targets; None if too deep (a cycle)
        or if a `$ref` has sibling keywords (OAS 3.1 applies them too: replacing would drop them)."""
        try:
            return self._inlined(node, depth)
        except _NotInlinable:
            return None

    def _inlined(self, node: Any, depth: int) -> Any:
        if depth > MAX_INLINE_DEPTH:
            raise _NotInlinable("a $ref cycle")
        if isinstance(node, list):
            return [self._inlined(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and len(node) > 1:
            raise _NotInlinable("a $ref with siblings")
        return {key: self._inlined(value, depth + 1) for key, value in self.resolve(node).items()}

    def _body(self, operation: dict[str, Any], pointer: str) -> tuple[bool, CompiledBody | None]:
        """Whether the body is modelled here, and its compiled form (None: the operation has no body)."""
        if "requestBody" not in operation:
            return True, None
        node = operation["requestBody"]
        if "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
        body = self.resolve(node)
        content = body.get("content", {})
        if set(content) != {"application/json"} or "schema" not in content["application/json"]:
            return False, None
        return True, CompiledBody(
            required=bool(body.get("required", False)),
            media_types=frozenset(content),
            validator=self._validator(
                content["application/json"]["schema"], f"{pointer}/content/application~1json/schema"
            ),
        )


def _castable(schema: dict[str, Any]) -> bool:
    """A single primitive type (or none) and no combinators: openapi-core then casts plainly."""
    kind = schema.get("type")
    plain = not any(key in schema for key in ("allOf", "oneOf", "anyOf"))
    return plain and (kind in SIMPLE_TYPES or (kind is None and plain))


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")
