"""Assemble one mock instance: state, services, the spec-driven API and the middleware stack.

Outermost first: admission in slices (a burst of new requests waits its turn behind the
records already due), the control API's origin guard, CORS (chat API only), request journal,
the upstream-LLM endpoints (`/__upstream__/`, outside the chat API's checks), spec
validation, then the router, which sends `/__mock__/` to the control API and everything
else to the spec-driven chat API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from mockserver.api.admission import AdmissionGate, AdmissionMiddleware
from mockserver.api.auth import identifies_user
from mockserver.api.context import Services
from mockserver.api.limits import RequestLimits
from mockserver.api.rendering import json_response
from mockserver.api.router import SpecRouter
from mockserver.api.streaming import ConnectionDroppedOnPurpose
from mockserver.chat.deployment import DeploymentSettings
from mockserver.chat.injection import InjectionDetector
from mockserver.chat.service import ChatService
from mockserver.control.api import BODY_LIMITS as CONTROL_BODY_LIMITS
from mockserver.control.api import ControlAPI
from mockserver.control.guard import ControlOriginGuard
from mockserver.control.journal import CONTROL_PREFIX, JournalMiddleware, RequestJournal
from mockserver.control.ui import Playground
from mockserver.engine.base import ReplyEngine
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.scripts import ScriptSet, load_script_dir
from mockserver.engine.scripts.loader import DEFAULT_SCRIPT_DIR, check_unique, require_catch_all
from mockserver.engine.scripts.model import Script
from mockserver.engine.tools import DEFAULT_RESOURCES_FILE, ToolExecutor, load_resources
from mockserver.errors import ConfigurationError
from mockserver.heap import steady_heap
from mockserver.openapi.loader import SpecIndex
from mockserver.openapi.validation import ValidationMiddleware, ViolationLog
from mockserver.profiles import API_NAMES, DEFAULT_API, get_profile
from mockserver.replay.replayer import ReplayLayer, ReplaySource, UserAliases
from mockserver.resources import UI_DIR
from mockserver.seed import apply_seed, load_seed
from mockserver.store import ChatStore, User
from mockserver.upstream.app import UPSTREAM_PREFIX, UpstreamApp, UpstreamContext
from mockserver.upstream.target import UpstreamTarget
from mockserver.users import DEFAULT_USERS_FILE, load_users

log = logging.getLogger("mockserver")

# What homeport sends (clients notes, 5.1) plus the mock's own per-request selectors.
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "X-IMPERSONATED-USER-UUID",
    "X-Mock-Scenario",
    "X-Mock-Fault",
]
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CORS_EXPOSE_HEADERS = ["X-Result-Count", "Link", "X-Mock-Replay"]


@dataclass
class ServerOptions:
    users: list[User] | None = None  # default: loaded from users_file
    users_file: Path = DEFAULT_USERS_FILE
    api: str = DEFAULT_API  # the API profile: which Waldur version is served (`--api`)
    spec_file: Path | None = None  # default: the profile's spec
    validate_responses: bool = False
    cors: bool = True  # for the chat API; the control API never sends CORS headers
    allowed_hosts: tuple[str, ...] = ()  # Host names besides localhost and IPs the control API answers
    journal_limit: int = 1000
    scripts: Path | None = None  # a directory of *.yaml or one file (default: the profile's, else the packaged)
    resources_file: Path = DEFAULT_RESOURCES_FILE
    speed: float = 1.0  # playback speed of scripted replies; 0 = no delays
    seed_data: Path | None = None  # threads and messages to start with (and reset to)
    engine: ReplyEngine | None = None  # replaces the scripted engine (tests, experiments)
    allow_no_catch_all: bool = False  # accept script sets in which a request may match nothing
    settings: DeploymentSettings = field(default_factory=DeploymentSettings)
    replay: ReplaySource | None = None  # answer from a cassette first (strict or fallback to the mock)
    upstream_token: str | None = None  # the token /__upstream__/ requires (`--upstream-token`); None: any
    upstream_only: bool = False  # `waldur-chat-mock upstream`: the chat API answers 404
    upstream_target: UpstreamTarget | None = None  # `--upstream-url`: the chat API calls a real LLM
    # The collector tuned for a long-running server (`mockserver.heap`): the CLI's servers turn it
    # on; off for embedding and tests, where each start's full collection of a big heap costs ~0.5 s.
    steady_heap: bool = False


class MockApp:
    """The ASGI application plus handles on its state, for the CLI, tests and the control API."""

    def __init__(self, options: ServerOptions | None = None):
        self.options = options or ServerOptions()
        users = self.options.users if self.options.users is not None else load_users(self.options.users_file)
        self.profile = get_profile(self.options.api)
        self.spec = SpecIndex.from_file(self.options.spec_file or self.profile.spec_file)
        self.store = ChatStore(users)
        self.seed = load_seed(self.options.seed_data, {u.username for u in users}) if self.options.seed_data else []
        apply_seed(self.store, self.seed)
        self.settings = self.options.settings
        self.settings.speed = self.options.speed
        self._initial_settings = _copy_settings(self.settings)
        self.tools = ToolExecutor(load_resources(self.options.resources_file), self._blocks_text)
        self.scripts_path = self.options.scripts or self.profile.default_scripts or DEFAULT_SCRIPT_DIR
        self._default_scripts = self.load_scripts(
            load_script_dir(self.scripts_path), str(self.scripts_path), self.options.allow_no_catch_all
        )
        self.scripted = self._scripted_engine()
        self.engine = self.options.engine or self._http_engine() or self.scripted
        self.chat = ChatService(
            self.store, self.engine, self.settings, self.profile.chat_disabled, self.profile.upstream_missing
        )
        self.services = Services(store=self.store, settings=self.settings, chat=self.chat, tools=self.tools)
        self.journal = RequestJournal(self.options.journal_limit, api=self.profile.name)
        self.violations = ViolationLog()
        self.control = ControlAPI(
            lambda: self.settings,
            self.journal,
            self.reset,
            _Scripts(self),
            lambda: self.store.users,
            api_version=self.profile.name,
        )
        self.playground = Playground(UI_DIR)
        self.admission = AdmissionGate()
        self.upstream = UpstreamApp(
            UpstreamContext(lambda: self.scripted, lambda: self.settings, self.options.upstream_token)
        )
        self.asgi = self._build()

    def _scripted_engine(self) -> ScriptedEngine:
        """The scripts' engine: the chat API's, and always the upstream mode's."""
        given = self.options.engine
        return given if isinstance(given, ScriptedEngine) else ScriptedEngine(self._default_scripts, self.tools)

    def _http_engine(self) -> ReplyEngine | None:
        """`--upstream-url`: the chat API's upstream stage calls a real LLM (httpx loaded only then)."""
        target = self.options.upstream_target
        if target is None:
            return None
        if not self.profile.live_upstream:
            able = ", ".join(name for name in API_NAMES if get_profile(name).live_upstream)
            raise ConfigurationError(f"--upstream-url works with --api {able} only (this API's turn plans its reply)")
        from mockserver.upstream.client import HttpUpstreamEngine

        return HttpUpstreamEngine(target, self.tools)

    def _build(self) -> Starlette:
        router: ASGIApp = SpecRouter(self.spec, self.services, self.profile.handlers)
        if self.options.upstream_only:
            router = _not_found
        middleware = [
            Middleware(JournalMiddleware, journal=self.journal),
            Middleware(RequestLimits, path_limits=CONTROL_BODY_LIMITS),
            Middleware(
                ValidationMiddleware,
                spec=self.spec,
                validate_responses=self.options.validate_responses,
                violations=self.violations,
                caller_known=lambda scope: identifies_user(scope, self.store),
            ),
        ]
        if self.options.replay is not None:
            middleware.insert(2, self._replay_middleware(self.options.replay))
        middleware.insert(2, Middleware(_UpstreamFirst, upstream=self.upstream))
        if self.options.cors:
            middleware.insert(
                0,
                Middleware(
                    _ApiCors,
                    allow_origins=["*"],
                    allow_methods=CORS_ALLOW_METHODS,
                    allow_headers=CORS_ALLOW_HEADERS,
                    expose_headers=CORS_EXPOSE_HEADERS,
                ),
            )
        middleware.insert(0, Middleware(ControlOriginGuard, allowed_hosts=self.options.allowed_hosts))
        middleware.insert(0, Middleware(AdmissionMiddleware, gate=self.admission))
        # The chat API is dispatched by our spec router for every path (Starlette's Mount would
        # not match paths with a newline in them); the control API is a plain Starlette router.
        return Starlette(
            routes=[Mount("/__mock__", routes=[*self.control.routes(), *self.playground.routes()])],
            middleware=[*middleware, Middleware(_ApiFirst, api=router)],
            exception_handlers={Exception: _server_error},
            lifespan=steady_heap if self.options.steady_heap else None,
        )

    def _replay_middleware(self, source: ReplaySource) -> Middleware:
        """Inside the journal and request limits, outside validation: replayed answers are what was recorded."""
        return Middleware(
            ReplayLayer,
            cassette=source.cassette,
            mode=source.mode,
            speed=lambda: self.settings.speed,
            alias_of=UserAliases([(user.token, user.username) for user in self.store.users]),
        )

    def _blocks_text(self, text: str) -> bool:
        """The injection verdict on tool arguments, with the allowlist configured right now."""
        return InjectionDetector(self.settings.injection_allowlist).scan(text).blocked

    def load_scripts(
        self, scripts: list[Script], source: str = "<scripts>", allow_no_catch_all: bool = False
    ) -> ScriptSet:
        """Check a script set against the profile's stream schema (dry run); raise ScriptError if unusable."""
        check_unique(scripts)
        script_set = ScriptSet(scripts)
        self.profile.check_scripts(ScriptedEngine(script_set, self.tools), self.spec)
        if not allow_no_catch_all:
            require_catch_all(scripts, source)
        return script_set

    def replace_scripts(
        self, scripts: list[Script], source: str = "<scripts>", allow_no_catch_all: bool = False
    ) -> None:
        self.scripted.scripts = self.load_scripts(scripts, source, allow_no_catch_all)

    def reset(self) -> None:
        """Back to the seed state: the seed data only, default settings and scripts, empty journal."""
        self.store.reset()
        self.services.anonymous.reset()
        apply_seed(self.store, self.seed)
        self.scripted.scripts = self._default_scripts
        fresh = _copy_settings(self._initial_settings)
        for name in vars(fresh):
            setattr(self.settings, name, getattr(fresh, name))
        self.journal.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


