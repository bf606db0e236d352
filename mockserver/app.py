"""Assemble one mock instance: state, services, the spec-driven API and the middleware stack.

Outermost first: CORS, request journal, spec validation, then the router, which sends
`/__mock__/` to the control API and everything else to the spec-driven chat API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from mockserver.api.context import Services
from mockserver.api.endpoints import HANDLERS
from mockserver.api.rendering import json_response
from mockserver.api.router import SpecRouter
from mockserver.chat.deployment import DeploymentSettings
from mockserver.chat.service import ChatService
from mockserver.control.api import ControlAPI
from mockserver.control.journal import JournalMiddleware, RequestJournal
from mockserver.engine.base import ReplyEngine
from mockserver.engine.simple import SimpleEngine
from mockserver.openapi.loader import WALDUR_SPEC, SpecIndex
from mockserver.openapi.validation import ValidationMiddleware, ViolationLog
from mockserver.store import ChatStore, User
from mockserver.users import DEFAULT_USERS_FILE, load_users

log = logging.getLogger("mockserver")

# What homeport sends (clients notes, 5.1) plus the mock's own per-request selectors.
CORS_ALLOW_HEADERS = [
    "Authorization", "Content-Type", "Accept", "Accept-Language", "X-IMPERSONATED-USER-UUID",
    "X-Mock-Scenario", "X-Mock-Fault",
]
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CORS_EXPOSE_HEADERS = ["X-Result-Count", "Link"]


@dataclass
class ServerOptions:
    users: list[User] | None = None  # default: loaded from users_file
    users_file: Path = DEFAULT_USERS_FILE
    spec_file: Path = WALDUR_SPEC
    validate_responses: bool = False
    cors: bool = True
    journal_limit: int = 1000
    engine: ReplyEngine | None = None
    settings: DeploymentSettings = field(default_factory=DeploymentSettings)


class MockApp:
    """The ASGI application plus handles on its state, for the CLI, tests and the control API."""

    def __init__(self, options: ServerOptions | None = None):
        self.options = options or ServerOptions()
        users = self.options.users if self.options.users is not None else load_users(self.options.users_file)
        self.spec = SpecIndex.from_file(self.options.spec_file)
        self.store = ChatStore(users)
        self.settings = self.options.settings
        self._initial_settings = _copy_settings(self.settings)
        self.chat = ChatService(self.store, self.options.engine or SimpleEngine(), self.settings)
        self.services = Services(store=self.store, settings=self.settings, chat=self.chat)
        self.journal = RequestJournal(self.options.journal_limit)
        self.violations = ViolationLog()
        self.control = ControlAPI(lambda: self.settings, self.journal, self.reset)
        self.asgi = self._build()

    def _build(self) -> Starlette:
        router = SpecRouter(self.spec, self.services, HANDLERS)
        middleware = [
            Middleware(JournalMiddleware, journal=self.journal),
            Middleware(
                ValidationMiddleware, spec=self.spec,
                validate_responses=self.options.validate_responses, violations=self.violations,
            ),
        ]
        if self.options.cors:
            middleware.insert(0, Middleware(
                CORSMiddleware, allow_origins=["*"], allow_methods=CORS_ALLOW_METHODS,
                allow_headers=CORS_ALLOW_HEADERS, expose_headers=CORS_EXPOSE_HEADERS,
            ))
        return Starlette(
            routes=[*self.control.routes(), Mount("/", app=router)],
            middleware=middleware,
            exception_handlers={Exception: _server_error},
        )

    def reset(self) -> None:
        """Back to the seed state: no chat data, default deployment settings, empty journal."""
        self.store.reset()
        fresh = _copy_settings(self._initial_settings)
        for name in vars(fresh):
            setattr(self.settings, name, getattr(fresh, name))
        self.journal.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


def _copy_settings(settings: DeploymentSettings) -> DeploymentSettings:
    import copy

    return copy.deepcopy(settings)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"detail": "A server error occurred."}, status=500)


def create_app(options: ServerOptions | None = None) -> MockApp:
    return MockApp(options)
