"""JSON shapes of sessions, threads and messages, field for field as Waldur's serializers.

Visibility rules that change the shape live here too: the four injection fields are
shown to staff and support only, and `field` sparse fieldsets apply to sessions and
threads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mockserver.chat.deployment import PERIODS, QuotaBook, next_reset
from mockserver.chat.injection import severity_of
from mockserver.store import ChatSession, ChatStore, Message, Thread, User
from mockserver.util import format_datetime

INJECTION_FIELDS = ("is_flagged", "injection_score", "injection_severity", "injection_categories")


def session_json(session: ChatSession) -> dict[str, Any]:
    return {
        "uuid": session.uuid,
        "user": session.user.uuid,
        "user_username": session.user.username,
        "user_full_name": session.user.full_name,
        "created": format_datetime(session.created),
        "modified": format_datetime(session.modified),
    }


def thread_json(thread: Thread, store: ChatStore) -> dict[str, Any]:
    return {
        "uuid": thread.uuid,
        "name": thread.name,
        "chat_session": thread.session.uuid,
        "flags": dict(thread.flags),
        "is_archived": thread.is_archived,
        "message_count": store.message_count(thread),
        "is_flagged": thread.is_flagged,
        "max_severity": severity_of(thread.max_injection_score),
        "user_username": thread.owner.username,
        "user_full_name": thread.owner.full_name,
        "created": format_datetime(thread.created),
        "modified": format_datetime(thread.modified),
    }


def message_json(message: Message, viewer: User) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": message.uuid,
        "thread": message.thread.uuid,
        "role": message.role,
        "content": message.content,
        "sequence_index": message.sequence_index,
        "replaces": message.replaces.uuid if message.replaces else None,
        "created": format_datetime(message.created),
    }
    if viewer.sees_everything:
        data.update(
            is_flagged=message.is_flagged,
            injection_score=message.injection_score,
            injection_severity=severity_of(message.injection_score),
            injection_categories=list(message.injection_categories),
        )
    return data


def restrict_fields(data: dict[str, Any], requested: Sequence[str]) -> dict[str, Any]:
    """`?field=a&field=b`: unknown names are ignored; none valid means every field."""
    chosen = [name for name in requested if name in data]
    return {name: value for name, value in data.items() if name in chosen} if chosen else data


def quota_usage_json(quota: QuotaBook, username: str, now: datetime) -> dict[str, Any]:
    """`TokenQuotaUsageResponse`: limit, usage, remaining, reset_at, system_default per period."""
    data: dict[str, Any] = {}
    for period in PERIODS:
        data[f"{period}_limit"] = quota.own_limit(username, period)
        data[f"{period}_usage"] = quota.used(username, period)
        data[f"{period}_remaining"] = quota.remaining(username, period)
        data[f"{period}_reset_at"] = format_datetime(next_reset(period, now))
        data[f"{period}_system_default"] = quota.system_default(period)
    return data
