"""HTTP-level behaviour shared by every chat route, homeport's boot endpoints and the control API.

Authentication and 405s follow server notes sections 1 and 5.1, CORS and the boot endpoints
clients notes section 5, the control API spec/mock-control.yaml. The helpers at the top are
shared by the other `test_api_*` modules.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from tests.support import Client, Clients, clients_for

# -- shared helpers ---------------------------------------------------------------------------
HEX32 = re.compile(r"^[0-9a-f]{32}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
USER_UUIDS = {
    "alice": "6d3c1ad36c7b4bc5a1a4a3b0c2f0a001",
    "bob": "6d3c1ad36c7b4bc5a1a4a3b0c2f0a002",
    "staff": "6d3c1ad36c7b4bc5a1a4a3b0c2f0a003",
    "support": "6d3c1ad36c7b4bc5a1a4a3b0c2f0a004",
}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
INVALID_TOKEN = {"detail": "Invalid token."}
DEFAULT_LIMITS = {"daily_limit": -1, "weekly_limit": -1, "monthly_limit": -1}
BASE = "http://testserver"


_SHARED: list[MockApp] = []


@pytest.fixture(name="app")
def shared_app() -> Iterator[MockApp]:
    """Overrides conftest's `app` in the `test_api_*` modules (they import this fixture).

    Building a mock loads and compiles the spec (about 0.4 s), so one validating mock is
    shared and reset before every test; any spec violation still fails the test that caused it.
    """
    if not _SHARED:
        _SHARED.append(create_app(ServerOptions(validate_responses=True, speed=0)))
    mock = _SHARED[0]
    mock.reset()
    mock.violations.drain()
    yield mock
    violations = mock.violations.drain()
    assert not violations, f"the mock answered outside its own spec: {violations}"


def configure(clients: Clients, **patch: Any) -> dict[str, Any]:
    """Switch the deployment through the control API, as a contract test against any mock would."""
    response = clients.anonymous.request("PATCH", "/__mock__/config", json=patch)
    assert response.status_code == 200, response.text
    return response.json()


def hyphenated(hex_uuid: str) -> str:
    """The RFC 4122 spelling of a 32-hex UUID: Waldur accepts both on input."""
    return str(uuid.UUID(hex_uuid))


def random_uuid() -> str:
    return uuid.uuid4().hex


def user_of(clients: Clients, name: str) -> Client:
    return getattr(clients, name)


def links(response: httpx.Response) -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """The Link header as (rel, origin, path, sorted query pairs), in header order.

    Query order is not specified by the notes, so pairs are compared as a sorted list.
    """
    found = re.findall(r'<([^<>]*)>; rel="(\w+)"', response.headers.get("link", ""))
    parsed = []
    for target, rel in found:
        parts = urlsplit(target)
        pairs = sorted(parse_qsl(parts.query, keep_blank_values=True))
        parsed.append((rel, f"{parts.scheme}://{parts.netloc}", parts.path, pairs))
    return parsed


def assert_links(response: httpx.Response, path: str, expected: dict[str, dict[str, str]]) -> None:
    """`expected` maps rel -> the query of its URL; rels must appear in first/prev/next/last order."""
    want = [
        (rel, BASE, path, sorted(expected[rel].items())) for rel in ("first", "prev", "next", "last") if rel in expected
    ]
    assert links(response) == want


def second_of_three_pages(query: dict[str, str]) -> dict[str, dict[str, str]]:
    """Links of page 2 of 3: first and prev drop `page` (page 1), next and last name page 3."""
    return {"first": query, "prev": query, "next": {**query, "page": "3"}, "last": {**query, "page": "3"}}


def assert_unauthorized(response: httpx.Response, body: dict[str, str] = NO_CREDENTIALS) -> None:
    """DRF's 401 with the Token challenge (never 403)."""
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers.get("www-authenticate") == "Token"


UUID_SPELLINGS = ["unknown", "malformed", "hyphenated", "upper-hyphenated"]


def assert_detail_by_spelling(client: Client, collection: str, real: str, spelling: str) -> None:
    """Hyphens (any case) are accepted and answered as hex; unknown or malformed UUIDs are 404, never 400."""
    path_uuid = {
        "unknown": random_uuid(),
        "malformed": "not-a-uuid",
        "hyphenated": hyphenated(real),
        "upper-hyphenated": hyphenated(real).upper(),
    }[spelling]
    response = client.get(f"{collection}{path_uuid}/")
    if spelling in ("unknown", "malformed"):
        assert (response.status_code, list(response.json())) == (404, ["detail"])
    else:
        assert (response.status_code, response.json()["uuid"]) == (200, real)


