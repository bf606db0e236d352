"""Every code block of the README runs, against a mock served by uvicorn on a free port.

The conventions (also described in the README, "This README is tested"):
- a fence's language picks the runner: `sh`/`bash` (bash -e), `python` (the venv's Python),
  `js` (bundled with esbuild and run by node against `waldur-js-client` in a scratch
  directory: the 8.0.5 package from the npm registry, or what `WALDUR_JS_CLIENT` names (npm
  spec or tarball); when the registry does not serve it, the package regenerated from
  Waldur's published 8.0.5 schema with the generator Waldur used; slow; under CI=true a
  failed install or generation fails, locally it skips saying why); `text` blocks are not code;
- `<!-- not-run: REASON -->` on the lines just before a block opts it out, with its reason
  (reported as a skip that names the reason, never as a pass);
- `<!-- expect: TEXT -->` there (repeatable) requires TEXT in the block's standard output;
- `:8000` (the documented default port) is replaced by the served port; the mock is reset
  before each block; blocks run from the checkout's root with the venv's `bin` first on PATH.
A block in any other language fails `test_every_block_has_a_runner_or_a_reason` until it
gets a runner here or a marker.
"""

from __future__ import annotations

import json
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
from typing import NoReturn

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(not-run|expect):\s*(.*?)\s*-->\s*$")
DOCUMENTED_PORT = re.compile(r"(?<![\w.])((?:127\.0\.0\.1|localhost)?):8000\b")
NOT_CODE = frozenset({"text"})
BLOCK_TIMEOUT = 300.0
JS_CLIENT_OVERRIDE = os.environ.get("WALDUR_JS_CLIENT")  # an npm spec; a tarball path works too
JS_CLIENT = JS_CLIENT_OVERRIDE or "waldur-js-client@8.0.5"
# The client is published for bundlers (ES modules with extensionless imports, which node
# refuses), so a js block is bundled first, as Vite does for homeport.
BUNDLER = "esbuild@0.28.2"
# When the registry does not serve the package, it is regenerated the way Waldur built 8.0.5:
# @hey-api/openapi-ts 0.77.0 (its `@hey-api/client-fetch` plugin is bundled in that release;
# its client and core files are byte-identical to the package's), TypeScript 5 as its peer
# (7 has no compiler API) and for the tsc build, from Waldur's published 8.0.5 schema.
GENERATOR = "@hey-api/openapi-ts@0.77.0"
TYPESCRIPT = "typescript@5.9.3"
PUBLISHED_SCHEMA = ROOT / "tests" / "data" / "waldur-published" / "waldur-8.0.5-chat.yaml"
# One SDK function per chat operation of Waldur 8.0.5, as waldur-js-client 8.0.5 names them,
# and whether its `options` may be left out (no required path parameter or body).
CHAT_FUNCTIONS_8_0_5: dict[str, bool] = {
    "chatMessagesList": True,
    "chatQuotaSetQuota": False,
    "chatQuotaUsageRetrieve": False,
    "chatSessionsCurrentRetrieve": True,
    "chatSessionsList": True,
    "chatSessionsRetrieve": False,
    "chatStream": False,
    "chatThreadsArchive": False,
    "chatThreadsList": True,
    "chatThreadsRetrieve": False,
    "chatThreadsUnarchive": False,
    "chatToolsExecute": False,
}
JS_IMPORT = re.compile(r"import\s*\{([^}]*)\}\s*from\s*['\"](waldur-js-client[^'\"]*)['\"]")


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


@dataclass(frozen=True)
class JsClient:
    """A scratch directory where `waldur-js-client` and esbuild resolve, and which client it is."""

    directory: Path
    source: str


class JsClientUnavailable(Exception):
    """The client could not be installed or regenerated; the message says why."""


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> NoReturn:
    """Under CI=true a missing client fails the test; locally it is a skip that says how to fix it."""
    if _under_ci():
        pytest.fail(f"{reason} (under CI=true this is a failure, not a skip)")
    pytest.skip(reason)


def _require_node() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable(
            "node/npm not installed: the js blocks need Node.js >= 18 and npm "
            "(`apt-get install nodejs npm`; .ci/run installs them when missing)"
        )
    version = subprocess.run(["node", "--version"], check=False, capture_output=True, text=True).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 18:
        _unavailable(f"node {version or '(no version)'} is too old: the js blocks need Node.js >= 18")


def _tool(directory: Path, *command: str) -> str | None:
    """Run one npm/node command in the scratch directory; None when it worked, else what went wrong."""
    try:
        done = subprocess.run(
            list(command), check=False, cwd=directory, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return f"{' '.join(command[:2])}: no answer within {BLOCK_TIMEOUT:.0f} s"
    return None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip())[-1200:]


