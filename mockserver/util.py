"""Small helpers shared across layers."""

from __future__ import annotations

import uuid


def normalize_uuid(value: str) -> str:
    """Waldur's StringUUID form: 32 lowercase hex characters; input may carry hyphens."""
    return uuid.UUID(value).hex