def assert_field_restriction(client: Client, collection: str, real: str, fields: list[str], expected: set[str]) -> None:
    """`field` applies to the list and the detail route alike (section 6.2)."""
    listed = client.get(collection, params={"field": fields}).json()
    retrieved = client.get(f"{collection}{real}/", params={"field": fields}).json()
    assert set(listed[0]) == set(retrieved) == expected


def not_allowed(method: str) -> dict[str, str]:
    return {"detail": f'Method "{method}" not allowed.'}


# -- authentication (section 5.1) -----------------------------------------------------------
# Every chat route and a method it accepts, with a body where one is needed.
CHAT_CALLS = [
    ("GET", "/api/chat-sessions/", None),
    ("GET", "/api/chat-sessions/current/", None),
    ("GET", f"/api/chat-sessions/{USER_UUIDS['alice']}/", None),
    ("GET", "/api/chat-threads/", None),
    ("GET", f"/api/chat-threads/{USER_UUIDS['alice']}/", None),
    ("POST", f"/api/chat-threads/{USER_UUIDS['alice']}/archive/", {}),
    ("POST", f"/api/chat-threads/{USER_UUIDS['alice']}/unarchive/", {}),
    ("GET", "/api/chat-messages/", None),
    ("POST", "/api/chat/stream/", {"input": "Hi"}),
]
CALL_IDS = [f"{m} {p}" for m, p, _ in CHAT_CALLS]


@pytest.mark.parametrize(("method", "path", "body"), CHAT_CALLS, ids=CALL_IDS)
def test_anonymous_gets_401_with_token_challenge(clients: Clients, method: str, path: str, body: Any) -> None:
    """Anonymous callers get 401, never 403, on every chat route."""
    assert_unauthorized(clients.anonymous.request(method, path, json=body))


@pytest.mark.parametrize(("method", "path", "body"), CHAT_CALLS, ids=CALL_IDS)
def test_unknown_token_gets_401_invalid_token(clients: Clients, method: str, path: str, body: Any) -> None:
    """An unknown key is "Invalid token.", not the missing-credentials message."""
    assert_unauthorized(clients.with_token("no-such-token").request(method, path, json=body), INVALID_TOKEN)


def test_query_parameter_token_authenticates(clients: Clients) -> None:
    """`?x-auth-token=<key>` is accepted like the Authorization header."""
    response = clients.anonymous.get("/api/chat-sessions/current/", params={"x-auth-token": "alice-token"})
    assert response.status_code == 200
    assert response.json()["user_username"] == "alice"


def test_query_parameter_token_streams(clients: Clients) -> None:
    """The query token works on the stream too, and the thread belongs to that user."""
    response = clients.anonymous.post("/api/chat/stream/", params={"x-auth-token": "bob-token"}, json={"input": "Hi"})
    assert response.status_code == 200
    assert [t["user_username"] for t in clients.bob.get("/api/chat-threads/").json()] == ["bob"]


def test_bad_query_token_is_401(clients: Clients) -> None:
    """A bad query token is rejected like a bad header token."""
    assert_unauthorized(clients.anonymous.get("/api/chat-threads/", params={"x-auth-token": "nope"}), INVALID_TOKEN)


