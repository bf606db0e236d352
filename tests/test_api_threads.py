"""`/api/chat-threads/`: shape, visibility, archive/unarchive, every filter, ordering, `field` and pagination.

Server notes sections 3.7, 4.6, 5.2 and 6.1-6.3.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from mockserver.app import MockApp
from tests.support import Client, Clients
from tests.test_api_http import (
    DATETIME,
    HEX32,
    USER_UUIDS,
    UUID_SPELLINGS,
    assert_detail_by_spelling,
    assert_field_restriction,
    assert_links,
    hyphenated,
    random_uuid,
    second_of_three_pages,
    shared_app,  # noqa: F401 - overrides conftest's `app` fixture
    user_of,
)
from tests.test_api_stream import INJECTION, MEDIUM, new_pair, ok_stream, thread_of, threads_of

THREAD_FIELDS = {
    "uuid",
    "name",
    "chat_session",
    "flags",
    "is_archived",
    "message_count",
    "is_flagged",
    "max_severity",
    "user_username",
    "user_full_name",
    "created",
    "modified",
}
PATH = "/api/chat-threads/"
INVALID_PAGE = {"detail": "Invalid page."}


def uuids(threads: list[dict[str, Any]]) -> list[str]:
    return [t["uuid"] for t in threads]


def make_threads(client: Client, count: int) -> list[str]:
    """`count` new threads, returned newest first (the default order)."""
    return [new_pair(client, f"Thread {index}")[0] for index in range(count)][::-1]


def seed_threads(app: MockApp, username: str, count: int) -> list[str]:
    """Empty threads straight from the store, newest first: pagination needs many, streaming them is slow."""
    owner = next(u for u in app.store.users if u.username == username)
    return [app.store.create_thread(owner).uuid for _ in range(count)][::-1]


def archive(client: Client, thread: str, action: str = "archive", **kwargs: Any) -> int:
    response = client.post(f"{PATH}{thread}/{action}/", **kwargs)
    assert response.content == b""
    return response.status_code


# -- shape and visibility ----------------------------------------------------------------------
def test_thread_fields(clients: Clients) -> None:
    """All twelve fields with their values for a fresh two-message thread; list and detail agree."""
    thread, _ = new_pair(clients.alice)
    listed = threads_of(clients.alice)
    assert listed == [thread_of(clients.alice, thread)]
    data = listed[0]
    assert set(data) == THREAD_FIELDS
    session = clients.alice.get("/api/chat-sessions/current/").json()["uuid"]
    assert {k: data[k] for k in THREAD_FIELDS - {"uuid", "created", "modified"}} == {
        "name": "New chat",
        "chat_session": session,
        "flags": {},
        "is_archived": False,
        "message_count": 2,
        "is_flagged": False,
        "max_severity": "none",
        "user_username": "alice",
        "user_full_name": "Alice Smith",
    }
    assert HEX32.match(data["uuid"]) and DATETIME.match(data["created"]) and DATETIME.match(data["modified"])


@pytest.mark.parametrize(
    ("viewer", "sees"),
    [("alice", {"alice"}), ("bob", {"bob"}), ("staff", {"alice", "bob"}), ("support", {"alice", "bob"})],
)
def test_list_visibility(app: MockApp, clients: Clients, viewer: str, sees: set[str]) -> None:
    """Users list their own threads; staff and support list everyone's."""
    owned = {"alice": seed_threads(app, "alice", 1)[0], "bob": seed_threads(app, "bob", 1)[0]}
    assert set(uuids(threads_of(user_of(clients, viewer)))) == {owned[name] for name in sees}


@pytest.mark.parametrize(("viewer", "status"), [("alice", 200), ("bob", 404), ("staff", 200), ("support", 200)])
def test_retrieve_visibility(app: MockApp, clients: Clients, viewer: str, status: int) -> None:
    """Another user's thread is 404; staff and support can read any."""
    (thread,) = seed_threads(app, "alice", 1)
    response = user_of(clients, viewer).get(f"{PATH}{thread}/")
    assert response.status_code == status
    if status == 404:
        assert list(response.json()) == ["detail"]


@pytest.mark.parametrize("spelling", UUID_SPELLINGS)
def test_retrieve_uuid_spellings(app: MockApp, clients: Clients, spelling: str) -> None:
    """Detail lookups accept hyphens and answer unknown or malformed UUIDs with 404."""
    (thread,) = seed_threads(app, "alice", 1)
    assert_detail_by_spelling(clients.alice, PATH, thread, spelling)


