"""`waldur-chat-mock serve ...`: start the mock; bad flags or files are one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mockserver.errors import ConfigurationError

PARTS = ("schema", "stream", "behaviour", "configuration")  # mirrors contract.runner.PARTS, kept import-light

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"waldur-chat-mock: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="waldur-chat-mock", description="Mock of Waldur's chat API.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="run the mock server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--users", type=Path, help="users file replacing fixtures/users.yaml")
    serve.add_argument(
        "--validate-responses",
        action="store_true",
        help="check every response (and every stream line) against the spec",
    )
    serve.add_argument("--no-cors", action="store_true", help="turn CORS headers off")
    serve.add_argument("--scripts", type=Path, help="reply scripts: a directory of *.yaml or one file")
    serve.add_argument("--seed-data", type=Path, help="threads and messages to start with (fixtures/seed.yaml)")
    serve.add_argument("--resources", type=Path, help="resources listed by the show_user_resources tool")
    serve.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="playback speed of scripted replies (2 = twice as fast, 0 = no delays)",
    )
    verify = commands.add_parser("verify", help="check an implementation of the chat API against the contract")
    verify.add_argument("--base-url", required=True, help="the target, e.g. https://waldur.example.com")
    verify.add_argument("--token", required=True, help="API token of a regular user")
    verify.add_argument("--other-token", required=True, help="API token of another regular user")
    verify.add_argument("--staff-token", help="API token of a staff user: enables the staff-only checks")
    verify.add_argument(
        "--max-streams",
        type=_non_negative_int,
        default=12,
        help="at most this many streams (each is an LLM call on a real deployment)",
    )
    verify.add_argument("--max-examples", type=_positive_int, default=10, help="hypothesis examples per part")
    verify.add_argument("--seed", type=int, help="seed for reproducible generation (default: derandomized)")
    verify.add_argument("--report", type=Path, help="write a JUnit XML report here")
    verify.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    verify.add_argument("--stream-timeout", type=float, default=60.0, help="seconds a stream may take at most")
    return parser


def _bounded(convert: type[int] | type[float], minimum: float) -> Callable[[str], Any]:
    """An argparse type: a number of the given kind, at least `minimum`, refused in one line."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if convert is int else 'a number'}: {value!r}"
            ) from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}: {value}")
        return number

    return parse


_non_negative_int = _bounded(int, 0)
_positive_int = _bounded(int, 1)
_speed = _bounded(float, 0)


def _ensure_free(host: str, port: int) -> None:
    """Refuse a busy address in one line, before uvicorn's multi-line error and exit code 3."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mockserver.api.limits import UVICORN_LIMITS
    from mockserver.app import ServerOptions, create_app
    from mockserver.users import DEFAULT_USERS_FILE

    options = ServerOptions(
        users_file=args.users or DEFAULT_USERS_FILE,
        validate_responses=args.validate_responses,
        cors=not args.no_cors,
        speed=args.speed,
        seed_data=args.seed_data,
    )
    if args.scripts:
        options.scripts = args.scripts
    if args.resources:
        options.resources_file = args.resources
    app = create_app(options)
    _ensure_free(args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"waldur-chat-mock serving Waldur 8.0.5 chat API on {base}/api/", flush=True)
    for user in app.store.users:
        role = "staff" if user.is_staff else "support" if user.is_support else "user"
        print(f"  {user.username:<10} {role:<8} Authorization: Token {user.token}", flush=True)
    print(f"  control API: {base}/__mock__/  (reset, requests, config, scripts)", flush=True)
    print(f"  scenarios (X-Mock-Scenario): {', '.join(app.engine.scenario_names())}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **UVICORN_LIMITS)
    return 0


def verify(args: argparse.Namespace) -> int:
    """Exit 0 when the contract holds, 1 on any violation, 2 on bad usage or an unreachable target."""
    from mockserver.contract.report import summary, write_junit
    from mockserver.contract.runner import TargetUnreachable, VerifyOptions
    from mockserver.contract.runner import verify as run_verify

    options = VerifyOptions(
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
        report = run_verify(options, progress=lambda line: print(f"... {line}", file=sys.stderr, flush=True))
    except TargetUnreachable as exc:
        print(f"waldur-chat-mock: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary(report))
    if args.report:
        write_junit(report, args.report)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "verify":
            return verify(args)
    except ConfigurationError as exc:
        print(f"waldur-chat-mock: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE
