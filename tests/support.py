"""A synchronous test client over httpx's ASGI transport, with one helper per demo user.

httpx's ASGITransport delivers a streamed body only when it is complete: fine for content
checks; timing is measured against a real uvicorn elsewhere.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import uvicorn
from starlette.types import ASGIApp

from mockserver.api.limits import UVICORN_LIMITS
from mockserver.app import MockApp
from mockserver.contract.runner import Report, VerifyOptions, verify

TOKENS = {"alice": "alice-token", "bob": "bob-token", "staff": "staff-token", "support": "support-token"}


class Client:
    """Calls the app as one user (or anonymously when `token` is None)."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, http: httpx.AsyncClient, token: str | None):
        self._portal = portal
        self._http = http
        self.token = token

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Token {self.token}")
        return self._portal.call(lambda: self._http.request(method, url, headers=headers, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def stream(self, **body: Any) -> StreamResult:
        """POST /api/chat/stream/ with a JSON body and parse the NDJSON answer."""
        headers = body.pop("headers", None)
        return StreamResult(self.post("/api/chat/stream/", json=body, headers=headers))


class StreamResult:
    def __init__(self, response: httpx.Response):
        self.response = response
        self.status_code = response.status_code
        self.records: list[dict[str, Any]] = (
            [json.loads(line) for line in response.text.splitlines()] if response.status_code == 200 else []
        )

    @property
    def thread_uuid(self) -> str:
        return self.records[0]["m"]["thread_uuid"]

    @property
    def final(self) -> dict[str, str]:
        return self.records[-1]["m"]

    @property
    def text(self) -> str:
        return "".join(r.get("c", "") for r in self.records if r.get("k") == "markdown")


class Clients:
    """`clients.alice`, `clients.bob`, `clients.staff`, `clients.support`, `clients.anonymous`."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, http: httpx.AsyncClient):
        self._portal = portal
        self._http = http
        for name, token in TOKENS.items():
            setattr(self, name, Client(portal, http, token))
        self.anonymous = Client(portal, http, None)

    def with_token(self, token: str | None) -> Client:
        return Client(self._portal, self._http, token)


@contextmanager
def clients_for(app: MockApp) -> Iterator[Clients]:
    with anyio.from_thread.start_blocking_portal() as portal:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")
        try:
            yield Clients(portal, http)
        finally:
            portal.call(http.aclose)


@dataclass
class Served:
    """A `serve` process on a free port; its output is complete once the `served` block has ended."""

    base: str
    stdout: str = ""
    stderr: str = ""


@contextmanager
def served(args: Sequence[str] = (), command: Sequence[str] | None = None, cwd: Path | None = None) -> Iterator[Served]:
    """Run `serve` (by default `python -m mockserver` of this venv) until the block ends, then stop it."""
    port = _free_port()
    argv = [*(command or [sys.executable, "-m", "mockserver"]), "serve", "--port", str(port), "--speed", "0", *args]
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Served(f"http://127.0.0.1:{port}")
    try:
        _wait_until_healthy(server.base, process)
        yield server
    finally:
        process.terminate()
        server.stdout, server.stderr = process.communicate(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(base: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"serve exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/__mock__/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not answer on {base} within {timeout} s")


@contextmanager
def served_app(app: ASGIApp, log_level: str = "warning") -> Iterator[str]:
    """Serve `app` with a real uvicorn on an ephemeral loopback port, with the HTTP settings of
    `serve` (h11 and its head limit); yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level, **UVICORN_LIMITS)
    server = uvicorn.Server(config)
    runner = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not runner.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        runner.join(timeout=10)


SMALL_RUN: dict[str, Any] = {"max_examples": 3, "seed": 1, "max_streams": 6}


def verify_in_process(target: ASGIApp, api: str, **options: Any) -> Report:
    """`verify --api API` against an ASGI app with the demo users' tokens (alice, bob);
    `SMALL_RUN` unless the caller says otherwise."""
    chosen = {**SMALL_RUN, **options}
    tokens = {"token": "alice-token", "other_token": "bob-token"}
    return verify(VerifyOptions(base_url="http://mock", app=target, api=api, **tokens, **chosen))
