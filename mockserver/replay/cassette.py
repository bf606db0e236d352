"""The cassette: a versioned JSON Lines file, one interaction per line after a header line.

Why JSON Lines: each interaction is appended and flushed as soon as it ends, so a recorder
killed at any moment leaves every finished interaction readable (a torn last line is
reported and skipped); one interaction per line also keeps `git diff` readable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mockserver.errors import ConfigurationError

log = logging.getLogger("mockserver.replay")

FORMAT = "waldur-chat-mock-cassette"
VERSION = 1
STREAM_TYPES = ("application/x-ndjson", "text/event-stream")


@dataclass(frozen=True)
class StreamLine:
    """One line of a streamed body (without its `\\n`) and when it arrived, in ms after the headers."""

    at_ms: float
    text: str


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # the headers that matter, secrets redacted
    user: str | None = None  # the stable alias of the caller's token; None: anonymous
    body: str | None = None  # text (JSON, form); None when empty


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    headers_ms: float = 0.0  # from forwarding the request to the response head
    body: str | None = None  # a plain body; None for a stream
    lines: tuple[StreamLine, ...] | None = None  # a stream, line by line
    unterminated: bool = False  # the stream's last line had no `\\n` (a cut connection)
    cut: bool = False  # the target closed the connection before the body ended

    @property
    def is_stream(self) -> bool:
        return self.lines is not None

    def body_bytes(self) -> bytes:
        """The exact bytes the target sent."""
        if self.lines is None:
            return (self.body or "").encode("utf-8")
        text = "\n".join(line.text for line in self.lines)
        return (text if self.unterminated or not self.lines else text + "\n").encode("utf-8")


@dataclass(frozen=True)
class Interaction:
    request: RecordedRequest
    response: RecordedResponse


@dataclass
class Cassette:
    interactions: list[Interaction] = field(default_factory=list)
    redacted: tuple[str, ...] = ()  # the extra names redacted when recording (headers, JSON fields)
    target: str = ""  # where it was recorded (scheme, host and port only)


def header_entry(redacted: tuple[str, ...], target: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "target": target, "redacted": list(redacted)}


def encode_interaction(interaction: Interaction) -> str:
    """One cassette line (no newline)."""
    request, response = interaction.request, interaction.response
    out_response: dict[str, Any] = {
        "status": response.status,
        "headers": [list(pair) for pair in response.headers],
        "headers_ms": round(response.headers_ms, 3),
    }
    if response.lines is None:
        out_response["body"] = response.body
    else:
        out_response["lines"] = [[round(line.at_ms, 3), line.text] for line in response.lines]
        if response.unterminated:
            out_response["unterminated"] = True
    if response.cut:
        out_response["cut"] = True
    entry = {
        "request": {
            "method": request.method,
            "path": request.path,
            "query": [list(pair) for pair in request.query],
            "headers": [list(pair) for pair in request.headers],
            "user": request.user,
            "body": request.body,
        },
        "response": out_response,
    }
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def decode_interaction(data: Any) -> Interaction:
    """The inverse of `encode_interaction`; raises ValueError (with the reason) on a malformed entry."""
    try:
        request, response = data["request"], data["response"]
        lines = response.get("lines")
        return Interaction(
            RecordedRequest(
                method=str(request["method"]),
                path=str(request["path"]),
                query=_pairs(request.get("query", [])),
                headers=_pairs(request.get("headers", [])),
                user=request.get("user"),
                body=request.get("body"),
            ),
            RecordedResponse(
                status=int(response["status"]),
                headers=_pairs(response.get("headers", [])),
                headers_ms=float(response.get("headers_ms", 0.0)),
                body=response.get("body"),
                lines=None if lines is None else tuple(StreamLine(float(at), str(text)) for at, text in lines),
                unterminated=bool(response.get("unterminated", False)),
                cut=bool(response.get("cut", False)),
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not an interaction ({type(exc).__name__}: {exc})") from None


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(item)) for name, item in value)


def read_cassette(path: Path) -> Cassette:
    """Read a cassette; a torn last line (a killed recorder) is skipped with a warning, anything else refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read cassette {path}: {exc}") from None
    return parse_cassette(text, str(path))


def parse_cassette(text: str, source: str = "<cassette>") -> Cassette:
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # after the last "\n": empty unless the writer was cut short
    header = _header(lines[0] if lines else torn, source)
    cassette = Cassette(redacted=tuple(header.get("redacted", ())), target=str(header.get("target", "")))
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            cassette.interactions.append(decode_interaction(json.loads(line)))
        except ValueError as exc:
            raise ConfigurationError(f"{source}:{number}: {exc}") from None
    if torn.strip() and lines:
        log.warning(
            "%s:%d: incomplete last entry skipped (the recorder was stopped while writing it)", source, len(lines) + 1
        )
    return cassette


def _header(line: str, source: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigurationError(f"{source}:1: not a cassette (expected a {FORMAT} header line)")
    if header.get("version") != VERSION:
        raise ConfigurationError(f"{source}:1: cassette version {header.get('version')!r}, this mock reads {VERSION}")
    return header


class CassetteWriter:
    """Appends interactions to a new cassette file, one flushed line each (no interaction is lost)."""

    def __init__(self, path: Path, redacted: tuple[str, ...], target: str):
        try:
            self._file: IO[str] = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot write cassette {path}: {exc.strerror or exc}") from None
        self.count = 0
        self._write(json.dumps(header_entry(redacted, target)))

    def append(self, interaction: Interaction) -> None:
        self._write(encode_interaction(interaction))
        self.count += 1

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def is_stream_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in STREAM_TYPES
