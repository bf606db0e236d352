"""Record against a second mock over real TCP, then replay: bytes, headers, timing, misses, fallback, secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mockserver.app import ServerOptions, create_app
from mockserver.cli import main
from mockserver.replay.cassette import CassetteWriter, read_cassette
from mockserver.replay.recorder import RecordingProxy
from mockserver.replay.redaction import Redactor
from mockserver.replay.replayer import ReplaySource
from tests.support import served, served_app

TIMED_SCRIPTS = Path(__file__).parent / "data" / "replay" / "timed-scripts.yaml"
ALICE = {"Authorization": "Token alice-token"}
BOB = {"Authorization": "Token bob-token"}
HEADERS_THAT_MATTER = ("content-type", "x-result-count", "link", "cache-control", "x-accel-buffering", "allow")
LINE_TOLERANCE_MS = 15.0  # "a few ms", with room for a loaded 2-core machine


@dataclass
class Seen:
    status: int
    headers: httpx.Headers
    body: bytes
    line_ms: list[float]  # arrival of each complete line, ms after the response head


def call(base: str, method: str, path: str, **kwargs: object) -> Seen:
    """One request over real TCP; lines timed from the response head as they arrive."""
    with httpx.stream(method, base + path, timeout=10, **kwargs) as response:  # type: ignore[arg-type]
        head = time.perf_counter()
        body, times = bytearray(), []
        for chunk in response.iter_raw():
            now = (time.perf_counter() - head) * 1000
            body += chunk
            times.extend(now for _ in range(chunk.count(b"\n")))
        return Seen(response.status_code, response.headers, bytes(body), times)


SESSION = [
    ("GET", "/api/chat-threads/", {"headers": ALICE}),
    ("POST", "/api/chat/stream/", {"headers": ALICE, "json": {"input": "timed please"}}),
    ("GET", "/api/chat-threads/", {"params": {"x-auth-token": "bob-token"}}),
    ("GET", "/api/chat-threads/", {"headers": {**ALICE, "Cookie": "id=cookie-secret", "X-Api-Key": "key-secret"}}),
    ("POST", "/api/chat/stream/", {"headers": ALICE, "json": {"input": "hello", "password": "field-secret"}}),
]


def recorder_for(target: str, path: Path, redact: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """A recording proxy in front of `target`, served over TCP; writes `path`."""
    return served_app(RecordingProxy(target, CassetteWriter(path, redact, target), Redactor(redact)))


@contextmanager
def recorded_session(path: Path) -> Iterator[list[Seen]]:
    """Run SESSION through a recorder in front of a second mock (timed script, speed 1); yield what clients saw."""
    target_app = create_app(ServerOptions(scripts=TIMED_SCRIPTS, speed=1.0))
    redact = ("X-Api-Key", "password")
    with served_app(target_app) as target, recorder_for(target, path, redact) as recorder:
        yield [call(recorder, method, url, **kwargs) for method, url, kwargs in SESSION]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Seen]]:
    path = tmp_path_factory.mktemp("cassette") / "session.jsonl"
    with recorded_session(path) as seen:
        return path, seen


def replaying(path: Path, mode: str = "strict", speed: float = 1.0):  # type: ignore[no-untyped-def]
    return served_app(create_app(ServerOptions(replay=ReplaySource(read_cassette(path), mode), speed=speed)))


def test_strict_replay_at_speed_1_is_byte_and_time_faithful(recording: tuple[Path, list[Seen]]) -> None:
    path, recorded = recording
    cassette = read_cassette(path)
    assert len(cassette.interactions) == len(SESSION)
    with replaying(path) as base:
        replayed = [call(base, method, url, **kwargs) for method, url, kwargs in SESSION]
    for original, again in zip(recorded, replayed, strict=True):
        assert again.headers["x-mock-replay"] == "hit"
        assert again.status == original.status
        assert again.body == original.body
        for name in HEADERS_THAT_MATTER:
            assert again.headers.get(name) == original.headers.get(name), name
    stream = cassette.interactions[1].response
    offsets = [line.at_ms for line in stream.lines or ()]
    # The script's known timing was recorded (80 ms to the first content record, 200 ms to the last).
    assert offsets[1] == pytest.approx(80, abs=LINE_TOLERANCE_MS), offsets
    assert offsets[-1] == pytest.approx(200, abs=LINE_TOLERANCE_MS), offsets
    deviations = [round(arrived - offset, 1) for offset, arrived in zip(offsets, replayed[1].line_ms, strict=True)]
    assert all(abs(d) <= LINE_TOLERANCE_MS for d in deviations), f"line arrival - recorded offset (ms): {deviations}"


def test_speed_scales_and_zero_sends_at_once(recording: tuple[Path, list[Seen]]) -> None:
    path, recorded = recording
    with replaying(path, speed=0) as base:
        at_once = call(base, *SESSION[1][:2], **SESSION[1][2])
    with replaying(path, speed=2) as base:
        doubled = call(base, *SESSION[1][:2], **SESSION[1][2])
    assert at_once.body == doubled.body == recorded[1].body
    assert at_once.line_ms[-1] < 30
    assert doubled.line_ms[-1] == pytest.approx(100, abs=LINE_TOLERANCE_MS)


def test_secrets_never_reach_the_cassette(recording: tuple[Path, list[Seen]]) -> None:
    path, _ = recording
    text = path.read_text(encoding="utf-8")
    for secret in ("alice-token", "bob-token", "cookie-secret", "key-secret", "field-secret"):
        assert secret not in text
    users = [i.request.user for i in read_cassette(path).interactions]
    assert users == ["user-1", "user-1", "user-2", "user-1", "user-1"]  # callers still told apart
    assert "[redacted]" in text


def test_strict_miss_names_the_closest_recording_and_the_difference(recording: tuple[Path, list[Seen]]) -> None:
    path, _ = recording
    with replaying(path) as base:
        miss = httpx.post(f"{base}/api/chat/stream/", json={"input": "timed"}, headers=ALICE)
        other_user = httpx.post(f"{base}/api/chat/stream/", json={"input": "timed please"}, headers=BOB)
    assert miss.status_code == 404
    assert miss.headers["x-mock-replay"] == "miss"
    body = miss.json()
    assert body["closest"]["path"] == "/api/chat/stream/"
    assert json.loads(body["closest"]["body"]) == {"input": "timed please"}
    assert body["differences"] == ['body: {"input":"timed"}, recorded {"input":"timed please"}']
    assert other_user.status_code == 404
    assert other_user.json()["differences"] == ["user: user-2, recorded user-1"]


def test_json_bodies_match_as_data(recording: tuple[Path, list[Seen]]) -> None:
    path, recorded = recording
    with replaying(path) as base:
        spaced = httpx.post(
            f"{base}/api/chat/stream/",
            content=b'{ "input" :  "timed please" }',
            headers={**ALICE, "Content-Type": "application/json"},
        )
    assert spaced.headers["x-mock-replay"] == "hit"
    assert spaced.content == recorded[1].body


def test_fallback_hands_unmatched_requests_to_the_stateful_mock(recording: tuple[Path, list[Seen]]) -> None:
    path, _ = recording
    with replaying(path, mode="fallback", speed=0) as base:
        hit = httpx.get(f"{base}/api/chat-threads/", headers=ALICE)
        fresh = httpx.post(f"{base}/api/chat/stream/", json={"input": "something new"}, headers=ALICE)
        listed = httpx.get(f"{base}/api/chat-threads/", params={"page": 1}, headers=ALICE)
        bob_via_query = httpx.get(f"{base}/api/chat-threads/", headers=BOB)
    assert hit.headers["x-mock-replay"] == "hit"
    assert fresh.status_code == 200 and fresh.headers["x-mock-replay"] == "miss"
    records = [json.loads(line) for line in fresh.text.splitlines()]
    assert "thread_uuid" in records[0]["m"] and "assistant_message_uuid" in records[-1]["m"]
    assert listed.headers["x-mock-replay"] == "miss"  # not recorded with ?page=1: the mock's own state
    assert [t["uuid"] for t in listed.json()] == [records[0]["m"]["thread_uuid"]]
    # Recorded as user-2 with ?x-auth-token=: the token's transport does not matter, the alias does.
    assert bob_via_query.headers["x-mock-replay"] == "hit"


def test_repeats_are_served_in_order_and_reset_rewinds(tmp_path: Path) -> None:
    path = tmp_path / "repeat.jsonl"
    target_app = create_app(ServerOptions(speed=0))
    with served_app(target_app) as target, recorder_for(target, path) as recorder:
        first = httpx.get(f"{recorder}/api/chat-threads/", headers=ALICE).content
        httpx.post(f"{recorder}/api/chat/stream/", json={"input": "hi"}, headers=ALICE)
        second = httpx.get(f"{recorder}/api/chat-threads/", headers=ALICE).content
    assert first != second
    with replaying(path, speed=0) as base:
        served = [httpx.get(f"{base}/api/chat-threads/", headers=ALICE).content for _ in range(3)]
        assert httpx.post(f"{base}/__mock__/reset").status_code < 300
        after_reset = httpx.get(f"{base}/api/chat-threads/", headers=ALICE).content
    assert served == [first, second, second]  # in order, then the last one again
    assert after_reset == first


def test_a_stream_the_target_cut_is_recorded_and_replayed_as_cut(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    dropped = {**ALICE, "X-Mock-Fault": "drop_after_records=2"}
    with (
        served_app(create_app(ServerOptions(speed=0))) as target,
        recorder_for(target, path) as recorder,
        pytest.raises(httpx.RemoteProtocolError),  # the client behind the proxy sees the cut too
    ):
        httpx.post(f"{recorder}/api/chat/stream/", json={"input": "hello"}, headers=dropped)
    (interaction,) = read_cassette(path).interactions
    assert interaction.response.cut and len(interaction.response.lines or ()) == 2
    with replaying(path, speed=0) as base:
        lines = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", f"{base}/api/chat/stream/", json={"input": "hello"}, headers=ALICE) as replayed,
        ):
            lines.extend(replayed.iter_lines())
    assert lines == [line.text for line in interaction.response.lines or ()]


def test_serve_cassette_flags_on_the_command_line(recording: tuple[Path, list[Seen]], capsys) -> None:  # type: ignore[no-untyped-def]
    path, recorded = recording
    with served(["--cassette", str(path), "--replay", "strict"]) as server:
        hit = httpx.get(f"{server.base}/api/chat-threads/", headers=ALICE)
        miss = httpx.get(f"{server.base}/api/chat-sessions/", headers=ALICE)
    assert (hit.headers["x-mock-replay"], hit.content) == ("hit", recorded[0].body)
    assert (miss.status_code, miss.headers["x-mock-replay"]) == (404, "miss")
    assert f"replaying {path} (strict)" in server.stdout
    assert 'alice "GET /api/chat-threads/" 200' in server.stdout  # the access log names the replayed user
    assert main(["serve", "--replay", "fallback"]) == 2
    assert "--replay needs --cassette FILE" in capsys.readouterr().err
