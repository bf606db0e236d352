"""The 8.1 profile over HTTP: stream grammar, blocks, server-side names, cancel, feedback, stats, gates."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.chat.blocks import BlockCollector, join_markdown, records_of_blocks
from mockserver.engine.scripts import ScriptError, load_scripts_text
from mockserver.openapi.validation import record_problems
from tests.support import Clients, clients_for, served, served_app

TOKEN_REGEX = re.compile(r"^TW?[MCDVLHF]*E?U$")
TOKENS = {"markdown": "M", "code": "C", "mermaid": "D", "vm_order": "V", "resource_list": "L"}
TOKENS |= {"homeport_nav": "H", "ask_user_form": "F"}


@pytest.fixture
def app() -> MockApp:
    return create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))


@pytest.fixture
def clients(app: MockApp) -> Iterator[Clients]:
    with clients_for(app) as clients:
        yield clients


def grammar_tokens(records: list[dict]) -> str:
    out = []
    for index, record in enumerate(records):
        if "m" in record:
            out.append("T" if index == 0 and "thread_uuid" in record["m"] else "U")
        elif "w" in record:
            out.append("W")
        elif "e" in record:
            out.append("E")
        else:
            out.append(TOKENS[record["k"]])
    return "".join(out)


def messages(client, thread: str) -> list[dict]:
    response = client.get("/api/chat-messages/", params={"thread": thread, "include_history": "true"})
    assert response.status_code == 200
    return response.json()


SCENARIOS = [
    "greeting",
    "code-block",
    "mermaid",
    "homeport_nav",
    "resource_list",
    "ask_user_form",
    "vm_order",
    "offerings",
]


@pytest.mark.parametrize("scenario", [*SCENARIOS, "pii-warning", "upstream-error", "long-answer"])
def test_every_default_script_follows_the_8_1_grammar_and_schema(app: MockApp, clients: Clients, scenario: str) -> None:
    result = clients.alice.stream(input="hello there", headers={"X-Mock-Scenario": scenario})
    assert result.status_code == 200
    tokens = grammar_tokens(result.records)
    assert TOKEN_REGEX.match(tokens), tokens
    validator = app.spec.schema_validator("#/components/schemas/ChatResponse")
    assert all(not record_problems(validator, r) for r in result.records)
    assert not any(r.get("k") in ("load", "table") for r in result.records)
    assert app.violations.drain() == []  # responses validated against the 8.1 spec


@pytest.mark.parametrize("scenario", [*SCENARIOS, "pii-warning"])
def test_stored_blocks_reassemble_into_the_streamed_records(clients: Clients, scenario: str) -> None:
    result = clients.alice.stream(input="hello there", headers={"X-Mock-Scenario": scenario})
    stored = messages(clients.alice, result.thread_uuid)
    user, assistant = stored
    assert user["blocks"] == [{"id": "blk_0", "key": "markdown", "status": "complete", "content": "hello there"}]
    assert [b["id"] for b in assistant["blocks"]] == [f"blk_{i}" for i in range(len(assistant["blocks"]))]
    assert records_of_blocks(assistant["blocks"]) == join_markdown(result.records)
    warnings = [r["w"] for r in result.records if "w" in r]
    assert assistant["warning"] == (warnings[-1] if warnings else "")
    assert "content" not in assistant
    assert assistant["uuid"] == result.final["assistant_message_uuid"]
    assert user["uuid"] == result.final["user_message_uuid"]


def test_a_scripted_tool_call_is_stored_as_a_tool_block_with_call_and_result(clients: Clients) -> None:
    result = clients.alice.stream(input="hello there", headers={"X-Mock-Scenario": "resource_list"})
    assert [r.get("k") for r in result.records[1:-1]] == ["resource_list", "markdown"]  # no load on the wire
    tool, summary = messages(clients.alice, result.thread_uuid)[1]["blocks"]
    assert {k: v for k, v in tool.items() if k not in ("tool", "result")} == {
        "id": "blk_0",
        "key": "tool",
        "status": "complete",
    }
    assert re.fullmatch(r"call_[0-9a-f]{24}", tool["tool"].pop("call_id"))
    assert tool["tool"] == {"name": "display_user_resources", "arguments": {}, "summary": "Found 3 resources"}
    streamed = {k: v for k, v in result.records[1].items() if k != "k"}
    assert tool["result"] == {"id": "blk_0_r", "key": "resource_list", "status": "complete", **streamed}
    assert (summary["id"], summary["key"]) == ("blk_1", "markdown")


def test_a_tool_without_ui_gets_an_empty_markdown_result_and_rounds_keep_their_order(clients: Clients) -> None:
    result = clients.alice.stream(input="hello there", headers={"X-Mock-Scenario": "vm_order"})
    assert [r.get("k") for r in result.records[1:-1]] == ["markdown", "resource_list", "vm_order"]
    blocks = messages(clients.alice, result.thread_uuid)[1]["blocks"]
    assert [(b["id"], b["key"], b.get("result", {}).get("key")) for b in blocks] == [
        ("blk_0", "markdown", None),
        ("blk_1", "tool", "markdown"),
        ("blk_2", "tool", "resource_list"),
        ("blk_3", "tool", "vm_order"),
    ]
    assert blocks[1]["result"] == {"id": "blk_1_r", "key": "markdown", "status": "complete", "content": ""}
    assert blocks[1]["tool"]["name"] == "search_tools" and blocks[1]["tool"]["arguments"] == {"categories": ["vm"]}
    assert len({b["tool"]["call_id"] for b in blocks[1:]}) == 3


def test_a_tool_result_without_a_call_stays_a_top_level_block(clients: Clients) -> None:
    result = clients.alice.stream(input="hello there", headers={"X-Mock-Scenario": "homeport_nav"})
    blocks = messages(clients.alice, result.thread_uuid)[1]["blocks"]
    assert [(b["id"], b["key"]) for b in blocks] == [("blk_0", "markdown"), ("blk_1", "homeport_nav")]
    assert blocks[1]["links"] == result.records[2]["links"]


TOOL_CALL_SCRIPTS = """
scripts:
  - name: called
    match: {}
    records:
      - {k: load, t: tool, tool: {name: ask_user, call_id: call_fixed}}
      - {k: markdown, c: "Then text."}
