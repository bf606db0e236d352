"""A recording feeds the stateful mock (to-scripts, to-seed); `cassette check` lists what Waldur could not send;
the `record` command itself, stopped by SIGTERM, leaves a complete cassette."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from mockserver.app import ServerOptions, create_app
from mockserver.cli import main
from mockserver.replay.cassette import (
    CassetteWriter,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamLine,
    read_cassette,
)
from tests.support import _free_port, _wait_until_healthy, clients_for, served_app
from tests.test_replay import ALICE, recorder_for

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed.yaml"


def _record_conversation(path: Path) -> list[dict[str, object]]:
    """Through a recorder: list threads, stream a turn, read its messages. Returns the stream's records."""
    with served_app(create_app(ServerOptions(speed=0, seed_data=SEED))) as target, recorder_for(target, path) as rec:
        httpx.get(f"{rec}/api/chat-threads/", headers=ALICE)
        streamed = httpx.post(f"{rec}/api/chat/stream/", json={"input": "show me python code"}, headers=ALICE)
        records = [json.loads(line) for line in streamed.text.splitlines()]
        thread = records[0]["m"]["thread_uuid"]
        httpx.get(f"{rec}/api/chat-threads/", headers=ALICE)
        httpx.get(f"{rec}/api/chat-messages/", params={"thread": thread}, headers=ALICE)
    return records


def test_scripts_and_seed_from_a_recording_let_the_mock_carry_on(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cassette = tmp_path / "talk.jsonl"
    recorded = _record_conversation(cassette)
    assert main(["cassette", "to-scripts", str(cassette), "--out", str(tmp_path / "scripts")]) == 0
    assert main(["cassette", "to-seed", str(cassette), "--out", str(tmp_path / "seed.yaml")]) == 0
    seed = yaml.safe_load((tmp_path / "seed.yaml").read_text())
    names = [t["name"] for t in seed["threads"]]
    assert names == ["Ordering a virtual machine", "Listing my resources", "Old question", "New chat"]
    assert seed["threads"][-1]["messages"][0] == {"role": "user", "content": "show me python code"}
    app = create_app(ServerOptions(speed=0, scripts=tmp_path / "scripts", seed_data=tmp_path / "seed.yaml"))
    with clients_for(app) as clients:
        listed = clients.alice.get("/api/chat-threads/").json()
        continued = next(t for t in listed if t["name"] == "New chat")
        assert continued["message_count"] == 2
        again = clients.alice.stream(input="show me python code")
        other = clients.alice.stream(input="something never recorded", thread_uuid=continued["uuid"])
    content = [r for r in recorded if "m" not in r]
    assert [r for r in again.records if "m" not in r] == content  # the recorded records, as sent
    assert "No recorded reply matches" in other.text  # the catch-all says so rather than inventing
    assert other.thread_uuid == continued["uuid"]  # and the recorded thread goes on statefully


def test_check_is_clean_for_a_real_recording_and_lists_every_impossible_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clean = tmp_path / "clean.jsonl"
    _record_conversation(clean)
    assert main(["cassette", "check", str(clean)]) == 0
    broken = tmp_path / "broken.jsonl"
    writer = CassetteWriter(broken, (), "http://t")
    lines = [
        '{"m":{"thread_uuid":"' + "a" * 32 + '"}}',
        "not json",
        '{"k": "markdown", "c": "spaced"}',
        '{"k":"load","t":"python"}',
        '{"k":"markdown","c":"ok"}',
    ]
    writer.append(
        Interaction(
            RecordedRequest("POST", "/api/chat/stream/", body='{"input":"x"}'),
            RecordedResponse(
                200,
                headers=(("content-type", "application/x-ndjson"),),
                lines=tuple(StreamLine(i * 10.0, text) for i, text in enumerate(lines)),
            ),
        )
    )
    writer.close()
    capsys.readouterr()
    assert main(["cassette", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "interaction 1 line 2: not JSON" in out
    assert "interaction 1 line 3: not compact ASCII JSON" in out
    assert "interaction 1 line 4: breaks the record schema" in out and "'python' is not one of" in out
    assert "interaction 1 (stream): the last record is not the message-uuids m record" in out
    assert "line 1:" not in out and "line 5:" not in out
    assert "4 lines a real Waldur could not send" in out
    assert len(read_cassette(broken).interactions) == 1  # replay still serves it: it is what was sent


def test_the_record_command_stopped_by_sigterm_leaves_a_complete_cassette(tmp_path: Path) -> None:
    cassette = tmp_path / "cli.jsonl"
    with served_app(create_app(ServerOptions(speed=0))) as target:
        port = _free_port()
        argv = [sys.executable, "-m", "mockserver", "record", "--target", target, "--cassette", str(cassette)]
        process = subprocess.Popen(
            [*argv, "--port", str(port), "--redact", "X-Api-Key"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_healthy(base, process)
            answer = httpx.get(f"{base}/api/chat-threads/", headers={**ALICE, "X-Api-Key": "k-secret"})
            assert answer.status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "interactions recorded" in out
    text = cassette.read_text()
    assert "k-secret" not in text and "alice-token" not in text
    paths = [i.request.path for i in read_cassette(cassette).interactions]
    assert paths == ["/__mock__/health", "/api/chat-threads/"]


def test_check_reads_a_cassette_with_the_grammar_of_its_api(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An 8.1 recording (a `w` warning, no `load`) is clean for `--api 8.1` only; SSE is refused."""
    cassette = tmp_path / "v81.jsonl"
    headers = {**ALICE, "X-Mock-Scenario": "pii-warning"}
    with served_app(create_app(ServerOptions(api="8.1", speed=0))) as target, recorder_for(target, cassette) as rec:
        streamed = httpx.post(f"{rec}/api/chat/stream/", json={"input": "my email is a@b.c"}, headers=headers)
    assert '"w":' in streamed.text.splitlines()[1]
    assert main(["cassette", "check", "--api", "8.1", str(cassette)]) == 0
    assert main(["cassette", "check", str(cassette)]) == 1  # 8.0.5 has no `w` record
    assert "breaks the record schema" in capsys.readouterr().out
    assert main(["cassette", "check", "--api", "7.9.4", str(cassette)]) == 2
    assert "streams SSE events" in capsys.readouterr().err
