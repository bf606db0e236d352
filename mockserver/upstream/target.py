"""Where `serve --upstream-url` finds its real LLM: kept free of HTTP imports (the CLI reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mockserver.errors import ConfigurationError

UpstreamFormat = Literal["openai", "langserve"]
UPSTREAM_FORMATS: tuple[UpstreamFormat, ...] = ("openai", "langserve")
DEFAULT_MODEL = "gemma3:27b"  # Waldur's default model setting


@dataclass(frozen=True)
class UpstreamTarget:
    """Where the real upstream is and how to talk to it."""

    url: str  # LangServe: the full /stream URL; OpenAI: the base URL (…/v1)
    format: UpstreamFormat = "openai"
    token: str = ""
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigurationError(f"--upstream-url must be an http:// or https:// URL, not {self.url!r}")
        if self.format not in UPSTREAM_FORMATS:
            raise ConfigurationError(f"--upstream-format must be one of {', '.join(UPSTREAM_FORMATS)}")