# -- refused methods (section 1) ------------------------------------------------------------
SOME = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
REFUSED = [
    *[(m, "/api/chat-sessions/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, f"/api/chat-sessions/{SOME}/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, "/api/chat-sessions/current/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, "/api/chat-threads/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, f"/api/chat-threads/{SOME}/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, f"/api/chat-threads/{SOME}/archive/") for m in ("GET", "PUT", "PATCH", "DELETE")],
    *[(m, f"/api/chat-threads/{SOME}/unarchive/") for m in ("GET", "PUT", "PATCH", "DELETE")],
    *[(m, "/api/chat-messages/") for m in ("POST", "PUT", "PATCH", "DELETE")],
    *[(m, f"/api/chat-messages/{SOME}/") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")],
    *[(m, "/api/chat/stream/") for m in ("GET", "PUT", "PATCH", "DELETE")],
]


@pytest.mark.parametrize(("method", "path"), REFUSED, ids=[f"{m} {p}" for m, p in REFUSED])
def test_refused_method_is_405_with_drf_body(clients: Clients, method: str, path: str) -> None:
    """Create/update/destroy are disabled: 405 `Method "X" not allowed.` (not 404)."""
    response = clients.alice.request(method, path, json={})
    assert response.status_code == 405, response.text
    assert response.json() == not_allowed(method)


@pytest.mark.parametrize(("method", "path"), REFUSED[::4], ids=[f"{m} {p}" for m, p in REFUSED[::4]])
def test_refused_method_checks_authentication_first(clients: Clients, method: str, path: str) -> None:
    """DRF authenticates before looking up the handler: anonymous gets 401, not 405."""
    assert_unauthorized(clients.anonymous.request(method, path, json={}))


def test_message_detail_is_405_even_for_an_existing_message(clients: Clients) -> None:
    """`retrieve` is disabled on chat-messages: GET of a real message is 405, not 200."""
    final = clients.alice.stream(input="Hi").final
    response = clients.alice.get(f"/api/chat-messages/{final['user_message_uuid']}/")
    assert response.status_code == 405
    assert response.json() == not_allowed("GET")


def test_removed_edit_route_is_not_served(clients: Clients) -> None:
    """`chat-messages/{uuid}/edit/` no longer exists in 8.0.5."""
    final = clients.alice.stream(input="Hi").final
    response = clients.alice.post(f"/api/chat-messages/{final['user_message_uuid']}/edit/", json={"input": "x"})
    assert response.status_code == 404


HEAD_PATHS = [
    "/api/chat-sessions/",
    "/api/chat-sessions/current/",
    f"/api/chat-sessions/{SOME}/",
    "/api/chat-threads/",
    f"/api/chat-threads/{SOME}/",
    "/api/chat-messages/",
    "/api/chat/stream/",
]


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_is_405_everywhere(clients: Clients, path: str) -> None:
    """HEAD is not in the viewsets' http_method_names."""
    assert clients.alice.request("HEAD", path).status_code == 405


@pytest.mark.parametrize("path", HEAD_PATHS[:3])
def test_anonymous_head_is_401(clients: Clients, path: str) -> None:
    """Authentication runs before the method check for HEAD too."""
    assert clients.anonymous.request("HEAD", path).status_code == 401


@pytest.mark.parametrize("path", ["/api/chat-sessions/", "/api/chat-threads/", "/api/chat-messages/"])
def test_options_is_allowed_for_authenticated_callers(clients: Clients, path: str) -> None:
    """The viewsets accept OPTIONS (DRF metadata)."""
    response = clients.alice.request("OPTIONS", path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


def test_options_without_credentials_is_401(clients: Clients) -> None:
    """A plain (non-CORS) OPTIONS still goes through authentication."""
    assert_unauthorized(clients.anonymous.request("OPTIONS", "/api/chat-threads/"))


# -- trailing slashes (section 1) -----------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/chat-threads"),
        ("GET", "/api/chat-sessions/current"),
        ("GET", "/api/chat-messages"),
        ("POST", "/api/chat/stream"),
    ],
)
def test_path_without_trailing_slash_is_not_served(clients: Clients, method: str, path: str) -> None:
    """Trailing slashes are required: the route is not answered without one (at most redirected)."""
    response = clients.alice.request(method, path, json={"input": "Hi"})
    assert not response.is_success
    if response.is_redirect:
        assert urlsplit(response.headers["location"]).path == path + "/"
    assert clients.alice.get("/api/chat-threads/").json() == []


# -- UUIDs and datetimes (sections 2.3 and 4.7) ----------------------------------------------
def test_output_uuids_and_datetimes_have_waldur_format(clients: Clients) -> None:
    """UUIDs are 32 lowercase hex; datetimes ISO 8601 with microseconds and Z, everywhere."""
    clients.alice.stream(input="Hi")
    session = clients.alice.get("/api/chat-sessions/current/").json()
    thread = clients.alice.get("/api/chat-threads/").json()[0]
    messages = clients.alice.get("/api/chat-messages/").json()
    for obj, uuid_keys in [
        (session, ["uuid", "user"]),
        (thread, ["uuid", "chat_session"]),
        *[(m, ["uuid", "thread"]) for m in messages],
    ]:
        for key in uuid_keys:
            assert HEX32.match(obj[key]), (key, obj[key])
        for key in ("created", "modified"):
            if key in obj:
                assert DATETIME.match(obj[key]), (key, obj[key])


# -- CORS (clients notes section 5.1) --------------------------------------------------------
HOMEPORT_HEADERS = ["Authorization", "Content-Type", "Accept-Language", "X-IMPERSONATED-USER-UUID"]


def preflight(client: Client, origin: str, method: str, path: str = "/api/chat/stream/") -> httpx.Response:
    return client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(h.lower() for h in HOMEPORT_HEADERS),
        },
    )


