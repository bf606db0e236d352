"""Overlapping turns into one thread, and a reset during a stream, at realistic pacing over real TCP.

A browser user sends a follow-up while the answer still streams, reloads or edits meanwhile;
afterwards the thread must read in order: unique, contiguous indexes and a `message_count`
that agrees with the full history.
"""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import httpx
import pytest

from mockserver.app import MockApp
from tests.support import served_app

AUTH = {"Authorization": "Token alice-token"}
# Each answer takes roughly 0.1-0.4 s: long enough for the next turns to start meanwhile.
PACED_SCRIPT = """
scripts:
  - name: paced
    match: {}
    reply:
      text: "answer to ${input}"
      chunking: word
      timing: {first_chunk_ms: 40, inter_chunk_ms: 30, jitter_ms: 20, seed: 1}
"""

pytestmark = pytest.mark.slow


async def stream(http: httpx.AsyncClient, **body: Any) -> tuple[int, list[dict[str, Any]]]:
    """POST a turn, read the NDJSON body to the end; (status, records)."""
    async with http.stream("POST", "/api/chat/stream/", json=body, headers=AUTH) as response:
        text = (await response.aread()).decode()
    records = [json.loads(line) for line in text.splitlines()] if response.status_code == 200 else []
    return response.status_code, records


async def thread_rows(http: httpx.AsyncClient, thread: str, *, history: bool = False) -> list[dict[str, Any]]:
    params = {"thread": thread, **({"include_history": "true"} if history else {})}
    return (await http.get("/api/chat-messages/", params=params, headers=AUTH)).json()


async def start_thread(http: httpx.AsyncClient) -> str:
    assert (await http.put("/__mock__/scripts", content=PACED_SCRIPT)).status_code == 200
    assert (await http.patch("/__mock__/config", json={"speed": 1})).status_code == 200  # the tests' app runs at 0
    status, records = await stream(http, input="q0")
    assert status == 200
    return records[0]["m"]["thread_uuid"]


async def assert_thread_in_order(http: httpx.AsyncClient, thread: str) -> list[dict[str, Any]]:
    active = await thread_rows(http, thread)
    indexes = [m["sequence_index"] for m in active]
    assert indexes == list(range(1, len(active) + 1)), f"active indexes {indexes}"
    assert [m["role"] for m in active] == ["user" if i % 2 else "assistant" for i in range(1, len(active) + 1)]
    everything = await thread_rows(http, thread, history=True)
    detail = (await http.get(f"/api/chat-threads/{thread}/", headers=AUTH)).json()
    assert detail["message_count"] == len(everything)
    return everything


def test_overlapping_follow_ups_keep_every_answer_after_its_question(app: MockApp) -> None:
    async def run(base: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            thread = await start_thread(http)

            async def follow_up(number: int) -> None:
                await anyio.sleep(number * 0.04)  # each starts while earlier answers still stream
                status, records = await stream(http, input=f"q{number}" + " more" * (number % 5), thread_uuid=thread)
                assert status == 200 and "assistant_message_uuid" in records[-1]["m"]

            async with anyio.create_task_group() as group:
                for number in range(1, 13):
                    group.start_soon(follow_up, number)
            await assert_thread_in_order(http, thread)
            return await thread_rows(http, thread)

    with served_app(app) as base:
        active = anyio.run(run, base)
    assert len(active) == 26
    for question, answer in zip(active[::2], active[1::2], strict=True):
        assert answer["content"] == f"answer to {question['content']}"


def test_overlapping_follow_ups_reloads_and_edits_leave_a_consistent_thread(app: MockApp) -> None:
    rng = random.Random(8)
    announced: list[str] = []
    answered: set[str] = set()

    async def run(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            thread = await start_thread(http)

            async def turn(number: int, kind: str) -> None:
                await anyio.sleep(rng.uniform(0, 0.8))
                body: dict[str, Any] = {"input": f"t{number} {kind}", "thread_uuid": thread}
                if kind == "reload":
                    body["mode"] = "reload"
                for _attempt in range(5):
                    if kind == "edit":
                        last_user = [m for m in await thread_rows(http, thread) if m["role"] == "user"][-1]
                        body |= {"mode": "edit", "edit_message_uuid": last_user["uuid"]}
                    status, records = await stream(http, **body)
                    if status == 200:
                        announced.extend(records[-1]["m"].values())
                        answered.add(kind)
                        return
                    # A concurrent follow-up or edit may have made the edited message not the last one.
                    assert kind == "edit" and status == 400, (kind, status)
                    await anyio.sleep(rng.uniform(0, 0.1))

            kinds = ["message"] * 14 + ["reload"] * 6 + ["edit"] * 8
            async with anyio.create_task_group() as group:
                for number, kind in enumerate(kinds):
                    group.start_soon(turn, number, kind)
            everything = await assert_thread_in_order(http, thread)
            stored = {m["uuid"] for m in everything}
            assert set(announced) <= stored, "every final m names stored rows"
            for row in everything:  # every replacement sits at the index of the row it replaces
                if row["replaces"] is not None:
                    replaced = next(m for m in everything if m["uuid"] == row["replaces"])
                    assert (replaced["sequence_index"], replaced["role"]) == (row["sequence_index"], row["role"])

    with served_app(app) as base:
        anyio.run(run, base)
    assert answered == {"message", "reload", "edit"}, "every kind of turn took part"


def test_a_reset_cuts_a_running_stream_and_nothing_of_it_is_stored(app: MockApp) -> None:
    async def run(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await start_thread(http)
            lines: list[dict[str, Any]] = []
            with pytest.raises(httpx.RemoteProtocolError):
                body = {"input": "a long question " * 10}
                async with http.stream("POST", "/api/chat/stream/", json=body, headers=AUTH) as response:
                    async for line in response.aiter_lines():
                        lines.append(json.loads(line))
                        if len(lines) == 2:  # the thread m and the first content record
                            assert (await http.post("/__mock__/reset")).status_code == 204
            assert all("m" not in r or "thread_uuid" in r["m"] for r in lines), "no final m after a reset"
            await anyio.sleep(0.3)
            assert (await http.get("/api/chat-messages/", headers=AUTH)).json() == []
            assert (await http.get("/api/chat-threads/", headers=AUTH)).json() == []
            assert (await http.get("/__mock__/config")).json()["token_usage"] == {}, "no usage counted"
            status, records = await stream(http, input="hello")
            assert status == 200
            rows = await thread_rows(http, records[0]["m"]["thread_uuid"])
            assert [m["sequence_index"] for m in rows] == [1, 2]

    with served_app(app) as base:
        anyio.run(run, base)
