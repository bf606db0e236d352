"""Seed data: threads and messages the store starts with (and returns to on reset)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mockserver.errors import ConfigurationError
from mockserver.resources import SEED_FILE
from mockserver.store import ChatStore

DEFAULT_SEED_FILE = SEED_FILE


@dataclass(frozen=True)
class SeedThread:
    owner: str
    name: str
    archived: bool
    messages: tuple[tuple[str, str], ...]  # (role, content)


def load_seed(path: Path, known_users: set[str]) -> list[SeedThread]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read seed data {path}: {exc}") from None
    entries = document.get("threads") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f"{path}: expected a top-level 'threads' list")
    return [_thread(entry, f"{path}: threads[{i}]", known_users) for i, entry in enumerate(entries)]


def _thread(entry: Any, where: str, known_users: set[str]) -> SeedThread:
    if not isinstance(entry, dict) or entry.get("owner") not in known_users:
        raise ConfigurationError(f"{where}: 'owner' must be one of the users ({', '.join(sorted(known_users))})")
    messages = entry.get("messages", [])
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise ConfigurationError(f"{where}: messages must be a list of {{role: user|assistant, content: text}}")
    name = entry.get("name", "New chat")
    if not isinstance(name, str) or not name or len(name) > 150:
        raise ConfigurationError(f"{where}: 'name' must be 1 to 150 characters")
    return SeedThread(
        entry["owner"], name, bool(entry.get("archived", False)), tuple((m["role"], m["content"]) for m in messages)
    )


def apply_seed(store: ChatStore, threads: list[SeedThread]) -> None:
    for seed in threads:
        owner = store.user_by_username(seed.owner)
        assert owner is not None  # checked when loaded
        thread = store.create_thread(owner)
        store.rename_thread(thread, seed.name)
        for index, (role, content) in enumerate(seed.messages, start=1):
            store.add_message(thread, role, content, index)  # type: ignore[arg-type]
        if seed.archived:
            store.set_archived(thread, True)
        else:
            store.touch_thread(thread)
