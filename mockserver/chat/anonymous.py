"""Waldur 8.1's anonymous marketplace chat: IP-bound sessions, per-IP caps, interactions, feedback.

No accounts: a client-made `session_id` is bound to the first IP that uses it, every turn is
an interaction, and the interaction's `feedback_token` (an HMAC over interaction, session and
the IP stored with it) is what authorises its feedback and clicks. The checks raise Waldur's
errors in its order; the HTTP layer only reads the body and the client's IP.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mockserver.chat.blocks import Block
from mockserver.chat.deployment import PERIODS, DeploymentSettings, Period, next_reset
from mockserver.chat.turn_v8_1 import CapacityError
from mockserver.errors import ApiError, Conflict, FailedDependency, NotFound, PermissionDenied, ValidationFailed

NOT_ENABLED = "The anonymous marketplace assistant is not enabled."
MARKETPLACE_OFF = "Public marketplace browsing is currently disabled."
URL_MISSING = "The anonymous marketplace assistant API URL is not configured."
TOKEN_MISSING = "The anonymous marketplace assistant API token is not configured."
NO_IP = "Cannot determine client IP."
OTHER_NETWORK = "Session is bound to a different network. Please start a new conversation."
INPUT_REJECTED = "Input rejected."
COMMENT_REJECTED = "Comment was rejected."
NO_INTERACTION = "Interaction not found."
BAD_TOKEN = "Invalid feedback token."
NOT_RECOMMENDED = "Offering was not recommended in this session."
CAP_REACHED: dict[Period, str] = {
    "daily": "Daily token limit reached. Try again tomorrow.",
    "weekly": "Weekly token limit reached. Try again next week.",
    "monthly": "Monthly token limit reached. Try again next month.",
}
# Offerings reach the visitor as marketplace links; the click endpoint accepts only those.
OFFERING_URL = re.compile(r"/marketplace-public-offering/([0-9a-fA-F-]{32,36})/")


@dataclass
class Interaction:
    """One anonymous turn, as Waldur's `AnonymousChatInteraction` row."""

    uuid: str
    session_id: str
    ip: str
    user_input: str
    created: datetime
    feedback_token: str = ""
    blocks: list[Block] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    offering_uuids: list[str] = field(default_factory=list)
    feedback: dict[str, Any] | None = None
    clicks: list[str] = field(default_factory=list)


def ensure_enabled(settings: DeploymentSettings) -> None:
    """424 unless chat is on, the roles say `anonymous` and the marketplace is public; 409 without upstream."""
    if not settings.chat_enabled or settings.enabled_roles != "anonymous":
        raise FailedDependency(NOT_ENABLED)
    if not settings.public_marketplace_enabled:
        raise FailedDependency(MARKETPLACE_OFF)
    if not settings.upstream_url_configured:
        raise Conflict(URL_MISSING)
    if not settings.upstream_token_configured:
        raise Conflict(TOKEN_MISSING)


def offering_uuids(blocks: list[Block]) -> list[str]:
    """The offerings a visitor was shown (link urls and prose, tool results included), first seen first."""
    found: list[str] = []
    for block in blocks:
        for part in (block, block.get("result") or {}):
            urls = [link.get("url", "") for link in part.get("links") or [] if isinstance(link, dict)]
            content = part.get("content")
            for text in [*urls, content if isinstance(content, str) else ""]:
                found.extend(uuid.UUID(match).hex for match in OFFERING_URL.findall(str(text)))
    return list(dict.fromkeys(found))


