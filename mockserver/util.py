"""Small helpers shared across layers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def normalize_uuid(value: str) -> str:
    """Waldur's StringUUID form: 32 lowercase hex characters; input may carry hyphens."""
    return uuid.UUID(value).hex


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`, DRF's default (microseconds whenever they are non-zero)."""
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


# Key in an ASGI scope's state: a list any layer may append a warning about this request to
# (the journal shows them in the request's entry).
REQUEST_WARNINGS = "request_warnings"
