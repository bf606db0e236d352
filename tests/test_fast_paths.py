"""The per-request shortcuts give the answers of the slower code they replace.

Inlined body validators against validators that follow `$ref`s through the registry (every
profile's spec), the pagination links against Starlette's `remove_query_params` and
`include_query_params` (absent, repeated, blank and escaped parameters), the cached page
and timestamp formatting against the uncached ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import ValidationError as SchemaError
from starlette.datastructures import URL, QueryParams

from mockserver.api import pagination
from mockserver.api.pagination import page_number, page_size, paginate
from mockserver.errors import NotFound
from mockserver.openapi.compiled import OperationCompiler, format_checker
from mockserver.openapi.loader import EXTRA_FORMATS, SpecIndex
from mockserver.profiles import get_profile
from mockserver.util import format_datetime

PROFILES = ["7.9.4", "8.0.5", "8.1"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


# -- bodies: inlined against followed `$ref`s -------------------------------------------------
def body_schemas(spec: SpecIndex) -> list[tuple[str, str, dict[str, Any]]]:
    """(operationId, pointer, schema) of every JSON request body of the spec."""
    found = []
    for template, item in spec.document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            escaped = template.replace("~", "~0").replace("/", "~1")
            node = operation["requestBody"]
            place = node["$ref"].removeprefix("#") if "$ref" in node else f"/paths/{escaped}/{method}/requestBody"
            content = spec.resolve(node).get("content", {})
            if "application/json" in content:
                pointer = f"{place}/content/application~1json/schema"
                found.append((operation["operationId"], pointer, content["application/json"]["schema"]))
    return found


def described(errors: list[SchemaError]) -> list[tuple[Any, ...]]:
    """What the DRF translation reads of an error (drf_errors, `_checked_by_view`), sub-errors
    included; a combinator's own value is its sub-schemas, `$ref`s or not, so not compared."""
    return sorted(
        (
            (
                e.validator,
                None if e.validator in COMBINATORS else json.dumps(e.validator_value, sort_keys=True, default=str),
                list(e.path),
                list(e.absolute_schema_path),
                e.message,
                described(list(e.context)),
            )
            for e in errors
        ),
        key=repr,
    )


COMBINATORS = {"oneOf", "anyOf", "allOf", "not", "if"}
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.text(max_size=6))
UUIDS = st.sampled_from(["0f8fad5bd9cb469fa16570867728950e", "nope", "", " x "])


@st.composite
def bodies(draw: st.DrawFn, fields: list[str]) -> Any:
    values = st.one_of(
        LEAVES, UUIDS, st.sampled_from(["reload", "edit", "\x00", "\ud800"]), st.lists(LEAVES, max_size=2)
    )
    return draw(st.one_of(st.dictionaries(st.sampled_from([*fields, "extra"]), values, max_size=5), LEAVES))


CHECKER = format_checker(EXTRA_FORMATS)
SPECS = {api: SpecIndex.from_file(get_profile(api).spec_file) for api in PROFILES}
BODIES = [(api, *found) for api, spec in SPECS.items() for found in body_schemas(spec)]


def test_every_profile_has_bodies_to_compare() -> None:
    assert {api for api, *_ in BODIES} == set(PROFILES)


@pytest.mark.parametrize(
    ("api", "operation_id", "pointer", "node"), BODIES, ids=lambda v: v if isinstance(v, str) and "/" not in v else ""
)
def test_inlined_body_validators_report_what_followed_refs_report(
    api: str, operation_id: str, pointer: str, node: dict[str, Any]
) -> None:
    spec = SPECS[api]
    compiler = OperationCompiler(spec.document, spec.resolve, spec.schema_validator, CHECKER)
    inlined = compiler._validator(node, pointer)
    followed = spec.schema_validator(pointer, CHECKER)
    assert "$ref" not in json.dumps(inlined.schema)  # the fast path is taken
    fields = list(spec.resolve(node).get("properties", {}))

    @FAST
    @given(body=bodies(fields))
    def same(body: Any) -> None:
        assert described(list(inlined.iter_errors(body))) == described(list(followed.iter_errors(body))), body

    same()