class AnonymousChat:
    """The anonymous chat's state: bindings, per-IP usage and interactions (all gone on reset)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._secret = secrets.token_bytes(32)
            self.bindings: dict[str, str] = {}  # session_id -> the IP it was first used from
            self.usage: dict[str, dict[Period, int]] = {}  # IP -> tokens per period
            self.interactions: dict[str, Interaction] = {}

    # -- the stream -------------------------------------------------------------------
    def ensure_ip_within(self, settings: DeploymentSettings, ip: str, now: datetime) -> None:
        """409 with `Retry-After` when the IP is at a cap, daily first."""
        with self._lock:
            used = dict(self.usage.get(ip, {}))
        for period in PERIODS:
            cap = getattr(settings.anonymous_ip_limits, period)
            if cap is not None and cap >= 0 and used.get(period, 0) >= cap:
                raise CapacityError(409, f"per_ip_{period}_token", now, next_reset(period, now), CAP_REACHED[period])

    def bind(self, session_id: str, ip: str) -> None:
        """The first IP to use a session owns it; another IP gets 403."""
        with self._lock:
            owner = self.bindings.setdefault(session_id, ip)
        if owner != ip:
            raise PermissionDenied(OTHER_NETWORK)

    def start(self, session_id: str, ip: str, user_input: str, now: datetime) -> Interaction:
        interaction = Interaction(uuid.uuid4().hex, session_id, ip, user_input[:2000], now)
        interaction.feedback_token = self._token(interaction.uuid, session_id, ip)
        with self._lock:
            self.interactions[interaction.uuid] = interaction
        return interaction

    def history(self, session_id: str) -> tuple[tuple[str, str], ...]:
        """The session's earlier turns as (role, text) pairs: the context Waldur rebuilds from its rows."""
        with self._lock:
            earlier = [i for i in self.interactions.values() if i.session_id == session_id]
        pairs: list[tuple[str, str]] = []
        for turn in earlier:
            answer = "".join(str(b.get("content", "")) for b in turn.blocks if b.get("key") == "markdown")
            pairs += [("user", turn.user_input), ("assistant", answer)]
        return tuple(pairs)

    def finish(self, interaction: Interaction, blocks: list[Block], input_tokens: int, output_tokens: int) -> None:
        """What Waldur stores when the stream ends (also for a client that went away)."""
        interaction.blocks = blocks
        interaction.offering_uuids = offering_uuids(blocks)
        interaction.input_tokens, interaction.output_tokens = input_tokens, output_tokens
        with self._lock:
            periods = self.usage.setdefault(interaction.ip, {})
            for period in PERIODS:
                periods[period] = periods.get(period, 0) + input_tokens + output_tokens

    def daily_tokens(self) -> int:
        """The anonymous share of the global daily budget."""
        with self._lock:
            return sum(periods.get("daily", 0) for periods in self.usage.values())

    # -- feedback and clicks -------------------------------------------------------------
    def authorised(self, interaction_uuid: str, token: str) -> Interaction:
        """404 for an unknown interaction, 403 for a token that is not its own."""
        interaction = self.interactions.get(interaction_uuid)
        if interaction is None:
            raise NotFound(NO_INTERACTION)
        expected = self._token(interaction.uuid, interaction.session_id, interaction.ip)
        if not hmac.compare_digest(expected, token):
            raise PermissionDenied(BAD_TOKEN)
        return interaction

    def give_feedback(self, interaction: Interaction, feedback: dict[str, Any]) -> None:
        interaction.feedback = feedback  # one per interaction: a second one replaces it

    def click(self, interaction: Interaction, offering_uuid: str) -> None:
        if offering_uuid not in interaction.offering_uuids:
            raise ValidationFailed({"offering_uuid": NOT_RECOMMENDED})
        interaction.clicks.append(offering_uuid)

    def _token(self, interaction_uuid: str, session_id: str, ip: str) -> str:
        message = f"{interaction_uuid}:{session_id}:{ip}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def feedback_errors(score: int, category: str) -> ApiError | None:
    """The feedback serializer's rules past the field types: ±1 only, a category exactly for -1."""
    if score not in (-1, 1):
        return ValidationFailed({"score": ["score must be -1 or 1."]})
    if score == -1 and not category:
        return ValidationFailed({"category": ["category is required when score=-1."]})
    if score == 1 and category:
        return ValidationFailed({"category": ["category is only allowed when score=-1."]})
    return None
