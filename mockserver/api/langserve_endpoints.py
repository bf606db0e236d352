"""The pre-8.0 chat API (Waldur 7.9.4), keyed by the spec's operationId: `invoke` and the SSE stream.

Both mirror LangServe's routes: `invoke` was a placeholder, `stream` a thin SSE proxy of
the upstream LLM with no threads and nothing persisted.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.responses import Response

from mockserver.api.context import Call, Handler
from mockserver.api.endpoints import STREAM_HEADERS, mock_selectors
from mockserver.api.rendering import json_response
from mockserver.api.streaming import WireStreamResponse
from mockserver.engine.adapters.langserve_sse import SSE_ENCODER, sse_reply

INVOKE_ANSWER = "Invoke chat response"


async def chat_invoke(call: Call) -> Response:
    """Body ignored, no feature-flag check; authentication as everywhere."""
    call.authenticate()
    return json_response(INVOKE_ANSWER)


async def chat_stream(call: Call) -> WireStreamResponse:
    """Feature flag (404), authentication (401), the body (415/400), then the SSE stream."""
    chat = call.services.chat
    chat.ensure_enabled()
    user = call.authenticate()
    call.check.raise_for_errors()
    body = call.body()
    scenario, faults = mock_selectors(call, chat.engine.scenario_names())
    request = chat.unbound_request(user, str(body["input"]).strip(), scenario=scenario, faults=faults)
    reply = chat.engine.plan(replace(request, warn=call.warn))
    return WireStreamResponse(sse_reply(reply, request.speed), SSE_ENCODER, headers=STREAM_HEADERS)


HANDLERS: dict[str, Handler] = {"chat_invoke": chat_invoke, "chat_stream": chat_stream}
