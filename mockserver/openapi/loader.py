"""Load an OpenAPI document once at start-up and index what the server needs from it.

The index answers, per request, which operation a method and path mean, which query
parameters the real server treats leniently (`x-waldur-on-invalid`), which bodies it
never parses (`x-waldur-body-ignored`), and which router paths refuse every method
(`x-waldur-refused-paths`). It also compiles the validators used by the validation layer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import FormatChecker
from jsonschema.protocols import Validator
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mockserver import resources
from mockserver.errors import ConfigurationError
from mockserver.openapi.compiled import CompiledOperation, OperationCompiler, format_checker
from mockserver.openapi.sequential import NDJSON, SEQUENTIAL_MEDIA_TYPES
from mockserver.util import is_uuid_spelling, text_problems

if TYPE_CHECKING:
    from openapi_core import OpenAPI

WALDUR_SPEC = resources.WALDUR_SPEC
CONTROL_SPEC = resources.CONTROL_SPEC
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# libyaml's loader when PyYAML was built with it: ten times faster on the 1700-line spec.
FAST_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Used with `fullmatch`: `re.match` with `$` also accepts a trailing newline (`<uuid>\n`).


def is_uuid(value: object) -> bool:
    """32 hex digits, with or without the four hyphens (the spellings the contract allows)."""
    if not isinstance(value, str):
        return True  # a format constrains strings only; `type` handles the rest
    return is_uuid_spelling(value)


# Formats the spec uses beyond JSON Schema's own checks, for openapi-core and the compiled validators alike.
def is_drf_text(value: object) -> bool:
    """`format: drf-text`: text DRF's CharField stores (no NUL, no lone surrogate; see util.text_problems)."""
    return not isinstance(value, str) or not text_problems(value)


EXTRA_FORMATS = {"uuid": is_uuid, "drf-text": is_drf_text}


def _admits_anonymous(requirements: list[dict[str, Any]]) -> bool:
    """No requirement, or an empty one among them: OpenAPI's way of saying AllowAny."""
    return not requirements or {} in requirements


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str  # upper case
    path: str  # template, e.g. /api/chat-threads/{uuid}/
    lenient_params: frozenset[str] = frozenset()
    body_ignored: bool = False
    streams: bool = False  # answers a sequential media type (NDJSON, SSE)
    open: bool = False  # its security admits anonymous callers (DRF's AllowAny)
    body_media_types: frozenset[str] = frozenset()
    trimmed_fields: frozenset[str] = frozenset()  # body fields DRF strips before validating
    nullable_fields: frozenset[str] = frozenset()  # in a form body, DRF reads "" as null for these
    # (body field, JSON Schema keyword) pairs the view checks itself (`x-waldur-view-checks`)
    view_checks: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class PathRoute:
    template: str
    regex: re.Pattern[str]
    operations: dict[str, Operation] = field(default_factory=dict)  # by upper-case method

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)  # not `match`: `$` would let `/x/\n` through
        return found.groupdict() if found else None


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(pattern)