"""


def test_a_script_tool_call_keeps_a_given_call_id_and_text_after_it_is_not_its_result(app: MockApp) -> None:
    app.replace_scripts(load_scripts_text(TOOL_CALL_SCRIPTS, "<tool>"), "<tool>")
    with clients_for(app) as clients:
        result = clients.alice.stream(input="go")
        tool, text = messages(clients.alice, result.thread_uuid)[1]["blocks"]
    assert tool["tool"] == {"call_id": "call_fixed", "name": "ask_user", "arguments": {}, "summary": ""}
    assert tool["result"]["key"] == "markdown" and tool["result"]["content"] == ""
    assert (text["id"], text["content"]) == ("blk_1", "Then text.")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("{k: load, t: tool}", "tool.name"),
        ("{k: load, t: tool, tool: {name: x, arguments: [1]}}", "tool.arguments must be a mapping"),
        ("{k: load, t: tool, tool: {name: x, colour: red}}", "unknown tool field 'colour'"),
        ("{k: load, t: tool, c: text, tool: {name: x}}", "not c"),
    ],
)
def test_a_malformed_tool_call_is_refused_at_load(app: MockApp, record: str, reason: str) -> None:
    text = f"scripts:\n  - name: bad\n    match: {{}}\n    records:\n      - {record}\n"
    with pytest.raises(ScriptError, match=re.escape(reason)):
        app.replace_scripts(load_scripts_text(text, "<bad>"), "<bad>")


def test_a_tool_call_cut_off_by_a_cancel_is_dropped() -> None:
    collector = BlockCollector()
    collector.add({"k": "markdown", "c": "Looking."})
    collector.add({"k": "load", "t": "tool", "tool": {"name": "display_user_resources"}})
    collector.drop_open_call()
    collector.close()
    assert [b["key"] for b in collector.blocks] == ["markdown"]


def test_new_thread_is_named_by_the_server_before_the_final_record(clients: Clients) -> None:
    result = clients.alice.stream(input="explain projects please")
    thread = clients.alice.get(f"/api/chat-threads/{result.thread_uuid}/").json()
    assert thread["name"] not in ("", "New chat")
    assert thread["title_gen_input_tokens"] > 0 and thread["title_gen_output_tokens"] > 0
    # A follow-up does not rename it.
    clients.alice.stream(input="something else entirely", thread_uuid=result.thread_uuid)
    assert clients.alice.get(f"/api/chat-threads/{result.thread_uuid}/").json()["name"] == thread["name"]


def test_update_thread_name_is_gone_and_ignored(clients: Clients) -> None:
    first = clients.alice.stream(input="hi")
    named = clients.alice.get(f"/api/chat-threads/{first.thread_uuid}/").json()["name"]
    result = clients.alice.stream(input="Rename me to this", update_thread_name=first.thread_uuid)
    assert result.status_code == 200
    assert result.thread_uuid != first.thread_uuid  # a normal new-thread turn
    assert clients.alice.get(f"/api/chat-threads/{first.thread_uuid}/").json()["name"] == named


def test_thread_and_message_token_fields(clients: Clients) -> None:
    result = clients.alice.stream(input="hello")
    user, assistant = messages(clients.alice, result.thread_uuid)
    assert user["input_tokens"] is None and user["output_tokens"] is None
    assert assistant["input_tokens"] > 0 and assistant["output_tokens"] > 0
    thread = clients.alice.get(f"/api/chat-threads/{result.thread_uuid}/").json()
    assert thread["input_tokens"] == assistant["input_tokens"] + thread["title_gen_input_tokens"]
    assert thread["output_tokens"] == assistant["output_tokens"] + thread["title_gen_output_tokens"]
    assert thread["total_tokens"] == thread["input_tokens"] + thread["output_tokens"]
    assert thread["has_feedback"] is False and thread["models_used"] == ""


def test_moderation_fields_for_staff_only(clients: Clients) -> None:
    result = clients.alice.stream(input="hello")
    own = messages(clients.alice, result.thread_uuid)[0]
    staff = messages(clients.staff, result.thread_uuid)[0]
    moderation = {"is_flagged", "severity", "injection_categories", "pii_categories", "action_taken"}
    assert not moderation & own.keys()
    assert moderation <= staff.keys()


# -- feedback -------------------------------------------------------------------------
def test_feedback_rules(clients: Clients) -> None:
    result = clients.alice.stream(input="hello")
    user_uuid, assistant_uuid = result.final["user_message_uuid"], result.final["assistant_message_uuid"]
    url = f"/api/chat-messages/{assistant_uuid}/feedback/"
    on_user = clients.alice.post(f"/api/chat-messages/{user_uuid}/feedback/", json={"score": False})
    assert (on_user.status_code, on_user.json()) == (400, ["Feedback can only be given on assistant messages."])
    positive_with_category = clients.alice.post(url, json={"score": True, "category": "other"})
    assert positive_with_category.status_code == 400 and "category" in positive_with_category.json()
    assert clients.alice.post(url, json={}).status_code == 400
    assert clients.alice.post(url, json={"score": False, "category": "bogus"}).status_code == 400
    assert clients.alice.post(url, json={"score": False, "comment": "x" * 2001}).status_code == 400
    assert clients.bob.post(url, json={"score": True}).status_code == 404
    assert clients.staff.post(url, json={"score": True}).status_code == 404
    assert clients.anonymous.post(url, json={"score": True}).status_code == 401
    ok = clients.alice.post(url, json={"score": False, "comment": "wrong", "category": "inaccurate"})
    assert ok.status_code == 200
    body = ok.json()
    assert (body["feedback_score"], body["feedback_comment"], body["feedback_category"]) == (
        False,
        "wrong",
        "inaccurate",
    )
    assert body["feedback_submitted_at"].endswith("Z")
    assert clients.alice.get(f"/api/chat-threads/{result.thread_uuid}/").json()["has_feedback"] is True
    negative = clients.alice.get("/api/chat-messages/", params={"feedback_score": "false"}).json()
    assert [m["uuid"] for m in negative] == [assistant_uuid]
    assert clients.alice.get("/api/chat-messages/", params={"feedback_score": "true"}).json() == []


# -- stats and filters ------------------------------------------------------------------
def test_stats_agree_with_the_list_under_the_same_filters(clients: Clients) -> None:
    first = clients.alice.stream(input="hello")
    clients.alice.stream(input="hello again", thread_uuid=first.thread_uuid)
    second = clients.alice.stream(input="explain quotas")
    clients.bob.stream(input="hello")
    clients.alice.post(f"/api/chat-messages/{second.final['assistant_message_uuid']}/feedback/", json={"score": True})
    for client, query in [
        (clients.alice, {}),
        (clients.staff, {}),
        (clients.staff, {"scope": "own"}),
        (clients.alice, {"has_feedback": "true"}),
        (clients.staff, {"total_tokens_min": "1"}),
    ]:
        listed = client.get("/api/chat-threads/", params={**query, "page_size": "100"}).json()
        stats = client.get("/api/chat-threads/stats/", params=query).json()
        assert stats["threads_total"] == len(listed), query
        assert stats["messages_total"] == sum(t["message_count"] for t in listed)
        assert stats["input_tokens_total"] == sum(t["input_tokens"] or 0 for t in listed)
        assert stats["total_tokens"] == stats["input_tokens_total"] + stats["output_tokens_total"]
        assert stats["users_total"] == len({t["user_username"] for t in listed})
    alice = clients.alice.get("/api/chat-threads/stats/").json()
    assert (alice["feedback_positive"], alice["feedback_negative"], alice["satisfaction_rate"]) == (1, 0, 1.0)
    assert clients.staff.get("/api/chat-threads/stats/", params={"scope": "own"}).json()["threads_total"] == 0
    assert (
        clients.alice.get("/api/chat-threads/", params={"has_feedback": "false"}).json()[0]["uuid"] == first.thread_uuid
    )


def test_old_exact_day_filters_are_gone_and_day_bounds_work(clients: Clients) -> None:
    clients.alice.stream(input="hello")
    today = clients.alice.get("/api/chat-threads/").json()[0]["created"][:10]
    assert len(clients.alice.get("/api/chat-threads/", params={"created": "2001-01-01"}).json()) == 1
    assert len(clients.alice.get("/api/chat-threads/", params={"created_after": today}).json()) == 1
    assert len(clients.alice.get("/api/chat-threads/", params={"created_before": today}).json()) == 1
    assert clients.alice.get("/api/chat-threads/", params={"created_after": "2999-01-01"}).json() == []
    assert clients.alice.get("/api/chat-threads/", params={"modified_before": "2001-01-01"}).json() == []
    bad = clients.alice.get("/api/chat-threads/", params={"created_after": "yesterday"})
    assert bad.status_code == 400 and "created_after" in bad.json()


def test_token_orderings(clients: Clients) -> None:
    short = clients.alice.stream(input="hi")
    long = clients.alice.stream(input="explain everything", headers={"X-Mock-Scenario": "long-answer"})
    ascending = [t["uuid"] for t in clients.alice.get("/api/chat-threads/", params={"o": "total_tokens"}).json()]
    assert ascending == [short.thread_uuid, long.thread_uuid]
    descending = [t["uuid"] for t in clients.alice.get("/api/chat-threads/", params={"o": "-output_tokens"}).json()]
    assert descending == [long.thread_uuid, short.thread_uuid]


# -- cancel -------------------------------------------------------------------------------
def test_cancel_is_owner_only_and_idempotent(clients: Clients) -> None:
    thread = clients.alice.stream(input="hello").thread_uuid
    url = f"/api/chat-threads/{thread}/cancel/"
    for _ in range(2):
        response = clients.alice.post(url)
        assert (response.status_code, response.content) == (200, b"")
    assert clients.alice.post(url, json={"name": "ignored"}).status_code == 200  # the 8.1.3 SDK sends a body
    assert clients.bob.post(url).status_code == 404
    assert clients.staff.post(url).status_code == 404
    assert clients.alice.post("/api/chat-threads/0123456789abcdef0123456789abcdef/cancel/").status_code == 404
    # A cancel before a stream does not cut the next stream.
    follow_up = clients.alice.stream(input="hello again", thread_uuid=thread)
    assert len([r for r in follow_up.records if r.get("k") == "markdown"]) >= 1


SLOW = """
scripts:
  - name: title
    match: {mode: title}
    reply: {text: "Slow answer"}
  - name: slow
    match: {}
    reply:
      chunks:
        - {text: "First part of the answer, long enough to flush the buffer at once. ", delay_ms: 0}
        - {text: "Second part that arrives much later and must never be forwarded. ", delay_ms: 400}
        - {text: "Third part, also never forwarded.", delay_ms: 400}
