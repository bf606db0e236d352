"""The `record` and `cassette` commands and serve's replay flags; import-light (argparse only at the top)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mockserver.cli_common import add_flag, ensure_free, run_server, usage_error
from mockserver.errors import ConfigurationError

RECORD_EPILOG = """\
Every exchange that passes through the proxy is appended to FILE as it ends (a stopped or
killed recorder leaves every finished interaction on disk). Tokens (Authorization header,
?x-auth-token=) are kept only as aliases user-1, user-2, ... in the order first seen; cookies and
every --redact NAME (a header, query parameter or JSON field, any depth) become "[redacted]".

exit codes:
  0  stopped (Ctrl-C or SIGTERM)
  2  bad flag, unwritable cassette, busy port

example:
  waldur-chat-mock record --target https://waldur.example.com --cassette chat.jsonl --redact password
"""
CASSETTE_EPILOG = """\
exit codes:
  0  done (check: every line could come from a real Waldur)
  1  check: lines a real Waldur stream could not produce (listed)
  2  unreadable cassette or bad usage

examples:
  waldur-chat-mock cassette check chat.jsonl
  waldur-chat-mock cassette to-scripts chat.jsonl --out recorded-scripts/
  waldur-chat-mock cassette to-seed chat.jsonl --out recorded-seed.yaml
"""


def add_record_command(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="record traffic to an implementation of the API into a cassette",
        description="Run a recording reverse proxy in front of a Waldur (or this mock) and write a cassette.",
        epilog=RECORD_EPILOG,
    )
    record.add_argument("--target", required=True, metavar="URL", help="the implementation to record, e.g. a Waldur")
    record.add_argument("--cassette", required=True, type=Path, metavar="FILE", help="the cassette to write (replaced)")
    add_flag(record, "--host", help="address the proxy listens on")
    add_flag(record, "--port", default=8000, help="port the proxy listens on")
    record.add_argument(
        "--redact",
        action="append",
        metavar="NAME",
        help="also replace this header, query parameter or JSON field by a placeholder (repeatable)",
    )
    add_flag(record, "--quiet", help="no line per recorded interaction")


def add_cassette_command(commands: Any) -> None:
    cassette = commands.add_parser(
        "cassette",
        help="check a cassette, or turn it into reply scripts or seed data",
        description="Work with a recorded cassette.",
        epilog=CASSETTE_EPILOG,
    )
    actions = cassette.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="list lines a real Waldur stream could not produce")
    check.add_argument("file", type=Path, metavar="FILE")
    add_flag(check, "--api", help="the Waldur version the cassette was recorded from (its records and grammar)")
    scripts = actions.add_parser("to-scripts", help="turn each recorded stream into a reply script")
    scripts.add_argument("file", type=Path, metavar="FILE")
    scripts.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the script file")
    seed = actions.add_parser("to-seed", help="turn the threads and messages seen into seed data (--seed-data)")
    seed.add_argument("file", type=Path, metavar="FILE")
    seed.add_argument("--out", type=Path, metavar="FILE", help="write here instead of standard output")


def add_serve_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--cassette", type=Path, metavar="FILE", help="answer requests from this recorded cassette (see --replay)"
    )
    serve.add_argument(
        "--replay",
        choices=("strict", "fallback"),
        help="with --cassette: an unmatched request gets 404 naming the closest recording (strict, the default)"
        " or is served by the stateful mock (fallback)",
    )


def record(args: argparse.Namespace) -> int:
    import importlib.util
    import logging
    import signal

    from mockserver.replay.cassette import CassetteWriter
    from mockserver.replay.recorder import RecordingProxy, target_origin
    from mockserver.replay.redaction import Redactor

    if importlib.util.find_spec("httpx") is None:
        raise ConfigurationError("record needs httpx: pip install 'waldur-chat-mock[contract]'")
    origin = target_origin(args.target)
    if not origin.startswith(("http://", "https://")) or origin.endswith("://"):
        raise ConfigurationError(f"--target must be an http(s) URL, e.g. https://waldur.example.com: {args.target!r}")
    ensure_free(args.host, args.port)
    redact = tuple(args.redact or ())
    writer = CassetteWriter(args.cassette, redact, origin)
    proxy = RecordingProxy(args.target, writer, Redactor(redact))
    if not args.quiet:
        logger = logging.getLogger("mockserver.replay")
        logger.addHandler(logging.StreamHandler(sys.stdout))
        logger.setLevel(logging.INFO)
    print(
        f"waldur-chat-mock recording {args.target} into {args.cassette}: "
        f"send requests to http://{args.host}:{args.port}/ (Ctrl-C stops)",
        flush=True,
    )
    # uvicorn shuts down gracefully on Ctrl-C/SIGTERM, then re-raises the signal: a stop is a normal end here.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: None)
    run_server(proxy, args.host, args.port)
    writer.close()
    print(f"{writer.count} interactions recorded in {args.cassette}", flush=True)
    return 0


def cassette(args: argparse.Namespace) -> int:
    from mockserver.replay.cassette import read_cassette

    loaded = read_cassette(args.file)
    if args.action == "check":
        from mockserver.replay.check import NotARecordStream, check_cassette

        try:
            problems = check_cassette(loaded, api=args.api)
        except NotARecordStream as refused:
            return usage_error(str(refused))
        for problem in problems:
            print(f"{args.file}: {problem}")
        print(f"{len(loaded.interactions)} interactions, {len(problems)} lines a real Waldur could not send")
        return 1 if problems else 0
    if args.action == "to-scripts":
        from mockserver.replay.convert import write_scripts

        written = write_scripts(loaded, args.out)
        print(f"wrote {written}")
        return 0
    from mockserver.replay.convert import seed_yaml

    text = seed_yaml(loaded)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
