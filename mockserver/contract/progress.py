"""What `verify` shows while it runs: a live line on a terminal, a line per part elsewhere.

Both implement `runner.Progress`; the runner only reports events (a part started, a case
is done, a part finished) and the streams used so far.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import IO, Any

from mockserver.contract.findings import CheckResult


def _tally(results: list[CheckResult]) -> str:
    counts = Counter("not applicable" if r.verdict == "skipped" and not r.incomplete else r.verdict for r in results)
    return ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))


class PlainProgress:
    """One line when a part starts and one when it ends (for CI logs and pipes)."""

    def __init__(self, stream: IO[str], max_streams: int):
        self.stream = stream
        self.max_streams = max_streams
        self.cases = 0
        self.used = 0
        self.began = time.monotonic()

    def _say(self, line: str) -> None:
        print(f"... {line}", file=self.stream, flush=True)

    def part_started(self, part: str, streams: int) -> None:
        self.cases = 0
        self._say(f"{part}: started (planned streams: {streams})")

    def case_done(self, part: str, streams_used: int) -> None:
        self.cases += 1
        self.used = streams_used

    def part_finished(self, part: str, results: list[CheckResult], seconds: float) -> None:
        self._say(
            f"{part}: {_tally(results)} in {seconds:.1f} s; {self.cases} cases; "
            f"streams {self.used}/{self.max_streams}; elapsed {time.monotonic() - self.began:.1f} s"
        )


class RichProgress:
    """A live status line on a terminal (rich): part, cases done, streams used, elapsed."""

    def __init__(self, stream: IO[str], max_streams: int):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.max_streams = max_streams
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[part]}[/bold]"),
            TextColumn("{task.completed} cases"),
            TextColumn("streams {task.fields[streams]}/{task.fields[budget]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.used = 0

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def part_started(self, part: str, streams: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(part, total=None, part=part, streams=self.used, budget=self.max_streams)

    def case_done(self, part: str, streams_used: int) -> None:
        self.used = streams_used
        self.bar.update(self.task, advance=1, streams=streams_used)

    def part_finished(self, part: str, results: list[CheckResult], seconds: float) -> None:
        self.console.print(f"{part}: {_tally(results)} in {seconds:.1f} s (streams {self.used}/{self.max_streams})")