def header_set(response: httpx.Response, name: str) -> set[str]:
    return {part.strip().lower() for part in response.headers.get(name, "").split(",") if part.strip()}


@pytest.mark.parametrize("origin", ["http://localhost:8001", "https://homeport.example.org", "http://127.0.0.1:3000"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
def test_preflight_from_any_origin_is_allowed(clients: Clients, origin: str, method: str) -> None:
    """Browsers send no token on preflight; homeport's headers and methods must all be allowed."""
    response = preflight(clients.anonymous, origin, method)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", origin)
    assert {h.lower() for h in HOMEPORT_HEADERS} <= header_set(response, "access-control-allow-headers")
    assert method.lower() in header_set(response, "access-control-allow-methods")


@pytest.mark.parametrize("path", ["/api/chat-threads/", "/api/chat-sessions/"])
def test_cors_response_exposes_pagination_headers(clients: Clients, path: str) -> None:
    """Homeport's tables read X-Result-Count and Link, so they must be exposed."""
    response = clients.alice.get(path, headers={"Origin": "http://localhost:8001"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:8001")
    assert {"x-result-count", "link"} <= header_set(response, "access-control-expose-headers")


def test_cors_headers_on_errors_and_streams(clients: Clients) -> None:
    """A browser can read a 401 and a stream only if they carry the CORS headers too."""
    origin = {"Origin": "http://localhost:8001"}
    assert "access-control-allow-origin" in clients.anonymous.get("/api/chat-threads/", headers=origin).headers
    assert "access-control-allow-origin" in clients.alice.stream(input="Hi", headers=origin).response.headers


# -- homeport boot endpoints (clients notes sections 5.2-5.3) --------------------------------
def test_configuration_enables_the_assistant_without_auth(clients: Clients) -> None:
    """Homeport hides the assistant unless both the role setting and the feature flag allow it."""
    response = clients.anonymous.get("/api/configuration/")
    assert response.status_code == 200
    config = response.json()
    core = config["WALDUR_CORE"]
    assert core["AI_ASSISTANT_ENABLED_ROLES"] == "all"
    assert "LOCAL_SIGNIN" in core["AUTHENTICATION_METHODS"]
    assert not core.get("OIDC_ACCESS_TOKEN_ENABLED", False)
    assert config["FEATURES"]["support"]["enable_llm_assistant"] is True
    assert config["LANGUAGES"]
    assert config["LANGUAGE_CODE"] == "en"


@pytest.mark.parametrize(
    ("name", "full_name", "is_staff", "is_support"),
    [
        ("alice", "Alice Smith", False, False),
        ("bob", "Bob Jones", False, False),
        ("staff", "Sam Staff", True, False),
        ("support", "Sue Support", False, True),
    ],
)
def test_users_me_describes_the_caller(
    clients: Clients, name: str, full_name: str, is_staff: bool, is_support: bool
) -> None:
    """Homeport reads the caller's identity and roles from here after login."""
    response = user_of(clients, name).get("/api/users/me/")
    assert response.status_code == 200
    me = response.json()
    assert {
        "url",
        "uuid",
        "username",
        "full_name",
        "email",
        "is_staff",
        "is_support",
        "is_active",
        "token_expires_at",
        "permissions",
    } <= set(me)
    assert (me["uuid"], me["username"], me["full_name"]) == (USER_UUIDS[name], name, full_name)
    assert (me["is_staff"], me["is_support"], me["is_active"], me["permissions"]) == (is_staff, is_support, True, [])
    assert me["email"] == f"{name}@example.com"


def test_users_me_without_token_is_401(clients: Clients) -> None:
    """Homeport treats this 401 as "logged out"."""
    assert clients.anonymous.get("/api/users/me/").status_code == 401


def test_password_login_returns_a_working_token(clients: Clients) -> None:
    """Homeport's login form: the returned token must authenticate."""
    response = clients.anonymous.post("/api-auth/password/", json={"username": "alice", "password": "alice"})
    assert response.status_code == 200
    token = response.json()["token"]
    assert list(response.json()) == ["token"]
    assert clients.with_token(token).get("/api/users/me/").json()["username"] == "alice"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "alice"},
        {"username": "alice"},
        {},
    ],
    ids=["wrong-password", "unknown-user", "no-password", "empty"],
)
def test_bad_login_is_401(clients: Clients, body: dict[str, str]) -> None:
    """Homeport shows this exact message on a failed login."""
    response = clients.anonymous.post("/api-auth/password/", json=body)
    assert response.status_code == 401
    assert response.json() == {"detail": "Unable to log in with provided credentials."}


def test_identity_provider_probe_is_404(clients: Clients) -> None:
    """Only a 204 would send homeport to an identity provider."""
    response = clients.anonymous.get(
        "/api-auth/default/init/", params={"return_url": "http://localhost:8001/", "probe": "1"}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/roles/",
        "/api/marketplace-categories/",
        "/api/marketplace-category-groups/",
        "/api/external-links/",
        "/api/admin-announcements/",
    ],
)
def test_other_api_routes_answer_an_empty_list(clients: Clients, path: str) -> None:
    """Homeport's boot calls get `200 []` with `X-Result-Count: 0`."""
    response = clients.alice.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-result-count"] == "0"
    assert response.json() == []


