"""The two servers the side-by-side benchmark compares, each started in its own process.

    python benchmarks/servers.py mock --port 8001 --threads 50000 [--http h11|httptools] [--speed 1]
    python benchmarks/servers.py ceiling --port 8002 --answers answers.json [--http ...]
    python benchmarks/servers.py stream-ceiling --port 8003 --answers stream.json [--http ...]

`mock` is the app `serve` runs (request validation on, CORS on, no access log, speed 0),
with `--threads` threads of alice's in the store (every tenth and the last with two messages); it prints one JSON line
naming the thread the benchmark reads. `ceiling` is a bare Starlette app answering recorded
bytes (status, Content-Type, body; NDJSON through a streaming response) on the same uvicorn
settings: the most any Python mock on this stack could do. `stream-ceiling` is the same for
paced streams: a bare Starlette route that answers `POST /api/chat/stream/` with recorded NDJSON
lines, each sent at its scripted offset from the response's start (sleeping to absolute
deadlines), so that what the stack alone does to the pacing of many streams can be measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def uvicorn_settings(http: str) -> dict[str, Any]:
    """The settings `serve` uses; `--http httptools` measures what h11 costs."""
    from mockserver.api.limits import UVICORN_LIMITS

    settings = dict(UVICORN_LIMITS)
    if http != settings.get("http"):
        settings = {"http": http}
    return settings


def mock_app(threads: int, speed: float = 0.0) -> tuple[Any, str]:
    from mockserver.app import ServerOptions, create_app

    app = create_app(ServerOptions(speed=speed, steady_heap=True))  # as `serve` runs it
    alice = next(u for u in app.store.users if u.username == "alice")
    target = None
    for number in range(threads):
        target = app.store.create_thread(alice)
        if number % 10 == 0 or number == threads - 1:  # the last one is the thread the benchmark reads
            app.store.add_message(target, "user", "What is Waldur?", 1)
            app.store.add_message(target, "assistant", "A cloud marketplace.", 2)
    assert target is not None
    return app, target.uuid


def ceiling_app(answers_file: Path) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    answers = json.loads(answers_file.read_text())

    def endpoint(answer: dict[str, Any]) -> Any:
        body = answer["body"].encode()
        lines = body.splitlines(keepends=True)

        async def respond(request: Request) -> Response:
            await request.body()
            if answer["content_type"].startswith("application/x-ndjson"):

                async def records() -> Any:
                    for line in lines:
                        yield line

                return StreamingResponse(records(), status_code=answer["status"], media_type=answer["content_type"])
            return Response(body, status_code=answer["status"], media_type=answer["content_type"])

        return respond

    routes = [Route(a["path"], endpoint(a), methods=[a["method"]]) for a in answers]
    return Starlette(routes=routes)


def stream_ceiling_app(answers_file: Path) -> Any:
    """`{"lines": [...], "offsets": [seconds, ...]}`: line i leaves `offsets[i]` after the start."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    answer = json.loads(answers_file.read_text())
    timeline = [
        (offset, (line + "\n").encode()) for line, offset in zip(answer["lines"], answer["offsets"], strict=True)
    ]

    async def respond(request: Request) -> Response:
        await request.body()

        async def records() -> Any:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for offset, line in timeline:
                delay = start + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield line

        return StreamingResponse(records(), media_type="application/x-ndjson")

    # The mock's collector settings too: the floor is the stack's, not CPython's default pauses.
    from mockserver.heap import steady_heap

    return Starlette(routes=[Route("/api/chat/stream/", respond, methods=["POST"])], lifespan=steady_heap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["mock", "ceiling", "stream-ceiling"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--answers", type=Path)
    parser.add_argument("--http", default="h11", choices=["h11", "httptools"])
    parser.add_argument("--speed", type=float, default=0.0, help="the mock's playback speed (1: scripted pacing)")
    args = parser.parse_args()
    import uvicorn

    if args.kind == "mock":
        app, thread = mock_app(args.threads, args.speed)
        print(json.dumps({"thread": thread}), flush=True)
    elif args.kind == "ceiling":
        app = ceiling_app(args.answers)
        print(json.dumps({}), flush=True)
    else:
        app = stream_ceiling_app(args.answers)
        print(json.dumps({}), flush=True)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, **uvicorn_settings(args.http)
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    sys.exit(main())
