"""Who may drive the control API: scripts, curl and pages the mock serves itself; no other web page.

The control API has no authentication (by design) and listens on 127.0.0.1 by default, but
a browser sends requests to loopback on behalf of any page the developer opens. Requests
that need no CORS preflight (a form POST, `fetch` with a `text/plain` body) reach the
server whatever the CORS headers say, so refusing by headers is the only defence:

- `Origin` (sent on every cross-origin request and on every POST) must be the mock's own;
- `Sec-Fetch-Site` (sent by current browsers) must be `same-origin` or `none` (typed URL);
- `Host` must be `localhost`, an IP address, the server's own name or one allowed by the
  operator: DNS rebinding makes an attacker's page same-origin with the mock, but its
  requests then carry the attacker's host name.

Requests without `Origin` and `Sec-Fetch-Site` (curl, scripts, test clients) pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mockserver.api.rendering import json_response
from mockserver.control.journal import CONTROL_PREFIX

DEFAULT_PORTS = {"http": 80, "https": 443}
TRUSTED_FETCH_SITES = {"same-origin", "none"}
WHO_MAY = "the control API answers scripts, curl and pages served by the mock itself, not other web pages"


class ControlOriginGuard:
    """ASGI middleware: 403 `{"detail": ...}` for a control request a foreign web page could have sent."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()):
        self.app = app
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CONTROL_PREFIX):
            reason = refusal(scope, self.allowed_hosts)
            if reason is not None:
                await json_response({"detail": reason}, status=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refusal(scope: Scope, allowed_hosts: frozenset[str]) -> str | None:
    """Why this control request is refused, or None when it may go ahead."""
    headers = Headers(scope=scope)
    host = headers.get("host")
    if host is not None and not _trusted_host(_split_host(host)[0], scope, allowed_hosts):
        return (
            f"Host {host!r} is not allowed for the control API (DNS rebinding protection): "
            "use localhost or an IP address, or start the mock with --allow-host NAME."
        )
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in TRUSTED_FETCH_SITES:
        return f"Cross-origin request refused (Sec-Fetch-Site: {site}): {WHO_MAY}."
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, host, scope.get("scheme", "http")):
        return f"Cross-origin request refused (Origin: {origin}): {WHO_MAY}."
    return None


def _trusted_host(name: str, scope: Scope, allowed_hosts: frozenset[str]) -> bool:
    """Names no attacker can point at the mock: localhost, IP literals, the server's own, the allowed."""
    server = scope.get("server")
    own = str(server[0]).lower() if server else None
    return name in ("localhost", own) or name in allowed_hosts or _is_ip(name)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_host(value: str) -> tuple[str, int | None]:
    """`Host` header -> (lower-case name, port); `[::1]:8000` -> ("::1", 8000). Port None if absent or bad."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        return (parts.hostname or ""), parts.port
    except ValueError:
        return value.strip().lower(), None


def _same_origin(origin: str, host: str | None, scheme: str) -> bool:
    """`Origin` names the mock itself (`null`, from sandboxed frames and files, never does)."""
    if host is None:
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    host_name, host_port = _split_host(host)
    return bool(parts.hostname) and (parts.hostname, origin_port) == (
        host_name,
        host_port or DEFAULT_PORTS.get(scheme),
    )