# -- archive and unarchive (section 3.7) ------------------------------------------------------
def test_archive_and_unarchive_are_204_and_idempotent(app: MockApp, clients: Clients) -> None:
    """Repeating either action is harmless; archived threads stay listed by default."""
    (thread,) = seed_threads(app, "alice", 1)
    steps = (("archive", True), ("archive", True), ("unarchive", False), ("unarchive", False))
    for index, (action, archived) in enumerate(steps):
        assert archive(clients.alice, hyphenated(thread) if index % 2 else thread, action) == 204
        assert thread_of(clients.alice, thread)["is_archived"] is archived
    assert len(threads_of(clients.alice)) == 1


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"is_archived": false, "name": "Renamed"}', "application/json"),
        (b"{garbage", "application/json"),
        (b"garbage", "text/plain"),
        (b"", None),
        (b"<a/>", "application/xml"),
        (b"[1]", "application/json"),
    ],
)
def test_archive_ignores_the_body(app: MockApp, clients: Clients, content: bytes, content_type: str | None) -> None:
    """The documented `{name, is_archived}` body is a schema artefact: any body is ignored."""
    (thread,) = seed_threads(app, "alice", 1)
    headers = {"Content-Type": content_type} if content_type else {}
    assert archive(clients.alice, thread, "archive", content=content, headers=headers) == 204
    assert (thread_of(clients.alice, thread)["is_archived"], thread_of(clients.alice, thread)["name"]) == (
        True,
        "New chat",
    )
    unarchive_body = content.replace(b"false", b"true")
    assert archive(clients.alice, thread, "unarchive", content=unarchive_body, headers=headers) == 204
    assert thread_of(clients.alice, thread)["is_archived"] is False


@pytest.mark.parametrize(("viewer", "status"), [("alice", 204), ("bob", 404), ("staff", 204), ("support", 204)])
@pytest.mark.parametrize("action", ["archive", "unarchive"])
def test_who_may_archive(app: MockApp, clients: Clients, viewer: str, status: int, action: str) -> None:
    """Owners, staff and support may archive and unarchive; others get 404 and nothing changes."""
    (thread,) = seed_threads(app, "alice", 1)
    if action == "unarchive":
        archive(clients.alice, thread)
    response = user_of(clients, viewer).post(f"{PATH}{thread}/{action}/", json={})
    assert response.status_code == status
    assert thread_of(clients.alice, thread)["is_archived"] is ((action == "archive") == (status == 204))


@pytest.mark.parametrize("thread", [random_uuid(), "not-a-uuid"])
def test_archive_unknown_thread_is_404(clients: Clients, thread: str) -> None:
    """Unknown or malformed UUIDs are 404, not 400."""
    assert clients.alice.post(f"{PATH}{thread}/archive/").status_code == 404


# -- boolean filters (section 6.3) ------------------------------------------------------------
TRUE_VALUES = ["true", "True", "2"]
FALSE_VALUES = ["false", "False", "3"]
IGNORED_VALUES = ["yes", "1", "TRUE"]


def expected_for(value: str, when_true: list[str], when_false: list[str], otherwise: list[str]) -> list[str]:
    """NullBooleanSelect: true/True/2, false/False/3, anything else is no filter."""
    if value in TRUE_VALUES:
        return when_true
    return when_false if value in FALSE_VALUES else otherwise


@pytest.mark.parametrize("value", TRUE_VALUES + FALSE_VALUES + IGNORED_VALUES)
def test_is_archived_filter(app: MockApp, clients: Clients, value: str) -> None:
    """Only the NullBooleanSelect spellings filter; anything else is ignored."""
    archived, *_ = seed_threads(app, "alice", 3)
    archive(clients.alice, archived)
    everything = uuids(threads_of(clients.alice))
    expected = expected_for(value, [archived], [t for t in everything if t != archived], everything)
    assert uuids(threads_of(clients.alice, is_archived=value)) == expected


@pytest.mark.parametrize("value", TRUE_VALUES + FALSE_VALUES + IGNORED_VALUES)
def test_is_flagged_filter(clients: Clients, value: str) -> None:
    """Same lenient boolean as is_archived, over flags.is_flagged."""
    clean, _ = new_pair(clients.alice, "Clean")
    flagged, _ = new_pair(clients.alice, MEDIUM)
    expected = expected_for(value, [flagged], [clean], [flagged, clean])
    assert uuids(threads_of(clients.alice, is_flagged=value)) == expected


