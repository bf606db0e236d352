"""Every code block of the README runs, against a mock served by uvicorn on a free port.

The conventions (also described in the README, "This README is tested"):
- a fence's language picks the runner: `sh`/`bash` (bash -e), `python` (the venv's Python),
  `js` (bundled with esbuild and run by node, with `waldur-js-client` installed from the npm
  registry into a scratch directory; `WALDUR_JS_CLIENT` may name another npm spec or a
  tarball; slow; under CI=true a failed install fails); `text` blocks are not code;
- `<!-- not-run: REASON -->` on the lines just before a block opts it out, with its reason
  (reported as a skip that names the reason, never as a pass);
- `<!-- expect: TEXT -->` there (repeatable) requires TEXT in the block's standard output;
- `:8000` (the documented default port) is replaced by the served port; the mock is reset
  before each block; blocks run from the checkout's root with the venv's `bin` first on PATH.
A block in any other language fails `test_every_block_has_a_runner_or_a_reason` until it
gets a runner here or a marker.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(not-run|expect):\s*(.*?)\s*-->\s*$")
DOCUMENTED_PORT = re.compile(r"(?<![\w.])((?:127\.0\.0\.1|localhost)?):8000\b")
NOT_CODE = frozenset({"text"})
BLOCK_TIMEOUT = 300.0
JS_CLIENT = os.environ.get("WALDUR_JS_CLIENT", "waldur-js-client@8.0.5")  # an npm spec; a tarball path works too
# The client is published for bundlers (ES modules with extensionless imports, which node
# refuses), so a js block is bundled first, as Vite does for homeport.
BUNDLER = "esbuild@0.28.2"


@dataclass(frozen=True)
class Block:
    """One fenced code block and the markers written just before it."""

    file: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    expects: tuple[str, ...] = ()
    not_run: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.language or 'untagged'}"


def code_blocks(text: str, file: str = "README.md") -> list[Block]:
    """The fenced blocks of a Markdown text, in order; an unterminated fence is an error."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{file}:{index + 1}: code block is never closed")
        expects, not_run = _markers(lines, index)
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(file, index + 1, opening.group(1), code, tuple(expects), not_run))
        index = end + 1
    return blocks


def _markers(lines: list[str], fence: int) -> tuple[list[str], str | None]:
    """`expect` and `not-run` comments on the lines right above a fence (blank lines between are fine)."""
    expects: list[str] = []
    not_run: str | None = None
    above = fence - 1
    while above >= 0 and (lines[above].strip() == "" or MARKER.match(lines[above])):
        found = MARKER.match(lines[above])
        if found and found.group(1) == "expect":
            expects.insert(0, found.group(2))
        elif found:
            not_run = found.group(2)
        above -= 1
    return expects, not_run


BLOCKS = code_blocks(README.read_text(encoding="utf-8"))


# -- the served mock ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`waldur-chat-mock serve` (uvicorn) on a free port, at speed 0; its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "serve", "--port", str(port), "--speed", "0"],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server, log)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve exited with {server.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{base}/__mock__/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"serve did not answer within 60 s: {log.read_text()}")


@pytest.fixture(scope="module")
def js_client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory with the official JS client installed from the npm registry."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the js blocks need them")
    directory = tmp_path_factory.mktemp("js-client")
    (directory / "package.json").write_text('{"name": "readme-js-blocks", "private": true, "type": "module"}\n')
    try:
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", JS_CLIENT, BUNDLER],
            check=False,
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
        problem = None if installed.returncode == 0 else installed.stderr.strip()[-600:]
    except subprocess.TimeoutExpired:
        problem = f"no answer within {BLOCK_TIMEOUT:.0f} s"
    if problem is not None:
        reason = f"cannot npm install {JS_CLIENT}: {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (under CI=true this is a failure, not a skip)")
        pytest.skip(reason)
    return directory


# -- runners --------------------------------------------------------------------------------
def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, check=False, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command[:2])}... did not finish within {BLOCK_TIMEOUT:.0f} s")


def run_shell(code: str, request: pytest.FixtureRequest) -> subprocess.CompletedProcess[str]:
    return _run(["bash", "-e", "-o", "pipefail", "-c", code], ROOT)


def run_python(code: str, request: pytest.FixtureRequest) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code], ROOT)


