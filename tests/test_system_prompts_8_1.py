"""Waldur 8.1's `/api/chat-system-prompts/`: staff-managed CRUD, one active prompt, reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from tests.support import Clients, clients_for

URL = "/api/chat-system-prompts/"


@pytest.fixture
def clients() -> Iterator[Clients]:
    app: MockApp = create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))
    with clients_for(app) as clients:
        yield clients


def create(clients: Clients, name: str, **fields: str) -> dict:
    response = clients.staff.post(URL, json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_retrieve_update_delete(clients: Clients) -> None:
    prompt = create(clients, "Helpdesk", custom_instructions="Be brief.")
    assert prompt["is_active"] is False and prompt["description"] == ""
    assert prompt["custom_instructions"] == "Be brief."
    item = f"{URL}{prompt['uuid']}/"
    assert clients.alice.get(item).json() == prompt
    patched = clients.staff.request("PATCH", item, json={"description": "for L1"})
    assert patched.status_code == 200 and patched.json()["description"] == "for L1"
    assert patched.json()["name"] == "Helpdesk"
    put = clients.staff.request("PUT", item, json={"name": "Desk"})
    assert put.status_code == 200 and put.json()["name"] == "Desk"
    assert clients.staff.request("DELETE", item).status_code == 204
    assert clients.staff.get(item).status_code == 404


def test_only_staff_manage_prompts(clients: Clients) -> None:
    prompt = create(clients, "Helpdesk")
    item = f"{URL}{prompt['uuid']}/"
    for client in (clients.alice, clients.support):
        assert client.post(URL, json={"name": "x"}).status_code == 403
        assert client.post(URL, json={}).status_code == 403  # permission before body, as DRF
        assert client.request("PATCH", item, json={"name": "x"}).status_code == 403
        assert client.request("DELETE", item).status_code == 403
        assert client.post(f"{item}activate/").status_code == 403
    assert clients.anonymous.get(URL).status_code == 401
    assert clients.staff.get(item).json()["name"] == "Helpdesk"


def test_bad_bodies_get_field_errors(clients: Clients) -> None:
    missing = clients.staff.post(URL, json={"description": "no name"})
    assert missing.status_code == 400 and "name" in missing.json()
    assert clients.staff.post(URL, json={"name": ""}).status_code == 400
    assert clients.staff.post(URL, json={"name": 5}).json() == {"name": ["Not a valid string."]}
    assert clients.staff.request("PUT", f"{URL}{create(clients, 'p')['uuid']}/", json={}).status_code == 400
    assert clients.staff.get(f"{URL}not-a-uuid/").status_code == 404


def test_activating_one_deactivates_the_others(clients: Clients) -> None:
    first, second = create(clients, "one"), create(clients, "two")
    assert clients.staff.post(f"{URL}{first['uuid']}/activate/").json()["is_active"] is True
    assert clients.staff.post(f"{URL}{second['uuid']}/activate/").json()["is_active"] is True
    active = {p["name"]: p["is_active"] for p in clients.alice.get(URL).json()}
    assert active == {"one": False, "two": True}
    assert clients.staff.post(f"{URL}{second['uuid']}/deactivate/").json()["is_active"] is False
    assert not any(p["is_active"] for p in clients.alice.get(URL).json())


def test_list_is_paginated_and_count_is_head(clients: Clients) -> None:
    for n in range(3):
        create(clients, f"p{n}")
    page = clients.alice.get(URL, params={"page_size": 2})
    assert page.status_code == 200 and [p["name"] for p in page.json()] == ["p0", "p1"]
    assert page.headers["X-Result-Count"] == "3" and 'rel="next"' in page.headers["Link"]
    head = clients.alice.request("HEAD", URL)
    assert head.status_code == 200 and head.headers["X-Result-Count"] == "3" and head.content == b""
    assert clients.alice.get(URL, params={"page": 9}).status_code == 404


def test_reset_clears_prompts(clients: Clients) -> None:
    create(clients, "gone")
    assert clients.anonymous.post("/__mock__/reset").status_code == 204
    assert clients.alice.get(URL).json() == []
