"""Routes of the control API (spec/mock-control.yaml). Not part of Waldur's API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mockserver.api.rendering import json_response, no_content
from mockserver.chat.deployment import PERIODS, DeploymentSettings, TokenLimits
from mockserver.control.journal import RequestJournal
from mockserver.errors import ApiError, ValidationFailed

SPEC_VERSION = "8.0.5"


def config_json(settings: DeploymentSettings) -> dict[str, Any]:
    def limits(value: TokenLimits) -> dict[str, int | None]:
        return {f"{period}_limit": getattr(value, period) for period in PERIODS}

    return {
        "chat_enabled": settings.chat_enabled,
        "upstream_url_configured": settings.upstream_url_configured,
        "upstream_token_configured": settings.upstream_token_configured,
        "system_token_limits": limits(settings.system_limits),
        "token_limits": {user: limits(value) for user, value in settings.user_limits.items()},
        "token_usage": {user: dict(value) for user, value in settings.usage.items()},
        "injection_allowlist": list(settings.injection_allowlist),
        "history_limit": settings.history_limit,
    }


def _limit(value: Any, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("A valid integer is required.")
    if value < -1:
        raise TypeError("Ensure this value is greater than or equal to -1.")
    return value


def _limits(value: Any, nullable: bool) -> TokenLimits:
    if not isinstance(value, dict):
        raise TypeError(f'Expected a dictionary of items but got type "{type(value).__name__}".')
    unknown = set(value) - {f"{p}_limit" for p in PERIODS}
    if unknown:
        raise TypeError(f"Unknown keys: {', '.join(sorted(unknown))}.")
    return TokenLimits(**{p: _limit(value.get(f"{p}_limit"), nullable) for p in PERIODS})


def _usage(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or set(value) - set(PERIODS):
        raise TypeError("Expected an object with daily, weekly and monthly counts.")
    counts = {p: value.get(p, 0) for p in PERIODS}
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts.values()):
        raise TypeError("Counts must be integers >= 0.")
    return counts


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("Must be a valid boolean.")
    return value


def _per_user(parse: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    def parse_all(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TypeError("Expected an object keyed by username.")
        return {str(user): parse(item) for user, item in value.items()}

    return parse_all


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("Expected a list of strings.")
    return list(value)


def _history_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("A valid integer is required.")
    return value


# key in the PATCH body -> (parser, attribute of DeploymentSettings)
CONFIG_FIELDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "chat_enabled": (_boolean, "chat_enabled"),
    "upstream_url_configured": (_boolean, "upstream_url_configured"),
    "upstream_token_configured": (_boolean, "upstream_token_configured"),
    "system_token_limits": (lambda v: _limits(v, nullable=False), "system_limits"),
    "token_limits": (_per_user(lambda v: _limits(v, nullable=True)), "user_limits"),
    "token_usage": (_per_user(_usage), "usage"),
    "injection_allowlist": (_strings, "injection_allowlist"),
    "history_limit": (_history_limit, "history_limit"),
}


def apply_config_patch(settings: DeploymentSettings, patch: Any) -> None:
    """Validate the whole patch first (DRF-style per-field errors), then apply it at once."""
    if not isinstance(patch, dict):
        raise ValidationFailed({"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    parsed: dict[str, Any] = {}
    for key, value in patch.items():
        if key not in CONFIG_FIELDS:
            errors[key] = ["Unknown setting."]
            continue
        parse, attribute = CONFIG_FIELDS[key]
        try:
            parsed[attribute] = parse(value)
        except TypeError as exc:
            errors[key] = [str(exc)]
    if errors:
        raise ValidationFailed(errors)
    for attribute, value in parsed.items():
        current = getattr(settings, attribute)
        setattr(settings, attribute, {**current, **value} if isinstance(current, dict) else value)


class ControlAPI:
    """`/__mock__/` endpoints; `reset` is given by the app, which owns every piece of state."""

    def __init__(self, settings: Callable[[], DeploymentSettings], journal: RequestJournal, reset: Callable[[], None]):
        self.settings = settings
        self.journal = journal
        self.reset_all = reset

    def routes(self) -> list[Route]:
        return [
            Route("/__mock__/reset", self.reset, methods=["POST"]),
            Route("/__mock__/requests", self.requests, methods=["GET", "DELETE"]),
            Route("/__mock__/config", self.config, methods=["GET", "PATCH"]),
            Route("/__mock__/health", self.health, methods=["GET"]),
        ]

    async def reset(self, request: Request) -> Response:
        self.reset_all()
        return no_content()

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.journal.clear()
            return no_content()
        raw = request.query_params.get("limit")
        try:
            limit = int(raw) if raw else None
        except ValueError:
            return json_response({"limit": ["A valid integer is required."]}, status=400)
        entries = self.journal.entries(limit)
        return json_response({"count": len(entries), "limit": self.journal.limit, "requests": entries})

    async def config(self, request: Request) -> Response:
        if request.method == "PATCH":
            try:
                patch = await request.json()
            except ValueError as exc:
                return json_response({"detail": f"JSON parse error - {exc}"}, status=400)
            try:
                apply_config_patch(self.settings(), patch)
            except ApiError as error:
                return json_response(error.body, status=error.status_code)
        return json_response(config_json(self.settings()))

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "spec_version": SPEC_VERSION})
