"""Python heap per stream in flight (tracemalloc), the ASGI app called directly, no server.

    .venv/bin/python benchmarks/stream_memory.py [--streams 500] [--top 12]

Starts `--streams` long-answer streams at speed 1 against the app (as `serve` builds it),
waits until every one has sent its first content record, and prints the heap they hold
(tracemalloc, the difference to before they started) per stream, with the files that
allocated most of it. What uvicorn and the sockets hold comes on top (see concurrent_streams.py
for the server's RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import linecache
import tracemalloc
from typing import Any

INPUT = "explain how projects work"


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/chat/stream/",
        "raw_path": b"/api/chat/stream/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", b"Token alice-token"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one_stream(app: Any, body: bytes, content_seen: asyncio.Event, done: asyncio.Event) -> None:
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body", b"").startswith(b'{"k"'):
            content_seen.set()

    await app(scope(), receive, send)


async def measure(streams: int, top: int) -> None:
    from mockserver.app import ServerOptions, create_app

    app = create_app(ServerOptions(speed=1.0, steady_heap=True))  # as `serve` runs it
    body = json.dumps({"input": INPUT}).encode()
    done = asyncio.Event()
    warm = asyncio.Event()
    await asyncio.wait_for(asyncio.create_task(one_stream(app, body, warm, asyncio.Event())), 30)
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    seen = [asyncio.Event() for _ in range(streams)]
    tasks = [asyncio.create_task(one_stream(app, body, event, done)) for event in seen]
    await asyncio.gather(*(event.wait() for event in seen))
    after = tracemalloc.take_snapshot()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"{streams} streams in flight: {total / streams / 1024:.1f} KiB of Python heap per stream")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        line = linecache.getline(frame.filename, frame.lineno).strip()
        short = frame.filename.split("site-packages/")[-1].split("wt-streamperf/")[-1]
        print(f"  {stat.size_diff / streams:8.0f} B  {short}:{frame.lineno}  {line[:70]}")
    tracemalloc.stop()
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(measure(args.streams, args.top))


if __name__ == "__main__":
    main()
