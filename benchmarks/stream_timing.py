"""Stream timing against a real uvicorn on loopback: first-record latency and gap accuracy.

httpx's ASGI transport delivers a body only when it is complete, so timing is measured
over TCP. A benchmark script streams chunks of at least 50 characters (one markdown
record each) at scripted gaps; the client timestamps every line as it arrives and
compares the observed gaps with the scripted ones.

    .venv/bin/python benchmarks/stream_timing.py [--streams 20] [--concurrency 1,50] [--gap-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from mockserver.app import ServerOptions, create_app

CHUNK = "This sentence is long enough to be flushed as one markdown record. "


def script_yaml(chunks: int, first_ms: float, gap_ms: float) -> str:
    lines = ["scripts:", "  - name: bench", "    match: {}", "    reply:", "      chunks:"]
    for index in range(chunks):
        delay = first_ms if index == 0 else gap_ms
        lines.append(f"        - {{text: {CHUNK!r}, delay_ms: {delay}}}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(scripts: Path) -> tuple[uvicorn.Server, str]:
    app = create_app(ServerOptions(scripts=scripts, speed=1.0, cors=False, steady_heap=True))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


async def one_stream(client: httpx.AsyncClient) -> list[float]:
    """Arrival times (seconds since the request was sent) of every line."""
    started = time.perf_counter()
    arrivals = []
    async with client.stream(
        "POST", "/api/chat/stream/", json={"input": "benchmark"}, headers={"Authorization": "Token alice-token"}
    ) as response:
        response.raise_for_status()
        async for _line in response.aiter_lines():
            arrivals.append(time.perf_counter() - started)
    return arrivals


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(base_url: str, streams: int, concurrency: int, *, chunks: int, first_ms: float, gap_ms: float) -> None:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def guarded() -> list[float]:
            async with semaphore:
                return await one_stream(client)

        wall = time.perf_counter()
        results = await asyncio.gather(*(guarded() for _ in range(streams)))
        wall = time.perf_counter() - wall
    first_record = [r[0] * 1000 for r in results]
    first_content = [r[1] * 1000 for r in results]
    gap_errors = [
        abs((r[i + 1] - r[i]) * 1000 - gap_ms)
        for r in results
        for i in range(1, chunks)  # content -> content
    ]
    print(f"concurrency {concurrency:>4}: {streams} streams x {chunks} chunks in {wall:.2f} s")
    print(
        f"  first record (thread m)  p50 {statistics.median(first_record):7.2f} ms"
        f"  p95 {percentile(first_record, 0.95):7.2f} ms  max {max(first_record):7.2f} ms"
    )
    print(f"  first content record     p50 {statistics.median(first_content):7.2f} ms  (scripted {first_ms:.0f} ms)")
    print(
        f"  |observed - scripted| gap  mean {statistics.mean(gap_errors):6.2f} ms  p50 "
        f"{statistics.median(gap_errors):6.2f} ms  p95 {percentile(gap_errors, 0.95):6.2f} ms"
        f"  max {max(gap_errors):6.2f} ms  (scripted gap {gap_ms:.0f} ms, {len(gap_errors)} gaps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--first-ms", type=float, default=100)
    parser.add_argument("--gap-ms", type=float, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp) / "bench.yaml"
        scripts.write_text(script_yaml(args.chunks, args.first_ms, args.gap_ms))
        server, base_url = start_server(scripts)
        try:
            for level in (int(c) for c in args.concurrency.split(",")):
                streams = max(args.streams, level)
                asyncio.run(
                    run(base_url, streams, level, chunks=args.chunks, first_ms=args.first_ms, gap_ms=args.gap_ms)
                )
        finally:
            server.should_exit = True


if __name__ == "__main__":
    main()
