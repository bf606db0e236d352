"""Thread and message filters with django-filter's semantics (server notes, section 6.3-6.4).

Schema-level errors (a bad date, uuid or choice) were already turned into 400s by the
validation layer; this module applies the values, including the lenient ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date
from operator import attrgetter

from starlette.datastructures import QueryParams

from mockserver.chat.injection import Severity, severity_range
from mockserver.store import Message, Thread
from mockserver.util import normalize_uuid

_TRUE = {"true", "True", "2"}
_FALSE = {"false", "False", "3"}


def lenient_bool(raw: str | None) -> bool | None:
    """NullBooleanSelect: true/True/2 and false/False/3; anything else means no filter."""
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return None


def _in_band(thread: Thread, severity: Severity) -> bool:
    if severity == "none":
        return not thread.is_flagged
    low, high = severity_range(severity)
    return thread.is_flagged and low <= thread.max_injection_score < high


def _matches_query(thread: Thread, text: str) -> bool:
    needle = text.lower()
    owner = thread.owner
    haystack = (thread.name, owner.username, owner.first_name, owner.last_name, owner.email)
    return any(needle in value.lower() for value in haystack)


def _same_utc_date(moment_attr: str, raw: str) -> Callable[[Thread], bool]:
    wanted = date.fromisoformat(raw)
    return lambda t: getattr(t, moment_attr).astimezone(UTC).date() == wanted


def _is_archived(thread: Thread) -> bool:
    return thread.is_archived


def _is_flagged(thread: Thread) -> bool:
    return thread.is_flagged


def _equals(getter: Callable[[Thread], bool], wanted: bool) -> Callable[[Thread], bool]:
    return lambda thread: getter(thread) == wanted


ORDERINGS = {"created", "-created", "modified", "-modified"}


def filter_threads(threads: Sequence[Thread], query: QueryParams) -> Sequence[Thread]:
    tests: list[Callable[[Thread], bool]] = []
    for name, getter in (("is_archived", _is_archived), ("is_flagged", _is_flagged)):
        wanted = lenient_bool(query.get(name))
        if wanted is not None:
            tests.append(_equals(getter, wanted))
    if severity := query.get("max_severity"):
        tests.append(lambda t: _in_band(t, severity))  # type: ignore[arg-type]
    for name in ("created", "modified"):
        if raw := query.get(name):
            tests.append(_same_utc_date(name, raw))
    if text := query.get("query"):
        tests.append(lambda t: _matches_query(t, text))
    if owner := query.get("user"):
        wanted_owner = normalize_uuid(owner)
        tests.append(lambda t: t.owner.uuid == wanted_owner)
    if not tests:
        return threads  # no copy: a page of an unfiltered list costs the same at any size
    return [t for t in threads if all(test(t) for test in tests)]


def order_threads(threads: Sequence[Thread], raw: str | None) -> Sequence[Thread]:
    """`o` is a comma list of created/modified with optional `-`; default `-created`.

    `threads` come newest first (the store's order), so the default needs no sort."""
    keys = [k for k in (raw or "").split(",") if k in ORDERINGS] or ["-created"]
    if keys == ["-created"]:
        return threads
    ordered = list(threads)
    for key in reversed(keys):  # stable sorts applied last-key-first give a lexicographic order
        ordered.sort(key=attrgetter(key.lstrip("-")), reverse=key.startswith("-"))
    return ordered


def include_history(raw: str | None, present: bool) -> bool:
    """Absent or false: active messages only; true or any unrecognised value: everything."""
    return present and lenient_bool(raw) is not False


def filter_messages(messages: list[Message], query: QueryParams) -> list[Message]:
    selected: list[Message] = messages
    if not include_history(query.get("include_history"), "include_history" in query):
        selected = [m for m in selected if m.is_active]
    if thread := query.get("thread"):
        wanted = normalize_uuid(thread)
        selected = [m for m in selected if m.thread.uuid == wanted]
    flagged = lenient_bool(query.get("is_flagged"))
    if flagged is not None:
        selected = [m for m in selected if m.is_flagged == flagged]
    return sorted(selected, key=lambda m: m.sequence_index)
