"""What a real Waldur deployment can be switched into (Constance settings and token quotas).

These are the knobs behind `/__mock__/config`: the same object the stream checks read,
so tests, the control API and the contract suite all turn the same switches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from mockserver.engine.faults import NO_FAULTS, Faults
from mockserver.errors import Conflict

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
UNLIMITED = -1


@dataclass
class TokenLimits:
    """Per-period limits: None = system default, -1 = unlimited, n >= 0 = limit."""

    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None


# 8.1's AI_ASSISTANT_ENABLED_ROLES, as one choice (the mock's shorthand for the role lists);
# `anonymous` opens the public marketplace chat.
ROLE_CHOICES = ("all", "staff", "staff_and_support", "none", "misconfigured", "anonymous")


@dataclass
class DeploymentSettings:
    chat_enabled: bool = True
    upstream_url_configured: bool = True
    upstream_token_configured: bool = True
    system_limits: TokenLimits = field(default_factory=lambda: TokenLimits(UNLIMITED, UNLIMITED, UNLIMITED))
    user_limits: dict[str, TokenLimits] = field(default_factory=dict)
    usage: dict[str, dict[Period, int]] = field(default_factory=dict)
    injection_allowlist: list[str] = field(default_factory=list)
    history_limit: int = 50
    # 8.1 only: AI_ASSISTANT_ENABLED_ROLES as one choice, and the global budget (None: off).
    enabled_roles: str = "all"  # all | staff | staff_and_support | none | misconfigured | anonymous
    public_marketplace_enabled: bool = True  # the anonymous chat needs public marketplace browsing
    # Per-IP token caps of the anonymous chat: None or -1 = no cap, n >= 0 = cap.
    anonymous_ip_limits: TokenLimits = field(default_factory=TokenLimits)
    global_requests_per_minute: int | None = None
    global_daily_token_budget: int | None = None
    recent_stream_starts: list[datetime] = field(default_factory=list)  # the budget's window (not shown)
    # The mock's own knobs: playback speed of scripted replies and faults for every stream.
    speed: float = 1.0
    faults: Faults = NO_FAULTS


class QuotaBook:
    """Token quota checks and usage accounting over a `DeploymentSettings`."""

    def __init__(self, settings: DeploymentSettings):
        self.settings = settings
        self._lock = threading.Lock()

    def effective_limit(self, username: str, period: Period) -> int:
        own = getattr(self.settings.user_limits.get(username, TokenLimits()), period)
        limit = own if own is not None else getattr(self.settings.system_limits, period)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < UNLIMITED:
            raise Conflict("AI Token quota system is misconfigured. Please contact support.")
        return limit

    def ensure_within(self, username: str) -> None:
        """409 when the user is already at or over a limit; one request may overshoot it."""
        for period in PERIODS:
            limit = self.effective_limit(username, period)
            if limit != UNLIMITED and self.used(username, period) >= limit:
                raise Conflict(f"{period.capitalize()} token limit exceeded.")

    def own_limit(self, username: str, period: Period) -> int | None:
        """The user's own limit as stored (None: the system default applies)."""
        return getattr(self.settings.user_limits.get(username, TokenLimits()), period)

    def system_default(self, period: Period) -> int:
        return getattr(self.settings.system_limits, period)

    def remaining(self, username: str, period: Period) -> int | None:
        """Tokens left in the period; None when unlimited (Waldur's `get_remaining`)."""
        limit = self.effective_limit(username, period)
        return None if limit == UNLIMITED else max(0, limit - self.used(username, period))

    def set_limits(self, username: str, changes: dict[Period, int | None]) -> None:
        """`set_quota`: only the periods given change; None restores the system default.

        Writes the same per-user limits as `/__mock__/config`'s `token_limits`, so the
        stream's quota check sees them at once."""
        with self._lock:
            current = self.settings.user_limits.get(username, TokenLimits())
            self.settings.user_limits = {**self.settings.user_limits, username: replace(current, **changes)}

    def used(self, username: str, period: Period) -> int:
        return self.settings.usage.get(username, {}).get(period, 0)

    def add_usage(self, username: str, tokens: int) -> None:
        with self._lock:
            usage = self.settings.usage.setdefault(username, {"daily": 0, "weekly": 0, "monthly": 0})
            for period in PERIODS:
                usage[period] = usage.get(period, 0) + tokens


def next_reset(period: Period, now: datetime) -> datetime:
    """When a period's usage starts over: next midnight, next Monday, the 1st of next month."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight + timedelta(days=1)
    if period == "weekly":
        return midnight + timedelta(days=7 - now.weekday())
    if now.month == 12:
        return midnight.replace(year=now.year + 1, month=1, day=1)
    return midnight.replace(month=now.month + 1, day=1)
