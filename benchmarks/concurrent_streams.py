"""Many long-answer streams at once, at speed 1: completion, gap accuracy, server RSS, first record.

    .venv/bin/python benchmarks/concurrent_streams.py [--streams 500,1000,2000] [--source DIR]

For each level a fresh mock (`servers.py mock --speed 1`, core 0) and a load generator in its
own process (core 1) that opens every connection at once and sends `POST /api/chat/stream/`
with an input the default `long-answer` script answers (about 260 upstream chunks, 16
records, 4.8 s). The generator timestamps each NDJSON line as it arrives and compares the gap
between consecutive content records with the scripted gap (from the script's plan: the time
of the chunk that completes each record), and samples the server's RSS from /proc while the
streams are in flight. `--source DIR` runs the server from another checkout's `mockserver`
(a "before" tree: `git archive <commit> mockserver spec fixtures | tar -x -C DIR`).

Each level also runs against the streaming ceiling (`servers.py stream-ceiling`): a bare
Starlette route on the same uvicorn settings sending the lines the mock sent, each at its
scripted offset, sleeping to absolute deadlines. Its gap error and first record at the same
level are what the stack and this machine do alone (the load generator shares the 2 cores).
It has no admission gate (`mockserver/api/admission.py`), so its start burst can delay its
own early records more than the mock's does. `--no-ceiling` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INPUT = "explain how projects work"  # matched by the default long-answer script
AUTH_TOKEN = "alice-token"


# -- the scripted timeline ---------------------------------------------------------------------
def scripted_record_offsets() -> list[float]:
    """Seconds from the first chunk's start to each content record of the long answer (speed 1)."""
    from mockserver.engine.adapters.waldur_records import RecordTranslation
    from mockserver.engine.base import ReplyRequest
    from mockserver.engine.faults import Faults
    from mockserver.engine.parser import StreamParser
    from mockserver.engine.scripts import ScriptSet, load_scripts_text
    from mockserver.engine.upstream import TextChunk, plan_script
    from mockserver.resources import SCRIPT_DIR

    scripts = ScriptSet(load_scripts_text((SCRIPT_DIR / "default.yaml").read_text(), "default.yaml"))
    request = ReplyRequest(input=INPUT)
    script = scripts.select(request)
    assert script is not None and script.name == "long-answer", script
    translation = RecordTranslation(StreamParser(lambda raw: None), INPUT)
    offsets, at = [], 0.0
    for event in plan_script(script, request, Faults()):
        at += event.delay if isinstance(event, TextChunk) else 0.0
        offsets += [at] * len(translation.feed(event))
    return offsets + [at] * len(translation.end())


