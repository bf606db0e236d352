"""The control API cannot be driven from a web page the developer merely visits.

Browsers mark cross-origin requests with `Origin` and `Sec-Fetch-Site`; a simple POST
(`text/plain`, a form) skips the CORS preflight, so those requests must be refused by the
server, and DNS rebinding (a foreign Host name) too. curl, scripts and a page served by the
mock itself keep working, and the chat API keeps its CORS for any origin.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from tests.support import Client, Clients, clients_for, served_app

CROSS_SITE_POST = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
SAME_ORIGIN_PAGE = {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}


def make_thread(clients: Clients) -> str:
    return clients.alice.stream(input="hello").thread_uuid


def thread_exists(clients: Clients, thread: str) -> bool:
    return clients.alice.get(f"/api/chat-threads/{thread}/").status_code == 200


def assert_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert isinstance(detail, str) and all(word in detail for word in words), detail
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


# -- refused -------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(CROSS_SITE_POST, id="simple-post-from-another-site"),
        pytest.param({"Origin": "http://evil.example"}, id="origin-only-older-browser"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site-only"),
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, id="sandboxed-frame-or-file"),
        pytest.param(
            {"Host": "localhost:8000", "Origin": "http://localhost:8001", "Sec-Fetch-Site": "same-site"},
            id="another-port-on-localhost",
        ),
        pytest.param({"Host": "localhost:8000", "Origin": "http://localhost:8001"}, id="another-port-origin-only"),
        pytest.param({"Host": "localhost:8000", "Origin": "http://[::1"}, id="malformed-origin"),
    ],
)
def test_a_cross_origin_reset_is_refused_and_changes_nothing(clients: Clients, headers: dict[str, str]) -> None:
    thread = make_thread(clients)
    response = clients.anonymous.post("/__mock__/reset", content=b"x", headers=headers)
    assert_refused(response, "Cross-origin request refused", "control API")
    assert thread_exists(clients, thread)


def test_cross_origin_script_replacement_and_config_changes_are_refused(clients: Clients) -> None:
    before = clients.anonymous.get("/__mock__/scripts").json()
    script = "scripts:\n  - name: evil\n    match: {}\n    reply: {text: pwned}\n"
    assert_refused(clients.anonymous.request("PUT", "/__mock__/scripts", content=script, headers=CROSS_SITE_POST))
    assert clients.anonymous.get("/__mock__/scripts").json() == before
    off = {"chat_enabled": False}
    assert_refused(clients.anonymous.request("PATCH", "/__mock__/config", json=off, headers=CROSS_SITE_POST))
    assert clients.anonymous.get("/__mock__/config").json()["chat_enabled"] is True


def test_a_cross_origin_page_cannot_read_the_journal(clients: Clients) -> None:
    """A GET can be sent by any page too (`<script src>`, `fetch` no-cors): refused, not just unreadable."""
    make_thread(clients)
    assert_refused(clients.anonymous.get("/__mock__/requests", headers={"Sec-Fetch-Site": "cross-site"}))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            {"Host": "evil.example:8000", "Origin": "http://evil.example:8000", "Sec-Fetch-Site": "same-origin"},
            id="rebound-page-post",
        ),
        pytest.param({"Host": "evil.example:8000"}, id="rebound-page-get-without-origin"),
        pytest.param({"Host": "127.0.0.1.evil.example"}, id="a-name-that-looks-like-an-ip"),
        pytest.param({"Host": "[oops"}, id="malformed-host"),
        pytest.param({"Host": "localhost:99999"}, id="port-out-of-range"),
    ],
)
def test_dns_rebinding_is_refused_by_host(clients: Clients, headers: dict[str, str]) -> None:
    thread = make_thread(clients)
    assert_refused(clients.anonymous.post("/__mock__/reset", headers=headers), "DNS rebinding", "--allow-host")
    assert_refused(clients.anonymous.get("/__mock__/requests", headers=headers), "DNS rebinding")
    assert thread_exists(clients, thread)


def test_a_preflight_to_the_control_api_gets_no_cors_headers(clients: Clients) -> None:
    preflight = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    }
    assert_refused(clients.anonymous.request("OPTIONS", "/__mock__/scripts", headers=preflight))


# -- allowed -------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="curl-or-script"),
        pytest.param(SAME_ORIGIN_PAGE, id="page-served-by-the-mock"),
        pytest.param({"Host": "localhost:8000", "Origin": "http://localhost:8000"}, id="same-origin-on-localhost"),
        pytest.param({"Host": "[::1]:8000", "Origin": "http://[::1]:8000"}, id="same-origin-on-ipv6-loopback"),
        pytest.param({"Host": "127.0.0.1", "Origin": "http://127.0.0.1:80"}, id="default-port-either-way"),
        pytest.param({"Host": "192.168.1.20:8000"}, id="an-ip-address-host"),
    ],
)
def test_scripts_and_same_origin_pages_may_reset(clients: Clients, headers: dict[str, str]) -> None:
    thread = make_thread(clients)
    response = clients.anonymous.post("/__mock__/reset", headers=headers)
    assert response.status_code == 204
    assert "access-control-allow-origin" not in response.headers
    assert not thread_exists(clients, thread)


def test_a_url_typed_into_the_address_bar_may_read(clients: Clients) -> None:
    headers = {"Host": "localhost:8000", "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}
    response = clients.anonymous.get("/__mock__/health", headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.fixture
def named_host_clients() -> Iterator[Clients]:
    """A mock started with `--allow-host mock` (a compose service name, say)."""
    app = create_app(ServerOptions(speed=0, allowed_hosts=("Mock",)))
    with clients_for(app) as made:
        yield made


def test_allowed_host_names_are_answered(named_host_clients: Clients) -> None:
    anonymous: Client = named_host_clients.anonymous
    assert anonymous.get("/__mock__/health", headers={"Host": "mock:8000"}).status_code == 200
    assert_refused(anonymous.get("/__mock__/health", headers={"Host": "other:8000"}), "DNS rebinding")


# -- the chat API keeps its CORS --------------------------------------------------
def test_the_chat_api_keeps_cors_for_any_origin(clients: Clients) -> None:
    preflight = clients.anonymous.request(
        "OPTIONS",
        "/api/chat/stream/",
        headers={"Origin": "http://localhost:8001", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    listed = clients.alice.get("/api/chat-threads/", headers={"Origin": "http://evil.example"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "*"


@pytest.mark.slow
def test_over_real_tcp_a_cross_site_simple_post_is_refused(app: MockApp) -> None:
    """What a browser really sends for `fetch(url, {method: "POST", body: "x", mode: "no-cors"})`."""
    with served_app(app) as base:
        auth = {"Authorization": "Token alice-token"}
        assert httpx.post(f"{base}/api/chat/stream/", json={"input": "hello"}, headers=auth).status_code == 200
        refused = httpx.post(f"{base}/__mock__/reset", content=b"x", headers=CROSS_SITE_POST)
        assert_refused(refused, "Cross-origin request refused")
        assert len(httpx.get(f"{base}/api/chat-threads/", headers=auth).json()) == 1
        assert httpx.post(f"{base}/__mock__/reset").status_code == 204  # curl still works
        assert httpx.get(f"{base}/api/chat-threads/", headers=auth).json() == []


def test_allow_host_is_a_repeatable_serve_flag() -> None:
    from mockserver.cli import build_parser

    args = build_parser().parse_args(["serve", "--allow-host", "mock", "--allow-host", "box.lan"])
    assert args.allow_host == ["mock", "box.lan"]
    assert build_parser().parse_args(["serve"]).allow_host == []
