"""Which recorded interaction answers a request: method, path, query, body (JSON as data) and user alias.

Several recordings of the same request are served in the order recorded; once all were
served, the last one keeps answering. A miss names the closest recording and how it differs.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mockserver.replay.cassette import Interaction, RecordedRequest


@dataclass(frozen=True)
class Key:
    """A request in comparable form."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]  # sorted: order of parameters does not matter
    body: Any  # parsed JSON, or the text, or None
    user: str | None

    @classmethod
    def of(cls, request: RecordedRequest) -> Key:
        return cls(
            request.method.upper(), request.path, tuple(sorted(request.query)), _body(request.body), request.user
        )


def _body(text: str | None) -> Any:
    if not text:
        return None
    try:
        return _Hashable(json.loads(text))
    except ValueError:
        return text


class _Hashable:
    """JSON data compared as data (key order and spacing do not matter)."""

    def __init__(self, data: Any):
        self.data = data
        self._canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Hashable) and other._canonical == self._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __repr__(self) -> str:
        return self._canonical


@dataclass(frozen=True)
class Miss:
    closest: RecordedRequest | None
    differences: list[str]


class Matcher:
    """Thread-safe cursors over the cassette's interactions, one per distinct request."""

    def __init__(self, interactions: list[Interaction]):
        self._by_key: dict[Key, list[Interaction]] = {}
        for interaction in interactions:
            self._by_key.setdefault(Key.of(interaction.request), []).append(interaction)
        self._served: Counter[Key] = Counter()
        self._lock = threading.Lock()

    def take(self, request: RecordedRequest) -> Interaction | Miss:
        key = Key.of(request)
        with self._lock:
            recordings = self._by_key.get(key)
            if not recordings:
                return self._miss(key)
            index = min(self._served[key], len(recordings) - 1)
            self._served[key] += 1
            return recordings[index]

    def rewind(self) -> None:
        with self._lock:
            self._served.clear()

    def _miss(self, key: Key) -> Miss:
        if not self._by_key:
            return Miss(None, ["the cassette has no interactions"])
        scored = [(len(differences(key, other)), index, other) for index, other in enumerate(self._by_key)]
        _, _, closest = min(scored, key=lambda item: (item[0], item[1]))
        return Miss(self._by_key[closest][0].request, differences(key, closest))


def differences(actual: Key, recorded: Key) -> list[str]:
    """In words, how a request differs from a recording (empty: it matches)."""
    out = []
    if actual.method != recorded.method:
        out.append(f"method: {actual.method}, recorded {recorded.method}")
    if actual.path != recorded.path:
        out.append(f"path: {actual.path}, recorded {recorded.path}")
    if actual.query != recorded.query:
        out.append(f"query: {_query(actual.query)}, recorded {_query(recorded.query)}")
    if actual.body != recorded.body:
        out.append(f"body: {_show(actual.body)}, recorded {_show(recorded.body)}")
    if actual.user != recorded.user:
        out.append(f"user: {actual.user or 'anonymous'}, recorded {recorded.user or 'anonymous'}")
    return out


def _query(pairs: tuple[tuple[str, str], ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs) or "(none)"


def _show(body: Any) -> str:
    text = "(empty)" if body is None else repr(body) if isinstance(body, _Hashable) else json.dumps(body)
    return text if len(text) <= 200 else text[:197] + "..."
