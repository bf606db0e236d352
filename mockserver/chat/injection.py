"""Prompt-injection detection as Waldur 8.0.5 does it (server notes, section 4).

Regex patterns with weights; the score is the highest weight matched plus a boost for
several distinct categories, capped at 1.0. Input is normalised first (NFKC, common
homoglyphs, invisible characters). A detector crash fails closed: critical, blocked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["none", "low", "medium", "high", "critical"]

FLAG_THRESHOLD = 0.3
HISTORY_EXCLUSION_THRESHOLD = 0.5

# Lower bound of each band, highest first; `max_severity` filters use the same half-open bands.
SEVERITY_BANDS: tuple[tuple[Severity, float], ...] = (
    ("critical", 0.9),
    ("high", 0.7),
    ("medium", 0.5),
    ("low", 0.3),
    ("none", 0.0),
)


def severity_of(score: float) -> Severity:
    for name, lower in SEVERITY_BANDS:  # a loop, not next(genexpr): twice per thread on every page
        if score >= lower:
            return name
    raise StopIteration  # as next() would for a negative score


def severity_range(severity: Severity) -> tuple[float, float]:
    """Half-open score range `[low, high)` of a severity band."""
    names = [name for name, _ in SEVERITY_BANDS]
    index = names.index(severity)
    upper = SEVERITY_BANDS[index - 1][1] if index > 0 else float("inf")
    return SEVERITY_BANDS[index][1], upper


def blocks(severity: Severity) -> bool:
    """High and critical input is not sent upstream: the canned refusal is streamed instead."""
    return severity in ("high", "critical")


@dataclass(frozen=True)
class Pattern:
    category: str
    weight: float
    regex: re.Pattern[str]


def _p(category: str, weight: float, expression: str) -> Pattern:
    return Pattern(category, weight, re.compile(expression, re.IGNORECASE | re.DOTALL))


PATTERNS: tuple[Pattern, ...] = (
    _p(
        "instruction_override",
        0.95,
        r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all)\b"
        r".{0,20}\b(instructions?|rules|prompts?|directions|guidelines)\b",
    ),
    _p("instruction_reset", 0.8, r"\b(start over|reset your (instructions|rules)|from now on you)\b"),
    _p("system_override", 0.9, r"\b(new|override|updated|replace)\b.{0,10}\bsystem (prompt|instructions?|message)\b"),
    _p(
        "safety_bypass",
        0.85,
        r"\b(bypass|disable|turn off|ignore)\b.{0,20}"
        r"\b(safety|filters?|guardrails|restrictions|content polic(y|ies))\b",
    ),
    _p("jailbreak", 0.95, r"\bjailbr(ea|oke)k"),
    _p("jailbreak", 0.95, r"\bDAN\b"),
    _p("mode_switch", 0.8, r"\b(enable|activate|enter|switch to)\b.{0,20}\b(mode)\b"),
    _p(
        "persona_hijack", 0.7, r"\b(you are now|pretend (to be|you are)|act as (an? )?(unrestricted|evil|uncensored))\b"
    ),
    _p("unrestricted", 0.75, r"\b(no (rules|restrictions|limits)|unrestricted|uncensored)\b"),
    _p("delimiter_injection", 0.95, r"<\|(im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>"),
    _p("tag_injection", 0.7, r"</?(system|instructions?|assistant)>"),
    _p(
        "prompt_leak",
        0.85,
        r"\b(reveal|show|print|repeat|output)\b.{0,30}\b(system prompt|your (instructions|prompt)|hidden prompt)\b",
    ),
    _p("authority_claim", 0.6, r"\bI am (the|your) (admin|administrator|developer|creator|owner)\b"),
    _p("leetspeak", 0.65, r"\b(h[4@]ck|h[4@]x|pwn|j[4@]ilbr[3e][4@]k|3xpl[0o]it)"),
    _p("base64_payload", 0.40, r"[A-Za-z0-9+/]{50,}={0,2}"),
    _p("hex_encoding", 0.40, r"(\\x[0-9a-f]{2}){10,}"),
    _p("decode_and_follow", 0.8, r"\bdecode\b.{0,40}\b(and|then)\b.{0,20}\b(follow|execute|run|obey)\b"),
)

# Cyrillic look-alikes of Latin letters, written as escapes so the source stays unambiguous.
_HOMOGLYPHS = str.maketrans(
    {
        "\u0430": "a",
        "\u0435": "e",
        "\u043e": "o",
        "\u0440": "p",
        "\u0441": "c",
        "\u0445": "x",
        "\u0456": "i",
        "\u0443": "y",
        "\u0455": "s",
    }
)
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]")


def normalise(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS))


@dataclass(frozen=True)
class Detection:
    score: float = 0.0
    categories: list[str] = field(default_factory=list)

    @property
    def severity(self) -> Severity:
        return severity_of(self.score)

    @property
    def is_flagged(self) -> bool:
        return self.score >= FLAG_THRESHOLD

    @property
    def blocked(self) -> bool:
        return blocks(self.severity)


CLEAN = Detection()
FAIL_CLOSED = Detection(score=1.0, categories=[])


class InjectionDetector:
    """Scores one input; never raises (a crash is reported as a critical detection)."""

    def __init__(self, allowlist: Sequence[str] = (), patterns: Sequence[Pattern] = PATTERNS):
        self.allowlist = [phrase.strip().lower() for phrase in allowlist if phrase.strip()]
        self.patterns = tuple(patterns)

    def scan(self, text: str) -> Detection:
        try:
            return self._scan(text)
        except Exception:
            return FAIL_CLOSED

    def _scan(self, text: str) -> Detection:
        normalised = normalise(text)
        if self._allowlisted(normalised):
            return CLEAN
        matched = [p for p in self.patterns if p.regex.search(normalised)]
        if _INVISIBLE.search(text):
            matched.append(Pattern("invisible_chars", 0.5, _INVISIBLE))
        if not matched:
            return CLEAN
        distinct = len({p.category for p in matched})
        boost = {1: 0.0, 2: 0.10, 3: 0.15}.get(distinct, 0.20)
        score = round(min(1.0, max(p.weight for p in matched) + boost), 4)
        if score < FLAG_THRESHOLD:
            return Detection(score=score)
        return Detection(score=score, categories=[p.category for p in matched])

    def _allowlisted(self, normalised: str) -> bool:
        lowered = normalised.strip().lower()
        return any(phrase in lowered and len(phrase) > 0.8 * len(lowered) for phrase in self.allowlist)
