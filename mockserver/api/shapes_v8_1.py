"""Waldur 8.1's JSON shapes (messages with blocks, threads with tokens, stats) and thread filters.

Field for field as the 8.1 serializers: messages lose `content` for `blocks`; the five
moderation fields are for staff and support only. Thread token totals are the sums over the
thread's message rows plus the title-generation tokens, null when both parts are null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date
from typing import Any

from starlette.datastructures import QueryParams

from mockserver.api.filters import filter_threads as filter_threads_8_0_5
from mockserver.api.filters import lenient_bool
from mockserver.api.serializers import thread_json as thread_json_8_0_5
from mockserver.chat.blocks import text_block, user_blocks
from mockserver.chat.injection import severity_of
from mockserver.store import ChatStore, Message, Thread, User
from mockserver.util import format_datetime

MODERATION_FIELDS = ("is_flagged", "severity", "injection_categories", "pii_categories", "action_taken")
TOKEN_ORDERINGS = ("input_tokens", "output_tokens", "total_tokens", "models_used")


def message_blocks(message: Message) -> list[dict[str, Any]]:
    """Stored blocks (an answer cancelled before any content has none); a message without
    (a user message, seed data) is its text as one markdown block."""
    if message.blocks is not None:
        return [dict(block) for block in message.blocks]
    if message.role == "user":
        return user_blocks(message.content)
    return [text_block(0, "markdown", message.content)] if message.content else []


def message_json(message: Message, viewer: User) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": message.uuid,
        "thread": message.thread.uuid,
        "role": message.role,
        "blocks": message_blocks(message),
        "warning": message.warning,
        "sequence_index": message.sequence_index,
        "replaces": message.replaces.uuid if message.replaces else None,
        "created": format_datetime(message.created),
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "feedback_score": message.feedback_score,
        "feedback_comment": message.feedback_comment,
        "feedback_category": message.feedback_category,
        "feedback_submitted_at": (
            format_datetime(message.feedback_submitted_at) if message.feedback_submitted_at else None
        ),
    }
    if viewer.sees_everything:
        severity = severity_of(message.injection_score)
        data.update(
            is_flagged=message.is_flagged,
            severity=severity,
            injection_categories=dict(Counter(message.injection_categories)),
            pii_categories={},
            action_taken=_action_taken(message.is_flagged, severity),
        )
    return data


def _action_taken(flagged: bool, severity: str) -> str:
    if not flagged:
        return "allow"
    return "block" if severity in ("high", "critical") else "flag"


def _sum(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def thread_tokens(thread: Thread, store: ChatStore) -> dict[str, int | None]:
    messages = store.thread_messages(thread)
    input_tokens = _sum([*(m.input_tokens for m in messages), thread.title_gen_input_tokens])
    output_tokens = _sum([*(m.output_tokens for m in messages), thread.title_gen_output_tokens])
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": _sum([input_tokens, output_tokens]),
    }


def has_feedback(thread: Thread, store: ChatStore) -> bool:
    return any(m.feedback_score is not None for m in store.thread_messages(thread))


def thread_json(thread: Thread, store: ChatStore) -> dict[str, Any]:
    """8.0.5's fields plus tokens, `models_used` (the mock tracks no models: blank) and `has_feedback`."""
    base = thread_json_8_0_5(thread, store)
    data: dict[str, Any] = {}
    for name, value in base.items():
        data[name] = value
        if name == "message_count":
            data.update(thread_tokens(thread, store))
            data["title_gen_input_tokens"] = thread.title_gen_input_tokens
            data["title_gen_output_tokens"] = thread.title_gen_output_tokens
            data["models_used"] = ""
        elif name == "max_severity":
            data["has_feedback"] = has_feedback(thread, store)
    return data


# -- filters and orderings ------------------------------------------------------
def _day_bound(attr: str, raw: str, after: bool) -> Callable[[Thread], bool]:
    bound = date.fromisoformat(raw)

    def test(thread: Thread) -> bool:
        day = getattr(thread, attr).astimezone(UTC).date()
        return day >= bound if after else day <= bound

    return test


