"""`GET /api/chat-messages/`: shape, visibility, filters and the `include_history` quirk.

Server notes sections 3.5, 4.7, 5.2 and 6.4: a plain array (not paginated), ordered by
`sequence_index`, injection fields only for staff and support.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Clients
from tests.test_api_http import (
    HEX32,
    hyphenated,
    random_uuid,
    shared_app,  # noqa: F401 - overrides conftest's `app` fixture
    user_of,
)
from tests.test_api_stream import MEDIUM, messages_of, new_pair

BASE_FIELDS = {"uuid", "thread", "role", "content", "sequence_index", "replaces", "created"}
INJECTION_FIELDS = {"is_flagged", "injection_score", "injection_severity", "injection_categories"}


@pytest.mark.parametrize(
    ("viewer", "fields"),
    [
        ("alice", BASE_FIELDS),
        ("staff", BASE_FIELDS | INJECTION_FIELDS),
        ("support", BASE_FIELDS | INJECTION_FIELDS),
    ],
)
def test_injection_fields_are_shown_to_staff_and_support_only(clients: Clients, viewer: str, fields: set[str]) -> None:
    """The owner sees seven keys; staff and support also see the four injection keys."""
    new_pair(clients.alice, MEDIUM)
    listed = messages_of(user_of(clients, viewer))
    assert len(listed) == 2
    assert all(set(m) == fields for m in listed)
    if viewer != "alice":
        assert [m["is_flagged"] for m in listed] == [True, False]


def test_is_flagged_filter_works_for_owners_who_cannot_see_the_flag(clients: Clients) -> None:
    """The filter is allowed for everyone although only staff and support see the flag."""
    thread, flagged = new_pair(clients.alice, MEDIUM)
    new_pair(clients.alice, "Clean", thread_uuid=thread)
    everything = messages_of(clients.alice)
    for value in ("true", "True", "2"):
        assert [m["uuid"] for m in messages_of(clients.alice, is_flagged=value)] == [flagged["user_message_uuid"]]
    for value in ("false", "False", "3"):
        assert len(messages_of(clients.alice, is_flagged=value)) == 3
    for value in ("yes", "1", "maybe"):
        assert messages_of(clients.alice, is_flagged=value) == everything


def test_messages_are_a_plain_unpaginated_array(clients: Clients) -> None:
    """No page parameters, no pagination headers: all 14 rows in one answer."""
    thread, _ = new_pair(clients.alice)
    for index in range(6):
        new_pair(clients.alice, f"Turn {index}", thread_uuid=thread)
    response = clients.alice.get("/api/chat-messages/", params={"page": "2", "page_size": "1"})
    assert response.status_code == 200
    assert "x-result-count" not in response.headers and "link" not in response.headers
    assert [m["sequence_index"] for m in response.json()] == list(range(1, 15))


def test_without_thread_filter_all_threads_interleave_by_index(clients: Clients) -> None:
    """Ordering is by sequence_index only, across all visible threads."""
    first, _ = new_pair(clients.alice, "A1")
    second, _ = new_pair(clients.alice, "B1")
    new_pair(clients.alice, "A2", thread_uuid=first)
    listed = messages_of(clients.alice)
    assert [m["sequence_index"] for m in listed] == [1, 1, 2, 2, 3, 4]
    assert sorted(m["thread"] for m in listed) == sorted([first] * 4 + [second] * 2)


def test_thread_filter_and_its_spellings(clients: Clients) -> None:
    """The thread filter accepts the UUID with or without hyphens, in any case."""
    thread, final = new_pair(clients.alice)
    new_pair(clients.alice, "Other thread")
    for spelling in (thread, hyphenated(thread), hyphenated(thread).upper()):
        assert [m["uuid"] for m in messages_of(clients.alice, spelling)] == list(final.values())


def test_malformed_thread_filter_is_400(clients: Clients) -> None:
    """django-filter rejects a malformed UUID (unlike path lookups, which give 404)."""
    response = clients.alice.get("/api/chat-messages/", params={"thread": "not-a-uuid"})
    assert (response.status_code, response.json()) == (400, {"thread": ["Enter a valid UUID."]})


def test_unknown_thread_filter_is_an_empty_list(clients: Clients) -> None:
    """An unknown thread is an empty result, not an error."""
    new_pair(clients.alice)
    assert messages_of(clients.alice, random_uuid()) == []


@pytest.mark.parametrize(("viewer", "sees_alice"), [("bob", False), ("staff", True), ("support", True)])
def test_visibility_of_another_users_messages(clients: Clients, viewer: str, sees_alice: bool) -> None:
    """Users see their own rows only; a foreign thread filter is `200 []`, not 404."""
    thread, alice_pair = new_pair(clients.alice)
    _, bob_pair = new_pair(clients.bob)
    client = user_of(clients, viewer)
    expected_all = {*alice_pair.values(), *bob_pair.values()} if sees_alice else set(bob_pair.values())
    assert {m["uuid"] for m in messages_of(client)} == expected_all
    assert [m["uuid"] for m in messages_of(client, thread)] == (list(alice_pair.values()) if sees_alice else [])


def test_alice_never_sees_bobs_messages(clients: Clients) -> None:
    """History included or not, another user's rows never leak."""
    thread, mine = new_pair(clients.alice)
    new_pair(clients.bob)
    assert {m["uuid"] for m in messages_of(clients.alice)} == set(mine.values())
    assert {m["thread"] for m in messages_of(clients.alice, include_history="true")} == {thread}


@pytest.mark.parametrize(
    ("value", "with_history"),
    [
        (None, False),
        ("false", False),
        ("False", False),
        ("3", False),
        ("true", True),
        ("True", True),
        ("2", True),
        ("foo", True),
    ],
)
def test_include_history(clients: Clients, value: str | None, with_history: bool) -> None:
    """Absent/false: active rows; true: originals too; an unrecognised value also returns everything (quirk)."""
    thread, first = new_pair(clients.alice)
    reloaded = clients.alice.stream(input="Hi", thread_uuid=thread, mode="reload").final["assistant_message_uuid"]
    params: dict[str, Any] = {} if value is None else {"include_history": value}
    listed = messages_of(clients.alice, thread, **params)
    active = [first["user_message_uuid"], reloaded]
    if with_history:
        assert sorted(m["uuid"] for m in listed) == sorted([*first.values(), reloaded])
        assert [m["sequence_index"] for m in listed] == [1, 2, 2]
    else:
        assert [m["uuid"] for m in listed] == active


def test_message_fields_hold_waldur_values(clients: Clients) -> None:
    """Roles, indexes, `replaces` null on originals, hex UUIDs; REST JSON is raw UTF-8."""
    thread, final = new_pair(clients.alice, "Grüße")
    response = clients.alice.get("/api/chat-messages/", params={"thread": thread})
    assert "Grüße".encode() in response.content
    user, assistant = response.json()
    assert (user["uuid"], user["thread"], user["role"], user["content"], user["sequence_index"], user["replaces"]) == (
        final["user_message_uuid"],
        thread,
        "user",
        "Grüße",
        1,
        None,
    )
    assert (assistant["uuid"], assistant["role"], assistant["sequence_index"]) == (
        final["assistant_message_uuid"],
        "assistant",
        2,
    )
    assert assistant["created"] >= user["created"]
    assert all(HEX32.match(m["uuid"]) for m in (user, assistant))