def test_head_count_request_gets_the_count_header(clients: Clients) -> None:
    """Homeport's HEAD count requests only read X-Result-Count."""
    assert clients.alice.request("HEAD", "/api/roles/").headers["x-result-count"] == "0"


def test_chat_routes_keep_working_when_chat_is_disabled(clients: Clients) -> None:
    """Only the stream is gated by the feature flag in the 8.0.5 era (section 5.3)."""
    thread = clients.alice.stream(input="Hi").thread_uuid
    configure(clients, chat_enabled=False)
    for path in (
        "/api/chat-sessions/",
        "/api/chat-sessions/current/",
        "/api/chat-threads/",
        f"/api/chat-threads/{thread}/",
        "/api/chat-messages/",
    ):
        assert clients.alice.get(path).status_code == 200, path
    assert clients.alice.post(f"/api/chat-threads/{thread}/archive/").status_code == 204


# -- control API (spec/mock-control.yaml) ---------------------------------------------------
def control(clients: Clients, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return clients.anonymous.request(method, f"/__mock__/{path}", **kwargs)


def journal(clients: Clients, **params: Any) -> dict[str, Any]:
    response = control(clients, "GET", "requests", params=params)
    assert response.status_code == 200, response.text
    return response.json()


DEFAULT_CONFIG = {
    "chat_enabled": True,
    "upstream_url_configured": True,
    "upstream_token_configured": True,
    "system_token_limits": DEFAULT_LIMITS,
    "token_limits": {},
    "token_usage": {},
}


def assert_default_config(config: dict[str, Any]) -> None:
    """Responses may carry extra keys; the six documented ones must hold their defaults."""
    assert {key: config[key] for key in DEFAULT_CONFIG} == DEFAULT_CONFIG


def test_health(clients: Clients) -> None:
    """Harnesses poll this before running a suite."""
    response = control(clients, "GET", "health")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "spec_version": "8.0.5"})


def test_config_defaults(clients: Clients) -> None:
    """A fresh mock is a healthy, unlimited deployment."""
    assert_default_config(control(clients, "GET", "config").json())


def test_config_patch_returns_and_keeps_the_whole_configuration(clients: Clients) -> None:
    """PATCH answers the whole resulting configuration, which GET then returns too."""
    patched = configure(clients, chat_enabled=False, token_usage={"alice": {"daily": 5, "weekly": 6, "monthly": 7}})
    assert patched == control(clients, "GET", "config").json()
    assert patched["chat_enabled"] is False
    assert patched["upstream_url_configured"] is True
    assert patched["token_usage"] == {"alice": {"daily": 5, "weekly": 6, "monthly": 7}}