# -- max_severity (sections 4.2-4.3, 6.3) -----------------------------------------------------
# One thread per band, from the detector weights of section 4.3 (two categories add 0.10).
BAND_INPUTS = {
    "none": "A clean question",
    "low": "Q" * 60,  # base64 run: 0.40
    "medium": MEDIUM,  # leetspeak: 0.65
    "high": "h4ck " + "Q" * 60,  # 0.65 + 0.10 = 0.75
    "critical": INJECTION,  # 0.95
}


def test_max_severity_bands(clients: Clients) -> None:
    """Each band filter returns exactly the thread whose maximum score lies in it (half-open bands)."""
    threads = {name: new_pair(clients.alice, text)[0] for name, text in BAND_INPUTS.items()}
    found = {band: uuids(threads_of(clients.alice, max_severity=band)) for band in BAND_INPUTS}
    assert found == {band: [thread] for band, thread in threads.items()}
    shown = {band: thread_of(clients.alice, thread) for band, thread in threads.items()}
    assert {band: (t["max_severity"], t["is_flagged"]) for band, t in shown.items()} == {
        band: (band, band != "none") for band in BAND_INPUTS
    }


def test_invalid_max_severity_is_400(clients: Clients) -> None:
    """django-filter's choice error, naming the bad value."""
    response = clients.alice.get(PATH, params={"max_severity": "x"})
    assert (response.status_code, response.json()) == (
        400,
        {"max_severity": ["Select a valid choice. x is not one of the available choices."]},
    )


# -- created / modified (section 6.3) ---------------------------------------------------------
class SteppingClock:
    """A store clock pinned to chosen instants, moving by a microsecond per reading."""

    def __init__(self, start: datetime):
        self.current = start

    def now(self) -> datetime:
        self.current += timedelta(microseconds=1)
        return self.current


def test_date_filters_match_the_utc_calendar_date_exactly(
    app: MockApp, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """22:30 at UTC-5 on Feb 23 is Feb 24 in UTC; neither filter is a range."""
    clock = SteppingClock(datetime(2026, 2, 23, 22, 30, tzinfo=timezone(timedelta(hours=-5))))
    monkeypatch.setattr(app.store, "clock", clock)
    thread, _ = new_pair(clients.alice)
    clock.current = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    new_pair(clients.alice, "Later", thread_uuid=thread)
    data = thread_of(clients.alice, thread)
    assert (data["created"][:10], data["modified"][:10]) == ("2026-02-24", "2026-03-01")
    hits = {
        (name, day): uuids(threads_of(clients.alice, **{name: day}))
        for name in ("created", "modified")
        for day in ("2026-02-23", "2026-02-24", "2026-02-25", "2026-03-01")
    }
    assert {key for key, found in hits.items() if found == [thread]} == {
        ("created", "2026-02-24"),
        ("modified", "2026-03-01"),
    }
    assert all(found in ([], [thread]) for found in hits.values())


def test_date_filter_matches_todays_threads(clients: Clients) -> None:
    """An exact date match: neither the day before nor the day after matches."""
    thread, _ = new_pair(clients.alice)
    day = date.fromisoformat(thread_of(clients.alice, thread)["created"][:10])
    for name in ("created", "modified"):
        assert uuids(threads_of(clients.alice, **{name: day.isoformat()})) == [thread]
        assert threads_of(clients.alice, **{name: (day - timedelta(days=1)).isoformat()}) == []
        assert threads_of(clients.alice, **{name: (day + timedelta(days=1)).isoformat()}) == []


@pytest.mark.parametrize("name", ["created", "modified"])
@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2026-02-30"])
def test_bad_date_is_400(clients: Clients, name: str, value: str) -> None:
    """django-filter's date error for either field."""
    response = clients.alice.get(PATH, params={name: value})
    assert (response.status_code, response.json()) == (400, {name: ["Enter a valid date."]})


# -- query and user (section 6.3) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "owners"),
    [
        ("ali", {"alice"}),
        ("SMITH", {"alice"}),
        ("jones", {"bob"}),
        ("Bob", {"bob"}),
        ("alice@example.com", {"alice"}),
        ("example.com", {"alice", "bob"}),
        ("Sue", set()),
        ("new CHAT", {"alice", "bob"}),
    ],
)
def test_query_matches_name_and_owner_fields(app: MockApp, clients: Clients, text: str, owners: set[str]) -> None:
    """Case-insensitive over name, username, first and last name and email; each thread once."""
    seed_threads(app, "alice", 1)
    seed_threads(app, "bob", 1)
    found = threads_of(clients.staff, query=text)
    assert {t["user_username"] for t in found} == owners
    assert len(found) == len(owners) == len(set(uuids(found)))