# -- the load generator (its own process) ------------------------------------------------------
def request_bytes(port: int) -> bytes:
    body = json.dumps({"input": INPUT}).encode()
    head = (
        f"POST /api/chat/stream/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {AUTH_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def one_stream(port: int, payload: bytes, start: asyncio.Event) -> tuple[float, list[tuple[float, bytes]], bool]:
    """(send time, [(arrival, line)], complete) for one stream; lines are read from the chunked body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await start.wait()
    sent = time.perf_counter()
    writer.write(payload)
    lines: list[tuple[float, bytes]] = []
    complete = False
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return sent, lines, False
        pending = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                complete = True
                break
            now = time.perf_counter()
            pending += data[:-2]
            *whole, pending = pending.split(b"\n")
            lines += [(now, line) for line in whole]
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()
    return sent, lines, complete and b"assistant_message_uuid" in (lines[-1][1] if lines else b"")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample_rss(pid: int, out: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_kib(pid))
        await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def load(port: int, streams: int, pid: int) -> dict[str, float]:
    expected = scripted_record_offsets()
    scripted_gaps = [b - a for a, b in itertools.pairwise(expected)]
    payload = request_bytes(port)
    baseline = rss_kib(pid)
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(port, payload, start)) for _ in range(streams)]
    await asyncio.sleep(0.5)  # every connection open before the first request
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, samples, stop))
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    stop.set()
    await sampler
    first_record, gap_errors, durations = [], [], []
    complete = 0
    for sent, lines, ok in results:
        if lines:
            first_record.append(1000 * (lines[0][0] - sent))
        content = [at for at, line in lines if line.startswith(b'{"k"')]
        if ok and len(content) == len(expected):
            complete += 1
            observed = [b - a for a, b in itertools.pairwise(content)]
            gap_errors += [1000 * abs(o - s) for o, s in zip(observed, scripted_gaps, strict=True)]
            durations.append(lines[-1][0] - sent)
    peak = max(samples or [baseline])
    return {
        "streams": streams,
        "complete": complete,
        "wall_s": wall,
        "scripted_s": expected[-1] if expected else 0.0,
        "duration_p50_s": statistics.median(durations) if durations else float("nan"),
        "duration_max_s": max(durations) if durations else float("nan"),
        "gap_p50_ms": percentile(gap_errors, 0.5),
        "gap_p95_ms": percentile(gap_errors, 0.95),
        "gap_max_ms": max(gap_errors) if gap_errors else float("nan"),
        "first_p50_ms": percentile(first_record, 0.5),
        "first_p95_ms": percentile(first_record, 0.95),
        "rss_baseline_mib": baseline / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_per_1000_mib": (peak - baseline) / 1024 / streams * 1000,
    }


# -- the driver --------------------------------------------------------------------------------
def record_stream(answers: Path) -> None:
    """One long answer from a speed-0 mock, with the scripted offset of each line, for the ceiling."""
    import httpx

    sys.path.insert(0, str(HERE))
    from side_by_side import server

    with server("mock") as mock:
        body = {"input": INPUT}
        response = httpx.post(
            mock.base + "/api/chat/stream/", json=body, headers={"Authorization": f"Token {AUTH_TOKEN}"}, timeout=30
        )
    lines = response.text.splitlines()
    content = iter(scripted_record_offsets())
    offsets, at = [], 0.0
    for line in lines:  # a content record at its scripted time; the `m` records with the record before
        at = next(content) if line.startswith('{"k"') else at
        offsets.append(at)
    answers.write_text(json.dumps({"lines": lines, "offsets": offsets}))


def run_level(streams: int, source: Path | None, ceiling: Path | None = None) -> dict[str, float]:
    """One level against the mock, or against the streaming ceiling answering from `ceiling`."""
    sys.path.insert(0, str(HERE))
    from side_by_side import free_port, pinned, wait_until_up

    port = free_port()
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve())
    kind = ["mock", "--speed", "1"] if ceiling is None else ["stream-ceiling", "--answers", str(ceiling)]
    command = [*pinned(0), sys.executable, str(HERE / "servers.py"), *kind, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        warm = [*pinned(1), sys.executable, __file__, "load", "--port", str(port), "--streams", "20"]
        subprocess.run([*warm, "--pid", str(server.pid)], check=True, capture_output=True)
        generator = [*pinned(1), sys.executable, __file__, "load", "--port", str(port), "--streams", str(streams)]
        done = subprocess.run([*generator, "--pid", str(server.pid)], check=True, capture_output=True, text=True)
        return {**json.loads(done.stdout), "server": "mock" if ceiling is None else "bare ceiling"}
    finally:
        server.terminate()
        server.wait(timeout=10)


def print_table(rows: list[dict[str, float]]) -> None:
    print(
        "| server | streams | complete | stream p50 / max s (scripted) | gap error p50 / p95 / max ms "
        "| RSS per 1,000 streams | first record p50 / p95 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['streams']:.0f} | {r['complete']:.0f} "
            f"| {r['duration_p50_s']:.2f} / {r['duration_max_s']:.2f} "
            f"({r['scripted_s']:.2f}) | {r['gap_p50_ms']:.1f} / {r['gap_p95_ms']:.1f} / {r['gap_max_ms']:.0f} "
            f"| {r['rss_per_1000_mib']:.1f} MiB ({r['rss_baseline_mib']:.0f} -> {r['rss_peak_mib']:.0f}) "
            f"| {r['first_p50_ms']:.0f} / {r['first_p95_ms']:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="table", choices=["table", "load"])
    parser.add_argument("--streams", default="500,1000,2000")
    parser.add_argument("--source", type=Path, help="run the server from this tree's mockserver (before figures)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare streaming ceiling")
    args = parser.parse_args()
    if args.mode == "load":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(load(args.port, int(args.streams), args.pid))))
        return
    print(f"# concurrent long-answer streams at speed 1, server {args.source or 'this tree'}")
    print(f"# load average at the start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        answers = None if args.no_ceiling else Path(tmp) / "stream.json"
        if answers is not None:
            record_stream(answers)
        rows = []
        for n in args.streams.split(","):  # the mock, then the ceiling, level by level
            rows.append(run_level(int(n), args.source))
            if answers is not None:
                rows.append(run_level(int(n), None, answers))
    print_table(rows)


if __name__ == "__main__":
    main()