@pytest.mark.parametrize(
    ("patches", "expected"),
    [
        (
            [{"system_token_limits": {"daily_limit": 10}}],
            {"system_token_limits": {"daily_limit": 10, "weekly_limit": -1, "monthly_limit": -1}},
        ),
        (
            [{"token_limits": {"alice": {"daily_limit": 100}}}, {"token_limits": {"bob": {"weekly_limit": 5}}}],
            {
                "token_limits": {
                    "alice": {"daily_limit": 100, "weekly_limit": None, "monthly_limit": None},
                    "bob": {"daily_limit": None, "weekly_limit": 5, "monthly_limit": None},
                }
            },
        ),
        (
            [{"token_limits": {"alice": {"daily_limit": 100}}}, {"token_limits": {"alice": {"weekly_limit": 200}}}],
            {"token_limits": {"alice": {"daily_limit": 100, "weekly_limit": 200, "monthly_limit": None}}},
        ),
        (
            [{"token_usage": {"alice": {"daily": 5}}}, {"token_usage": {"alice": {"weekly": 7}}}],
            {"token_usage": {"alice": {"daily": 5, "weekly": 7, "monthly": 0}}},
        ),
        (
            [
                {"token_limits": {"alice": {"daily_limit": 1}, "bob": {"daily_limit": 2}}},
                {"token_limits": {"alice": None}},
            ],
            {"token_limits": {"bob": {"daily_limit": 2, "weekly_limit": None, "monthly_limit": None}}},
        ),
        (
            [{"token_usage": {"alice": {"daily": 1, "weekly": 1, "monthly": 1}}}, {"token_usage": {"alice": None}}],
            {"token_usage": {}},
        ),
    ],
    ids=[
        "system-key-by-key",
        "users-merged",
        "user-entry-key-by-key",
        "usage-key-by-key",
        "null-removes-limits",
        "null-removes-usage",
    ],
)
def test_config_patch_merge_rules(clients: Clients, patches: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    """JSON Merge Patch semantics as documented on PATCH /__mock__/config."""
    for patch in patches:
        config = configure(clients, **patch)
    assert {key: config[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("patch", "fields"),
    [
        ({"warp_factor": 3}, {"warp_factor"}),
        ({"chat_enabled": "no"}, {"chat_enabled"}),
        ({"upstream_url_configured": 1}, {"upstream_url_configured"}),
        ({"upstream_token_configured": None}, {"upstream_token_configured"}),
        ({"system_token_limits": {**DEFAULT_LIMITS, "daily_limit": -2}}, {"system_token_limits"}),
        ({"system_token_limits": {**DEFAULT_LIMITS, "hourly_limit": 5}}, {"system_token_limits"}),
        ({"system_token_limits": {**DEFAULT_LIMITS, "daily_limit": "10"}}, {"system_token_limits"}),
        ({"token_limits": {"alice": {"daily_limit": "many"}}}, {"token_limits"}),
        ({"token_limits": {"alice": {"daily_limit": -5}}}, {"token_limits"}),
        ({"token_limits": ["alice"]}, {"token_limits"}),
        ({"token_usage": {"alice": {"daily": -1}}}, {"token_usage"}),
        ({"token_usage": {"alice": {"yearly": 1}}}, {"token_usage"}),
        ({"chat_enabled": False, "warp_factor": 1}, {"warp_factor"}),
        ({"chat_enabled": "x", "warp_factor": 1}, {"chat_enabled", "warp_factor"}),
    ],
)
def test_config_patch_rejects_bad_values_per_field_and_changes_nothing(
    clients: Clients, patch: dict[str, Any], fields: set[str]
) -> None:
    """Bad patches get DRF-style per-field errors and are not half-applied."""
    response = control(clients, "PATCH", "config", json=patch)
    assert response.status_code == 400, response.text
    errors = response.json()
    assert set(errors) == fields
    assert all(isinstance(v, list) and v and all(isinstance(m, str) for m in v) for v in errors.values())
    assert_default_config(control(clients, "GET", "config").json())


def test_config_patch_boolean_message(clients: Clients) -> None:
    """The documented DRF wording for a wrong type."""
    response = control(clients, "PATCH", "config", json={"chat_enabled": "yes"})
    assert response.json() == {"chat_enabled": ["Must be a valid boolean."]}


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"x"'])
def test_config_patch_rejects_a_body_that_is_not_an_object(clients: Clients, body: bytes) -> None:
    """Only a JSON object is a patch."""
    response = control(clients, "PATCH", "config", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert_default_config(control(clients, "GET", "config").json())


def test_reset_restores_seed_data_configuration_and_journal(clients: Clients) -> None:
    """Reset puts back data, settings and journal; its body is ignored."""
    session = clients.alice.get("/api/chat-sessions/current/").json()["uuid"]
    clients.alice.stream(input="Hi")
    configure(clients, chat_enabled=False, token_limits={"alice": {"daily_limit": 3}})
    response = control(clients, "POST", "reset", content=b"{garbage", headers={"Content-Type": "application/json"})
    assert (response.status_code, response.content) == (204, b"")
    assert_default_config(control(clients, "GET", "config").json())
    assert journal(clients)["requests"] == []
    assert clients.alice.get("/api/chat-threads/").json() == []
    assert clients.alice.get("/api/chat-messages/").json() == []
    assert clients.staff.get("/api/chat-sessions/").json() == []
    assert clients.alice.get("/api/chat-sessions/current/").json()["uuid"] != session
    assert clients.alice.stream(input="Hi").status_code == 200


def test_journal_records_requests_newest_last(clients: Clients) -> None:
    """Entries carry method, path, raw query, status and user; control calls are not recorded."""
    clients.alice.get("/api/chat-threads/", params={"is_archived": "false", "page_size": "100"})
    clients.anonymous.get("/api/chat-messages/")
    clients.with_token("bad").get("/api/chat-messages/")
    clients.bob.stream(input="Hi")
    control(clients, "GET", "config")
    entries = journal(clients)["requests"]
    assert [(e["method"], e["path"], e["query"], e["status"], e["user"]) for e in entries] == [
        ("GET", "/api/chat-threads/", "is_archived=false&page_size=100", 200, "alice"),
        ("GET", "/api/chat-messages/", "", 401, None),
        ("GET", "/api/chat-messages/", "", 401, None),
        ("POST", "/api/chat/stream/", "", 200, "bob"),
    ]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert len({e["seq"] for e in entries}) == 4
    assert all(DATETIME.match(e["time"]) and e["duration_ms"] is not None and e["duration_ms"] >= 0 for e in entries)


def test_journal_limit_returns_newest_entries_oldest_first(clients: Clients) -> None:
    """`limit` keeps the newest entries, still oldest first; `count` is the whole journal."""
    for path in ("/api/roles/", "/api/chat-threads/", "/api/chat-messages/"):
        clients.alice.get(path)
    answer = journal(clients, limit=2)
    assert [e["path"] for e in answer["requests"]] == ["/api/chat-threads/", "/api/chat-messages/"]
    assert answer["limit"] == 2
    assert answer["count"] == 3


@pytest.mark.parametrize("limit", ["abc", "0", "-1"])
def test_journal_rejects_a_bad_limit(clients: Clients, limit: str) -> None:
    """`limit` is an integer >= 1."""
    response = control(clients, "GET", "requests", params={"limit": limit})
    assert response.status_code == 400
    assert list(response.json()) == ["limit"]


def test_journal_clear_and_sequence_restart(clients: Clients) -> None:
    """DELETE empties the journal; after a reset the sequence starts at 1 again."""
    clients.alice.get("/api/roles/")
    assert (control(clients, "DELETE", "requests").status_code, journal(clients)["requests"]) == (204, [])
    clients.alice.get("/api/roles/")
    control(clients, "POST", "reset")
    clients.alice.get("/api/roles/")
    assert [e["seq"] for e in journal(clients)["requests"]] == [1]


@pytest.fixture
def small_journal_clients() -> Iterator[Clients]:
    """A mock whose journal keeps three entries, to see it drop the oldest."""
    app = create_app(ServerOptions(validate_responses=True, speed=0, journal_limit=3))
    with clients_for(app) as made:
        yield made
    assert not app.violations.drain()


def test_journal_is_bounded(small_journal_clients: Clients) -> None:
    """The journal drops the oldest entries beyond its capacity."""
    clients = small_journal_clients
    for index in range(5):
        clients.alice.get(f"/api/roles-{index}/")
    answer = journal(clients)
    assert [e["path"] for e in answer["requests"]] == ["/api/roles-2/", "/api/roles-3/", "/api/roles-4/"]
    assert answer["count"] == 3
