"""`waldur-chat-mock upstream` serves the upstream endpoints and the control API, not the chat API."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from mockserver.cli import main
from tests.support import _free_port


@pytest.mark.slow
def test_the_upstream_command_serves_only_the_upstream() -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "mockserver", "upstream", "--port", str(port), "--speed", "0", "--quiet"]
    process = subprocess.Popen([*argv, "--upstream-token", "t"], stdout=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/__mock__/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        answer = httpx.post(
            f"{base}/__upstream__/langserve/stream", json={"input": "hi"}, headers={"Authorization": "Token t"}
        )
        assert answer.status_code == 200 and '"content": "Hello! "' in answer.text
        chat = httpx.post(
            f"{base}/api/chat/stream/", json={"input": "hi"}, headers={"Authorization": "Token alice-token"}
        )
        assert chat.status_code == 404
        assert httpx.get(f"{base}/__mock__/requests").status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert f"{base}/__upstream__/openai/v1" in out


@pytest.mark.parametrize("api", ["7.9.4", "8.1"])
def test_upstream_url_is_refused_where_the_turn_plans_its_reply(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--api", api, "--upstream-url", "http://127.0.0.1:1/v1"])
    assert code == 2
    assert "--upstream-url works with --api 8.0.5" in capsys.readouterr().err


def test_upstream_url_must_be_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream-url", "ftp://x"]) == 2
    assert "--upstream-url must be an http:// or https:// URL" in capsys.readouterr().err