class _ApiFirst:
    """Send everything but `/__mock__/` to the spec router, before Starlette's routing."""

    def __init__(self, app: ASGIApp, api: ASGIApp):
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _UpstreamFirst:
    """`/__upstream__/` to the upstream-LLM endpoints: journaled, but not checked as the chat API."""

    def __init__(self, app: ASGIApp, upstream: ASGIApp):
        self.app = app
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(UPSTREAM_PREFIX):
            await self.upstream(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The chat API under `waldur-chat-mock upstream`: not served."""
    await json_response({"detail": "Not found."}, status=404)(scope, receive, send)


class _ApiCors:
    """CORS for the chat API only: on `/__mock__/` no preflight is answered and no CORS header sent."""

    def __init__(self, app: ASGIApp, **options: Any):
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
        else:
            await self.cors(scope, receive, send)


class _Scripts:
    """The app's script set as the control API sees it."""

    def __init__(self, app: MockApp):
        self.app = app

    def current(self) -> list[Script]:
        return self.app.scripted.scripts.scripts

    def replace(self, scripts: list[Script], source: str, allow_no_catch_all: bool = False) -> None:
        self.app.replace_scripts(scripts, source, allow_no_catch_all)

    def restore(self) -> None:
        self.app.scripted.scripts = self.app._default_scripts


def _copy_settings(settings: DeploymentSettings) -> DeploymentSettings:
    import copy

    return copy.deepcopy(settings)


async def _server_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ConnectionDroppedOnPurpose):  # a drop fault is not an error
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"detail": "A server error occurred."}, status=500)


def create_app(options: ServerOptions | None = None) -> MockApp:
    return MockApp(options)