def test_a_ref_with_siblings_or_a_cycle_is_not_inlined() -> None:
    """OAS 3.1 applies a `$ref`'s siblings too, and a cycle has no inlined form: both keep the registry."""
    schemas = {
        "Name": {"type": "string"},
        "Short": {"$ref": "#/components/schemas/Name", "maxLength": 2},
        "Tree": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Tree"}}},
    }
    spec = SpecIndex({"openapi": "3.1.0", "paths": {}, "components": {"schemas": schemas}})
    compiler = OperationCompiler(spec.document, spec.resolve, spec.schema_validator, CHECKER)
    assert compiler._inline(schemas["Short"], 0) is None
    short = compiler._validator(schemas["Short"], "/components/schemas/Short")
    assert short.is_valid("ab") and not short.is_valid("abc") and not short.is_valid(1)
    assert compiler._inline(schemas["Tree"], 0) is None
    tree = compiler._validator(schemas["Tree"], "/components/schemas/Tree")
    assert tree.is_valid({"child": {"child": {}}}) and not tree.is_valid({"child": {"child": 1}})
    assert compiler._inline({"type": "object", "properties": {"n": {"$ref": "#/components/schemas/Name"}}}, 0) == {
        "type": "object",
        "properties": {"n": {"type": "string"}},
    }


# -- pagination links: one parse against Starlette's per-link parsing ----------------------------
def starlette_page(items: list[int], url: URL) -> tuple[list[int], dict[str, str]]:
    """Pagination as it was written with Starlette's URL helpers (the reference)."""
    query = QueryParams(url.query)
    size = page_size(query.get("page_size"))
    pages = max(1, -(-len(items) // size))
    number = page_number(query.get("page"), pages)
    first = str(url.remove_query_params("page"))

    def link(page: int) -> str:
        return first if page == 1 else str(url.include_query_params(page=page))

    links = [(first, "first")]
    if number > 1:
        links.append((link(number - 1), "prev"))
    if number < pages:
        links.append((link(number + 1), "next"))
    links.append((link(pages), "last"))
    start = (number - 1) * size
    return items[start : start + size], {
        "X-Result-Count": str(len(items)),
        "Link": ", ".join(f'<{target}>; rel="{rel}"' for target, rel in links),
    }


PAGE_VALUES = st.sampled_from(["", "1", "2", "3", "last", "0", "-1", "x", "99", "2.0"])
OTHER_VALUES = st.sampled_from(["", "a b", "é", "%", "&", "=", "-created", "1,2"])


@st.composite
def page_queries(draw: st.DrawFn) -> str:
    names = st.sampled_from(["page", "page_size", "o", "query", "Page", "page[]"])
    pairs = draw(st.lists(st.tuples(names, st.one_of(PAGE_VALUES, OTHER_VALUES)), max_size=6))
    spelled = [f"{quote(k)}={quote(v)}" if draw(st.booleans()) else f"{k}={v.replace('&', '')}" for k, v in pairs]
    return "&".join(spelled + draw(st.sampled_from([[], ["flag"], ["=x"]])))


def outcome(function: Any, items: list[int], url: URL) -> Any:
    try:
        return function(items, url)
    except NotFound as error:
        return ("404", error.body)


@FAST
@given(query=page_queries(), count=st.integers(0, 45))
def test_page_and_links_equal_starlettes_per_link_parsing(query: str, count: int) -> None:
    url = URL(f"http://testserver/api/chat-threads/?{query}" if query else "http://testserver/api/chat-threads/")
    items = list(range(count))
    expected = outcome(starlette_page, items, url)
    assert outcome(paginate, items, url) == expected  # cached from here on
    assert outcome(paginate, items, url) == expected


def test_a_long_url_is_paginated_without_the_cache() -> None:
    pagination._cached_page.cache_clear()
    url = URL("http://testserver/api/chat-threads/?query=" + "x" * pagination.CACHED_URL_LENGTH + "&page=2")
    assert paginate(list(range(25)), url) == starlette_page(list(range(25)), url)
    assert pagination._cached_page.cache_info().currsize == 0


def test_the_cached_headers_are_a_copy() -> None:
    url = URL("http://testserver/api/chat-threads/?page=2")
    _, headers = paginate(list(range(30)), url)
    headers["Link"] = "changed"
    assert paginate(list(range(30)), url)[1]["Link"] != "changed"


# -- timestamps -----------------------------------------------------------------------------
def test_cached_timestamps_format_as_uncached_ones() -> None:
    moment = datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=3)))
    assert format_datetime(moment) == format_datetime(elsewhere) == "2026-12-02T12:00:00.123456Z"
    assert format_datetime.__wrapped__(elsewhere) == format_datetime(elsewhere)
    assert format_datetime(moment.replace(microsecond=0)) == "2026-12-02T12:00:00Z"


