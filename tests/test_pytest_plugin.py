"""The pytest11 plugin, as a consumer's test suite uses it (a separate pytest run in a scratch directory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mockserver.replay.cassette import CassetteWriter, Interaction, RecordedRequest, RecordedResponse

CONSUMER_TESTS = """
import httpx
import pytest


def test_a_fresh_mock_per_test(waldur_mock):
    created = httpx.post(f"{waldur_mock.url}/api/chat/stream/", json={"input": "hi"}, headers=waldur_mock.auth("alice"))
    assert created.status_code == 200
    assert len(waldur_mock.app.store.users) == 4 and waldur_mock.tokens["bob"] == "bob-token"


def test_state_does_not_leak_between_tests(waldur_mock):
    assert httpx.get(f"{waldur_mock.url}/api/chat-threads/", headers=waldur_mock.auth("alice")).json() == []


@pytest.mark.waldur_cassette("cassettes/recorded.jsonl")
def test_a_cassette_per_test(waldur_mock):
    hit = httpx.get(f"{waldur_mock.url}/api/chat-threads/", headers=waldur_mock.auth("alice"))
    assert hit.headers["x-mock-replay"] == "hit" and hit.json() == [{"recorded": True}]
    miss = httpx.get(f"{waldur_mock.url}/api/chat-sessions/", headers=waldur_mock.auth("alice"))
    assert miss.status_code == 404 and miss.headers["x-mock-replay"] == "miss"


@pytest.mark.waldur_cassette("cassettes/recorded.jsonl", replay="fallback")
def test_fallback_per_test(waldur_mock):
    served = httpx.get(f"{waldur_mock.url}/api/chat-sessions/", headers=waldur_mock.auth("alice"))
    assert served.status_code == 200 and served.headers["x-mock-replay"] == "miss"


@pytest.mark.waldur_mock(speed=2, seed_data="seed.yaml")
def test_options_by_marker(waldur_mock):
    assert waldur_mock.app.settings.speed == 2
    listed = httpx.get(f"{waldur_mock.url}/api/chat-threads/", headers=waldur_mock.auth("bob")).json()
    assert [t["name"] for t in listed] == ["Seeded"]


def test_one_mock_for_the_session(waldur_mock_session):
    mock = waldur_mock_session
    assert httpx.get(f"{mock.url}/api/chat-threads/", headers=mock.auth("bob")).status_code == 200


@pytest.mark.waldur_mock(colour="blue")
def test_an_unknown_option_is_refused(waldur_mock):
    pass
"""


def _consumer_project(root: Path, tests: str, cassette: str) -> subprocess.CompletedProcess[str]:
    """A scratch project with one cassette (alice's thread list) and a seed file; runs pytest in it."""
    (root / cassette).parent.mkdir(parents=True, exist_ok=True)
    writer = CassetteWriter(root / cassette, (), "http://recorded")
    writer.append(
        Interaction(
            RecordedRequest("GET", "/api/chat-threads/", user="user-1"),
            RecordedResponse(200, headers=(("content-type", "application/json"),), body='[{"recorded": true}]'),
        )
    )
    writer.close()
    (root / "seed.yaml").write_text("threads:\n  - owner: bob\n    name: Seeded\n")
    (root / "test_consumer.py").write_text(tests)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_consumer.py"],
        cwd=root,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_plugin_serves_consumers_tests(tmp_path: Path) -> None:
    run = _consumer_project(tmp_path, textwrap.dedent(CONSUMER_TESTS), "cassettes/recorded.jsonl")
    assert "6 passed" in run.stdout and "1 error" in run.stdout, run.stdout + run.stderr
    assert "unknown options ['colour']" in run.stdout


@pytest.mark.slow
def test_the_readme_example_passes_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("# test_chat_frontend_api.py")
    example = readme[start : readme.index("```", start)]
    run = _consumer_project(tmp_path, example, "cassettes/staging-session.jsonl")
    assert "3 passed" in run.stdout, run.stdout + run.stderr


def test_the_plugin_imports_nothing_heavy_at_pytest_start_up() -> None:
    probe = (
        "import sys, mockserver.pytest_plugin; "
        "heavy = [m for m in ('mockserver.app', 'uvicorn', 'starlette', 'httpx', 'openapi_core') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
