"""`waldur-chat-mock serve ...`: start the mock; bad flags or files are one line and exit code 2.

This module is imported by `serve`, so it imports nothing of the contract suite at the top.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mockserver import __version__
from mockserver.cli_common import (
    EXIT_USAGE,
    Parser,
    add_flag,
    ensure_free,
    non_negative_int,
    positive_int,
    positive_seconds,
    run_server,
    usage_error,
)
from mockserver.errors import ConfigurationError
from mockserver.replay import commands as replay_commands
from mockserver.resources import SEED_FILE
from mockserver.upstream.target import DEFAULT_MODEL, UPSTREAM_FORMATS, UpstreamTarget

# Mirrors contract.runner.PARTS, kept import-light (serve must not import the contract suite).
PARTS = ("schema", "stream", "behaviour", "operations", "configuration")

VERIFY_EXIT_CODES = """exit codes:
  0  every check that applies to the target ran and passed (checks that cannot apply,
     e.g. configuration without /__mock__/config or staff checks without --staff-token,
     are listed as SKIP [not applicable] and do not count)
  1  a contract violation
  2  bad usage, the same token for two roles, a target that cannot be checked,
     or no [contract] extra
  3  no violation, but checks that apply were skipped (SKIP [budget] or [not checked]);
     --allow-skips turns this into 0"""

# What `verify` needs beyond `serve` (the [contract] extra); a missing one is a usage error.
CONTRACT_MODULES = frozenset({"httpx", "hypothesis", "schemathesis", "pytest", "rich"})
CONTRACT_EXTRA_HINT = "verify needs the contract suite: pip install 'waldur-chat-mock[contract]'"
INVALID_REQUEST_NOTE = (
    "Invalid HTTP request received: uvicorn answered 400 to bytes it cannot parse as HTTP, before the mock"
    " saw them (verify's fuzzed requests cause these; harmless)"
)

MAIN_EPILOG = """\
exit codes:
  0  success
  1  verify: the target violates the contract
     cassette check: lines a real Waldur could not send
  2  bad usage: an unknown flag, an unreadable or invalid file, a busy port, an
     unreachable target, or verify without the [contract] extra
  3  verify: no violation, but checks that apply to the target were skipped

examples:
  waldur-chat-mock serve --port 8000 --seed-data
  waldur-chat-mock verify --base-url http://127.0.0.1:8000 --token alice-token --other-token bob-token
  waldur-chat-mock COMMAND --help
"""
SERVE_EPILOG = """\
The demo users, reply scripts, resources and seed threads are packaged (the same files
as fixtures/ in the repository); the flags replace them. One access-log line per request
goes to stdout: client user "METHOD target" status duration bytes=N (streams also
records=N); --quiet turns it off.

exit codes:
  0  stopped (Ctrl-C)
  2  bad flag, unreadable or invalid file (users, scripts, resources, seed data), busy port

example:
  waldur-chat-mock serve --port 8000 --speed 0 --seed-data my-threads.yaml --quiet
  waldur-chat-mock serve --upstream-url http://127.0.0.1:8001/__upstream__/openai/v1 --upstream-format openai
"""
UPSTREAM_EPILOG = """\
Endpoints (a real Waldur's LLM setting points at one of them):
  POST /__upstream__/langserve/stream           LangServe /stream (Waldur 7.9.x-8.0.x)
  POST /__upstream__/openai/v1/chat/completions OpenAI-compatible (newest Waldur), base URL
  GET  /__upstream__/openai/v1/models           .../__upstream__/openai/v1
The control API (/__mock__/: journal, config, scripts) is served too; the chat API is not.

example:
  waldur-chat-mock upstream --port 8001 --speed 0 --upstream-token secret
"""
VERIFY_EPILOG = f"""\
Needs the [contract] extra: pip install 'waldur-chat-mock[contract]'.

{VERIFY_EXIT_CODES}

example:
  waldur-chat-mock verify --base-url http://127.0.0.1:8000 --token alice-token \\
      --other-token bob-token --staff-token staff-token --report junit.xml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="waldur-chat-mock",
        description="A stateful mock of Waldur's chat API (8.0.5, or 7.9.4 or 8.1 with --api) and a contract suite"
        " for any implementation of it.",
        epilog=MAIN_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    _add_serve_command(commands)
    _add_upstream_command(commands)
    _add_verify_command(commands)
    replay_commands.add_record_command(commands)
    replay_commands.add_cassette_command(commands)
    return parser


def _add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the mock server",
        description="Serve the mock of Waldur's chat API, its control API under /__mock__/, and a demo setup.",
        epilog=SERVE_EPILOG,
    )
    add_flag(serve, "--api")
    add_flag(serve, "--host")
    add_flag(serve, "--port", default=8000)
    serve.add_argument(
        "--users", type=Path, metavar="FILE", help="users file (default: the packaged fixtures/users.yaml)"
    )
    serve.add_argument(
        "--validate-responses",
        action="store_true",
        help="check every response (and every stream line) against the spec",
    )
    serve.add_argument("--no-cors", action="store_true", help="turn CORS headers off")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the control API answers besides localhost and IP addresses (repeatable)",
    )
    add_flag(serve, "--scripts")
    serve.add_argument(
        "--seed-data",
        type=Path,
        nargs="?",
        const=SEED_FILE,
        metavar="FILE",
        help="threads and messages to start with and reset to; without FILE the packaged demo threads"
        " (fixtures/seed.yaml) (default: none)",
    )
    serve.add_argument(
        "--resources",
        type=Path,
        metavar="FILE",
        help="resources listed by the show_user_resources tool (default: the packaged fixtures/resources.yaml)",
    )
    serve.add_argument(
        "--allow-no-catch-all",
        action="store_true",
        help="accept reply scripts without a catch-all (`match: {}`); unmatched requests then get empty replies",
    )
    add_flag(serve, "--speed")
    add_flag(serve, "--quiet")
    replay_commands.add_serve_flags(serve)
    add_flag(serve, "--upstream-token")
    serve.add_argument(
        "--upstream-url",
        metavar="URL",
        help="the chat API calls this real LLM instead of running scripts (LangServe: the /stream URL;"
        " OpenAI: the base URL, e.g. .../v1)",
    )
    serve.add_argument(
        "--upstream-format", choices=UPSTREAM_FORMATS, default="openai", help="the protocol of --upstream-url"
    )
    serve.add_argument("--upstream-url-token", default="", metavar="TOKEN", help="the token sent to --upstream-url")
    serve.add_argument(
        "--upstream-model", default=DEFAULT_MODEL, metavar="NAME", help="the model asked of an OpenAI --upstream-url"
    )