# -- the collector while a server runs ---------------------------------------------------------
def test_a_served_app_freezes_its_start_up_heap_and_restores_the_collector_at_shutdown() -> None:
    """uvicorn runs the app's lifespan: start-up objects leave every collection, full collections
    come ten times rarer, and shutdown gives the process its collector back as it was."""
    import gc

    from mockserver.app import ServerOptions, create_app
    from mockserver.heap import FULL_COLLECTION_EVERY

    app = create_app(ServerOptions(steady_heap=True))
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0

    async def serve() -> None:
        async with app.asgi.router.lifespan_context(app.asgi):
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == (before[0], before[1], FULL_COLLECTION_EVERY)

    anyio.run(serve)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


# -- parameter verdicts, remembered by the values sent ----------------------------------------
PARAMETER_VALUES = ["1", "0", "-1", "300", "abc", "", "true", "no", "2026-02-30", "2026-10-25", "-created", "x,y"]


def test_remembered_parameter_verdicts_are_the_checked_ones() -> None:
    spec = SPECS["8.0.5"]
    parameters = [
        param
        for route in spec.routes
        for op in route.operations.values()
        if (compiled := spec.compiled(op)) is not None
        for param in compiled.parameters
    ]
    assert parameters
    for param in parameters:
        for values in ([v] for v in PARAMETER_VALUES):
            fresh = param._checked(values)
            assert param.has_problem(values) == fresh  # checked, then remembered
            assert param.has_problem(values) == fresh  # remembered
        assert param.has_problem(["a", "1"]) == param._checked(["a", "1"])  # repeated: all the values count


def test_remembered_verdicts_stay_bounded() -> None:
    from mockserver.openapi.compiled import CACHED_VALUE_LENGTH, CACHED_VERDICTS

    spec = SPECS["8.0.5"]
    compiled = spec.compiled(spec.operation("chat_threads_list"))
    assert compiled is not None
    page_size = next(p for p in compiled.parameters if p.name == "page_size")
    for number in range(1, CACHED_VERDICTS * 2):  # minimum 1
        assert page_size.has_problem([str(number)]) is False
    assert len(page_size._verdicts) <= CACHED_VERDICTS
    long_value = "1" * (CACHED_VALUE_LENGTH + 1)
    page_size.has_problem([long_value])
    assert (long_value,) not in page_size._verdicts


def test_an_embedded_app_leaves_the_collector_alone() -> None:
    """Tests and embedding apps serve many short-lived mocks: no full collection per start."""
    import gc

    from mockserver.app import create_app

    app = create_app()
    before = gc.get_threshold()

    async def serve() -> None:
        async with app.asgi.router.lifespan_context(app.asgi):
            assert gc.get_freeze_count() == 0 and gc.get_threshold() == before

    anyio.run(serve)


def test_serve_and_upstream_run_with_the_steady_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's long-running servers get the tuned collector (captured instead of served)."""
    from mockserver import cli

    seen: list[bool] = []
    monkeypatch.setattr(cli, "_run", lambda app, args: seen.append(app.options.steady_heap) or 0)
    assert cli.main(["serve", "--port", "18765"]) == 0
    assert cli.main(["upstream", "--port", "18766"]) == 0
    assert seen == [True, True]
