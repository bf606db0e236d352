"""The few non-chat endpoints homeport needs to boot and open the assistant (clients notes, 5.3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mockserver.api.auth import authenticate
from mockserver.api.rendering import json_response
from mockserver.errors import ApiError, NotFound, ParseError
from mockserver.openapi.bodies import parse_json
from mockserver.store import ChatStore, User

CONFIGURATION: dict[str, Any] = {
    "WALDUR_CORE": {
        "AUTHENTICATION_METHODS": ["LOCAL_SIGNIN"],
        "SITE_NAME": "Waldur chat mock",
        "DEFAULT_IDP": "",
        "LANGUAGE_CHOICES": "en",
        "USER_MANDATORY_FIELDS": [],
        "COMPANY_TYPES": [],
        "ONLY_STAFF_MANAGES_SERVICES": False,
        "MARKETPLACE_LANDING_PAGE": False,
        "AI_ASSISTANT_ENABLED_ROLES": "all",
        "OIDC_ACCESS_TOKEN_ENABLED": False,
    },
    "FEATURES": {"support": {"enable_llm_assistant": True}},
    "LANGUAGES": [["en", "English"]],
    "LANGUAGE_CODE": "en",
    "WALDUR_AUTH_SOCIAL": {},
    "WALDUR_SUPPORT": {"ENABLED": False},
    "WALDUR_MARKETPLACE": {},
}


def user_me_json(user: User, request: Request) -> dict[str, Any]:
    return {
        "url": f"{request.base_url}api/users/{user.uuid}/",
        "uuid": user.uuid,
        "username": user.username,
        "full_name": user.full_name,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_staff": user.is_staff,
        "is_support": user.is_support,
        "is_active": True,
        "token_expires_at": None,
        "permissions": [],
    }


class BootEndpoints:
    """Answers what homeport calls besides the chat API; None means "not mine"."""

    def __init__(self, store: ChatStore):
        self.store = store

    async def answer(self, request: Request) -> Response | None:
        path, method = request.scope["path"], request.method  # not url.path: see SpecRouter
        if path == "/api/configuration/" and method == "GET":
            return json_response(CONFIGURATION)
        if path == "/api/users/me/" and method == "GET":
            return json_response(user_me_json(authenticate(request, self.store), request))
        if path == "/api-auth/password/" and method == "POST":
            return await self._password_login(request)
        if path == "/api-auth/default/init/":
            raise NotFound()  # only a 204 would send homeport to an identity provider
        if path.startswith("/api/") and not path.startswith("/api/chat") and method in ("GET", "HEAD"):
            return json_response([], headers={"X-Result-Count": "0"})
        return None

    async def _password_login(self, request: Request) -> Response:
        try:
            body = parse_json(await request.body())
        except ParseError:
            body = {}
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        user = self.store.user_by_username(username) if isinstance(username, str) else None
        if user is None or user.password is None or user.password != password:
            raise _LoginFailed()
        return json_response({"token": user.token})


class _LoginFailed(ApiError):
    status_code = 401
    default_detail = "Unable to log in with provided credentials."