def test_query_matches_a_renamed_thread_not_message_content(clients: Clients) -> None:
    """The name is searched (case-insensitively), message content is not."""
    renamed, _ = new_pair(clients.alice, "xyzzy in the message")
    other, _ = new_pair(clients.alice)
    ok_stream(clients.alice, input="Pick a title", update_thread_name=renamed)
    name = thread_of(clients.alice, renamed)["name"]
    assert name != "New chat"
    assert uuids(threads_of(clients.alice, query=name.swapcase())) == [renamed]
    assert threads_of(clients.alice, query="xyzzy") == []
    assert renamed not in uuids(threads_of(clients.alice, query="New chat")) or "new chat" in name.lower()
    assert other in uuids(threads_of(clients.alice, query="New chat"))


def test_a_thread_matching_several_fields_is_listed_once(app: MockApp, clients: Clients) -> None:
    """Matches over several fields are de-duplicated, in the body and in the count."""
    (thread,) = seed_threads(app, "alice", 1)
    response = clients.alice.get(PATH, params={"query": "a"})
    assert (uuids(response.json()), response.headers["x-result-count"]) == ([thread], "1")


@pytest.mark.parametrize(
    ("viewer", "owner"), [("staff", "alice"), ("support", "bob"), ("alice", "alice"), ("alice", "bob")]
)
@pytest.mark.parametrize("spell", [str, hyphenated])
def test_user_filter(app: MockApp, clients: Clients, viewer: str, owner: str, spell: Any) -> None:
    """Narrows to one owner; a regular user only ever gets their own threads back."""
    owned = {"alice": seed_threads(app, "alice", 1)[0], "bob": seed_threads(app, "bob", 1)[0]}
    found = uuids(threads_of(user_of(clients, viewer), user=spell(USER_UUIDS[owner])))
    visible = viewer in ("staff", "support") or viewer == owner
    assert found == ([owned[owner]] if visible else [])


def test_malformed_user_filter_is_400(clients: Clients) -> None:
    """A UUID filter rejects a malformed value."""
    response = clients.staff.get(PATH, params={"user": "alice"})
    assert response.status_code == 400
    assert list(response.json()) == ["user"]


# -- ordering (section 6.3) -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("o", "order"),
    [
        (None, [3, 2, 1]),
        ("-created", [3, 2, 1]),
        ("created", [1, 2, 3]),
        ("modified", [2, 3, 1]),
        ("-modified", [1, 3, 2]),
        ("modified,created", [2, 3, 1]),
        ("-created,modified", [3, 2, 1]),
    ],
)
def test_ordering(clients: Clients, o: str | None, order: list[int]) -> None:
    """Default `-created`; thread 1 is touched last, so created and modified orders differ."""
    made = make_threads(clients.alice, 3)[::-1]
    new_pair(clients.alice, "Touch", thread_uuid=made[0])
    params = {} if o is None else {"o": o}
    assert uuids(threads_of(clients.alice, **params)) == [made[i - 1] for i in order]


@pytest.mark.parametrize("o", ["name", "-created,bogus", "uuid"])
def test_invalid_ordering_is_400(clients: Clients, o: str) -> None:
    """Only created/modified with an optional minus are orderings."""
    response = clients.alice.get(PATH, params={"o": o})
    assert response.status_code == 400
    assert list(response.json()) == ["o"]


# -- field (section 6.2) ---------------------------------------------------------------------
FIELD_CASES = [
    (["uuid", "name"], {"uuid", "name"}),
    (["uuid", "bogus"], {"uuid"}),
    (["bogus"], THREAD_FIELDS),
    ([], THREAD_FIELDS),
    (["max_severity", "flags", "message_count"], {"max_severity", "flags", "message_count"}),
]


@pytest.mark.parametrize(("fields", "expected"), FIELD_CASES)
def test_field_restricts_list_and_retrieve(
    app: MockApp, clients: Clients, fields: list[str], expected: set[str]
) -> None:
    """Sparse fieldsets on the list and detail routes (unknown names ignored)."""
    (thread,) = seed_threads(app, "alice", 1)
    assert_field_restriction(clients.alice, PATH, thread, fields, expected)


