"""Which values are credentials, and how they are blanked: one rule for the journal, the access
log and anything else that shows a request to a person.

Waldur takes a token from `Authorization: Token ...` or from the `x-auth-token` query parameter;
cookies and login bodies carry the rest. The scheme of an Authorization-like header is kept
(`Token REDACTED`), so a reader still sees how the caller authenticated.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

REDACTED = "REDACTED"
# Headers whose values are credentials; for Authorization-like ones the scheme is kept.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-auth-token", "x-api-key", "x-csrftoken"}
)
SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
SECRET_QUERY_KEYS = frozenset({"x-auth-token"})
SECRET_BODY_FIELDS = frozenset({"password", "token"})  # login bodies and their answers

# A credential inside a URL (the `Link` header, a redirect's `Location`, a query value).
_SECRET_IN_URL = re.compile(r"((?:^|[?&;])(?:" + "|".join(map(re.escape, SECRET_QUERY_KEYS)) + r")=)[^&\s>;,\"]*", re.I)


def redact_urls(text: str) -> str:
    return _SECRET_IN_URL.sub(rf"\1{REDACTED}", text) if "token=" in text.lower() else text


def redact_header(name: str, value: str) -> str:
    """`name` in lower case; the value as is unless it is a credential."""
    if name not in SECRET_HEADERS:
        return value
    scheme, _, credentials = value.strip().partition(" ")
    return f"{scheme} {REDACTED}" if name in SCHEME_HEADERS and credentials else REDACTED


def redact_query(query: str) -> str:
    """The raw query string with the values of credential parameters replaced, pair by pair, so the
    rest keeps its exact spelling (a key written with percent escapes is recognised too)."""
    return "&".join(_redact_pair(pair) for pair in redact_urls(query).split("&"))


def _redact_pair(pair: str) -> str:
    name = pair.partition("=")[0]
    return f"{name}={REDACTED}" if unquote_plus(name).lower() in SECRET_QUERY_KEYS else pair
