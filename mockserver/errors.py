"""One exception hierarchy for everything the mock can refuse.

`ApiError` subclasses carry the HTTP status and the exact DRF-shaped body the real
Waldur sends, like DRF's `APIException`: domain code raises them without knowing
how they are rendered. `ConfigurationError` is for bad files and flags at start-up.
"""

from __future__ import annotations

from typing import Any


class MockServerError(Exception):
    """Base of every error raised on purpose by this package."""


class ConfigurationError(MockServerError):
    """A users file, spec, script or flag that cannot be used; reported as one line."""


class ApiError(MockServerError):
    """An error answer in Waldur's shape: `{"detail": ...}`, per-field lists, or a bare list."""

    status_code: int = 400
    default_detail: str = "Invalid input."

    def __init__(self, detail: str | None = None, *, body: Any = None, headers: dict[str, str] | None = None):
        self.body = body if body is not None else {"detail": detail or self.default_detail}
        self.headers = headers or {}
        super().__init__(str(self.body))


class ValidationFailed(ApiError):
    """400 with a body given verbatim: `{"field": ["msg"]}` or `["msg"]` (or `{"field": "msg"}`,
    what DRF sends for a `ValidationError({"field": "msg"})` raised in a view)."""

    status_code = 400

    def __init__(self, body: dict[str, list[str]] | dict[str, str] | list[str]):
        super().__init__(body=body)


class ParseError(ApiError):
    status_code = 400
    default_detail = "Malformed request."


class NotAuthenticated(ApiError):
    status_code = 401
    default_detail = "Authentication credentials were not provided."

    def __init__(self, detail: str | None = None):
        # DRF sends the challenge header on every 401 from TokenAuthentication.
        super().__init__(detail, headers={"WWW-Authenticate": "Token"})


class AuthenticationFailed(NotAuthenticated):
    default_detail = "Invalid token."


class PermissionDenied(ApiError):
    status_code = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(ApiError):
    status_code = 404
    default_detail = "Not found."


class MethodNotAllowed(ApiError):
    status_code = 405

    def __init__(self, method: str):
        super().__init__(f'Method "{method}" not allowed.')


class Conflict(ApiError):
    status_code = 409


class UnsupportedMediaType(ApiError):
    status_code = 415

    def __init__(self, media_type: str):
        super().__init__(f'Unsupported media type "{media_type}" in request.')


class FailedDependency(ApiError):
    status_code = 424
    default_detail = "Extension is disabled."


class UnprocessableEntity(ApiError):
    """422: Waldur's answer when a tool reports an error."""

    status_code = 422
    default_detail = "Unable to process this request."
