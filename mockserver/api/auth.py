"""Waldur's token authentication: `Authorization: Token <key>` or `?x-auth-token=<key>`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from mockserver.errors import AuthenticationFailed, NotAuthenticated
from mockserver.store import ChatStore, User


def credentials(request: Request) -> str | None:
    """The token the request carries, or None when it carries none (DRF's TokenAuthentication).

    Other schemes (`Bearer` is Waldur's OIDC, not emulated) count as no credentials."""
    header = request.headers.get("authorization", "")
    parts = header.split()
    if parts and parts[0].lower() == "token":
        if len(parts) == 1:
            raise AuthenticationFailed("Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise AuthenticationFailed("Invalid token header. Token string should not contain spaces.")
        return parts[1]
    return request.query_params.get("x-auth-token") or None


def authenticate(request: Request, store: ChatStore) -> User:
    token = credentials(request)
    if token is None:
        raise NotAuthenticated()
    user = store.user_by_token(token)
    if user is None:
        raise AuthenticationFailed()
    if user.token_expired:
        raise AuthenticationFailed("Token has expired.")
    return user


def identifies_user(scope: Scope, store: ChatStore) -> bool:
    """Whether `authenticate` would let the request through: only then is its body read."""
    try:
        authenticate(Request(scope), store)
    except NotAuthenticated:  # AuthenticationFailed included
        return False
    return True
