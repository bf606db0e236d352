"""`/api/chat-sessions/`: the lazily created per-user session, `current`, visibility, `field` and pagination.

Server notes sections 1, 3.1, 5.2, 6.1 and 6.2.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Client, Clients
from tests.test_api_http import (
    DATETIME,
    USER_UUIDS,
    UUID_SPELLINGS,
    assert_detail_by_spelling,
    assert_field_restriction,
    assert_links,
    second_of_three_pages,
    shared_app,  # noqa: F401 - overrides conftest's `app` fixture
    user_of,
)
from tests.test_api_stream import new_pair

PATH = "/api/chat-sessions/"
SESSION_FIELDS = {"uuid", "user", "user_username", "user_full_name", "created", "modified"}
FULL_NAMES = {"alice": "Alice Smith", "bob": "Bob Jones", "staff": "Sam Staff", "support": "Sue Support"}


def current(client: Client, **params: Any) -> httpx.Response:
    return client.get(f"{PATH}current/", params=params)


def sessions_of(client: Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get(PATH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("name", list(FULL_NAMES))
def test_current_is_the_callers_own_session(clients: Clients, name: str) -> None:
    """Get-or-create for the caller, staff and support included; all six fields."""
    response = current(user_of(clients, name))
    assert response.status_code == 200
    session = response.json()
    assert set(session) == SESSION_FIELDS
    assert (session["user"], session["user_username"], session["user_full_name"]) == (
        USER_UUIDS[name],
        name,
        FULL_NAMES[name],
    )
    assert DATETIME.match(session["created"]) and DATETIME.match(session["modified"])


def test_current_is_idempotent_and_never_201(clients: Clients) -> None:
    """Repeated calls return the same session with 200; only one session exists."""
    answers = [current(clients.alice) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert [s["uuid"] for s in sessions_of(clients.alice)] == [answers[0].json()["uuid"]]


@pytest.mark.parametrize("fields", [["uuid"], ["uuid", "user"], ["bogus"]])
def test_current_ignores_field(clients: Clients, fields: list[str]) -> None:
    """`current` serializes without request context, so `field` has no effect."""
    assert set(current(clients.alice, field=fields).json()) == SESSION_FIELDS


def test_the_first_stream_creates_the_session_current_returns(clients: Clients) -> None:
    """The session is created lazily by the first stream and shared by later threads."""
    assert sessions_of(clients.alice) == []
    thread, _ = new_pair(clients.alice)
    session = current(clients.alice).json()
    assert clients.alice.get(f"/api/chat-threads/{thread}/").json()["chat_session"] == session["uuid"]
    new_pair(clients.alice)
    assert [s["uuid"] for s in sessions_of(clients.alice)] == [session["uuid"]]


@pytest.mark.parametrize(
    ("viewer", "sees"),
    [("alice", ["alice"]), ("bob", ["bob"]), ("staff", ["bob", "alice"]), ("support", ["bob", "alice"])],
)
def test_list_visibility_newest_first(clients: Clients, viewer: str, sees: list[str]) -> None:
    """Users see their own session; staff and support see all, ordered `-created`. Listing creates none."""
    made = {name: current(user_of(clients, name)).json() for name in ("alice", "bob")}
    assert sessions_of(user_of(clients, viewer)) == [made[name] for name in sees]


@pytest.mark.parametrize(("viewer", "status"), [("alice", 200), ("bob", 404), ("staff", 200), ("support", 200)])
def test_retrieve_visibility(clients: Clients, viewer: str, status: int) -> None:
    """Another user's session is 404; staff and support can read any."""
    session = current(clients.alice).json()
    response = user_of(clients, viewer).get(f"{PATH}{session['uuid']}/")
    assert response.status_code == status
    if status == 200:
        assert response.json() == session


@pytest.mark.parametrize("spelling", UUID_SPELLINGS)
def test_retrieve_uuid_spellings(clients: Clients, spelling: str) -> None:
    """Detail lookups accept hyphens and answer unknown or malformed UUIDs with 404."""
    assert_detail_by_spelling(clients.alice, PATH, current(clients.alice).json()["uuid"], spelling)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["uuid", "user"], {"uuid", "user"}),
        (["user_full_name", "bogus"], {"user_full_name"}),
        (["bogus"], SESSION_FIELDS),
        ([], SESSION_FIELDS),
    ],
)
def test_field_restricts_list_and_retrieve(clients: Clients, fields: list[str], expected: set[str]) -> None:
    """Sparse fieldsets on the list and detail routes (unknown names ignored)."""
    session = current(clients.alice).json()
    assert_field_restriction(clients.alice, PATH, session["uuid"], fields, expected)
    restricted = clients.alice.get(f"{PATH}{session['uuid']}/", params={"field": fields}).json()
    assert {k: session[k] for k in expected} == restricted


def test_sessions_are_paginated(clients: Clients) -> None:
    """Same LinkHeaderPagination as threads: bare array, X-Result-Count and Link."""
    made = [current(user_of(clients, name)).json()["uuid"] for name in ("alice", "bob", "support")][::-1]
    response = clients.staff.get(PATH, params={"page_size": "1", "page": "2"})
    assert ([s["uuid"] for s in response.json()], response.headers["x-result-count"]) == ([made[1]], "3")
    size = {"page_size": "1"}
    assert_links(response, PATH, second_of_three_pages(size))
    single = clients.alice.get(PATH)
    assert ([s["uuid"] for s in single.json()], single.headers["x-result-count"]) == ([made[2]], "1")
    assert_links(single, PATH, {"first": {}, "last": {}})


@pytest.mark.parametrize("page", ["4", "0", "abc"])
def test_invalid_session_page_is_404(clients: Clients, page: str) -> None:
    """Sessions use the same pagination errors as threads."""
    for name in ("alice", "bob", "support"):
        current(user_of(clients, name))
    response = clients.staff.get(PATH, params={"page_size": "1", "page": page})
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})