class SpecIndex:
    """One loaded spec: raw document, openapi-core app, routes and compiled validators."""

    def __init__(self, document: dict[str, Any], source: str = "<dict>"):
        self.document = document
        self.source = source
        self._registry = Registry().with_resource("urn:spec", Resource.from_contents(document, DRAFT202012))
        self.routes = self._build_routes()
        self._compiled = self._compile_operations()
        self.refused_paths = [
            PathRoute(entry["path"], _template_regex(entry["path"]))
            for entry in document.get("x-waldur-refused-paths", [])
        ]

    @functools.cached_property
    def openapi(self) -> OpenAPI:
        """openapi-core's view of the spec, built (and the spec validated) on first use only:
        response validation, and operations the compiled validators do not model. Importing
        and building it is most of a cold start otherwise."""
        from openapi_core import Config, OpenAPI

        return OpenAPI.from_dict(
            self.document,
            config=Config(
                extra_format_validators=EXTRA_FORMATS,
                extra_media_type_deserializers={NDJSON: _ndjson_items},
            ),
        )

    @classmethod
    def from_file(cls, path: Path) -> SpecIndex:
        """Loaded once per file version: an index is never mutated, so apps can share it."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise ConfigurationError(f"cannot read spec {path}: {exc.strerror}") from None
        return _load_index(path.resolve(), stat.st_mtime_ns)

    def _build_routes(self) -> list[PathRoute]:
        routes = []
        for template, item in self.document.get("paths", {}).items():
            route = PathRoute(template, _template_regex(template))
            for method in HTTP_METHODS:
                spec_op = item.get(method)
                if spec_op is None:
                    continue
                params = [*item.get("parameters", []), *spec_op.get("parameters", [])]
                responses = spec_op.get("responses", {}).values()
                route.operations[method.upper()] = Operation(
                    operation_id=spec_op["operationId"],
                    method=method.upper(),
                    path=template,
                    lenient_params=frozenset(
                        p["name"] for p in map(self.resolve, params) if "x-waldur-on-invalid" in p
                    ),
                    body_ignored=bool(spec_op.get("x-waldur-body-ignored")),
                    streams=any(
                        m in self.resolve(r).get("content", {}) for r in responses for m in SEQUENTIAL_MEDIA_TYPES
                    ),
                    open=_admits_anonymous(spec_op.get("security", self.document.get("security", []))),
                    **self._body_facts(spec_op),
                )
            routes.append(route)
        # Literal segments win over templated ones (`current/` before `{uuid}/`).
        return sorted(routes, key=lambda r: (r.template.count("{"), r.template))

    def _body_facts(self, spec_op: dict[str, Any]) -> dict[str, frozenset[Any]]:
        body = self.resolve(spec_op.get("requestBody", {}))
        content = body.get("content", {})
        trimmed: set[str] = set()
        nullable: set[str] = set()
        view_checks: set[tuple[str, str]] = set()
        for media in content.values():
            properties = self.resolve(media.get("schema", {})).get("properties", {})
            trimmed |= {name for name, prop in properties.items() if prop.get("x-waldur-trim-whitespace")}
            nullable |= {name for name, prop in properties.items() if self._admits_null(prop)}
            view_checks |= {(n, k) for n, prop in properties.items() for k in prop.get("x-waldur-view-checks", [])}
        return {
            "body_media_types": frozenset([*content, *body.get("x-waldur-also-accepts", [])]),
            "trimmed_fields": frozenset(trimmed),
            "nullable_fields": frozenset(nullable),
            "view_checks": frozenset(view_checks),
        }

    def _admits_null(self, schema: dict[str, Any]) -> bool:
        schema = self.resolve(schema)
        declared = schema.get("type")
        if declared == "null" or (isinstance(declared, list) and "null" in declared) or None in schema.get("enum", []):
            return True
        return any(self._admits_null(part) for part in schema.get("oneOf", []) + schema.get("anyOf", []))

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow a local `$ref` (one level at a time until a concrete node)."""
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def find(self, path: str) -> tuple[PathRoute, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def is_refused(self, path: str) -> bool:
        return any(route.match(path) is not None for route in self.refused_paths)

    def operation(self, operation_id: str) -> Operation:
        for route in self.routes:
            for op in route.operations.values():
                if op.operation_id == operation_id:
                    return op
        raise KeyError(operation_id)

    def schema_validator(self, pointer: str, checker: FormatChecker | None = None) -> Validator:
        """A compiled validator for one schema of the document, e.g. `#/components/schemas/ChatResponse`."""
        return OAS31Validator(
            {"$ref": "urn:spec#" + pointer.removeprefix("#")},
            registry=self._registry,
            format_checker=checker or OAS31Validator.FORMAT_CHECKER,
        )

    def compiled(self, operation: Operation) -> CompiledOperation | None:
        """The operation's request validator, compiled at load (None: openapi-core validates it)."""
        return self._compiled.get((operation.path, operation.method))

    def _compile_operations(self) -> dict[tuple[str, str], CompiledOperation | None]:
        compiler = OperationCompiler(self.document, self.resolve, self.schema_validator, format_checker(EXTRA_FORMATS))
        return {
            (op.path, op.method): compiler.compile(op.path, op.method.lower())
            for route in self.routes
            for op in route.operations.values()
        }


@functools.lru_cache(maxsize=8)
def _load_index(path: Path, _version: int) -> SpecIndex:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read spec {path}: {exc}") from None
    return SpecIndex(document, str(path))


def _ndjson_items(body: bytes | str) -> list[Any]:
    """Read an NDJSON body as the JSON array of its lines (how links and tools see it)."""
    import json

    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]
