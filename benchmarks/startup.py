"""Start-up to the first 200: spawn `waldur-chat-mock serve`, poll a chat endpoint, time the first 200.

    .venv/bin/python benchmarks/startup.py [--runs 5] [-- extra serve arguments]

Polls `GET /api/chat-threads/` as alice every 5 ms from the moment the process is spawned;
prints each run and the median. Add `-X importtime` analysis by hand when a figure moves.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from urllib.error import URLError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_200(extra: list[str]) -> float:
    port = free_port()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/chat-threads/", headers={"Authorization": "Token alice-token"}
    )
    started = time.perf_counter()
    command = [sys.executable, "-m", "mockserver", "serve", "--port", str(port), "--quiet", *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        while process.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (URLError, ConnectionError, TimeoutError):
                time.sleep(0.005)
        raise SystemExit(f"serve exited with {process.returncode}")
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="more `serve` arguments (after --)")
    args = parser.parse_args()
    times = []
    for run in range(args.runs):
        times.append(first_200(args.extra))
        print(f"run {run + 1}: {1000 * times[-1]:.0f} ms", flush=True)
    print(f"median start-up to first 200: {1000 * statistics.median(times):.0f} ms")


if __name__ == "__main__":
    main()
