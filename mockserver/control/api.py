"""Routes of the control API (spec/mock-control.yaml). Not part of Waldur's API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any, Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mockserver.api.rendering import error_response, json_response, no_content
from mockserver.chat.deployment import DeploymentSettings
from mockserver.control.config import apply_config_patch, config_json
from mockserver.control.journal import CONTROL_PREFIX, JournalFilter, RequestJournal
from mockserver.engine.scripts import Script, ScriptError, load_scripts_text
from mockserver.engine.scripts.loader import MAX_SCRIPT_BYTES
from mockserver.errors import ApiError
from mockserver.openapi.bodies import media_type, parse_json, request_charset
from mockserver.store import User

PUT_SCRIPTS_SOURCE = "<PUT /__mock__/scripts>"
CONFIG_BODY_LIMIT = 64 * 1024  # a configuration patch is a few hundred bytes
# Body limits of the control API's routes, below the chat API's (enforced by api.limits.RequestLimits).
BODY_LIMITS = {f"{CONTROL_PREFIX}config": CONFIG_BODY_LIMIT, f"{CONTROL_PREFIX}scripts": MAX_SCRIPT_BYTES}
TRUE_VALUES = {"true", "1", "yes"}
FALSE_VALUES = {"false", "0", "no", ""}


class ControlAPI:
    """`/__mock__/` endpoints. The app passes in what it owns: settings, journal, reset, scripts."""

    def __init__(
        self,
        settings: Callable[[], DeploymentSettings],
        journal: RequestJournal,
        reset: Callable[[], None],
        scripts: ScriptControl,
        users: Callable[[], Iterable[User]] = list,
        *,
        api_version: str,
    ):
        self.api_version = api_version  # the API profile served: health's spec_version
        self.settings = settings
        self.journal = journal
        self.reset_all = reset
        self.scripts = scripts
        self.users = users

    def routes(self) -> list[Route]:
        """Relative to the `/__mock__` mount."""
        return [
            Route("/reset", self.reset, methods=["POST"]),
            Route("/requests", self.requests, methods=["GET", "DELETE"]),
            Route("/config", self.config, methods=["GET", "PATCH"]),
            Route("/scripts", self.script_set, methods=["GET", "PUT", "DELETE"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/users", self.user_list, methods=["GET"]),
        ]

    async def reset(self, request: Request) -> Response:
        self.reset_all()
        return no_content()

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.journal.clear()
            return no_content()
        raw = request.query_params.get("limit")
        try:
            limit = int(raw) if raw else self.journal.limit
        except ValueError:
            return json_response({"limit": ["A valid integer is required."]}, status=400)
        if limit < 1:
            return json_response({"limit": ["Ensure this value is greater than or equal to 1."]}, status=400)
        params = request.query_params
        where = JournalFilter(params.get("method") or None, params.get("path") or None, params.get("user") or None)
        entries = self.journal.entries(limit, where)
        return json_response({"count": self.journal.count(where), "limit": limit, "requests": entries})

    async def config(self, request: Request) -> Response:
        if request.method == "PATCH":
            try:
                apply_config_patch(self.settings(), _parse_json(request, await request.body()))
            except ApiError as error:
                return error_response(error)
        return json_response(config_json(self.settings()))

    async def script_set(self, request: Request) -> Response:
        """GET lists the scripts; PUT replaces them (YAML or JSON, checked as at start); DELETE restores."""
        if request.method == "DELETE":
            self.scripts.restore()
            return no_content()
        if request.method == "PUT":
            refused = await self._replace_scripts(request)
            if refused is not None:
                return refused
        return json_response({"scripts": [_script_json(s) for s in self.scripts.current()]})

    async def _replace_scripts(self, request: Request) -> Response | None:
        """Parse and check in a worker thread (the loop stays free); BODY_LIMITS bounds the text."""
        allow = request.query_params.get("allow_no_catch_all", "").lower()
        if allow not in TRUE_VALUES | FALSE_VALUES:
            return json_response({"allow_no_catch_all": ["Must be a valid boolean."]}, status=400)
        text = (await request.body()).decode("utf-8", errors="replace")

        def load() -> None:
            scripts = load_scripts_text(text, PUT_SCRIPTS_SOURCE)
            self.scripts.replace(scripts, PUT_SCRIPTS_SOURCE, allow in TRUE_VALUES)

        try:
            await anyio.to_thread.run_sync(load)
        except ScriptError as exc:
            return json_response({"scripts": [str(exc)]}, status=400)
        return None

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "spec_version": self.api_version})

    async def user_list(self, request: Request) -> Response:
        """The demo users with their tokens, for the playground's user picker (demo tokens, loopback only)."""
        return json_response({"users": [_user_json(user) for user in self.users()]})


class ScriptControl(Protocol):
    def current(self) -> list[Script]: ...

    def replace(self, scripts: list[Script], source: str, allow_no_catch_all: bool = False) -> None: ...

    def restore(self) -> None: ...


def _user_json(user: User) -> dict[str, Any]:
    role = "staff" if user.is_staff else "support" if user.is_support else "user"
    return {"username": user.username, "full_name": user.full_name, "role": role, "token": user.token}


def _script_json(script: Script) -> dict[str, Any]:
    return {
        "name": script.name,
        "description": script.description,
        "source": _relative_source(script),
        "matches": script.match is not None,
        "faults": script.faults.as_dict(),
    }


def _relative_source(script: Script) -> str:
    """`file:line` with the file relative to the scripts root (its name: `*.yaml` are read from the root
    only), never an absolute path."""
    name = script.file if script.file.startswith("<") else PurePath(script.file).name  # "<PUT ...>" stays
    return f"{name}:{script.line}" if script.line else name


def _parse_json(request: Request, body: bytes) -> Any:
    """Read as the chat API reads JSON (DRF's parser): one reader, one set of refusals."""
    _, params = media_type(request.headers.get("content-type", ""))
    return parse_json(body, request_charset(params))
