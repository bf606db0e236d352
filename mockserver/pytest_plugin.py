"""pytest plugin (entry point `pytest11`): the mock on a free port, for a test or a whole session.

    def test_chat(waldur_mock):
        r = httpx.get(f"{waldur_mock.url}/api/chat-threads/", headers=waldur_mock.auth("alice"))

    @pytest.mark.waldur_cassette("cassettes/talk.jsonl", replay="fallback")
    def test_recorded(waldur_mock): ...

Options come from `@pytest.mark.waldur_mock(...)` on the test (or module/class), over the
`waldur_mock_options` fixture (override it in a conftest; the session fixture reads only it).
Only the standard library and pytest are imported at start-up: the app, uvicorn and the
replay layer load when a fixture first runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

OPTION_NAMES = ("api", "cassette", "replay", "scripts", "speed", "seed_data", "users", "validate_responses")
DEFAULTS: dict[str, Any] = {"api": "8.0.5", "replay": "strict", "speed": 0.0}
START_TIMEOUT = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"waldur_mock(**options): options of the waldur_mock fixture for this test ({', '.join(OPTION_NAMES)})",
    )
    config.addinivalue_line(
        "markers",
        "waldur_cassette(path, replay='strict'): serve this cassette (relative to the test file) to this test",
    )


@dataclass
class RunningMock:
    """A mock served over real TCP: its base URL, the demo users' tokens, and the app behind it."""

    url: str
    tokens: dict[str, str]  # username -> API token
    app: Any = field(repr=False)  # the MockApp (store, journal, settings) for white-box assertions

    def auth(self, username: str) -> dict[str, str]:
        """The `Authorization` header of one user."""
        return {"Authorization": f"Token {self.tokens[username]}"}

    def reset(self) -> None:
        """Back to the seed state (and the cassette's first recordings), as `POST /__mock__/reset`."""
        self.app.reset()


@pytest.fixture
def waldur_mock_options() -> dict[str, Any]:
    """Override in a conftest.py to set defaults (for instance a cassette or `speed`) for all tests."""
    return {}


@pytest.fixture
def waldur_mock(request: pytest.FixtureRequest, waldur_mock_options: dict[str, Any]) -> Iterator[RunningMock]:
    """A fresh mock for this test, on a free port."""
    options = {**DEFAULTS, **waldur_mock_options, **_marked(request)}
    with _serving(options, Path(request.path).parent) as running:
        yield running


@pytest.fixture(scope="session")
def waldur_mock_session(request: pytest.FixtureRequest) -> Iterator[RunningMock]:
    """One mock for the whole session (call `.reset()` where tests must not see each other's state).

    Options: the `waldur_mock_session_options` fixture (session-scoped; override it in a conftest).
    """
    options = {**DEFAULTS, **request.getfixturevalue("waldur_mock_session_options")}
    with _serving(options, Path(str(request.config.rootpath))) as running:
        yield running


@pytest.fixture(scope="session")
def waldur_mock_session_options() -> dict[str, Any]:
    return {}


def _marked(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options from markers, the closest (the test's own) winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("waldur_mock"))):
        options.update(marker.kwargs)
    cassette = request.node.get_closest_marker("waldur_cassette")
    if cassette is not None:
        if not cassette.args:
            raise pytest.UsageError("waldur_cassette needs the cassette's path")
        options["cassette"] = cassette.args[0]
        options.update(cassette.kwargs)
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise pytest.UsageError(f"waldur_mock: unknown options {sorted(unknown)}; known: {', '.join(OPTION_NAMES)}")
    return options


def _server_options(options: dict[str, Any], base_dir: Path) -> Any:
    from mockserver.app import ServerOptions

    def path(name: str) -> Path | None:
        value = options.get(name)
        return None if value is None else (base_dir / value if not Path(value).is_absolute() else Path(value))

    known = {f.name for f in fields(ServerOptions)}
    made = ServerOptions(speed=float(options["speed"]), validate_responses=bool(options.get("validate_responses")))
    api = str(options["api"])
    if "api" in known:  # API profiles: passed through once the app has them
        made.api = api  # type: ignore[attr-defined]
    elif api != "8.0.5":
        raise pytest.UsageError(f"waldur_mock: api {api!r} is not available; this mock serves 8.0.5")
    for name in ("scripts", "seed_data"):
        if options.get(name) is not None:
            setattr(made, name, path(name))
    if options.get("users") is not None:
        made.users_file = path("users")  # type: ignore[assignment]
    if options.get("cassette") is not None:
        from mockserver.replay.cassette import read_cassette
        from mockserver.replay.replayer import ReplaySource

        made.replay = ReplaySource(read_cassette(path("cassette")), str(options["replay"]))  # type: ignore[arg-type]
    return made


class _serving:
    """Context manager: uvicorn in a daemon thread on an ephemeral loopback port."""

    def __init__(self, options: dict[str, Any], base_dir: Path):
        self.options = options
        self.base_dir = base_dir

    def __enter__(self) -> RunningMock:
        import uvicorn

        from mockserver.app import create_app

        app = create_app(_server_options(self.options, self.base_dir))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="waldur-chat-mock", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("waldur-chat-mock did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return RunningMock(f"http://127.0.0.1:{port}", {u.username: u.token for u in app.store.users}, app)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
