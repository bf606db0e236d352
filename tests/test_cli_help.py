"""`--version` and `--help`: defaults, exit codes and an example for every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mockserver
from mockserver.cli import build_parser, main
from mockserver.resources import SEED_FILE

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    return code, capsys.readouterr().out


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"waldur-chat-mock {mockserver.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", mockserver.__version__)
    assert 'version = { attr = "mockserver.__version__" }' in PYPROJECT.read_text(encoding="utf-8")


@pytest.mark.parametrize("argv", [[], ["serve"], ["verify"]], ids=["top-level", "serve", "verify"])
def test_help_shows_exit_codes_and_an_example(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main([*argv, "--help"], capsys)
    assert code == 0
    exit_codes = out.split("exit codes:", 1)[1]
    for status in ("0", "2"):
        assert re.search(rf"^  {status}  \S", exit_codes, re.MULTILINE), out
    example = out.split("example", 1)[1]
    assert re.search(r"^  waldur-chat-mock (serve|verify) --", example, re.MULTILINE), out


def test_top_level_help_names_the_violation_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run_main(["--help"], capsys)
    assert re.search(r"^  1  verify: the target violates the contract$", out, re.MULTILINE)


def test_serve_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run_main(["serve", "--help"], capsys)
    flat = " ".join(out.split())
    for flag, default in [
        ("--host HOST", "(default: 127.0.0.1)"),
        ("--port PORT", "(default: 8000)"),
        ("--speed FACTOR", "(default: 1.0)"),
        ("--users FILE", "(default: the packaged fixtures/users.yaml)"),
        ("--scripts DIR|FILE", "(default: the packaged fixtures/scripts/)"),
        ("--resources FILE", "(default: the packaged fixtures/resources.yaml)"),
        ("--seed-data [FILE]", "(default: none)"),
    ]:
        after = flat.split(f" {flag} ", 1)[1]
        next_flag = re.search(r" --[a-z-]+( [A-Z|\[\]]+)? [a-z]", after)
        assert default in after[: next_flag.start() if next_flag else None], (flag, default)
    assert "--quiet" in out and "(default: False)" not in out and "(default: None)" not in out


def test_verify_help_shows_its_defaults_and_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run_main(["verify", "--help"], capsys)
    flat = " ".join(out.split())
    assert "(default: 12)" in flat and "(default: 10)" in flat and "(default: 60.0)" in flat
    assert "pip install 'waldur-chat-mock[contract]'" in out


def test_seed_data_without_a_file_means_the_packaged_demo_threads() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--seed-data"]).seed_data == SEED_FILE
    assert parser.parse_args(["serve", "--seed-data", "mine.yaml"]).seed_data == Path("mine.yaml")
    assert parser.parse_args(["serve"]).seed_data is None
    assert SEED_FILE.is_file()


def test_the_console_script_answers_version_and_help() -> None:
    """The installed entry point itself, not just main(): `waldur-chat-mock --version` and `--help`."""
    script = Path(sys.executable).with_name("waldur-chat-mock")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.strip() == f"waldur-chat-mock {mockserver.__version__}"
    usage = subprocess.run([script, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert usage.stdout.startswith("usage: waldur-chat-mock serve")


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--stream-timeout", "0", "must be > 0"),
        ("--stream-timeout", "nan", "must be > 0"),
        ("--report", "/nonexistent/junit.xml", "no such directory"),
        ("--report-json", "/nonexistent/report.json", "no such directory"),
        ("--report", ".", "is a directory"),
    ],
)
def test_verify_refuses_a_bad_value_before_the_run(flag: str, value: str, reason: str) -> None:
    """A report that cannot be written, or a stream deadline of zero, is one line and exit 2, not a
    traceback (or a false violation) after the whole run."""
    argv = ["verify", "--base-url", "http://127.0.0.1:9", "--token", "a", "--other-token", "b", flag, value]
    command = [sys.executable, "-m", "mockserver", *argv]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and reason in result.stderr


@pytest.mark.parametrize(
    ("argv", "default"),
    [(["serve"], 8000), (["upstream"], 8001), (["record", "--target", "http://x", "--cassette", "c.jsonl"], 8000)],
    ids=["serve", "upstream", "record"],
)
def test_every_listening_command_checks_its_port_and_shows_its_default(
    argv: list[str], default: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The address flags are defined once for all three commands; each keeps its own default port."""
    _, out = run_main([argv[0], "--help"], capsys)
    port_help = " ".join(out.split()).split(" --port PORT ", 1)[1].split(" --", 1)[0]
    assert port_help.endswith(f"(default: {default})"), port_help
    parsed = build_parser().parse_args(argv)
    assert (parsed.host, parsed.port) == ("127.0.0.1", default)
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--port", "65536"])
    code, err = exit_.value.code, capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "port out of range: 65536" in err, err