def _add_upstream_command(commands: Any) -> None:
    upstream = commands.add_parser(
        "upstream",
        help="serve only the upstream-LLM endpoints",
        description="Serve the reply scripts as the LLM a real Waldur calls (LangServe and OpenAI-compatible).",
        epilog=UPSTREAM_EPILOG,
    )
    add_flag(upstream, "--host")
    add_flag(upstream, "--port", default=8001)
    add_flag(upstream, "--scripts")
    add_flag(upstream, "--speed")
    add_flag(upstream, "--upstream-token")
    add_flag(upstream, "--quiet")


def _add_verify_command(commands: Any) -> None:
    verify = commands.add_parser(
        "verify",
        help="check an implementation of the chat API against the contract",
        description="Check an implementation of Waldur's chat API (a deployment or this mock) against the contract.",
        epilog=VERIFY_EPILOG,
    )
    add_flag(verify, "--api", help="the Waldur version whose chat API the target serves")
    verify.add_argument("--base-url", required=True, help="the target, e.g. https://waldur.example.com")
    verify.add_argument("--token", required=True, help="API token of a regular user")
    verify.add_argument("--other-token", required=True, help="API token of another regular user")
    verify.add_argument("--staff-token", help="API token of a staff user: enables the staff-only checks")
    verify.add_argument(
        "--max-streams",
        type=non_negative_int,
        default=12,
        help="at most this many streams (each is an LLM call on a real deployment)",
    )
    verify.add_argument("--max-examples", type=positive_int, default=10, help="hypothesis examples per part")
    verify.add_argument("--seed", type=int, help="seed for reproducible generation (default: derandomized)")
    verify.add_argument("--report", type=_writable_file, metavar="FILE", help="write a JUnit XML report here")
    verify.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    verify.add_argument(
        "--stream-timeout", type=positive_seconds, default=60.0, help="seconds a stream may take at most"
    )
    verify.add_argument(
        "--report-json", type=_writable_file, metavar="FILE", help="write a JSON report here (shape: see the README)"
    )
    verify.add_argument(
        "--allow-skips",
        action="store_true",
        help="exit 0 instead of 3 when no check failed but some that apply were skipped (e.g. for budget)",
    )


def _writable_file(value: str) -> Path:
    """An argparse type for a report path: refused before the run, not after it."""
    path = Path(value)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a directory: {value}")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {folder}")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"not writable: {value}")
    return path


def serve(args: argparse.Namespace) -> int:

    from mockserver.app import ServerOptions, create_app
    from mockserver.users import DEFAULT_USERS_FILE

    options = ServerOptions(
        api=args.api,
        users_file=args.users or DEFAULT_USERS_FILE,
        validate_responses=args.validate_responses,
        cors=not args.no_cors,
        allowed_hosts=tuple(args.allow_host),
        speed=args.speed,
        seed_data=args.seed_data,
        allow_no_catch_all=args.allow_no_catch_all,
        upstream_token=args.upstream_token,
        steady_heap=True,
    )
    if args.upstream_url:
        options.upstream_target = UpstreamTarget(
            args.upstream_url, args.upstream_format, args.upstream_url_token, args.upstream_model
        )
    if args.scripts:
        options.scripts = args.scripts
    if args.resources:
        options.resources_file = args.resources
    if args.replay and not args.cassette:
        raise ConfigurationError("--replay needs --cassette FILE")
    if args.cassette:
        from mockserver.replay.cassette import read_cassette
        from mockserver.replay.replayer import ReplaySource

        options.replay = ReplaySource(read_cassette(args.cassette), args.replay or "strict")
    app = create_app(options)
    ensure_free(args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"waldur-chat-mock serving Waldur {app.profile.name} chat API on {base}/api/", flush=True)
    print(f"  API profile {app.profile.name}: {app.profile.summary}", flush=True)
    for user in app.store.users:
        role = "staff" if user.is_staff else "support" if user.is_support else "user"
        print(f"  {user.username:<10} {role:<8} Authorization: Token {user.token}", flush=True)
    print(f"  control API: {base}/__mock__/  (reset, requests, config, scripts)", flush=True)
    print(f"  playground:  {base}/__mock__/ui", flush=True)
    _print_upstream(base)
    if options.upstream_target:
        print(f"  replies from {options.upstream_target.format} upstream {options.upstream_target.url}", flush=True)
    else:
        print(f"  scenarios (X-Mock-Scenario): {', '.join(app.engine.scenario_names())}", flush=True)
    if options.replay:
        print(f"  replaying {args.cassette} ({options.replay.mode}); user-N is the N-th user above", flush=True)
    return _run(app, args)


def upstream(args: argparse.Namespace) -> int:
    """Only the upstream-LLM endpoints (and the control API) of one mock instance."""
    from mockserver.app import ServerOptions, create_app

    options = ServerOptions(speed=args.speed, upstream_token=args.upstream_token, upstream_only=True, steady_heap=True)
    if args.scripts:
        options.scripts = args.scripts
    app = create_app(options)
    ensure_free(args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"waldur-chat-mock serving the upstream LLM on {base}/__upstream__/", flush=True)
    _print_upstream(base)
    print(f"  control API: {base}/__mock__/  (requests, config, scripts)", flush=True)
    print(f"  scenarios (X-Mock-Scenario): {', '.join(app.scripted.scenario_names())}", flush=True)
    return _run(app, args)


def _print_upstream(base: str) -> None:
    print(f"  upstream LLM: {base}/__upstream__/langserve/stream (LangServe)", flush=True)
    print(f"                {base}/__upstream__/openai/v1 (OpenAI-compatible base URL)", flush=True)


def _run(app: Any, args: argparse.Namespace) -> int:
    """The server on the given address, with our access log unless --quiet."""
    from mockserver.api.access_log import AccessLogMiddleware

    # Our access log replaces uvicorn's; uvicorn's warnings and errors stay on stderr.
    logging.getLogger("uvicorn.error").addFilter(_explain_invalid_requests)
    run_server(app if args.quiet else AccessLogMiddleware(app, _access_logger()), args.host, args.port)
    return 0


def _access_logger() -> logging.Logger:
    """The access log: one line per request on stdout, with the time (UTC) in front."""
    from mockserver.api.access_log import ACCESS_LOGGER

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _explain_invalid_requests(record: logging.LogRecord) -> bool:
    """uvicorn's bare "Invalid HTTP request received." says neither what nor why: say both."""
    if record.getMessage() == "Invalid HTTP request received.":
        record.msg, record.args = INVALID_REQUEST_NOTE, ()
    return True


def _require_contract_extra() -> None:
    """`verify` without the [contract] extra: one line naming the extra, not an ImportError trace."""
    import importlib.util

    missing = sorted(name for name in CONTRACT_MODULES if importlib.util.find_spec(name) is None)
    if missing:
        raise ConfigurationError(f"{CONTRACT_EXTRA_HINT} (missing: {', '.join(missing)})")


def verify(args: argparse.Namespace) -> int:
    """Exit codes: see VERIFY_EXIT_CODES."""
    from mockserver.contract.progress import PlainProgress, RichProgress
    from mockserver.contract.report import summary, write_json, write_junit
    from mockserver.contract.runner import TargetUnreachable, UsageError, VerifyOptions
    from mockserver.contract.runner import verify as run_verify

    options = VerifyOptions(
        api=args.api,
        base_url=args.base_url,
        token=args.token,
        other_token=args.other_token,
        staff_token=args.staff_token,
        max_streams=args.max_streams,
        max_examples=args.max_examples,
        seed=args.seed,
        only=tuple(args.only) if args.only else PARTS,
        stream_timeout=args.stream_timeout,
    )
    try:
        if sys.stderr.isatty():
            with RichProgress(sys.stderr, options.max_streams) as live:
                report = run_verify(options, progress=live)
        else:
            report = run_verify(options, progress=PlainProgress(sys.stderr, options.max_streams))
    except (TargetUnreachable, UsageError) as exc:
        return usage_error(str(exc))
    print(summary(report))
    code = report.exit_code(allow_skips=args.allow_skips)
    if args.report:
        write_junit(report, args.report)
    if args.report_json:
        write_json(report, args.report_json, code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "upstream":
            return upstream(args)
        if args.command == "verify":
            _require_contract_extra()
            return verify(args)
        if args.command == "record":
            return replay_commands.record(args)
        if args.command == "cassette":
            return replay_commands.cassette(args)
    except ConfigurationError as exc:
        return usage_error(str(exc))
    return EXIT_USAGE
