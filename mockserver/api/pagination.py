"""Waldur's LinkHeaderPagination: bare arrays, `X-Result-Count` and an RFC 8288 `Link` header."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from starlette.datastructures import URL, QueryParams

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


def _without_page(url: URL) -> str:
    return str(url.remove_query_params("page"))


def paginate(items: Sequence[T], url: URL) -> tuple[list[T], dict[str, str]]:
    """One page of `items` and the headers that describe it; 404 "Invalid page." when out of range."""
    query = QueryParams(url.query)
    size = page_size(query.get("page_size"))
    pages = max(1, math.ceil(len(items) / size))
    number = page_number(query.get("page"), pages)
    start = (number - 1) * size
    first = _without_page(url)  # once: every link to page 1 is this one

    def page_link(page: int) -> str:
        return first if page == 1 else str(url.include_query_params(page=page))

    links = [(first, "first")]
    if number > 1:
        links.append((page_link(number - 1), "prev"))
    if number < pages:
        links.append((page_link(number + 1), "next"))
    links.append((page_link(pages), "last"))
    headers = {
        "X-Result-Count": str(len(items)),
        "Link": ", ".join(f'<{target}>; rel="{rel}"' for target, rel in links),
    }
    return list(items[start : start + size]), headers
