"""Small helpers shared across layers."""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime

# The one uuid check: 32 hex digits, with or without the four hyphens (the spellings the contract
# allows; `uuid.UUID` would also take braces, `urn:uuid:` and surrounding whitespace).
UUID_SPELLING = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def is_uuid_spelling(value: str) -> bool:
    return UUID_SPELLING.fullmatch(value) is not None


def normalize_uuid(value: str) -> str:
    """Waldur's StringUUID form: 32 lowercase hex characters; input may carry hyphens."""
    return uuid.UUID(value).hex


@functools.lru_cache(maxsize=4096)
def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`, DRF's default (microseconds whenever they are non-zero).

    Cached: a page of threads formats the same timestamps on every poll (two per thread), and
    equal datetimes format alike (aware ones are equal only as the same instant)."""
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


# Key in an ASGI scope's state: a list any layer may append a warning about this request to
# (the journal shows them in the request's entry).
REQUEST_WARNINGS = "request_warnings"


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problems(value: str) -> list[str]:
    """What DRF's CharField validators say about characters no text field may hold.

    NUL (`ProhibitNullCharactersValidator`) and lone surrogates such as a JSON `\\ud800`
    escape (`ProhibitSurrogateCharactersValidator`, which names the first one): a surrogate
    cannot be encoded as UTF-8, so once stored it would break every later answer showing it.
    """
    problems = []
    if "\x00" in value:
        problems.append("Null characters are not allowed.")
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        problems.append(f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}.")
    return problems
