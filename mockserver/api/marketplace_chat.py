"""Waldur 8.1's anonymous marketplace chat over HTTP: stream, feedback and click (AllowAny).

The stream is the same pipeline as the signed-in one (engine, scripts, NDJSON writer, 8.1's
wire without `load` and with `tool` blocks), framed by the interaction's two `m` records
instead of a thread's. AllowAny: no credentials is fine, credentials that fail are 401 (DRF
authenticates in `initial()`). Then checks in Waldur's order: enabled and configured (424/409), the
body (400), the client's IP (403), the global budget (429), the IP's caps (409), the
session's IP (403), the input guard (400).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response

from mockserver.api.context import Call, Handler, registrar
from mockserver.api.endpoints import STREAM_HEADERS, mock_selectors
from mockserver.api.streaming import WireStreamResponse
from mockserver.chat.anonymous import (
    COMMENT_REJECTED,
    INPUT_REJECTED,
    NO_IP,
    AnonymousChat,
    Interaction,
    ensure_enabled,
    feedback_errors,
)
from mockserver.chat.blocks import BlockCollector
from mockserver.chat.injection import InjectionDetector
from mockserver.chat.turn_v8_1 import forward_8_1, take_global_budget
from mockserver.engine.adapters.waldur_records import NDJSON_ENCODER
from mockserver.engine.base import ReplyRequest, StreamFrame, StreamItem
from mockserver.engine.pacing import count_tokens
from mockserver.engine.records import Record
from mockserver.errors import PermissionDenied, ValidationFailed
from mockserver.util import normalize_uuid

HANDLERS: dict[str, Handler] = {}


operation = registrar(HANDLERS)


def client_ip(request: Request) -> str:
    """X-Forwarded-For's first hop, else the peer: Waldur trusts the proxy in front of it."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or (request.client.host if request.client else "")


def _guard_blocks(call: Call, text: str) -> bool:
    return InjectionDetector(call.services.settings.injection_allowlist).scan(text).blocked


@operation("marketplace_chat_stream")
async def marketplace_chat_stream(call: Call) -> WireStreamResponse:
    settings, anonymous = call.services.settings, call.services.anonymous
    call.authenticate_if_credentials()
    ensure_enabled(settings)
    call.check.raise_for_errors()
    body = call.body()
    text, session_id = str(body["input"]).strip(), str(body["session_id"]).strip()
    scenario, faults = mock_selectors(call, call.services.chat.engine.scenario_names())
    ip = _admitted_ip(call, text, session_id)
    history = anonymous.history(session_id)
    request = ReplyRequest(
        input=text,
        turn=len(history) // 2 + 1,
        history=history,
        scenario=scenario,
        faults=settings.faults.merged(faults),
        speed=settings.speed,
        warn=call.warn,
    )
    interaction = anonymous.start(session_id, ip, text, call.store.clock.now())
    return WireStreamResponse(_turn(call, anonymous, interaction, request), NDJSON_ENCODER, headers=STREAM_HEADERS)


def _admitted_ip(call: Call, text: str, session_id: str) -> str:
    """The gates after the body, in Waldur's order: IP known (403), global budget (429), the IP's caps
    (409), the session's IP (403), the input guard (400). Returns the client's IP."""
    settings, anonymous = call.services.settings, call.services.anonymous
    ip = client_ip(call.request)
    if not ip:
        raise PermissionDenied(NO_IP)
    now = call.store.clock.now()
    take_global_budget(settings, now, anonymous.daily_tokens())
    anonymous.ensure_ip_within(settings, ip, now)
    anonymous.bind(session_id, ip)
    if _guard_blocks(call, text):
        raise ValidationFailed({"detail": INPUT_REJECTED})
    return ip


def _turn(
    call: Call, anonymous: AnonymousChat, interaction: Interaction, request: ReplyRequest
) -> AsyncGenerator[StreamItem, None]:
    """Interaction `m`, the content records, token `m`; stored in `finish` (also for a client gone)."""
    collector = BlockCollector()
    opening = {"m": {"interaction_uuid": interaction.uuid, "feedback_token": interaction.feedback_token}}

    def finish(_text: str, tokens: int) -> Record:
        collector.close()
        input_tokens = count_tokens(request.input)
        output_tokens = max(0, tokens - input_tokens)
        anonymous.finish(interaction, collector.blocks, input_tokens, output_tokens)
        return {"m": {"input_tokens": input_tokens, "output_tokens": output_tokens}}

    items = call.services.chat.engine.stream(request, StreamFrame(opening, finish))
    return forward_8_1(items, collector, lambda: False)


def _authorised(call: Call, body: dict[str, object]) -> Interaction:
    """The interaction the body names, if its `feedback_token` is that interaction's (404, 403)."""
    wanted = normalize_uuid(str(body["interaction_uuid"]))
    return call.services.anonymous.authorised(wanted, str(body["feedback_token"]).strip())


@operation("marketplace_chat_feedback")
async def marketplace_chat_feedback(call: Call) -> Response:
    """424/409, the body (400), the interaction (404) and its token (403), the comment guard (400)."""
    call.authenticate_if_credentials()
    ensure_enabled(call.services.settings)
    call.check.raise_for_errors()
    body = call.body()
    score, category = body["score"], body.get("category") or ""
    problem = feedback_errors(score, str(category))  # type: ignore[arg-type]
    if problem is not None:
        raise problem
    interaction = _authorised(call, body)
    comment = str(body.get("comment") or "").strip()
    if comment and _guard_blocks(call, comment):
        raise ValidationFailed({"detail": COMMENT_REJECTED})
    feedback = {"score": score, "comment": comment, "category": category, "submitted_at": call.store.clock.now()}
    call.services.anonymous.give_feedback(interaction, feedback)
    return Response(status_code=200)  # DRF's Response(status=200): empty body


@operation("marketplace_chat_click")
async def marketplace_chat_click(call: Call) -> Response:
    """424/409, the body (400), the interaction (404) and its token (403), a shown offering (400)."""
    call.authenticate_if_credentials()
    ensure_enabled(call.services.settings)
    call.check.raise_for_errors()
    body = call.body()
    call.services.anonymous.click(_authorised(call, body), normalize_uuid(str(body["offering_uuid"])))
    return Response(status_code=200)
