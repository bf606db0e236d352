"""Request bodies read as Django and DRF read them: the media type, its charset, strict JSON.

One reader for every JSON body the mock accepts (chat API, control API, homeport's login),
so that a body DRF refuses is refused everywhere, with DRF's `JSON parse error - ...`.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from mockserver.errors import ParseError

# DRF has no limit of its own: Python's parser gives up (a 500 there) near 1000 levels.
# No Waldur body nests more than two; 256 leaves room for anything a client could mean.
MAX_JSON_DEPTH = 256


def media_type(header: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` (lower case) and the parameters of a Content-Type, leniently as Django's
    `parse_header_parameters`: a parameter without `=` is skipped, never an error."""
    main, *pieces = header.split(";")
    params: dict[str, str] = {}
    for piece in pieces:
        name, sep, value = piece.partition("=")
        if sep and name.strip():
            params[name.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


# Django honours any charset Python knows, but some of those decode in quadratic time
# (`punycode`: 160 KB took 5.6 s): only these are honoured, anything else reads as UTF-8.
HONOURED_CHARSETS = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-7"}
    | {"ascii", "iso8859-1", "iso8859-15", "cp1252"}
)


def request_charset(params: dict[str, str]) -> str:
    """Django's `HttpRequest.encoding`: the `charset` parameter if known (see above), else UTF-8."""
    try:
        name = codecs.lookup(params.get("charset", "")).name
    except LookupError:
        return "utf-8"
    return name if name in HONOURED_CHARSETS else "utf-8"


def parse_json(raw: bytes, charset: str = "utf-8") -> Any:
    """DRF's JSONParser: decode with the request's charset (no BOM or UTF-16 sniffing, unlike
    `json.loads(bytes)`), refuse `NaN`/`Infinity`, and refuse nesting deeper than MAX_JSON_DEPTH."""
    too_deep = ParseError(f"JSON parse error - nesting deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(raw.decode(charset), parse_constant=_strict_constant)
    except RecursionError:
        raise too_deep from None
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ParseError(f"JSON parse error - {exc}") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise too_deep
    return value


def _strict_constant(name: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {name!r}")


def _deeper_than(value: Any, limit: int) -> bool:
    """Iterative, so that measuring a deep document cannot itself exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