def _npm_install(directory: Path, *specs: str) -> str | None:
    return _tool(directory, "npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", *specs)


@pytest.fixture(scope="module")
def js_client(tmp_path_factory: pytest.TempPathFactory) -> JsClient:
    """The official JS client with esbuild, installed or regenerated once per module."""
    _require_node()
    directory = tmp_path_factory.mktemp("js-client")
    (directory / "package.json").write_text('{"name": "readme-js-blocks", "private": true, "type": "module"}\n')
    try:
        return _provide_js_client(directory)
    except JsClientUnavailable as problem:
        _unavailable(str(problem))


def _provide_js_client(directory: Path) -> JsClient:
    """The real package when the registry (or `WALDUR_JS_CLIENT`) has it, else the regenerated one."""
    # npm resolves a tarball or folder against the scratch directory: make a local path absolute.
    spec = str(Path(JS_CLIENT).resolve()) if JS_CLIENT_OVERRIDE and Path(JS_CLIENT).exists() else JS_CLIENT
    problem = _npm_install(directory, spec, BUNDLER)
    if problem is None:
        where = f"WALDUR_JS_CLIENT={JS_CLIENT_OVERRIDE}" if JS_CLIENT_OVERRIDE else "the npm registry"
        return JsClient(directory, f"{JS_CLIENT} from {where}")
    if JS_CLIENT_OVERRIDE or "E404" not in problem:
        raise JsClientUnavailable(f"cannot npm install {JS_CLIENT}: {problem}")
    _regenerate_js_client(directory)
    return JsClient(
        directory,
        f"waldur-js-client regenerated by {GENERATOR} from {PUBLISHED_SCHEMA.name} "
        f"(the npm registry does not serve {JS_CLIENT})",
    )


def _regenerate_js_client(directory: Path) -> None:
    """Build a local `waldur-js-client` package as Waldur builds the published one: generate, edit, tsc."""
    package = directory / "waldur-js-client"
    package.mkdir()
    (package / "package.json").write_text(_package_json(), encoding="utf-8")
    (package / "tsconfig.json").write_text(_TSCONFIG, encoding="utf-8")
    (directory / "openapi-ts.config.mjs").write_text(_generator_config(), encoding="utf-8")
    steps: list[tuple[str, Callable[[], str | None]]] = [
        (
            f"npm install {GENERATOR} {TYPESCRIPT}",
            lambda: _npm_install(directory, GENERATOR, TYPESCRIPT, BUNDLER, "./waldur-js-client"),
        ),
        (f"{GENERATOR} from {PUBLISHED_SCHEMA.name}", lambda: _tool(directory, "node_modules/.bin/openapi-ts")),
        ("Waldur's release edits", lambda: _apply_release_edits(package / "src")),
        ("tsc", lambda: _tool(directory, "node_modules/.bin/tsc", "-p", "waldur-js-client")),
    ]
    for step, run in steps:
        problem = run()
        if problem is not None:
            raise JsClientUnavailable(f"cannot regenerate waldur-js-client ({step}): {problem}")


def _package_json() -> str:
    """The published package's name, version and entry points, pointing at the tsc output."""
    entries = {".": "./dist/index.js"} | {
        f"./{name}": f"./dist/{name}.js" for name in ("client.gen", "sdk.gen", "types.gen")
    }
    manifest = {
        "name": "waldur-js-client",
        "version": "8.0.5",
        "private": True,
        "main": "dist/index.js",
        "types": "dist/index.d.ts",
        "exports": entries,
    }
    return json.dumps(manifest, indent=2) + "\n"


# The compiler options the published package is built with (ES modules for bundlers).
_TSCONFIG = """{
  "compilerOptions": {
    "target": "es2023", "module": "ESNext", "moduleResolution": "Bundler", "declaration": true,
    "outDir": "./dist", "rootDir": "./src", "strict": true, "esModuleInterop": true, "skipLibCheck": true
  },
  "include": ["src/**/*"]
}
"""


def _generator_config() -> str:
    """The generator's options for Waldur's SDK: the SDK, the fetch client, one type per schema."""
    return (
        "export default {\n"
        f"  input: {json.dumps(str(PUBLISHED_SCHEMA))},\n"
        "  output: 'waldur-js-client/src',\n"
        "  plugins: ['@hey-api/sdk', '@hey-api/client-fetch', "
        "{ name: '@hey-api/typescript', readOnlyWriteOnlyBehavior: 'off' }],\n"
        "};\n"
    )


