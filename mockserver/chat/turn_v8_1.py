"""What a Waldur 8.1 chat turn adds to the 8.0.5 one: gates, cancel, blocks, server-side names.

* The role gate (403) and the global budget (429 with `Retry-After`) before the stream.
* The stream as 8.1 sends it: no `load` records (a script's tool call is collected as a
  `tool` block, `mockserver.chat.blocks`); after a cancel no content is forwarded
  (the engine is still drained, so usage is counted) and the final `m` still comes.
* In `finish` (so also when the client went away): the blocks streamed so far and the
  token counts go on the assistant message, and a new thread is named by a second
  (title) upstream call, before the final `m`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mockserver.chat.blocks import BlockCollector
from mockserver.chat.deployment import DeploymentSettings, next_reset
from mockserver.chat.service import TITLE_MAX_LENGTH, ChatService, PreparedTurn
from mockserver.engine.base import ReplyRequest, StreamItem
from mockserver.engine.pacing import count_tokens
from mockserver.engine.records import Record
from mockserver.engine.upstream import TextChunk
from mockserver.errors import ApiError, PermissionDenied
from mockserver.store import ChatStore, User
from mockserver.util import format_datetime

ROLE_REFUSALS = {
    "none": "AI Assistant is not available.",
    "staff": "AI Assistant is available to staff users only.",
    "staff_and_support": "AI Assistant is available to staff and support users only.",
    "misconfigured": "AI Assistant access is not configured correctly.",
    # Only the public marketplace chat is on; what the signed-in stream says then is unverified.
    "anonymous": "AI Assistant is not available.",
}
BURST_WINDOW = timedelta(minutes=1)


class CapacityError(ApiError):
    """Waldur's `CapacityException`: a structured body and `Retry-After`, with the status of the cap."""

    def __init__(self, status: int, code: str, now: datetime, reset_at: datetime, detail: str):
        self.status_code = status
        seconds = max(0, int((reset_at - now).total_seconds() + 0.999))
        body = {
            "error": "rate_limited" if status == 429 else "service_unavailable",
            "code": code,
            "reset_at": format_datetime(reset_at),
            "retry_after_seconds": seconds,
            "detail": detail,
        }
        super().__init__(body=body, headers={"Retry-After": str(seconds)})


def ensure_role_allowed(settings: DeploymentSettings, user: User) -> None:
    """AI_ASSISTANT_ENABLED_ROLES: 403 with the text for the configured choice."""
    roles = settings.enabled_roles
    if roles == "all":
        return
    if roles == "staff" and user.is_staff:
        return
    if roles == "staff_and_support" and user.sees_everything:
        return
    raise PermissionDenied(ROLE_REFUSALS.get(roles, ROLE_REFUSALS["misconfigured"]))


def take_global_budget(settings: DeploymentSettings, now: datetime, anonymous_daily: int = 0) -> None:
    """The global budget gate: requests per minute, then tokens per day over all users and the
    anonymous chat (429)."""
    per_minute = settings.global_requests_per_minute
    if per_minute is not None:
        window = [t for t in settings.recent_stream_starts if now - t < BURST_WINDOW]
        settings.recent_stream_starts = window
        if len(window) >= per_minute:
            reset_at = (window[0] if window else now) + BURST_WINDOW
            detail = "Too many requests. Please try again in a minute."
            raise CapacityError(429, "global_minute_burst", now, reset_at, detail)
    budget = settings.global_daily_token_budget
    if budget is not None:
        used = sum(periods.get("daily", 0) for periods in settings.usage.values()) + anonymous_daily
        if used >= budget:
            detail = "The assistant's daily token budget is used up. Please try again tomorrow."
            raise CapacityError(429, "global_daily_token", now, next_reset("daily", now), detail)
    if per_minute is not None:
        settings.recent_stream_starts.append(now)


async def forward_8_1(
    items: AsyncGenerator[StreamItem, None], collector: BlockCollector, cancelled: Callable[[], bool]
) -> AsyncGenerator[StreamItem, None]:
    """8.1's wire: content goes to `collector` as it is sent; `load` is never forwarded (a tool
    call is only collected); after a cancel only `m` records go on, and the engine is drained."""
    try:
        async for item in items:
            if isinstance(item, dict) and "m" not in item:
                stopped = cancelled()
                if not stopped:
                    collector.add(item)
                if stopped or item.get("k") == "load":
                    continue
            yield item
    finally:
        await items.aclose()


@dataclass
class Turn81:
    """One 8.1 turn's extra state: what was streamed, and the cancel count it started with."""

    chat: ChatService
    turn: PreparedTurn
    new_thread: bool
    collector: BlockCollector = field(default_factory=BlockCollector)
    cancel_start: int = 0
    questions_start: int = 0

    def __post_init__(self) -> None:
        self.cancel_start = self.turn.thread.cancel_requests
        self.questions_start = self.turn.thread.questions  # this turn's own question included

    @property
    def store(self) -> ChatStore:
        return self.chat.store

    def cancelled(self) -> bool:
        """A cancel, or a newer question on the thread ("superseded"): Waldur stops both alike."""
        thread = self.turn.thread
        return thread.cancel_requests != self.cancel_start or thread.questions != self.questions_start

    def stream(self) -> AsyncGenerator[StreamItem, None]:
        return self.chat.stream(self.turn, adapt=self.adapt, after_finish=self.after_finish)

    def adapt(self, items: AsyncGenerator[StreamItem, None]) -> AsyncGenerator[StreamItem, None]:
        return forward_8_1(items, self.collector, self.cancelled)

    def after_finish(self, closing: Record) -> None:
        """Blocks, warning and tokens on the stored answer; then the thread's name if it is new."""
        assistant = self.store.message_in_thread(closing["m"]["assistant_message_uuid"], self.turn.thread)
        if self.cancelled():
            self.collector.drop_open_call()
        self.collector.close()
        if assistant is not None:
            assistant.blocks = [dict(block) for block in self.collector.blocks]
            assistant.warning = self.collector.warning
            assistant.input_tokens = count_tokens(self.turn.request.input)
            assistant.output_tokens = count_tokens(assistant.content)
        if self.new_thread:
            self._name_thread()

    def _name_thread(self) -> None:
        """The second upstream call: the script matching `mode: title`, its text as the name."""
        request = ReplyRequest(input=self.turn.request.input, kind="title", username=self.turn.user.username, speed=0)
        reply = self.chat.engine.plan(request)
        title = "".join(e.text for e in reply.events if isinstance(e, TextChunk)).strip()[:TITLE_MAX_LENGTH]
        thread = self.turn.thread
        thread.title_gen_input_tokens = count_tokens(request.input)
        thread.title_gen_output_tokens = count_tokens(title)
        self.chat.quota.add_usage(
            self.turn.user.username, thread.title_gen_input_tokens + thread.title_gen_output_tokens
        )
        if title:
            self.store.rename_thread(thread, title)
