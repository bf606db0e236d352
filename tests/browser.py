"""Debian's chromium driven by Playwright for Python: the playground's browser tests and its screenshot.

The system browser is used (`executable_path`), never a Playwright download. The flags keep
chromium from reaching for the network (the CI machine's network is closed: component
updates, sync and QUIC probes otherwise fail or stall) and a fresh profile per run keeps
runs independent. Refresh the README's screenshot with `make screenshot`
(`python -m tests.browser docs/playground.png`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM_FLAGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENABLE_HINT = (
    "the browser tests need Debian's chromium and Playwright for Python: "
    "`apt-get install -y chromium` and `.venv/bin/pip install -e '.[dev]'` (playwright is in the dev extra; "
    "never `playwright install`); CHROMIUM=/path/to/chromium picks another binary"
)
VIEWPORT = {"width": 1200, "height": 900}


def chromium_path() -> str | None:
    """`$CHROMIUM`, else the `chromium` on PATH (Debian's package installs /usr/bin/chromium)."""
    candidate = os.environ.get("CHROMIUM") or shutil.which("chromium")
    return candidate if candidate and Path(candidate).exists() else None


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright for Python is not installed: {ENABLE_HINT}"
    if chromium_path() is None:
        return f"no chromium found: {ENABLE_HINT}"
    return None


def chromium_flags() -> list[str]:
    """The flags above, plus `--no-sandbox` as root (chromium's sandbox refuses to start as root)."""
    return [*CHROMIUM_FLAGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]


@contextmanager
def browser_context() -> Iterator[BrowserContext]:
    """One chromium with a fresh user data directory (a persistent context is how Playwright takes one)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(f"no chromium found: {ENABLE_HINT}")
    with tempfile.TemporaryDirectory(prefix="playground-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=chromium_flags(),
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


def open_playground(context: BrowserContext, base: str) -> Page:
    """The page, loaded: its script marks `<body data-ready>` once users, threads and config are shown."""
    page = context.new_page()
    page.goto(f"{base}/__mock__/ui")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    return page


def take_screenshot(target: Path) -> None:
    """The README's picture: the seeded mock, one `mermaid` stream at realistic speed, then the page."""
    from mockserver.app import ServerOptions, create_app
    from mockserver.resources import SEED_FILE
    from tests.support import served_app

    with served_app(create_app(ServerOptions(speed=1.0, seed_data=SEED_FILE))) as base, browser_context() as context:
        page = open_playground(context, base)
        page.fill("#input", "Draw a diagram of an order")
        page.select_option("#scenario", "mermaid")
        page.click("#send")
        page.wait_for_selector("#stream-status.ok", timeout=30_000)
        page.wait_for_selector("#journal li >> text=/POST \\/api\\/chat\\/stream\\/ → 200 alice [0-9.]+ ms/")
        page.screenshot(path=str(target), full_page=True)


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/playground.png"))
