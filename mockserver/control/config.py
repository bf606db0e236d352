"""`/__mock__/config`: the deployment switches as JSON, and PATCH with JSON Merge Patch rules.

Keys absent from a patch are unchanged; scalars are replaced; `system_token_limits` and
`faults` merge key by key; `token_limits` and `token_usage` merge user by user (each
entry key by key) and a user mapped to null loses the entry. The whole patch is
validated first: on any error nothing changes and the answer is DRF-style per-field lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from mockserver.chat.deployment import PERIODS, ROLE_CHOICES, DeploymentSettings, TokenLimits
from mockserver.engine.faults import Faults, FaultSyntaxError, faults_from_mapping
from mockserver.errors import ValidationFailed
from mockserver.util import text_problems


class _Invalid(ValueError):
    """One field's message, as DRF would word it."""


def config_json(settings: DeploymentSettings) -> dict[str, Any]:
    def limits(value: TokenLimits) -> dict[str, int | None]:
        return {f"{period}_limit": getattr(value, period) for period in PERIODS}

    return {
        "chat_enabled": settings.chat_enabled,
        "upstream_url_configured": settings.upstream_url_configured,
        "upstream_token_configured": settings.upstream_token_configured,
        "system_token_limits": limits(settings.system_limits),
        "token_limits": {user: limits(value) for user, value in settings.user_limits.items()},
        "token_usage": {user: {p: value.get(p, 0) for p in PERIODS} for user, value in settings.usage.items()},
        "injection_allowlist": list(settings.injection_allowlist),
        "history_limit": settings.history_limit,
        "enabled_roles": settings.enabled_roles,
        "public_marketplace_enabled": settings.public_marketplace_enabled,
        "anonymous_ip_token_limits": limits(settings.anonymous_ip_limits),
        "global_requests_per_minute": settings.global_requests_per_minute,
        "global_daily_token_budget": settings.global_daily_token_budget,
        "speed": settings.speed,
        "faults": settings.faults.as_dict(),
    }


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("Must be a valid boolean.")
    return value


# Waldur stores token limits and usage in 32-bit integer columns; set_quota refuses more too.
MAX_TOKENS = 2_147_483_647


def _integer(value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("A valid integer is required.")
    if minimum is not None and value < minimum:
        raise _Invalid(f"Ensure this value is greater than or equal to {minimum}.")
    if maximum is not None and value > maximum:
        raise _Invalid(f"Ensure this value is less than or equal to {maximum}.")
    return value


def _optional_integer(value: Any, minimum: int) -> int | None:
    return None if value is None else _integer(value, minimum)


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _Invalid(f'"{value}" is not a valid choice.')
    return value


def _mapping(value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f'Expected a dictionary of items but got type "{type(value).__name__}".')
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _Invalid(f"Unknown field(s): {', '.join(unknown)}.")
    return value


def _limits(current: TokenLimits, patch: Any, nullable: bool) -> TokenLimits:
    values = _mapping(patch, {f"{p}_limit" for p in PERIODS})
    changes = {}
    for period in PERIODS:
        key = f"{period}_limit"
        if key in values:
            value = values[key]
            changes[period] = None if value is None and nullable else _integer(value, minimum=-1, maximum=MAX_TOKENS)
    return replace(current, **changes)


def _per_user(current: dict[str, Any], patch: Any, merge: Callable[[Any, Any], Any], empty: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise _Invalid("Expected an object keyed by username.")
    result = dict(current)
    for user, entry in patch.items():
        _text(user)
        if entry is None:
            result.pop(user, None)
        else:
            result[user] = merge(result.get(user, empty), entry)
    return result


def _usage(current: dict[str, int], patch: Any) -> dict[str, int]:
    values = _mapping(patch, set(PERIODS))
    return {p: _integer(values[p], 0, MAX_TOKENS) if p in values else current.get(p, 0) for p in PERIODS}


def _faults(current: Faults, patch: Any) -> Faults:
    if not isinstance(patch, dict):
        raise _Invalid("Expected an object of fault name to value (null removes a fault).")
    merged = {**current.as_dict(), **patch}
    try:
        return faults_from_mapping({k: v for k, v in merged.items() if v is not None})
    except FaultSyntaxError as exc:
        raise _Invalid(str(exc)) from None


def _strings(_: Any, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid("Expected a list of strings.")
    for text in value:
        _text(text)
    return list(value)


def _text(value: str) -> None:
    """Stored text must be renderable later: the chat API's one check (NUL, lone surrogates)."""
    problems = text_problems(value)
    if problems:
        raise _Invalid(" ".join(problems))


def _speed(_: Any, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _Invalid("Ensure this value is a number greater than or equal to 0.")
    return float(value)


# patch key -> (attribute of DeploymentSettings, merge(current, patch value) -> new value)
FIELDS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "chat_enabled": ("chat_enabled", lambda _, v: _boolean(v)),
    "upstream_url_configured": ("upstream_url_configured", lambda _, v: _boolean(v)),
    "upstream_token_configured": ("upstream_token_configured", lambda _, v: _boolean(v)),
    "system_token_limits": ("system_limits", lambda cur, v: _limits(cur, v, nullable=False)),
    "token_limits": (
        "user_limits",
        lambda cur, v: _per_user(cur, v, lambda c, e: _limits(c, e, nullable=True), TokenLimits()),
    ),
    "token_usage": ("usage", lambda cur, v: _per_user(cur, v, _usage, {})),
    "injection_allowlist": ("injection_allowlist", _strings),
    "history_limit": ("history_limit", lambda _, v: _integer(v)),
    "enabled_roles": ("enabled_roles", lambda _, v: _choice(v, ROLE_CHOICES)),
    "public_marketplace_enabled": ("public_marketplace_enabled", lambda _, v: _boolean(v)),
    "anonymous_ip_token_limits": ("anonymous_ip_limits", lambda cur, v: _limits(cur, v, nullable=True)),
    "global_requests_per_minute": ("global_requests_per_minute", lambda _, v: _optional_integer(v, 0)),
    "global_daily_token_budget": ("global_daily_token_budget", lambda _, v: _optional_integer(v, 0)),
    "speed": ("speed", _speed),
    "faults": ("faults", _faults),
}
assert {name for name, _ in FIELDS.values()} <= {f.name for f in fields(DeploymentSettings)}


def apply_config_patch(settings: DeploymentSettings, patch: Any) -> None:
    if not isinstance(patch, dict):
        raise ValidationFailed({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    errors: dict[str, list[str]] = {}
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key not in FIELDS:
            errors[key] = ["Unknown field."]
            continue
        attribute, merge = FIELDS[key]
        try:
            changes[attribute] = merge(getattr(settings, attribute), value)
        except _Invalid as exc:
            errors[key] = [str(exc)]
    if errors:
        raise ValidationFailed(errors)
    for attribute, value in changes.items():
        setattr(settings, attribute, value)
