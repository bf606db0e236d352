"""The recording proxy's added latency to the first record, over real TCP.

A mock (`serve`, one process) streams a script: the thread `m` record at once, then 10
markdown records, the first 100 ms later and 50 ms apart. The same stream is requested
alternately directly and through `record` (a second process, writing a cassette), one at
a time, and every line is timestamped as it arrives at an httpx client (a third process).

    .venv/bin/python benchmarks/replay_latency.py [--streams 40]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHUNK = "This sentence is long enough to be flushed as one markdown record. "
HEADERS = {"Authorization": "Token alice-token"}


def script_yaml() -> str:
    chunks = "\n".join(f"        - {{text: {CHUNK!r}, delay_ms: {100 if i == 0 else 50}}}" for i in range(10))
    return f"scripts:\n  - name: bench\n    match: {{}}\n    reply:\n      chunks:\n{chunks}\n"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], health: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{argv[3]} did not start")


def timed_stream(client: httpx.Client, base: str) -> list[float]:
    """Arrival of each line in ms after the request was sent."""
    sent = time.perf_counter()
    times = []
    with client.stream("POST", f"{base}/api/chat/stream/", json={"input": "bench"}, headers=HEADERS) as response:
        for chunk in response.iter_raw():
            now = (time.perf_counter() - sent) * 1000
            times.extend(now for _ in range(chunk.count(b"\n")))
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=40, help="streams per path (direct, through the proxy)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    (work / "bench.yaml").write_text(script_yaml())
    mock_port, proxy_port = free_port(), free_port()
    cli = [sys.executable, "-m", "mockserver"]
    mock = start(
        [*cli, "serve", "--port", str(mock_port), "--quiet", "--scripts", str(work / "bench.yaml")],
        f"http://127.0.0.1:{mock_port}/__mock__/health",
    )
    direct, proxied = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{proxy_port}"
    proxy = start(
        [*cli, "record", "--quiet", "--target", direct, "--cassette", str(work / "c.jsonl"), "--port", str(proxy_port)],
        f"{proxied}/__mock__/health",
    )
    results: dict[str, list[list[float]]] = {"direct": [], "proxy": []}
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(3):  # warm both paths (connections, first-request costs)
                timed_stream(client, direct), timed_stream(client, proxied)
            for _ in range(args.streams):
                results["direct"].append(timed_stream(client, direct))
                results["proxy"].append(timed_stream(client, proxied))
    finally:
        for process in (proxy, mock):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    first = {path: [t[0] for t in runs] for path, runs in results.items()}
    content = {path: [t[1] for t in runs] for path, runs in results.items()}
    last = {path: [t[-1] for t in runs] for path, runs in results.items()}
    print(f"{args.streams} streams per path, one at a time; ms after the request was sent")
    print("| path | first record p50 / p95 | first content record p50 / p95 (scripted 100 ms) | last record p50 |")
    print("|---|---|---|---|")
    for path in ("direct", "proxy"):
        print(
            f"| {path} | {statistics.median(first[path]):.1f} / {pct(first[path], 0.95):.1f} | "
            f"{statistics.median(content[path]):.1f} / {pct(content[path], 0.95):.1f} | "
            f"{statistics.median(last[path]):.1f} |"
        )
    added = [p - d for p, d in zip(first["proxy"], first["direct"], strict=True)]
    added_content = [p - d for p, d in zip(content["proxy"], content["direct"], strict=True)]
    print(
        f"added by the proxy, pairwise: first record p50 {statistics.median(added):.1f} ms "
        f"(p95 {pct(added, 0.95):.1f}); first content record p50 {statistics.median(added_content):.1f} ms "
        f"(p95 {pct(added_content, 0.95):.1f})"
    )


if __name__ == "__main__":
    main()