def run_node(code: str, request: pytest.FixtureRequest) -> subprocess.CompletedProcess[str]:
    directory: Path = request.getfixturevalue("js_client_dir")
    (directory / "block.mjs").write_text(code, encoding="utf-8")
    bundle = [str(directory / "node_modules" / ".bin" / "esbuild"), "block.mjs", "--bundle", "--platform=node"]
    bundled = _run([*bundle, "--format=esm", "--log-level=warning", "--outfile=bundle.mjs"], directory)
    if bundled.returncode != 0:
        return bundled
    return _run(["node", "bundle.mjs"], directory)


Runner = Callable[[str, pytest.FixtureRequest], subprocess.CompletedProcess[str]]
RUNNERS: dict[str, Runner] = {"sh": run_shell, "bash": run_shell, "python": run_python, "js": run_node}
SLOW_LANGUAGES = frozenset({"js"})


def _param(block: Block) -> object:
    marks = [pytest.mark.slow] if block.language in SLOW_LANGUAGES else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.language not in NOT_CODE])
def test_readme_block_runs(block: Block, served: str, request: pytest.FixtureRequest) -> None:
    """The block exits 0 against the served mock and prints what its `expect` markers say."""
    if block.not_run is not None:
        pytest.skip(f"not-run: {block.not_run}")
    runner = RUNNERS.get(block.language)
    assert runner is not None, f"{block.id}: no runner for {block.language!r}"
    port = served.rsplit(":", 1)[1]
    code = DOCUMENTED_PORT.sub(lambda m: f"{m.group(1)}:{port}", block.code)
    httpx.post(f"{served}/__mock__/reset", timeout=10).raise_for_status()
    result = runner(code, request)
    shown = f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{block.id} exited with {result.returncode}\n{shown}"
    for expected in block.expects:
        assert expected in result.stdout, f"{block.id}: {expected!r} not in the output\n{shown}"


# -- the conventions themselves ---------------------------------------------------------------
def test_every_block_has_a_runner_or_a_reason() -> None:
    """A new block in an unknown language (or untagged) must get a runner or an explicit opt-out."""
    problems = []
    for block in BLOCKS:
        if block.language in NOT_CODE:
            if block.not_run is not None or block.expects:
                problems.append(f"{block.id}: markers on a `text` block mean nothing")
        elif block.not_run is not None:
            if not block.not_run:
                problems.append(f"{block.id}: `not-run` needs a reason")
        elif block.language not in RUNNERS:
            problems.append(f"{block.id}: no runner for {block.language!r}: tag it `text` or mark it not-run")
    assert not problems, problems


def test_most_blocks_run() -> None:
    """Opt-outs stay rare: the runnable blocks outnumber them, and there are enough to mean something."""
    runnable = [b for b in BLOCKS if b.language in RUNNERS and b.not_run is None]
    opted_out = [b for b in BLOCKS if b.not_run is not None]
    assert len(runnable) >= 6 and len(opted_out) < len(runnable), ([b.id for b in runnable], [b.id for b in opted_out])
    assert {"sh", "python", "js"} <= {b.language for b in runnable}


def test_block_parsing_and_markers() -> None:
    text = (
        "intro\n"
        "<!-- expect: one -->\n"
        "<!-- expect: two -->\n\n"
        "```sh\necho one two\n```\n"
        "<!-- not-run: needs a browser -->\n"
        "```js\nalert(1)\n```\n"
        "```text\nusage\n```\n"
    )
    first, second, third = code_blocks(text, "x.md")
    assert (first.line, first.language, first.code, first.expects, first.not_run) == (
        5,
        "sh",
        "echo one two\n",
        ("one", "two"),
        None,
    )
    assert (second.language, second.not_run, second.expects) == ("js", "needs a browser", ())
    assert (third.language, third.not_run) == ("text", None)
    with pytest.raises(ValueError, match="never closed"):
        code_blocks("```sh\necho\n", "x.md")


def test_port_substitution() -> None:
    code = "curl http://127.0.0.1:8000/a http://localhost:8000/b; http :8000/c; echo 18000 x:80001"
    replaced = DOCUMENTED_PORT.sub(lambda m: f"{m.group(1)}:5555", code)
    assert replaced == "curl http://127.0.0.1:5555/a http://localhost:5555/b; http :5555/c; echo 18000 x:80001"
