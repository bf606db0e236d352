"""Routes of the control API (spec/mock-control.yaml). Not part of Waldur's API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mockserver.api.rendering import error_response, json_response, no_content
from mockserver.chat.deployment import DeploymentSettings
from mockserver.control.config import apply_config_patch, config_json
from mockserver.control.journal import RequestJournal
from mockserver.engine.scripts import Script, ScriptError, load_scripts_text
from mockserver.errors import ApiError
from mockserver.openapi.bodies import media_type, parse_json, request_charset

SPEC_VERSION = "8.0.5"


class ControlAPI:
    """`/__mock__/` endpoints. The app passes in what it owns: settings, journal, reset, scripts."""

    def __init__(
        self,
        settings: Callable[[], DeploymentSettings],
        journal: RequestJournal,
        reset: Callable[[], None],
        scripts: ScriptControl,
    ):
        self.settings = settings
        self.journal = journal
        self.reset_all = reset
        self.scripts = scripts

    def routes(self) -> list[Route]:
        """Relative to the `/__mock__` mount."""
        return [
            Route("/reset", self.reset, methods=["POST"]),
            Route("/requests", self.requests, methods=["GET", "DELETE"]),
            Route("/config", self.config, methods=["GET", "PATCH"]),
            Route("/scripts", self.script_set, methods=["GET", "PUT", "DELETE"]),
            Route("/health", self.health, methods=["GET"]),
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
        entries = self.journal.entries(limit)
        return json_response({"count": len(self.journal), "limit": limit, "requests": entries})

    async def config(self, request: Request) -> Response:
        if request.method == "PATCH":
            try:
                apply_config_patch(self.settings(), await _json_body(request))
            except ApiError as error:
                return error_response(error)
        return json_response(config_json(self.settings()))

    async def script_set(self, request: Request) -> Response:
        """GET lists the scripts; PUT replaces them (YAML or JSON, checked as at start); DELETE restores."""
        if request.method == "DELETE":
            self.scripts.restore()
            return no_content()
        if request.method == "PUT":
            text = (await request.body()).decode("utf-8", errors="replace")
            try:
                self.scripts.replace(load_scripts_text(text, "<PUT /__mock__/scripts>"))
            except ScriptError as exc:
                return json_response({"scripts": [str(exc)]}, status=400)
        return json_response({"scripts": [_script_json(s) for s in self.scripts.current()]})

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "spec_version": SPEC_VERSION})


class ScriptControl(Protocol):
    def current(self) -> list[Script]: ...

    def replace(self, scripts: list[Script]) -> None: ...

    def restore(self) -> None: ...


def _script_json(script: Script) -> dict[str, Any]:
    return {
        "name": script.name,
        "description": script.description,
        "source": script.where,
        "matches": script.match is not None,
        "faults": script.faults.as_dict(),
    }


async def _json_body(request: Request) -> Any:
    """Read as the chat API reads JSON (DRF's parser): one reader, one set of refusals."""
    _, params = media_type(request.headers.get("content-type", ""))
    return parse_json(await request.body(), request_charset(params))