# Waldur's release drops the generated `querySerializer` (it joins array filters with commas,
# `explode: false`; the published SDK repeats them) and re-exports two client names.
_QUERY_SERIALIZER = re.compile(r"^( +)querySerializer: \{\n(?:.*\n)*?\1\},\n", re.MULTILINE)
_INDEX_EXPORTS = "export { formDataBodySerializer, type RequestResult } from './client';\n"


def _apply_release_edits(source: Path) -> str | None:
    sdk = source / "sdk.gen.ts"
    text = _QUERY_SERIALIZER.sub("", sdk.read_text(encoding="utf-8"))
    if "querySerializer" in text:
        return "a querySerializer the edit did not recognise is left in sdk.gen.ts"
    sdk.write_text(text, encoding="utf-8")
    index = source / "index.ts"
    index.write_text(_INDEX_EXPORTS + index.read_text(encoding="utf-8"), encoding="utf-8")
    return None


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
    client: JsClient = request.getfixturevalue("js_client")
    request.node.user_properties.append(("js_client", client.source))
    return _bundle_and_run(code, client.directory)


def _bundle_and_run(code: str, directory: Path) -> subprocess.CompletedProcess[str]:
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


def _readme_js_imports() -> dict[str, set[str]]:
    """What the README's js blocks import from the client, by module specifier."""
    wanted: dict[str, set[str]] = {}
    for block in BLOCKS:
        if block.language != "js" or block.not_run is not None:
            continue
        for names, specifier in JS_IMPORT.findall(block.code):
            imported = {name.split(" as ")[0].strip() for name in names.split(",") if name.strip()}
            wanted.setdefault(specifier, set()).update(imported)
    return wanted


# A js module that prints what a specifier exports, name -> typeof.
_PROBE = (
    "import * as sdk from {specifier};\n"
    "console.log(JSON.stringify(Object.fromEntries(Object.entries(sdk).map(([k, v]) => [k, typeof v]))));\n"
)


@pytest.mark.slow
def test_js_client_exports_the_chat_functions(js_client: JsClient) -> None:
    """The client the js blocks run against has every chat function of 8.0.5 and all the README imports."""
    wanted = _readme_js_imports()
    assert wanted.get("waldur-js-client"), "the README's js blocks import nothing from waldur-js-client"
    wanted["waldur-js-client"].update(CHAT_FUNCTIONS_8_0_5)
    for specifier, names in sorted(wanted.items()):
        result = _bundle_and_run(_PROBE.format(specifier=json.dumps(specifier)), js_client.directory)
        assert result.returncode == 0, f"{js_client.source}: cannot import {specifier}\n{result.stderr[-2000:]}"
        exported: dict[str, str] = json.loads(result.stdout)
        missing = sorted(names - exported.keys())
        assert not missing, f"{js_client.source}: {specifier} does not export {missing}"
        not_functions = sorted(name for name in names & set(CHAT_FUNCTIONS_8_0_5) if exported[name] != "function")
        assert not not_functions, f"{js_client.source}: {specifier}: not functions: {not_functions}"


@pytest.mark.slow
def test_js_client_chat_signatures_are_those_of_8_0_5(js_client: JsClient) -> None:
    """Each chat function is declared as in 8.0.5: `(options[?]: Options<XData>) => RequestResult<XResponses>`."""
    package = js_client.directory / "node_modules" / "waldur-js-client"
    version = json.loads((package / "package.json").read_text(encoding="utf-8"))["version"]
    if version != "8.0.5":
        pytest.skip(f"{js_client.source} is version {version}: the signatures checked here are those of 8.0.5")
    declarations = (package / "dist" / "sdk.gen.d.ts").read_text(encoding="utf-8")
    wrong = [name for name, optional in CHAT_FUNCTIONS_8_0_5.items() if not _declared(declarations, name, optional)]
    assert not wrong, f"{js_client.source}: not declared as in 8.0.5: {wrong}"


def _declared(declarations: str, name: str, optional: bool) -> bool:
    """Whether the .d.ts declares `name` with the hey-api SDK signature of its operation."""
    operation = name[0].upper() + name[1:]
    may_be_left_out = r"\?" if optional else ""
    signature = (
        rf"export declare const {name}: <ThrowOnError extends boolean = false>"
        rf"\(options{may_be_left_out}: Options<{operation}Data, ThrowOnError>\) => "
        rf"[^;]*RequestResult<{operation}Responses, unknown, ThrowOnError\b"
    )
    return re.search(signature, declarations) is not None


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
