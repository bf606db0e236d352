"""Timing over real TCP: the gaps between the upstream mode's SSE events follow the script."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from mockserver.app import ServerOptions, create_app
from mockserver.upstream.app import LANGSERVE_PATH, OPENAI_BASE
from tests.support import served_app

DELAYS_MS = [300, 100, 500, 200]
SCRIPT = "scripts:\n  - name: paced\n    match: {}\n    reply:\n      chunks:\n" + "".join(
    f"        - {{text: 'w{i} ', delay_ms: {delay}}}\n" for i, delay in enumerate(DELAYS_MS)
)
EARLY_S = 0.03  # a gap may not be shorter than scripted (timer granularity aside)
LATE_S = 0.25  # nor much longer (a loaded 2-core machine)


def content_arrivals(url: str, body: dict, marker: str) -> list[float]:
    """Seconds from sending the request to each content event."""
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", url, json=body, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and marker in line:
                arrivals.append(time.monotonic() - started)
    return arrivals


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["langserve", "openai"])
def test_sse_gaps_follow_the_script(protocol: str, tmp_path: Path) -> None:
    scripts = tmp_path / "paced.yaml"
    scripts.write_text(SCRIPT, encoding="utf-8")
    app = create_app(ServerOptions(scripts=scripts, speed=1))
    with served_app(app) as base:
        if protocol == "langserve":
            arrivals = content_arrivals(base + LANGSERVE_PATH, {"input": "hi"}, '"content": "w')
        else:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            arrivals = content_arrivals(f"{base}{OPENAI_BASE}/chat/completions", body, '"content":"w')
    assert len(arrivals) == len(DELAYS_MS)
    gaps = [arrivals[0]] + [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for gap, delay_ms in zip(gaps, DELAYS_MS, strict=True):
        assert delay_ms / 1000 - EARLY_S <= gap <= delay_ms / 1000 + LATE_S, (gaps, DELAYS_MS)
