"""The playground page as files and routes (no browser): packaged, self-contained, behind the origin guard.

What it does in a browser is tests/test_playground_browser.py.
"""

from __future__ import annotations

import re

import pytest

from mockserver.control.ui import ASSETS, PAGE
from mockserver.engine.faults import FAULT_NAMES
from mockserver.openapi.loader import CONTROL_SPEC, SpecIndex
from mockserver.resources import UI_DIR
from mockserver.users import DEFAULT_USERS_FILE, load_users
from tests.support import Clients, served

USER_LIST = SpecIndex.from_file(CONTROL_SPEC).schema_validator("/components/schemas/UserList")


def test_the_page_and_its_assets_are_served_with_their_types(clients: Clients) -> None:
    page = clients.anonymous.get("/__mock__/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.text == (UI_DIR / PAGE).read_text(encoding="utf-8")
    for name, media_type in ASSETS.items():
        asset = clients.anonymous.get(f"/__mock__/ui/{name}")
        assert (asset.status_code, asset.headers["content-type"]) == (200, media_type)
        assert f'/__mock__/ui/{name}"' in page.text  # the page loads it from the mock itself


@pytest.mark.parametrize("name", ["index.html", "missing.js", "playground.js.map", "PLAYGROUND.JS"])
def test_other_names_under_ui_are_404_in_drfs_shape(clients: Clients, name: str) -> None:
    answer = clients.anonymous.get(f"/__mock__/ui/{name}")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not found."}


def test_the_page_needs_nothing_from_elsewhere() -> None:
    """No CDN, no web font, no absolute URL: the page works offline."""
    for name in (PAGE, *ASSETS):
        text = (UI_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), name
        assert "@import" not in text and "import(" not in text, name


def test_the_page_is_behind_the_control_apis_origin_guard(clients: Clients) -> None:
    foreign = clients.anonymous.get("/__mock__/ui", headers={"Sec-Fetch-Site": "cross-site"})
    assert foreign.status_code == 403
    assert "Cross-origin request refused" in foreign.json()["detail"]


def test_users_lists_the_users_file_with_tokens_in_its_schema(clients: Clients) -> None:
    answer = clients.anonymous.get("/__mock__/users")
    assert answer.status_code == 200
    body = answer.json()
    USER_LIST.validate(body)
    expected = [(u.username, u.token) for u in load_users(DEFAULT_USERS_FILE)]
    assert [(u["username"], u["token"]) for u in body["users"]] == expected
    roles = {u["username"]: u["role"] for u in body["users"]}
    assert (roles["alice"], roles["staff"], roles["support"]) == ("user", "staff", "support")


def test_the_fault_picker_offers_every_fault_the_server_knows() -> None:
    script = (UI_DIR / "playground.js").read_text(encoding="utf-8")
    block = script[script.index("const FAULTS = [") : script.index("];", script.index("const FAULTS = ["))]
    offered = re.findall(r"\['([a-z_]+)', '", block)
    assert sorted(offered) == sorted(FAULT_NAMES)


@pytest.mark.slow
def test_the_start_up_banner_links_the_page() -> None:
    with served() as server:
        pass
    assert f"  playground:  {server.base}/__mock__/ui\n" in server.stdout
