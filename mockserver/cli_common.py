"""What every command of `waldur-chat-mock` shares: the parser, flag types, flags, and running a server.

Import-light (argparse only at the top): `serve` imports it, and must not import the contract suite.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mockserver.errors import ConfigurationError
from mockserver.profiles import API_NAMES, DEFAULT_API

EXIT_USAGE = 2


def usage_error(message: str) -> int:
    """Bad usage is one line on stderr and exit code 2, whichever command found it."""
    print(f"waldur-chat-mock: error: {message}", file=sys.stderr)
    return EXIT_USAGE


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless it has none or is a plain switch) and keeps epilogs as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.help is None or action.help == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Every parser of the CLI, subcommands included: one-line usage errors and the same help layout."""

    def __init__(self, *args: Any, formatter_class: type[argparse.HelpFormatter] = HelpFormatter, **kwargs: Any):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(usage_error(message))


def port_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return number


def bounded(convert: type[int] | type[float], minimum: float, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite number of the given kind, at least `minimum` (or, with `above`,
    more than it), refused in one line."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if convert is int else 'a number'}: {value!r}"
            ) from None
        if not math.isfinite(number) or number < minimum or (above and number == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {minimum}: {value}")
        return number

    return parse


non_negative_int = bounded(int, 0)
positive_int = bounded(int, 1)
speed_factor = bounded(float, 0)
positive_seconds = bounded(float, 0, above=True)

# Flags that several commands take, each defined once; a command passes what differs for it
# (the port's default, a help text that names what listens or logs).
FLAGS: dict[str, dict[str, Any]] = {
    "--api": {"choices": API_NAMES, "default": DEFAULT_API, "help": "the Waldur version whose chat API is served"},
    "--host": {"default": "127.0.0.1", "help": "address to listen on"},
    "--port": {"type": port_number, "help": "port to listen on"},
    "--scripts": {
        "type": Path,
        "metavar": "DIR|FILE",
        "help": "reply scripts: a directory of *.yaml or one file (default: the packaged fixtures/scripts/)",
    },
    "--speed": {
        "type": speed_factor,
        "default": 1.0,
        "metavar": "FACTOR",
        "help": "playback speed of scripted replies (2 = twice as fast, 0 = no delays)",
    },
    "--quiet": {"action": "store_true", "help": "no access log (one line per request on stdout)"},
    "--upstream-token": {
        "metavar": "TOKEN",
        "help": "the token the /__upstream__/ endpoints require (default: any token is accepted)",
    },
}


def add_flag(parser: argparse.ArgumentParser, name: str, **changes: Any) -> None:
    """One of FLAGS, with what differs for this command."""
    parser.add_argument(name, **{**FLAGS[name], **changes})


def ensure_free(host: str, port: int) -> None:
    """Refuse a busy address in one line, before uvicorn's multi-line error and exit code 3."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run_server(app: Any, host: str, port: int) -> None:
    """uvicorn until stopped, with the request limits of a real deployment; only its warnings and
    errors are logged (each command prints its own lines per request)."""
    import uvicorn

    from mockserver.api.limits import UVICORN_LIMITS

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, **UVICORN_LIMITS)
    uvicorn.Server(config).run()
