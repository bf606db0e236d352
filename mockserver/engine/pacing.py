"""Chunking of reply text and the timing of chunks: what makes a stream feel like an LLM."""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from time import monotonic

_WORD = re.compile(r"\S+\s*|\s+")
_TOKEN = re.compile(r" ?[A-Za-z]{1,4}| ?\d{1,3}|\s+|[^\sA-Za-z\d]")


def count_tokens(text: str) -> int:
    """Token-like pieces, the unit of `tokens_per_second` and of quota usage."""
    return len(_TOKEN.findall(text))


def split_text(text: str, rule: str | int) -> list[str]:
    """`word`, `token`, `none` (one chunk) or a fixed size in characters."""
    if not text:
        return []
    if isinstance(rule, int):
        return [text[i : i + rule] for i in range(0, len(text), rule)]
    if rule == "word":
        return _WORD.findall(text)
    if rule == "token":
        return _TOKEN.findall(text)
    return [text]


@dataclass(frozen=True)
class Timing:
    """Delays in milliseconds; `tokens_per_second` replaces `inter_chunk_ms` when set."""

    first_chunk_ms: float = 0.0
    inter_chunk_ms: float = 0.0
    tokens_per_second: float | None = None
    jitter_ms: float = 0.0
    seed: int = 0

    def delays(self, chunks: list[str], explicit: list[float | None] | None = None) -> list[float]:
        """Seconds to wait before each chunk; explicit per-chunk delays (recordings) win."""
        rng = random.Random(self.seed)
        result = []
        for index, chunk in enumerate(chunks):
            given = explicit[index] if explicit else None
            if given is not None:
                result.append(given / 1000)
                continue
            if index == 0:
                base = self.first_chunk_ms
            elif self.tokens_per_second:
                base = 1000 * count_tokens(chunk) / self.tokens_per_second
            else:
                base = self.inter_chunk_ms
            jitter = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
            result.append(max(0.0, base + jitter) / 1000)
        return result


class Pacer:
    """Playback speed: delays are divided by `speed` (2 = twice as fast, 0 = no delays at all).

    Faults (stalls, slow first bytes) use `sleep_unscaled`: they are explicit, not pacing.
    """

    def __init__(self, speed: float = 1.0):
        self.speed = speed

    async def sleep(self, seconds: float) -> None:
        if self.speed > 0 and seconds > 0:
            await asyncio.sleep(seconds / self.speed)

    async def sleep_unscaled(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def scaled(self, seconds: float) -> float:
        """A scripted delay at this speed (0 at speed 0): for deadlines counted from a stream's start."""
        return seconds / self.speed if self.speed > 0 else 0.0

    def now(self) -> float:
        """The clock deadlines are measured on (asyncio's default loop clock)."""
        return monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """One wake-up at an absolute time on `now`'s clock: no drift from chained sleeps."""
        remaining = deadline - self.now()
        if remaining > 0:
            await asyncio.sleep(remaining)
