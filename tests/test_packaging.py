"""Installable outside the checkout: packaged spec and fixtures, core deps for serve, [contract] for verify."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from mockserver import resources
from tests.support import served

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
CONTRACT_ONLY = ("hypothesis", "schemathesis", "pytest", "_pytest", "httpx", "rich")
EXTRA_HINT = "pip install 'waldur-chat-mock[contract]'"


def package_dir(package: str) -> Path:
    """Where setuptools takes a package from: its package-dir mapping, or the dotted path."""
    mapped = SETUPTOOLS["package-dir"]
    for prefix in sorted(mapped, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            return REPO / mapped[prefix] / Path(*package[len(prefix) :].split(".")[1:])
    return REPO / Path(*package.split("."))


def test_pyproject_lists_every_package_of_the_source_tree() -> None:
    """The package list is explicit (for the data mapping): a new subpackage must be added to it."""
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "mockserver").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(SETUPTOOLS["packages"])
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"
    assert all(package_dir(name).is_dir() for name in listed)


def test_package_data_covers_every_file_of_spec_and_fixtures() -> None:
    globs = SETUPTOOLS["package-data"]
    for root, package in [("spec", "mockserver.spec"), ("fixtures", "mockserver.fixtures")]:
        for file in (REPO / root).rglob("*"):
            if file.is_dir() or file.suffix in (".py", ".pyc"):
                continue
            sub = ".".join((package, *file.parent.relative_to(REPO / root).parts))
            assert any(fnmatch.fnmatch(file.name, g) for g in globs.get(sub, [])), f"{file} is not packaged"


def test_a_checkout_reads_the_repository_spec_and_fixtures() -> None:
    """The editable install (what make uses) sees spec/ and fixtures/ at the root, not a copy."""
    assert resources.SPEC_DIR.samefile(REPO / "spec")
    assert resources.FIXTURES_DIR.samefile(REPO / "fixtures")
    for path in (resources.WALDUR_SPEC, resources.CONTROL_SPEC, resources.USERS_FILE, resources.RESOURCES_FILE):
        assert path.is_file(), path
    assert list(resources.SCRIPT_DIR.glob("*.yaml")) and resources.SEED_FILE.is_file()


def test_no_module_finds_data_relative_to_its_own_file() -> None:
    """One resources module: nothing else builds spec/fixtures paths from `__file__`."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "mockserver").rglob("*.py") if "__file__" in p.read_text()]
    assert offenders == []


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_serve_imports_nothing_of_the_contract_suite(tmp_path: Path) -> None:
    """serve's whole path (parser, app, access log, uvicorn config) without starting the server."""
    code = f"""
import json, sys
import uvicorn
uvicorn.Server.run = lambda self, sockets=None: None
from mockserver.cli import main
assert main(["serve", "--port", "8999", "--seed-data", "--validate-responses"]) == 0
import mockserver.app
print(json.dumps(sorted({{name.partition(".")[0] for name in sys.modules}} & set({list(CONTRACT_ONLY)!r}))))
"""
    result = python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_verify_without_the_contract_extra_says_which_extra_and_exits_2(tmp_path: Path) -> None:
    code = """
import sys
sys.modules.update({"hypothesis": None, "schemathesis": None})  # as if not installed
from mockserver.cli import main
sys.exit(main(["verify", "--base-url", "http://127.0.0.1:9", "--token", "a", "--other-token", "b"]))
"""
    result = python(code, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and EXTRA_HINT in result.stderr
    assert result.stderr.startswith("waldur-chat-mock: error:")


# -- the wheel in a fresh venv --------------------------------------------------------------------
SOURCE_IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def pip_install(target: Path, *args: str) -> None:
    """This venv's pip installing into `target` (a venv without pip of its own: faster to make)."""
    command = [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--quiet", *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_wheel_serves_and_verifies_from_another_directory(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv (core only, then [contract]) and use it elsewhere."""
    source, wheels, venv, elsewhere = (tmp_path / name for name in ("source", "wheels", "venv", "elsewhere"))
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORED)  # builds never write into the checkout
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("waldur_chat_mock-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    script = venv / "bin" / "waldur-chat-mock"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args], check=False, capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env
        )

    pip_install(venv, str(wheel))
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import mockserver.resources as r; print(r.SPEC_DIR); import hypothesis"],
        check=False,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), "the spec must come from the installed wheel"
    assert "No module named 'hypothesis'" in where.stderr, "core install must not pull the contract suite"
    assert run("--version").stdout.strip() == f"waldur-chat-mock {wheel.name.split('-')[1]}"
    no_extra = run("verify", "--base-url", "http://127.0.0.1:9", "--token", "a", "--other-token", "b")
    assert no_extra.returncode == 2 and EXTRA_HINT in no_extra.stderr

    with served(["--seed-data"], command=[str(script)], cwd=elsewhere) as server:
        threads = httpx.get(f"{server.base}/api/chat-threads/", headers={"Authorization": "Token alice-token"})
        assert threads.status_code == 200 and threads.headers["x-result-count"] != "0"  # packaged seed data
        page = httpx.get(f"{server.base}/__mock__/ui/playground.js")
        assert page.status_code == 200 and "readStream" in page.text  # the packaged playground page
        pip_install(venv, f"{wheel}[contract]")
        tokens = ["--token", "alice-token", "--other-token", "bob-token", "--staff-token", "staff-token"]
        verdict = run("verify", "--base-url", server.base, *tokens, "--only", "stream", "--report", "junit.xml")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "PASS stream.new_thread" in verdict.stdout and "FAIL" not in verdict.stdout  # checks ran
    assert (elsewhere / "junit.xml").is_file()
    assert ' alice "GET /api/chat-threads/" 200 ' in server.stdout  # the access log of the installed serve
