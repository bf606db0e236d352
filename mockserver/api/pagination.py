"""Waldur's LinkHeaderPagination: bare arrays, `X-Result-Count` and an RFC 8288 `Link` header."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import URL

from mockserver.errors import NotFound

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 300


def page_size(raw: str | None) -> int:
    """Invalid or non-positive values fall back to the default; larger ones are capped."""
    try:
        size = int(raw) if raw else DEFAULT_PAGE_SIZE
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)


def page_number(raw: str | None, pages: int) -> int:
    if not raw:
        return 1
    if raw == "last":
        return pages
    try:
        number = int(raw)
    except ValueError:
        raise NotFound("Invalid page.") from None
    if number < 1 or number > pages:
        raise NotFound("Invalid page.")
    return number


def _last(pairs: list[tuple[str, str]], name: str) -> str | None:
    """The value a QueryParams lookup gives: the last one sent."""
    return next((value for key, value in reversed(pairs) if key == name), None)


def paginate(items: Sequence[T], url: URL) -> tuple[list[T], dict[str, str]]:
    """One page of `items` and the headers that describe it; 404 "Invalid page." when out of range."""
    target = str(url)
    page = _cached_page if len(target) <= CACHED_URL_LENGTH else _page
    start, size, headers = page(target, len(items))
    return list(items[start : start + size]), dict(headers)


def _page(url: str, count: int) -> tuple[int, int, tuple[tuple[str, str], ...]]:
    """Where the page starts, its size, and its headers: a function of the URL and the count
    only, so a client polling one page need not rebuild its links every time."""
    parsed = URL(url)
    # Parsed once for the page parameters and every link: the same pairs Starlette's
    # remove_query_params and include_query_params would parse for each link again.
    pairs = parse_qsl(parsed.query, keep_blank_values=True)
    size = page_size(_last(pairs, "page_size"))
    pages = max(1, math.ceil(count / size))
    number = page_number(_last(pairs, "page"), pages)
    others = [(key, value) for key, value in pairs if key != "page"]
    first = str(parsed.replace(query=urlencode(others)))  # once: every link to page 1 is this one

    def page_link(page: int) -> str:
        # include_query_params(page=N): the old `page` values go, the new one comes last.
        return first if page == 1 else str(parsed.replace(query=urlencode([*others, ("page", str(page))])))

    links = [(first, "first")]
    if number > 1:
        links.append((page_link(number - 1), "prev"))
    if number < pages:
        links.append((page_link(number + 1), "next"))
    links.append((page_link(pages), "last"))
    link = ", ".join(f'<{target}>; rel="{rel}"' for target, rel in links)
    return (number - 1) * size, size, (("X-Result-Count", str(count)), ("Link", link))


# Bounded in entries and in the size of each: a URL can be as long as the header limit.
CACHED_URL_LENGTH = 2048
_cached_page = functools.lru_cache(maxsize=256)(_page)
