"""Responses rendered as DRF renders them: compact JSON, raw UTF-8, exact content type."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from mockserver.errors import ApiError


def render_json(data: Any) -> bytes:
    """Raw UTF-8 like DRF; text UTF-8 cannot hold (a lone surrogate echoed back in an error
    message) is escaped as `\\udXXX` instead, where DRF itself would fail with a 500."""
    text = _RAW_UTF8.encode(data)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _ESCAPED.encode(data).encode("ascii")


# Built once: json.dumps with options builds an encoder per call.
_RAW_UTF8 = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ESCAPED = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(render_json(data), status_code=status, headers=headers, media_type="application/json")


def no_content() -> Response:
    """204 with no body and no Content-Type, as DRF sends it."""
    return Response(status_code=204)


def error_response(error: ApiError) -> Response:
    return json_response(error.body, status=error.status_code, headers=error.headers)