def _token_bound(store: ChatStore, name: str, limit: float, at_least: bool) -> Callable[[Thread], bool]:
    def test(thread: Thread) -> bool:
        value = thread_tokens(thread, store)[name]
        return value is not None and (value >= limit if at_least else value <= limit)

    return test


def filter_threads(threads: list[Thread], query: QueryParams, store: ChatStore, viewer: User) -> list[Thread]:
    """8.0.5's filters minus exact-day `created`/`modified`, plus 8.1's bounds, `has_feedback`, `scope`."""
    kept = {k: v for k, v in query.multi_items() if k not in ("created", "modified")}
    selected = filter_threads_8_0_5(threads, QueryParams(kept))
    tests: list[Callable[[Thread], bool]] = []
    for attr in ("created", "modified"):
        for suffix, after in (("after", True), ("before", False)):
            if raw := query.get(f"{attr}_{suffix}"):
                tests.append(_day_bound(attr, raw, after))
    for name in ("input_tokens", "output_tokens", "total_tokens"):
        for suffix, at_least in (("min", True), ("max", False)):
            if raw := query.get(f"{name}_{suffix}"):
                tests.append(_token_bound(store, name, float(raw), at_least))
    wanted_feedback = lenient_bool(query.get("has_feedback"))
    if wanted_feedback is not None:
        tests.append(lambda t: has_feedback(t, store) == wanted_feedback)
    if query.get("scope") == "own":
        tests.append(lambda t: t.owner.uuid == viewer.uuid)
    return [t for t in selected if all(test(t) for test in tests)]


def order_threads(threads: list[Thread], raw: str | None, store: ChatStore) -> list[Thread]:
    """`o`: created/modified and the token keys, comma separated; null tokens sort as the largest
    value (PostgreSQL: last ascending, first descending). Default `-created`."""
    known = {"created", "modified", *TOKEN_ORDERINGS}
    keys = [k for k in (raw or "").split(",") if k.lstrip("-") in known] or ["-created"]
    ordered = list(threads)
    for key in reversed(keys):
        name = key.lstrip("-")
        ordered.sort(key=lambda t, n=name: _sort_value(t, n, store), reverse=key.startswith("-"))
    return ordered


def _sort_value(thread: Thread, name: str, store: ChatStore) -> tuple[int, Any]:
    if name in ("created", "modified"):
        return (0, getattr(thread, name))
    if name == "models_used":
        return (0, "")
    value = thread_tokens(thread, store)[name]
    return (1, 0) if value is None else (0, value)


def filter_messages_by_feedback(messages: list[Message], query: QueryParams) -> list[Message]:
    wanted = lenient_bool(query.get("feedback_score"))
    return messages if wanted is None else [m for m in messages if m.feedback_score is wanted]


# -- stats ------------------------------------------------------------------------
def stats_json(threads: list[Thread], store: ChatStore) -> dict[str, Any]:
    """Totals over exactly the threads given (the list's filters already applied)."""
    messages = [m for t in threads for m in store.thread_messages(t)]
    tokens = [thread_tokens(t, store) for t in threads]
    positive = sum(1 for m in messages if m.feedback_score is True)
    negative = sum(1 for m in messages if m.feedback_score is False)
    input_total = sum(t["input_tokens"] or 0 for t in tokens)
    output_total = sum(t["output_tokens"] or 0 for t in tokens)
    return {
        "threads_total": len(threads),
        "sessions_total": len({t.session.uuid for t in threads}),
        "users_total": len({t.owner.uuid for t in threads}),
        "messages_total": len(messages),
        "input_tokens_total": input_total,
        "output_tokens_total": output_total,
        "total_tokens": input_total + output_total,
        "flagged_total": sum(1 for t in threads if t.is_flagged),
        "feedback_positive": positive,
        "feedback_negative": negative,
        "satisfaction_rate": positive / (positive + negative) if positive + negative else None,
    }
