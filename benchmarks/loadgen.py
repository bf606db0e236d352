"""A closed-loop HTTP/1.1 load generator, run in its own process (the fallback when wrk is absent).

Each of `--connections` keep-alive connections sends the same request bytes back to back for
`--duration` seconds, reads each whole response (Content-Length or chunked), and records the
latency. Prints one JSON object: requests, errors (non-2xx or broken), seconds, p50/p99 in ms.

    python benchmarks/loadgen.py --url http://127.0.0.1:8000/api/chat-threads/ \
        --header "Authorization: Token alice-token" --connections 4 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def build_request(url: str, method: str, headers: list[str], body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parts.hostname or "127.0.0.1", parts.port or 80, raw


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if b"content-length" in fields:
        await reader.readexactly(int(fields[b"content-length"]))
    elif fields.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def connection(host: str, port: int, request: bytes, deadline: float, out: dict[str, list]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            writer.write(request)
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                out["errors"].append(1)
                return
            out["latencies"].append(time.perf_counter() - sent)
            if not 200 <= status < 300:
                out["errors"].append(status)
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, float]:
    body = args.body.encode()
    host, port, request = build_request(args.url, args.method, args.header, body)
    out: dict[str, list] = {"latencies": [], "errors": []}
    started = time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(*(connection(host, port, request, deadline, out) for _ in range(args.connections)))
    elapsed = time.perf_counter() - started
    latencies = sorted(out["latencies"])

    def percentile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "requests": len(latencies),
        "errors": len(out["errors"]),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default="")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
