"""Spec-driven routing: the spec's paths and methods decide what exists, as Waldur's router does.

For a known path with a method the real viewset refuses, DRF authenticates first and
then answers 405 (or OPTIONS metadata). A path missing its trailing slash is redirected
(Django's APPEND_SLASH). Everything else goes to homeport's boot endpoints or is a 404.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mockserver.api.boot import BootEndpoints
from mockserver.api.context import Call, Handler, Services
from mockserver.api.rendering import error_response, json_response
from mockserver.errors import ApiError, ConfigurationError, MethodNotAllowed, NotFound
from mockserver.openapi.loader import PathRoute, SpecIndex
from mockserver.openapi.validation import RequestCheck


class SpecRouter:
    def __init__(self, spec: SpecIndex, services: Services, handlers: dict[str, Handler]):
        missing = [
            op.operation_id
            for route in spec.routes
            for op in route.operations.values()
            if op.operation_id not in handlers
        ]
        if missing:
            raise ConfigurationError(f"spec operations without a handler: {', '.join(sorted(missing))}")
        self.spec = spec
        self.services = services
        self.handlers = handlers
        self.boot = BootEndpoints(services.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        found = self.spec.find(scope["path"])  # once: the dispatch and the `Allow` header both need it
        try:
            response = await self._dispatch(request, found)
        except ApiError as error:
            response = error_response(error)
        allow = self._allow(scope["path"], found)
        await response(scope, receive, _with_header(send, b"allow", allow) if allow else send)

    def _allow(self, path: str, found: tuple[PathRoute, dict[str, str]] | None) -> bytes | None:
        """DRF puts `Allow` on every response of a view: its methods, then OPTIONS."""
        if found is not None:
            methods = [m for m in DRF_METHOD_ORDER if m in found[0].operations]
            return ", ".join([*methods, "OPTIONS"]).encode()
        return b"OPTIONS" if self.spec.is_refused(path) else None

    async def _dispatch(self, request: Request, found: tuple[PathRoute, dict[str, str]] | None) -> ASGIApp:
        # The scope's path, not `request.url.path`: urlsplit drops newlines and tabs, so
        # `/current/\n` would pass for `/current/` there and miss the validation layer.
        path, method = request.scope["path"], request.method
        if found is not None:
            route, _ = found
            operation = route.operations.get(method)
            if operation is None:
                return self._refuse(request, route)
            check: RequestCheck = request.scope["state"]["request_check"]
            return await self.handlers[operation.operation_id](Call(request, self.services, check))
        if self.spec.is_refused(path):
            return self._refuse(request, PathRoute(path, re.compile(re.escape(path))))
        if not path.endswith("/") and (self.spec.find(path + "/") or self.spec.is_refused(path + "/")):
            # Django's APPEND_SLASH redirects to the escaped path (`escape_uri_path`).
            location = request.url.replace(path=quote(path + "/", safe="/:@&+$,-_.!~*'()", errors="surrogatepass"))
            return RedirectResponse(str(location), status_code=301)
        answer = await self.boot.answer(request)
        if answer is not None:
            return answer
        raise NotFound()

    def _refuse(self, request: Request, route: PathRoute | None) -> ASGIApp:
        """DRF runs `initial()` (feature flag, authentication) before looking up the handler.

        An AllowAny view (every operation `open`) has no feature flag in `initial()` and lets an
        anonymous caller through; credentials that do not hold are still 401."""
        call = Call(request, self.services, RequestCheck.empty())
        if route is not None and route.operations and all(op.open for op in route.operations.values()):
            call.authenticate_if_credentials()
        else:
            if route is not None and any(op.streams for op in route.operations.values()):
                self.services.chat.ensure_enabled()
            call.authenticate()
        if request.method == "OPTIONS" and route is not None:
            return json_response(_metadata(route))
        raise MethodNotAllowed(request.method)


DRF_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _with_header(send: Send, name: bytes, value: bytes) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (name, value)]}
        await send(message)

    return sending


def _metadata(route: PathRoute) -> dict[str, object]:
    """DRF's SimpleMetadata answer to OPTIONS (name and description vary per view)."""
    return {
        "name": route.template.strip("/").split("/")[1].replace("-", " ").title(),
        "description": "",
        "renders": ["application/json", "text/html"],
        "parses": ["application/json", "application/x-www-form-urlencoded"],
    }
