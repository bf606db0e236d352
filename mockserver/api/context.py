"""What every endpoint receives: the request, the app's services and the validation verdict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp

from mockserver.api.auth import authenticate, credentials
from mockserver.chat.anonymous import AnonymousChat
from mockserver.chat.deployment import DeploymentSettings
from mockserver.chat.service import ChatService
from mockserver.engine.tools import ToolExecutor
from mockserver.openapi.validation import RequestCheck
from mockserver.store import ChatStore, User
from mockserver.util import REQUEST_WARNINGS, normalize_uuid


@dataclass
class Services:
    """The long-lived objects one mock instance is made of."""

    store: ChatStore
    settings: DeploymentSettings
    chat: ChatService
    tools: ToolExecutor
    anonymous: AnonymousChat = field(default_factory=AnonymousChat)  # 8.1's marketplace chat


@dataclass
class Call:
    request: Request
    services: Services
    check: RequestCheck

    @property
    def store(self) -> ChatStore:
        return self.services.store

    def authenticate(self) -> User:
        user = authenticate(self.request, self.store)
        self.request.scope.setdefault("state", {})["username"] = user.username
        return user

    def authenticate_if_credentials(self) -> User | None:
        """AllowAny views: no credentials is an anonymous caller; credentials that fail are 401."""
        if credentials(self.request) is None:
            return None
        return self.authenticate()

    def authenticated(self) -> User:
        """DRF's usual order: authentication (401), then lookups and filters (404/400)."""
        user = self.authenticate()
        self.check.raise_for_errors()
        return user

    def warn(self, message: str) -> None:
        """A warning about this request, shown in its journal entry."""
        self.request.scope.setdefault("state", {}).setdefault(REQUEST_WARNINGS, []).append(message)

    def body(self) -> dict[str, object]:
        """The parsed JSON object body (empty when there is none, or it is not an object)."""
        return self.check.body if isinstance(self.check.body, dict) else {}

    def path_uuid(self) -> str:
        return normalize_uuid(self.check.path_params["uuid"])


Handler = Callable[[Call], Awaitable[ASGIApp]]


def registrar(table: dict[str, Handler]) -> Callable[[str], Callable[[Handler], Handler]]:
    """`@operation("chat_stream")` puts the handler in `table` under that operationId (the router
    then refuses to start if a spec operation has none)."""

    def operation(operation_id: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            table[operation_id] = handler
            return handler

        return register

    return operation
