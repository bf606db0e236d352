"""Wire records and their exact encoding (server notes, section 2.3-2.4)."""

from __future__ import annotations

import json
from typing import Any

Record = dict[str, Any]

CANNED_REFUSAL = (
    "I'm sorry, I can't help with that request. I can assist with Waldur cloud management tasks "
    "such as managing resources, projects, and quotas. Please try again with a different question."
)
UPSTREAM_INTERRUPTED = "Chat processing was interrupted. Please try again later."


def encode_record(record: Record) -> bytes:
    """One compact JSON object, non-ASCII escaped, newline-terminated, as Waldur writes it."""
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def thread_record(thread_uuid: str) -> Record:
    return {"m": {"thread_uuid": thread_uuid}}


def uuids_record(assistant_message_uuid: str, user_message_uuid: str | None) -> Record:
    meta: dict[str, str] = {}
    if user_message_uuid is not None:
        meta["user_message_uuid"] = user_message_uuid
    meta["assistant_message_uuid"] = assistant_message_uuid
    return {"m": meta}


def markdown(text: str) -> Record:
    return {"k": "markdown", "c": text}


def error(message: str = UPSTREAM_INTERRUPTED) -> Record:
    return {"e": message}