"""


def slow_app_8_1() -> MockApp:
    app = create_app(ServerOptions(api="8.1", speed=1.0))
    app.replace_scripts(load_scripts_text(SLOW, "<slow>"), "<slow>")
    return app


async def interrupted_stream(http: httpx.AsyncClient, at: int, act: Callable[[str], Awaitable[None]]) -> list[dict]:
    """Stream a new turn; when record number `at` arrives, `act(thread_uuid)` runs while the stream is open."""
    records: list[dict] = []
    async with http.stream("POST", "/api/chat/stream/", json={"input": "go"}) as response:
        async for line in response.aiter_lines():
            if line:
                records.append(json.loads(line))
                if len(records) == at:
                    await act(records[0]["m"]["thread_uuid"])
    return records


def test_cancel_mid_stream_on_the_wire_keeps_the_partial_answer_and_the_final_m() -> None:
    app = slow_app_8_1()
    headers = {"Authorization": "Token alice-token"}

    async def scenario(base: str) -> tuple[list[dict], list[dict]]:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:

            async def cancel(thread: str) -> None:
                assert (await http.post(f"/api/chat-threads/{thread}/cancel/")).status_code == 200

            records = await interrupted_stream(http, 2, cancel)
            assert records[1].get("k") == "markdown"
            listed = await http.get("/api/chat-messages/", params={"thread": records[0]["m"]["thread_uuid"]})
            return records, listed.json()

    with served_app(app) as base:
        records, stored = asyncio.run(scenario(base))
    assert grammar_tokens(records) == "TMU", records
    assert "First part" in records[1]["c"] and "Second" not in json.dumps(records)
    assert records[-1]["m"]["assistant_message_uuid"] == stored[1]["uuid"]
    assert records_of_blocks(stored[1]["blocks"]) == join_markdown(records)


def test_a_cancel_before_any_content_stores_no_blocks() -> None:
    """Nothing was streamed, so nothing is stored: not the text the upstream had sent meanwhile."""
    app = create_app(ServerOptions(api="8.1", speed=1.0))
    app.replace_scripts(load_scripts_text(SLOW, "<slow>"), "<slow>")
    headers = {"Authorization": "Token alice-token", "X-Mock-Fault": "stall_after_chunks=0; stall_seconds=0.4"}

    async def scenario(base: str) -> tuple[list[dict], list[dict]]:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            records: list[dict] = []
            async with http.stream("POST", "/api/chat/stream/", json={"input": "go"}) as response:
                async for line in response.aiter_lines():
                    if line:
                        records.append(json.loads(line))
                    if len(records) == 1 and line:
                        cancel = await http.post(f"/api/chat-threads/{records[0]['m']['thread_uuid']}/cancel/")
                        assert cancel.status_code == 200
            listed = await http.get("/api/chat-messages/", params={"thread": records[0]["m"]["thread_uuid"]})
            return records, listed.json()

    with served_app(app) as base:
        records, stored = asyncio.run(scenario(base))
    assert grammar_tokens(records) == "TU", records
    assert stored[1]["uuid"] == records[-1]["m"]["assistant_message_uuid"]
    assert stored[1]["blocks"] == []


# -- gates ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("roles", "allowed", "refused", "text"),
    [
        ("none", [], ["alice", "staff"], "AI Assistant is not available."),
        ("staff", ["staff"], ["alice", "support"], "AI Assistant is available to staff users only."),
        (
            "staff_and_support",
            ["staff", "support"],
            ["alice"],
            "AI Assistant is available to staff and support users only.",
        ),
        ("misconfigured", [], ["staff"], "AI Assistant access is not configured correctly."),
    ],
)
def test_role_gate(clients: Clients, roles: str, allowed: list[str], refused: list[str], text: str) -> None:
    patched = clients.anonymous.request("PATCH", "/__mock__/config", json={"enabled_roles": roles})
    assert patched.status_code == 200, patched.text
    for name in allowed:
        assert getattr(clients, name).stream(input="hi").status_code == 200
    for name in refused:
        response = getattr(clients, name).stream(input="hi").response
        assert (response.status_code, response.json()) == (403, {"detail": text})
    assert clients.anonymous.stream(input="hi").status_code == 401  # authentication first


def test_global_minute_budget_answers_429_with_retry_after(app: MockApp, clients: Clients) -> None:
    assert (
        clients.anonymous.request("PATCH", "/__mock__/config", json={"global_requests_per_minute": 2}).status_code
        == 200
    )
    assert clients.alice.stream(input="hi").status_code == 200
    assert clients.bob.stream(input="hi").status_code == 200
    refused = clients.alice.stream(input="hi").response
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "rate_limited" and body["code"] == "global_minute_burst"
    assert refused.headers["Retry-After"] == str(body["retry_after_seconds"])
    assert 0 < body["retry_after_seconds"] <= 60
    threads = clients.alice.get("/api/chat-threads/").json()
    assert len(threads) == 1  # nothing stored for the refused request
    # Body errors come first (400), and a reset restores the default (off).
    assert clients.alice.stream(input="").status_code == 400
    clients.anonymous.post("/__mock__/reset")
    assert clients.alice.stream(input="hi").status_code == 200


def test_global_daily_token_budget(app: MockApp, clients: Clients) -> None:
    patch = {"global_daily_token_budget": 10, "token_usage": {"bob": {"daily": 10, "weekly": 10, "monthly": 10}}}
    assert clients.anonymous.request("PATCH", "/__mock__/config", json=patch).status_code == 200
    refused = clients.alice.stream(input="hi").response
    assert refused.status_code == 429 and refused.json()["code"] == "global_daily_token"
    assert int(refused.headers["Retry-After"]) > 0


def test_the_marketplace_chat_is_off_by_default(clients: Clients) -> None:
    """Served only when the roles setting says `anonymous` (tests/test_marketplace_chat_8_1.py)."""
    response = clients.anonymous.post("/api/marketplace-chat/stream/", json={"input": "hi", "session_id": "s"})
    assert (response.status_code, response.json()) == (
        424,
        {"detail": "The anonymous marketplace assistant is not enabled."},
    )


@pytest.mark.slow
def test_serve_api_8_1_over_tcp() -> None:
    """`serve --api 8.1`: health names the version, and a stream names its new thread."""
    with served(["--api", "8.1"]) as server:
        health = httpx.get(f"{server.base}/__mock__/health").json()
        headers = {"Authorization": "Token alice-token"}
        stream = httpx.post(f"{server.base}/api/chat/stream/", json={"input": "hello"}, headers=headers)
        thread = json.loads(stream.text.splitlines()[0])["m"]["thread_uuid"]
        named = httpx.get(f"{server.base}/api/chat-threads/{thread}/", headers=headers).json()["name"]
    assert health["spec_version"] == "8.1"
    assert stream.headers["content-type"] == "application/x-ndjson"
    assert named not in ("", "New chat")


def test_stored_blocks_stand_for_the_records_a_client_saw() -> None:
    """Markdown on both sides of a tool without UI ran together on the wire; markdown blocks
    side by side did not (the accumulator joins deltas into one block); a tool block stands
    for its result record."""
    collector = BlockCollector()
    call = {"k": "load", "t": "tool", "tool": {"name": "search_tools"}}
    listing = {"k": "resource_list", "title": "VMs", "items": []}
    wire = [{"k": "markdown", "c": "a"}, {"k": "markdown", "c": "b"}, {"k": "markdown", "c": "c"}]
    for record in (wire[0], wire[1], call, wire[2], call, listing):
        collector.add(record)
    collector.close()
    assert [b["key"] for b in collector.blocks] == ["markdown", "tool", "markdown", "tool"]
    assert records_of_blocks(collector.blocks) == join_markdown([*wire, listing])
    apart = [{"id": f"blk_{i}", "key": "markdown", "status": "complete", "content": c} for i, c in enumerate("ab")]
    assert records_of_blocks(apart) == [{"k": "markdown", "c": "a"}, {"k": "markdown", "c": "b"}]


@pytest.mark.parametrize(
    ("switch", "text"),
    [
        ("upstream_url_configured", "AI Assistant API URL is not configured."),
        ("upstream_token_configured", "AI Assistant API token is not configured."),
    ],
)
def test_an_unconfigured_upstream_is_named_as_8_1_names_it(clients: Clients, switch: str, text: str) -> None:
    """8.1 renamed 8.0.5's "LLM inference API ..." 409 texts."""
    assert clients.anonymous.request("PATCH", "/__mock__/config", json={switch: False}).status_code == 200
    refused = clients.alice.post("/api/chat/stream/", json={"input": "hello"})
    assert (refused.status_code, refused.json()) == (409, {"detail": text})


