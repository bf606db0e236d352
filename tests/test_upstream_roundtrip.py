"""Round trip: the chat API with `--upstream-url` on the mock's own upstream mode makes the same records.

One mock serves its upstream mode over real TCP; a second one's chat API calls it as a real
LLM (`HttpUpstreamEngine`, either protocol) and parses what comes back with the same
StreamParser. A third answers from the scripts directly. Their NDJSON records must be the
same, uuids aside: text, code, diagrams, the tool table, the `e` of a failed upstream, and
the history of a second turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.upstream.app import LANGSERVE_PATH, OPENAI_BASE
from mockserver.upstream.target import UpstreamTarget
from tests.support import Clients, clients_for, served_app
from tests.test_upstream_openai import SCENARIO_INPUTS

UUID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[MockApp, str]]:
    app = create_app(ServerOptions(speed=0, upstream_token="llm"))
    with served_app(app) as base:
        yield app, base


@pytest.fixture
def upstream_base(upstream: tuple[MockApp, str]) -> str:
    upstream[0].reset()
    return upstream[1]


def without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return "<uuid>" if isinstance(value, str) and UUID.match(value) else value


def conversation(clients: Clients) -> list[list[dict[str, Any]]]:
    """Every default scenario in its own thread, then a second turn (history, turn 2) in one."""
    streams = []
    for message in SCENARIO_INPUTS.values():
        result = clients.alice.stream(input=message)
        assert result.status_code == 200
        streams.append(result.records)
    first = clients.alice.stream(input="something else")
    second = clients.alice.stream(input="and one more thing", thread_uuid=first.thread_uuid)
    return [*streams, first.records, second.records]


@pytest.mark.parametrize("protocol", ["openai", "langserve"])
def test_the_chat_api_on_its_own_upstream_makes_the_scripted_records(
    protocol: str, upstream: tuple[MockApp, str], upstream_base: str
) -> None:
    url = upstream_base + (OPENAI_BASE if protocol == "openai" else LANGSERVE_PATH)
    target = UpstreamTarget(url, protocol, token="llm")  # type: ignore[arg-type]
    through_upstream: MockApp = create_app(ServerOptions(speed=0, upstream_target=target))
    scripted: MockApp = create_app(ServerOptions(speed=0))
    with clients_for(through_upstream) as via, clients_for(scripted) as direct:
        got, expected = conversation(via), conversation(direct)
    assert [without_uuids(r) for r in got] == [without_uuids(r) for r in expected]
    path = f"{OPENAI_BASE}/chat/completions" if protocol == "openai" else LANGSERVE_PATH
    # Every turn was answered by the upstream mode, not by local scripts.
    assert [entry["path"] for entry in upstream[0].journal.entries()] == [path] * len(got)
    kinds = {record.get("k") for records in got for record in records}
    assert {"markdown", "code", "mermaid", "table"} <= kinds and any("e" in r for rs in got for r in rs)


def test_an_unreachable_or_refusing_upstream_is_the_e_record(upstream_base: str) -> None:
    for target in (
        UpstreamTarget(upstream_base + OPENAI_BASE, "openai", token="wrong"),  # 401
        UpstreamTarget("http://127.0.0.1:9/v1", "openai"),  # nothing listens
    ):
        app = create_app(ServerOptions(speed=0, upstream_target=target))
        with clients_for(app) as clients:
            result = clients.alice.stream(input="hello")
        assert result.status_code == 200
        assert [list(r) for r in result.records] == [["m"], ["e"], ["m"]]