# -- pagination (section 6.1) ----------------------------------------------------------------
def test_default_page_size_is_10_with_links(app: MockApp, clients: Clients) -> None:
    """Ten per page, newest first, with the total and the Link header."""
    made = seed_threads(app, "alice", 12)
    response = clients.alice.get(PATH)
    assert (uuids(response.json()), response.headers["x-result-count"]) == (made[:10], "12")
    assert_links(response, PATH, {"first": {}, "next": {"page": "2"}, "last": {"page": "2"}})


@pytest.mark.parametrize("page", ["2", "last"])
def test_last_page(app: MockApp, clients: Clients, page: str) -> None:
    """`page=last` is the last page; page 2's prev link has no page parameter."""
    made = seed_threads(app, "alice", 12)
    response = clients.alice.get(PATH, params={"page": page})
    assert (uuids(response.json()), response.headers["x-result-count"]) == (made[10:], "12")
    assert_links(response, PATH, {"first": {}, "prev": {}, "last": {"page": "2"}})


def test_links_keep_other_parameters(app: MockApp, clients: Clients) -> None:
    """Links keep the filters and page_size and only change page."""
    made = seed_threads(app, "alice", 12)
    response = clients.alice.get(PATH, params={"page_size": "4", "page": "2", "is_archived": "false"})
    assert uuids(response.json()) == made[4:8]
    keep = {"page_size": "4", "is_archived": "false"}
    assert_links(response, PATH, second_of_three_pages(keep))
    third = clients.alice.get(PATH, params={"page_size": "4", "page": "3", "is_archived": "false"})
    assert_links(third, PATH, {"first": keep, "prev": {**keep, "page": "2"}, "last": {**keep, "page": "3"}})


def test_single_and_empty_pages_link_without_page(app: MockApp, clients: Clients) -> None:
    """With one page, first and last are the URL without page."""
    empty = clients.alice.get(PATH)
    assert (empty.json(), empty.headers["x-result-count"]) == ([], "0")
    assert_links(empty, PATH, {"first": {}, "last": {}})
    seed_threads(app, "alice", 2)
    single = clients.alice.get(PATH, params={"page": "1"})
    assert (len(single.json()), single.headers["x-result-count"]) == (2, "2")
    assert_links(single, PATH, {"first": {}, "last": {}})


@pytest.mark.parametrize("page", ["0", "3", "-1", "abc", "1.5"])
def test_invalid_page_is_404(app: MockApp, clients: Clients, page: str) -> None:
    """Out of range or unparsable pages are 404 'Invalid page.'."""
    seed_threads(app, "alice", 12)
    response = clients.alice.get(PATH, params={"page": page})
    assert (response.status_code, response.json()) == (404, INVALID_PAGE)


def test_page_two_of_an_empty_list_is_404(clients: Clients) -> None:
    """An empty list has exactly one (empty) page."""
    response = clients.alice.get(PATH, params={"page": "2"})
    assert (response.status_code, response.json()) == (404, INVALID_PAGE)


@pytest.mark.parametrize(("page_size", "count"), [("5", 5), ("0", 10), ("-3", 10), ("abc", 10), ("12", 12)])
def test_page_size(app: MockApp, clients: Clients, page_size: str, count: int) -> None:
    """Invalid or non-positive page sizes fall back to 10."""
    seed_threads(app, "alice", 13)
    response = clients.alice.get(PATH, params={"page_size": page_size})
    assert (len(response.json()), response.headers["x-result-count"]) == (count, "13")


def test_page_size_is_capped_at_300(app: MockApp, clients: Clients) -> None:
    """Larger page sizes are capped at 300, not rejected."""
    seed_threads(app, "alice", 301)
    response = clients.alice.get(PATH, params={"page_size": "1000"})
    assert (len(response.json()), response.headers["x-result-count"]) == (300, "301")
    assert_links(
        response,
        PATH,
        {
            "first": {"page_size": "1000"},
            "next": {"page_size": "1000", "page": "2"},
            "last": {"page_size": "1000", "page": "2"},
        },
    )


def test_count_is_after_filtering_and_filter_errors_come_first(app: MockApp, clients: Clients) -> None:
    """X-Result-Count counts the filtered set; filter errors win over page errors."""
    archived, *_ = seed_threads(app, "alice", 3)
    archive(clients.alice, archived)
    response = clients.alice.get(PATH, params={"is_archived": "false"})
    assert response.headers["x-result-count"] == "2"
    bad = clients.alice.get(PATH, params={"created": "bad", "page": "99"})
    assert (bad.status_code, bad.json()) == (400, {"created": ["Enter a valid date."]})
