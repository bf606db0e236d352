"""The command line and the users file: bad input is one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockserver.app import ServerOptions, create_app
from mockserver.cli import main
from mockserver.errors import ConfigurationError
from mockserver.users import load_users, parse_users
from tests.support import clients_for

BAD_USERS = {
    "no list": ("users: 3\n", "expected a top-level 'users' list"),
    "no token": ("users:\n  - username: x\n", "'token' must be a non-empty string"),
    "unknown key": ("users:\n  - {username: x, token: t, colour: red}\n", "unknown keys colour"),
    "bad flag": ("users:\n  - {username: x, token: t, is_staff: 'yes'}\n", "'is_staff' must be true or false"),
    "bad uuid": ("users:\n  - {username: x, token: t, uuid: nope}\n", "'uuid' is not a valid UUID"),
    "duplicate token": ("users:\n  - {username: x, token: t}\n  - {username: y, token: t}\n", "duplicate token: t"),
    "not yaml": ("users: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("text, reason", BAD_USERS.values(), ids=BAD_USERS.keys())
def test_bad_users_file_is_refused_with_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=reason):
        load_users(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--port", "70000"], "port out of range"),
        (["serve", "--speed", "-1"], "must be >= 0"),
        (["serve", "--users", "/nonexistent/users.yaml"], "cannot read users file"),
        (["verify", "--base-url", "http://x"], "required"),
        (["launch"], "invalid choice"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err


def test_a_broken_script_set_stops_the_server_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scripts = tmp_path / "broken.yaml"
    scripts.write_text("scripts:\n  - name: x\n    records: [{k: load, t: python}]\n")
    assert main(["serve", "--scripts", str(scripts)]) == 2
    assert f"{scripts}:3:" in capsys.readouterr().err


def test_expired_token_answers_401_token_has_expired() -> None:
    users = parse_users({"users": [{"username": "old", "token": "old-token", "token_expired": True}]})
    with clients_for(create_app(ServerOptions(users=users, speed=0))) as clients:
        response = clients.with_token("old-token").get("/api/chat-threads/")
    assert (response.status_code, response.json()) == (401, {"detail": "Token has expired."})
    assert response.headers["www-authenticate"] == "Token"


def test_options_on_a_refused_route_answers_metadata_after_authentication(clients) -> None:
    path = "/api/chat-messages/0123456789abcdef0123456789abcdef/"
    assert clients.anonymous.request("OPTIONS", path).status_code == 401
    response = clients.alice.request("OPTIONS", path)
    assert response.status_code == 200 and response.json()["name"] == "Chat Messages"
    assert clients.alice.get(path).headers["allow"] == "OPTIONS"


def test_seed_data_is_served_and_reset_returns_to_it() -> None:
    """`make serve` starts with fixtures/seed.yaml; a reset goes back to exactly that."""
    from mockserver.seed import DEFAULT_SEED_FILE

    with clients_for(create_app(ServerOptions(seed_data=DEFAULT_SEED_FILE, speed=0))) as clients:
        names = [t["name"] for t in clients.alice.get("/api/chat-threads/").json()]
        assert names == ["Old question", "Listing my resources", "Ordering a virtual machine"]
        archived = clients.alice.get("/api/chat-threads/", params={"is_archived": "true"}).json()
        assert [t["name"] for t in archived] == ["Old question"]
        assert [t["message_count"] for t in clients.bob.get("/api/chat-threads/").json()] == [2]
        clients.alice.stream(input="hello")
        assert clients.alice.post("/__mock__/reset").status_code == 204
        assert [t["name"] for t in clients.alice.get("/api/chat-threads/").json()] == names


def test_seed_data_naming_an_unknown_user_is_refused(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("threads:\n  - {owner: mallory, messages: []}\n")
    with pytest.raises(ConfigurationError, match="'owner' must be one of the users"):
        create_app(ServerOptions(seed_data=seed))


def test_a_busy_port_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_the_cli_offers_exactly_the_suite_parts() -> None:
    """cli.py keeps its own copy so that `serve` does not import the suite; they must agree."""
    from mockserver import cli
    from mockserver.contract import runner

    assert cli.PARTS == runner.PARTS
