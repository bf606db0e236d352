"""The official waldur-api-client 8.1.3 parses every 8.1 operation the mock serves (`--api 8.1`).

One venv holds one version of a package, and the dev venv has 8.0.5's client, so this test
installs 8.1.3 into a throwaway venv and runs tests/data/client_8_1_3_driver.py there against
the mock served by a real uvicorn (responses validated against the 8.1 spec).

The client's own quirk, as with 8.0.5: `chat_stream` has no 200 branch, so a good NDJSON
answer surfaces as `UnexpectedStatus` (status 200, the stream in `content`). Operations with
an empty answer (cancel, archive, unarchive, set_quota, a system prompt's destroy, the marketplace chat's feedback and
click) parse to None by design; the marketplace chat's stream has a 200 branch that returns
None (the NDJSON stays in `content`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from mockserver.app import ServerOptions, create_app
from tests.support import served_app

DRIVER = Path(__file__).resolve().parent / "data" / "client_8_1_3_driver.py"
EMPTY_ANSWERS = {"chat_threads_cancel": 200, "chat_threads_archive": 204, "chat_threads_unarchive": 204}
EMPTY_ANSWERS["chat_quota_set_quota"] = 200
# The marketplace chat's three operations declare no response model: a 200 parses to None.
EMPTY_ANSWERS |= {"marketplace_chat_feedback": 200, "marketplace_chat_click": 200}
EMPTY_ANSWERS["chat_system_prompts_destroy"] = 204


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("waldur-api-client-8.1.3")
    venv.create(home, with_pip=True)
    python = home / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    install = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "waldur-api-client==8.1.3",
    ]
    done = subprocess.run(install, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"could not install waldur-api-client 8.1.3: {done.stderr[-2000:]}"
    return python


@pytest.mark.slow
def test_every_operation_parses_with_the_8_1_3_client(client_python: Path) -> None:
    app = create_app(ServerOptions(api="8.1", speed=0, validate_responses=True))
    with served_app(app) as base:
        done = subprocess.run(
            [str(client_python), str(DRIVER), base], check=False, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert app.violations.drain() == []
    stream = results.pop("chat_stream")
    assert (stream["status"], stream["error"]) == (200, "UnexpectedStatus")  # the client's missing 200 branch
    assert stream["body"].endswith("}\n") and '"assistant_message_uuid"' in stream["body"]
    anonymous = results.pop("marketplace_chat_stream")
    assert (anonymous["status"], anonymous["parsed"]) == (200, False)  # a 200 branch that returns None
    assert '"interaction_uuid"' in anonymous["body"].splitlines()[0]
    assert json.loads(anonymous["body"].splitlines()[-1])["m"]["output_tokens"] > 0
    for name, status in EMPTY_ANSWERS.items():
        assert (results.pop(name)["status"]) == status, name
    created = results.pop("chat_system_prompts_create")
    assert (created["status"], created["parsed"]) == (201, True)
    activated = json.loads(results["chat_system_prompts_activate"]["body"])
    assert activated["is_active"] and not json.loads(results["chat_system_prompts_deactivate"]["body"])["is_active"]
    failures = {name: result for name, result in results.items() if not (result["status"] == 200 and result["parsed"])}
    assert failures == {}
    # The ten chat operations that answer with a body, staff's view of the messages, and seven
    # system prompt operations (list, retrieve, update, partial update, activate, deactivate, count).
    assert len(results) == 18
