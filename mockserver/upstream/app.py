"""The upstream-LLM endpoints: a small ASGI app mounted next to `/__mock__/`, outside the chat API.

`POST /__upstream__/langserve/stream` (LangServe, Waldur 7.9.x-8.0.x) and
`POST /__upstream__/openai/v1/chat/completions` with `GET /__upstream__/openai/v1/models`
(OpenAI-compatible, the newest Waldur). Not behind the chat API's token auth, spec validation
or origin guard: their own token check (`--upstream-token`, any token without it), in the
provider's error shape. The same scripts, `X-Mock-Scenario`, `X-Mock-Fault` (plus
`status=NNN` and `retry_after=S`: the provider answers that HTTP error), global faults and
speed as the chat API; the request journal records each call with its body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from mockserver.api.endpoints import STREAM_HEADERS
from mockserver.api.streaming import WireStreamResponse
from mockserver.chat.deployment import DeploymentSettings
from mockserver.engine.base import ReplyEngine, ReplyRequest
from mockserver.engine.faults import Faults, FaultSyntaxError, parse_fault_header
from mockserver.upstream.calls import CallError, UpstreamCall, langserve_call, openai_call
from mockserver.upstream.errors import ProviderError, provider_error, split_status_fault
from mockserver.upstream.langserve import LANGSERVE_ENCODER, langserve_reply
from mockserver.upstream.openai_sse import JSON_BODY_ENCODER, OPENAI_ENCODER, error_body, fails, openai_reply
from mockserver.upstream.replies import plan_call
from mockserver.util import REQUEST_WARNINGS

UPSTREAM_PREFIX = "/__upstream__/"
LANGSERVE_PATH = "/__upstream__/langserve/stream"
OPENAI_BASE = "/__upstream__/openai/v1"
MODEL_ID = "waldur-chat-mock"  # listed by GET /models; any model name is accepted


@dataclass
class UpstreamContext:
    """What the endpoints read at call time: the scripted engine and the live settings."""

    engine: Callable[[], ReplyEngine]
    settings: Callable[[], DeploymentSettings]
    token: str | None = None  # None: any token (or none) is accepted


class UpstreamApp:
    def __init__(self, context: UpstreamContext):
        self.context = context
        self.router = Router(
            routes=[
                Route(LANGSERVE_PATH, self.langserve, methods=["POST"]),
                Route(f"{OPENAI_BASE}/chat/completions", self.chat_completions, methods=["POST"]),
                Route(f"{OPENAI_BASE}/models", self.models, methods=["GET"]),
            ],
            default=self.not_found,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)

    # -- endpoints -------------------------------------------------------------
    async def langserve(self, request: Request) -> Response | WireStreamResponse:
        try:
            selectors = self._selectors(request, "langserve")
            call = langserve_call(await _json_body(request))
        except ProviderError as exc:
            return exc.response
        except CallError as exc:
            return JSONResponse({"detail": [{"type": "value_error", "loc": ["body", exc.param], "msg": str(exc)}]}, 422)
        reply = plan_call(self.context.engine(), call, self._reply_request(request, call, selectors))
        items = langserve_reply(reply, self.context.settings().speed)
        return WireStreamResponse(items, LANGSERVE_ENCODER, STREAM_HEADERS)

    async def chat_completions(self, request: Request) -> Response | WireStreamResponse:
        try:
            selectors = self._selectors(request, "openai")
            call = openai_call(await _json_body(request))
        except ProviderError as exc:
            return exc.response
        except CallError as exc:
            return JSONResponse(error_body(str(exc), "invalid_request_error", param=exc.param), 400)
        reply = plan_call(self.context.engine(), call, self._reply_request(request, call, selectors))
        speed = self.context.settings().speed
        if not call.stream and fails(reply):
            return provider_error("openai", 500).response
        encoder = OPENAI_ENCODER if call.stream else JSON_BODY_ENCODER
        headers = STREAM_HEADERS if call.stream else {}
        return WireStreamResponse(openai_reply(reply, call, speed), encoder, headers)

    async def models(self, request: Request) -> Response:
        try:
            self._selectors(request, "openai")
        except ProviderError as exc:
            return exc.response
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "waldur-chat-mock"}
        return JSONResponse({"object": "list", "data": [model]})

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        openai = scope["path"].startswith(OPENAI_BASE)
        await provider_error("openai" if openai else "langserve", 404, "Not Found").response(scope, receive, send)

    # -- shared checks ---------------------------------------------------------
    def _selectors(self, request: Request, protocol: str) -> tuple[str | None, Faults]:
        """Token, then `X-Mock-Fault` (a `status=` answers that error), then `X-Mock-Scenario`."""
        self._authenticate(request, protocol)
        header = request.headers.get("x-mock-fault", "")
        try:
            status, retry_after, rest = split_status_fault(header)
            faults = parse_fault_header(rest)
        except FaultSyntaxError as exc:
            raise ProviderError(protocol, 400, f"Bad X-Mock-Fault header: {exc}.") from None
        if status is not None:
            raise provider_error(protocol, status, retry_after=retry_after)
        scenario = request.headers.get("x-mock-scenario") or None
        known = self.context.engine().scenario_names()
        if scenario is not None and scenario not in known:
            raise ProviderError(protocol, 400, f"Unknown X-Mock-Scenario {scenario!r}; known: {', '.join(known)}.")
        return scenario, faults

    def _authenticate(self, request: Request, protocol: str) -> None:
        if self.context.token is None:
            return
        _, _, given = request.headers.get("authorization", "").partition(" ")
        if given.strip() != self.context.token:
            raise provider_error(protocol, 401)

    def _reply_request(
        self, request: Request, call: UpstreamCall, selectors: tuple[str | None, Faults]
    ) -> ReplyRequest:
        scenario, faults = selectors
        settings = self.context.settings()
        warnings = request.scope.setdefault("state", {}).setdefault(REQUEST_WARNINGS, [])
        reply_request = call.reply_request(scenario, settings.faults.merged(faults), settings.speed)
        return replace(reply_request, warn=warnings.append)


async def _json_body(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except ValueError:
        return None  # the protocol's own check says what is missing
