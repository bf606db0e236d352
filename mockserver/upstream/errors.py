"""The provider's HTTP errors: bodies and statuses as OpenAI-compatible servers and LangServe send them.

`X-Mock-Fault: status=429` (any status from 400 to 599) answers that error at once, in the
protocol's shape; a 429 carries `Retry-After` (`retry_after=S`, default 1 second), which the
OpenAI SDK honours when it retries.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import JSONResponse

from mockserver.engine.faults import FaultSyntaxError

DEFAULT_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 3600.0
# status -> (message, type, code) of OpenAI's error object
OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("The request was rejected by the mock upstream.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "permission_denied"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
LANGSERVE_DETAILS = {401: "Invalid token."}  # otherwise the status's reason phrase, as FastAPI answers


class ProviderError(Exception):
    """An error answer of the upstream, raised by the checks and returned by the endpoint."""

    def __init__(self, protocol: str, status: int, message: str | None = None, retry_after: float | None = None):
        super().__init__(message or str(status))
        self.protocol = protocol
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def response(self) -> JSONResponse:
        headers = {}
        if self.status == 429:
            seconds = DEFAULT_RETRY_AFTER if self.retry_after is None else self.retry_after
            headers["Retry-After"] = f"{seconds:g}"
        if self.protocol == "openai":
            default, kind, code = OPENAI_ERRORS.get(self.status, (None, _kind(self.status), None))
            message = self.message or default or f"The mock upstream answered {self.status}."
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        else:
            body = {"detail": self.message or LANGSERVE_DETAILS.get(self.status, _phrase(self.status))}
        return JSONResponse(body, self.status, headers=headers)


def provider_error(
    protocol: str, status: int, message: str | None = None, retry_after: float | None = None
) -> ProviderError:
    return ProviderError(protocol, status, message, retry_after)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _kind(status: int) -> str:
    return "server_error" if status >= 500 else "invalid_request_error"


def split_status_fault(header: str) -> tuple[int | None, float | None, str]:
    """(`status`, `retry_after`, the other items) of an `X-Mock-Fault` header."""
    status: int | None = None
    retry_after: float | None = None
    rest = []
    for raw_item in header.replace(";", ",").split(","):
        name, _, value = raw_item.strip().partition("=")
        name = name.strip().replace("-", "_")
        if name == "status":
            status = _status(value.strip())
        elif name == "retry_after":
            retry_after = _retry_after(value.strip())
        elif raw_item.strip():
            rest.append(raw_item.strip())
    return status, retry_after, ",".join(rest)


def _status(raw: str) -> int:
    try:
        status = int(raw)
    except ValueError:
        raise FaultSyntaxError(f"status must be an integer, not {raw!r}") from None
    if not 400 <= status <= 599:
        raise FaultSyntaxError(f"status must be an HTTP error from 400 to 599, not {status}")
    return status


def _retry_after(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise FaultSyntaxError(f"retry_after must be a number, not {raw!r}") from None
    if not 0 <= seconds <= MAX_RETRY_AFTER:
        raise FaultSyntaxError(f"retry_after must be from 0 to {MAX_RETRY_AFTER:g} seconds, not {raw}")
    return seconds
