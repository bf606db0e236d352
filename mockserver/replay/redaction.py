"""Secrets never reach a cassette: tokens become stable aliases, named headers and fields a placeholder.

The same `Redactor` runs when recording and, with the names the cassette lists, on every
request at replay, so a request is compared with its recording in redacted form.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

from mockserver.redaction import SECRET_HEADERS
from mockserver.replay.cassette import RecordedRequest

PLACEHOLDER = "[redacted]"
TOKEN_PLACEHOLDER = "[token]"  # where a caller's token reappeared; replay puts the replaying caller's token back
TOKEN_QUERY = "x-auth-token"  # Waldur also reads the token from this query parameter
ALWAYS_REDACTED = SECRET_HEADERS  # the one list of credential headers (journal, access log, cassettes)
# Request headers kept in a cassette (besides redacted ones): what changes Waldur's or the mock's answer.
KEPT_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "x-impersonated-user-uuid",
        "x-mock-scenario",
        "x-mock-fault",
        "origin",
    }
)
# Response headers that describe the connection, not the answer: never recorded nor replayed.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server", "upgrade", "te", "trailer"}
)


class Redactor:
    """Replaces secrets; assigns `user-1`, `user-2`, ... to tokens in the order they are first seen."""

    def __init__(self, extra_names: tuple[str, ...] = ()):
        self.extra = frozenset(name.lower() for name in extra_names)
        self._aliases: dict[str, str] = {}

    def alias(self, token: str | None) -> str | None:
        if not token:
            return None
        if token not in self._aliases:
            self._aliases[token] = f"user-{len(self._aliases) + 1}"
        return self._aliases[token]

    def scrub_tokens(self, text: str | None) -> str | None:
        """Every token seen so far, wherever it reappears (a `Link` URL with `?x-auth-token=`, an echo)."""
        if not text:
            return text
        for token in self._aliases:
            text = text.replace(token, TOKEN_PLACEHOLDER)
        return text

    def request(
        self, scope: Scope, headers: list[tuple[str, str]], query: list[tuple[str, str]], body: bytes, user: str | None
    ) -> RecordedRequest:
        """A request in its recorded (redacted) form: what is written when recording, compared at replay."""
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        return RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=self.query(query),
            headers=self.request_headers(headers),
            user=user,
            body=self.body(body.decode("utf-8", errors="replace") if body else None, content_type),
        )

    def request_headers(self, headers: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """The headers that matter, secrets replaced (Authorization is kept as the alias only)."""
        kept = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == "authorization":
                continue
            if lowered in ALWAYS_REDACTED or lowered in self.extra:
                kept.append((lowered, PLACEHOLDER))
            elif lowered in KEPT_REQUEST_HEADERS:
                kept.append((lowered, value))
        return tuple(kept)

    def response_headers(self, headers: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple(
            (
                name.lower(),
                PLACEHOLDER
                if name.lower() in ALWAYS_REDACTED or name.lower() in self.extra
                else self.scrub_tokens(value) or "",
            )
            for name, value in headers
            if name.lower() not in HOP_BY_HOP
        )

    def query(self, pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """Query pairs without the token (it is the caller's alias) and with named parameters redacted."""
        return tuple(
            (name, PLACEHOLDER if name.lower() in self.extra else value)
            for name, value in pairs
            if name.lower() != TOKEN_QUERY
        )

    def body(self, text: str | None, content_type: str) -> str | None:
        """A body without tokens, and (JSON) with named fields replaced at any depth."""
        text = self.scrub_tokens(text)
        if not text or not self.extra or "json" not in content_type.lower():
            return text
        try:
            data = json.loads(text)
        except ValueError:
            return text
        return json.dumps(self._scrub(data), ensure_ascii=False, separators=(",", ":"))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: PLACEHOLDER if k.lower() in self.extra else self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        return value

    def stream_line(self, text: str) -> str:
        """A stream line without tokens, and (an NDJSON record) with named fields replaced."""
        text = self.scrub_tokens(text) or ""
        if not self.extra or not text.strip():
            return text
        try:
            data = json.loads(text)
        except ValueError:
            return text
        scrubbed = self._scrub(data)
        return text if scrubbed == data else json.dumps(scrubbed, separators=(",", ":"), ensure_ascii=True)


def token_of(headers: list[tuple[str, str]], query: list[tuple[str, str]]) -> str | None:
    """The caller's token: `Authorization: Token X` (or Bearer), else `?x-auth-token=X`."""
    for name, value in headers:
        if name.lower() == "authorization":
            return value.split(" ", 1)[1].strip() if " " in value else value.strip()
    for name, value in query:
        if name.lower() == TOKEN_QUERY:
            return value
    return None


def scope_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]


def scope_query(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