def test_a_newer_question_on_the_thread_supersedes_the_stream_in_flight() -> None:
    """Waldur stops a stream when a newer user message lands on its thread, as on a cancel."""
    app = slow_app_8_1()
    headers = {"Authorization": "Token alice-token"}

    async def scenario(base: str) -> tuple[list[dict], list[dict], list[dict]]:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            second: list[dict] = []

            async def follow_up(thread: str) -> None:
                answer = await http.post("/api/chat/stream/", json={"input": "next", "thread_uuid": thread})
                second.extend(json.loads(line) for line in answer.text.splitlines())

            first = await interrupted_stream(http, 2, follow_up)
            listed = await http.get("/api/chat-messages/", params={"thread": first[0]["m"]["thread_uuid"]})
            return first, second, listed.json()

    with served_app(app) as base:
        first, second, stored = asyncio.run(scenario(base))
    assert grammar_tokens(first) == "TMU", first
    assert "Second" not in json.dumps(first)
    assert "Second" in json.dumps(second), "the newer turn itself streams to its end"
    answer = next(m for m in stored if m["uuid"] == first[-1]["m"]["assistant_message_uuid"])
    assert records_of_blocks(answer["blocks"]) == join_markdown(first)


def test_8_1_checks_authentication_then_the_body_before_the_gates(clients: Clients) -> None:
    """8.1's view validates the body before 424 and the role gate (8.0.5 answers 424 first)."""
    assert clients.anonymous.request("PATCH", "/__mock__/config", json={"chat_enabled": False}).status_code == 200
    assert clients.anonymous.post("/api/chat/stream/", json={"input": "hi"}).status_code == 401
    bad = clients.alice.post("/api/chat/stream/", json={"input": ""})
    assert bad.status_code == 400 and "input" in bad.json()
    assert clients.alice.post("/api/chat/stream/", json={"input": "hi"}).status_code == 424
