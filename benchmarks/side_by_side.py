"""The mock against a bare-stack ceiling, side by side in one run, and the store-size scaling table.

    .venv/bin/python benchmarks/side_by_side.py [--rounds 3] [--duration 5] [--connections 4]
        [--http h11|httptools] [--threads 10,50000] [--skip-scaling] [--streams 500,1000,2000] [--source DIR]

Starts the mock (`servers.py mock`) and the ceiling (`servers.py ceiling`, answering the bytes
the mock answered) on loopback, pinned to core 0 when `taskset` exists, and drives them
alternately, endpoint by endpoint, with the same load from a process pinned to core 1: wrk if
installed, else `loadgen.py`. Prints requests/s, p50/p99 and the mock/ceiling ratio (median of
the rounds), and the server's own CPU time per request (user + system, from /proc) with the
ratio of those: on a machine busy with other work, requests/s measure the machine's load as
much as the server, while the CPU a server spends per request moves much less. Then the cost
of each endpoint at each store size (one connection), then the concurrent-stream table
(`concurrent_streams.py`: completion, gap error, RSS, first record).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # may name {thread}
    body: str = ""
    # The stream POST runs as bob: the threads it creates stay out of alice's list and messages.
    token: str = "alice-token"

    def url(self, base: str, thread: str) -> str:
        return base + self.path.format(thread=thread)


ENDPOINTS = [
    Endpoint("thread list page", "GET", "/api/chat-threads/?page_size=10"),
    Endpoint("a thread's messages", "GET", "/api/chat-messages/?thread={thread}"),
    Endpoint("stream POST (speed 0)", "POST", "/api/chat/stream/", '{"input": "What is Waldur?"}', "bob-token"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


@dataclass(frozen=True)
class Running:
    base: str
    pid: int
    facts: dict[str, str]  # the JSON line the server printed


@contextmanager
def server(kind: str, *extra: str, source: Path | None = None) -> Iterator[Running]:
    """Start one server process (the mock from `source`'s tree if given); yield its base URL, pid
    and the JSON line it printed."""
    port = free_port()
    command = [*pinned(0), sys.executable, str(HERE / "servers.py"), kind, "--port", str(port), *extra]
    env = {**os.environ, "PYTHONPATH": str(source.resolve())} if source is not None else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        facts = json.loads(process.stdout.readline() or "{}")
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        yield Running(base, process.pid, facts)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until_up(base: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"server at {base} did not start")


def record_answers(base: str, thread: str) -> list[dict[str, object]]:
    """What the mock answers to each endpoint, for the ceiling to answer with the same bytes."""
    answers = []
    for endpoint in ENDPOINTS:
        response = httpx.request(
            endpoint.method,
            endpoint.url(base, thread),
            headers={"Authorization": f"Token {endpoint.token}", "Content-Type": "application/json"},
            content=endpoint.body or None,
        )
        if response.status_code >= 300:
            raise SystemExit(f"{endpoint.name}: the mock answered {response.status_code}: {response.text[:200]}")
        answers.append(
            {
                "path": endpoint.path.split("?")[0],
                "method": endpoint.method,
                "status": response.status_code,
                "content_type": response.headers["content-type"],
                "body": response.text,
            }
        )
    return answers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (taskset execs the server: same pid)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive_measured(
    target: Running, endpoint: Endpoint, thread: str, duration: float, connections: int
) -> dict[str, float]:
    """One load run, with the server's CPU time per request it answered."""
    before = cpu_seconds(target.pid)
    run = drive(endpoint.url(target.base, thread), endpoint, duration, connections)
    run["cpu_us"] = 1e6 * (cpu_seconds(target.pid) - before) / max(1.0, run["requests"])
    return run


def drive(url: str, endpoint: Endpoint, duration: float, connections: int) -> dict[str, float]:
    """One load run from its own process: wrk if installed, else loadgen.py."""
    if shutil.which("wrk"):
        return drive_wrk(url, endpoint, duration, connections)
    command = [*pinned(1), sys.executable, str(HERE / "loadgen.py"), "--url", url, "--method", endpoint.method]
    command += [
        "--header",
        f"Authorization: Token {endpoint.token}",
        "--connections",
        str(connections),
        "--duration",
        str(duration),
    ]
    if endpoint.body:
        command += ["--header", "Content-Type: application/json", "--body", endpoint.body]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def drive_wrk(url: str, endpoint: Endpoint, duration: float, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = {json.dumps(endpoint.method)}\n")
        script.write(f"wrk.headers['Authorization'] = {json.dumps('Token ' + endpoint.token)}\n")
        if endpoint.body:
            script.write("wrk.headers['Content-Type'] = 'application/json'\n")
            script.write(f"wrk.body = {json.dumps(endpoint.body)}\n")
    seconds = f"-d{max(1, round(duration))}s"  # wrk takes whole seconds
    command = [*pinned(1), "wrk", "-t1", f"-c{connections}", seconds, "--latency", "-s", script.name, url]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    Path(script.name).unlink()
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    output = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "requests": requests,
        "errors": int(errors.group(1)) if errors else 0,
        "p50_ms": _wrk_ms(output, "50%"),
        "p99_ms": _wrk_ms(output, "99%"),
    }


def _wrk_ms(output: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = ("rps", "p50_ms", "p99_ms", "errors", "cpu_us")
    return {key: statistics.median(run.get(key, float("nan")) for run in runs) for key in keys}


def side_by_side(args: argparse.Namespace) -> None:
    print(f"# side by side: {args.rounds} rounds x {args.duration} s, {args.connections} connections, http={args.http}")
    print(f"# load: {'wrk' if shutil.which('wrk') else 'loadgen.py (asyncio, own process)'}")
    print(f"# load average at the start: {os.getloadavg()[0]:.2f}")
    with server("mock", "--threads", "10", "--http", args.http, source=args.source) as mock:
        thread = mock.facts["thread"]
        with tempfile.TemporaryDirectory() as tmp:
            answers = Path(tmp) / "answers.json"
            answers.write_text(json.dumps(record_answers(mock.base, thread)))
            with server("ceiling", "--answers", str(answers), "--http", args.http) as ceiling:
                results: dict[tuple[str, str], list[dict[str, float]]] = {}
                for _ in range(args.rounds):
                    for endpoint in ENDPOINTS:
                        for label, target in (("mock", mock), ("ceiling", ceiling)):
                            run = drive_measured(target, endpoint, thread, args.duration, args.connections)
                            results.setdefault((endpoint.name, label), []).append(run)
    print(
        "| endpoint | mock req/s | mock p50 / p99 ms | ceiling req/s | ceiling p50 / p99 ms | ratio "
        "| CPU per request: mock / ceiling | CPU ratio | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for endpoint in ENDPOINTS:
        ours, bare = (median_run(results[(endpoint.name, label)]) for label in ("mock", "ceiling"))
        print(
            f"| {endpoint.name} | {ours['rps']:.0f} | {ours['p50_ms']:.2f} / {ours['p99_ms']:.2f} "
            f"| {bare['rps']:.0f} | {bare['p50_ms']:.2f} / {bare['p99_ms']:.2f} "
            f"| {100 * ours['rps'] / bare['rps']:.1f}% | {ours['cpu_us']:.0f} / {bare['cpu_us']:.0f} us "
            f"| {100 * bare['cpu_us'] / ours['cpu_us']:.1f}% | {ours['errors']:.0f} |",
            flush=True,
        )


def scaling(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in args.threads.split(",")]
    costs: dict[int, dict[str, dict[str, float]]] = {}
    for size in sizes:
        with server("mock", "--threads", str(size), "--http", args.http, source=args.source) as mock:
            costs[size] = {
                endpoint.name: median_run(
                    [drive_measured(mock, endpoint, mock.facts["thread"], args.duration, 1) for _ in range(args.rounds)]
                )
                for endpoint in ENDPOINTS
            }
    print(f"\n# store-size scaling: one connection, p50 ms per request (req/s), threads {sizes}")
    print("| endpoint | " + " | ".join(f"{n} threads" for n in sizes) + f" | {sizes[-1]} / {sizes[0]} |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for endpoint in ENDPOINTS:
        cells = [f"{costs[n][endpoint.name]['p50_ms']:.2f} ({costs[n][endpoint.name]['rps']:.0f}/s)" for n in sizes]
        factor = costs[sizes[-1]][endpoint.name]["p50_ms"] / costs[sizes[0]][endpoint.name]["p50_ms"]
        print(f"| {endpoint.name} | " + " | ".join(cells) + f" | {factor:.2f}x |", flush=True)


def concurrent_streams(args: argparse.Namespace) -> None:
    """The concurrent-stream table: `concurrent_streams.py` at the levels of `--streams`."""
    if args.streams:
        command = [sys.executable, str(HERE / "concurrent_streams.py"), "--streams", args.streams]
        command += ["--source", str(args.source)] if args.source else []
        print("", flush=True)
        subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--http", default="h11", choices=["h11", "httptools"])
    parser.add_argument("--threads", default="10,50000", help="store sizes for the scaling table")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-side-by-side", action="store_true")
    parser.add_argument("--streams", default="500,1000,2000", help="concurrent-stream levels ('' to skip)")
    parser.add_argument(
        "--source", type=Path, help="run the mock from this tree (`git archive <commit> mockserver spec fixtures`)"
    )
    args = parser.parse_args()
    if not args.skip_side_by_side:
        side_by_side(args)
    if not args.skip_scaling:
        scaling(args)
    concurrent_streams(args)


if __name__ == "__main__":
    main()
