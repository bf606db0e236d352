"""Feed the stateful mock from a recording: streams become reply scripts, what was seen becomes seed data.

Scripts: each recorded 200 stream of `POST /api/chat/stream/` becomes a literal-records
script (the records as they went over the wire, the thread and final `m` records left to
the mock, pauses from the recorded offsets) matched on the exact input, in recorded order;
a catch-all at the end says that nothing recorded matched. Seed: threads and messages
from the thread and message listings and from the streams, owners mapped by alias
(`user-N` is the N-th user of the users file, as in replay).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

from mockserver.engine.adapters.waldur_records import reassemble
from mockserver.errors import ConfigurationError
from mockserver.replay.cassette import Cassette, Interaction, RecordedRequest
from mockserver.users import DEFAULT_USERS_FILE, load_users

STREAM_PATH = "/api/chat/stream/"
SCRIPT_FILE = "recorded.yaml"
NO_MATCH_TEXT = "(No recorded reply matches this message: the recording did not include it.)"
THREAD_ITEM = re.compile(r"^/api/chat-threads/([0-9a-f]{32})/$")


def request_fields(request: RecordedRequest) -> dict[str, Any]:
    """The fields of a recorded request body (JSON or form); {} when there are none."""
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except ValueError:
        return dict(parse_qsl(request.body, keep_blank_values=True))
    return data if isinstance(data, dict) else {}


def _records(interaction: Interaction) -> list[tuple[float, dict[str, Any]]]:
    out = []
    for line in interaction.response.lines or ():
        try:
            record = json.loads(line.text)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append((line.at_ms, record))
    return out


def _recorded_streams(cassette: Cassette) -> list[Interaction]:
    return [
        i
        for i in cassette.interactions
        if i.request.method == "POST" and i.request.path == STREAM_PATH and i.response.status == 200
        if i.response.is_stream
    ]


def scripts_document(cassette: Cassette) -> dict[str, Any]:
    scripts, seen = [], set()
    for interaction in _recorded_streams(cassette):
        fields = request_fields(interaction.request)
        mode = "title" if fields.get("update_thread_name") else "message"
        key = (str(fields.get("input", "")), mode)
        if key in seen:  # the first recording of an input answers it
            continue
        seen.add(key)
        scripts.append(_script(f"recorded-{len(scripts) + 1}", key[0], mode, _records(interaction)))
    scripts.append(
        {
            "name": "recorded-no-match",
            "description": "Nothing recorded matched.",
            "match": {},
            "reply": {"text": NO_MATCH_TEXT},
        }
    )
    return {"scripts": scripts}


def _script(name: str, text: str, mode: str, records: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    previous = next((at for at, record in records if "m" in record), records[0][0] if records else 0.0)
    for at_ms, record in records:
        if "m" in record:
            continue
        pause = round(at_ms - previous, 1)
        if pause > 0:
            steps.append({"delay_ms": pause})
        steps.append(record)
        previous = at_ms
    script: dict[str, Any] = {
        "name": name,
        "description": f"Recorded reply to {text[:60]!r}.",
        "match": {"input": {"exact": text}, "mode": mode},
    }
    if steps:
        script["records"] = steps
    else:
        script["reply"] = {"text": ""}
    return script


def write_scripts(cassette: Cassette, out: Path) -> Path:
    """Write the scripts file into `out` (created); returns its path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        target = out / SCRIPT_FILE
        header = "# Reply scripts made by `waldur-chat-mock cassette to-scripts` (format: docs/scripts.md).\n"
        target.write_text(header + _dump(scripts_document(cassette)), encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write scripts into {out}: {exc.strerror or exc}") from None
    return target


@dataclass
class _SeenThread:
    owner: str | None
    name: str = "New chat"
    archived: bool = False
    messages: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # uuid -> (order, role, content)


class _Seen:
    """Threads and messages the cassette showed, by uuid."""

    def __init__(self, owners: dict[str, str]):
        self.owners = owners
        self.threads: dict[str, _SeenThread] = {}
        self.listed: list[str] = []  # the latest thread listing, newest first as Waldur lists them

    def ordered(self) -> list[_SeenThread]:
        """Oldest first (the seed's order): as last listed, then threads no listing showed, as seen."""
        listed = [uuid for uuid in reversed(self.listed) if uuid in self.threads]
        rest = [uuid for uuid in self.threads if uuid not in set(listed)]
        return [self.threads[uuid] for uuid in [*listed, *rest]]

    def thread(self, uuid: str, alias: str | None) -> _SeenThread:
        if uuid not in self.threads:
            self.threads[uuid] = _SeenThread(self.owners.get(alias or ""))
        return self.threads[uuid]

    def add_thread_json(self, item: Any, alias: str | None) -> None:
        if isinstance(item, dict) and isinstance(item.get("uuid"), str):
            thread = self.thread(item["uuid"], alias)
            thread.name = str(item.get("name") or thread.name)
            thread.archived = bool(item.get("is_archived", thread.archived))

    def add_message_json(self, item: Any, alias: str | None) -> None:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            return
        if not isinstance(item.get("thread"), str) or not isinstance(item.get("uuid"), str):
            return
        order = item.get("sequence_index") if isinstance(item.get("sequence_index"), int) else 10**6
        self.thread(item["thread"], alias).messages[item["uuid"]] = (order, item["role"], str(item.get("content", "")))

    def add_stream(self, interaction: Interaction) -> None:
        records = [record for _, record in _records(interaction)]
        if len(records) < 2 or "thread_uuid" not in records[0].get("m", {}):
            return
        final = records[-1].get("m", {})
        thread = self.thread(records[0]["m"]["thread_uuid"], interaction.request.user)
        base = 10**6 + 2 * len(thread.messages)
        fields = request_fields(interaction.request)
        if "user_message_uuid" in final:
            thread.messages.setdefault(final["user_message_uuid"], (base, "user", str(fields.get("input", ""))))
        if "assistant_message_uuid" in final:
            thread.messages.setdefault(final["assistant_message_uuid"], (base + 1, "assistant", reassemble(records)))


def seed_document(cassette: Cassette, users_file: Path = DEFAULT_USERS_FILE) -> dict[str, Any]:
    owners = {f"user-{n}": user.username for n, user in enumerate(load_users(users_file), start=1)}
    seen = _Seen(owners)
    for interaction in cassette.interactions:
        _absorb(seen, interaction)
    threads = []
    for thread in seen.ordered():
        if thread.owner is None:
            continue  # anonymous, or more recorded users than the users file has
        messages = [{"role": role, "content": text} for _, role, text in sorted(thread.messages.values())]
        entry: dict[str, Any] = {"owner": thread.owner, "name": thread.name[:150] or "New chat"}
        if thread.archived:
            entry["archived"] = True
        entry["messages"] = messages
        threads.append(entry)
    return {"threads": threads}


def _absorb(seen: _Seen, interaction: Interaction) -> None:
    request, response = interaction.request, interaction.response
    if response.is_stream:
        if request.path == STREAM_PATH and response.status == 200:
            seen.add_stream(interaction)
        return
    if request.method != "GET" or response.status != 200 or not response.body:
        return
    try:
        data = json.loads(response.body)
    except ValueError:
        return
    items = data if isinstance(data, list) else [data]
    if request.path == "/api/chat-threads/" or THREAD_ITEM.match(request.path):
        if isinstance(data, list):
            listed = [item["uuid"] for item in data if isinstance(item, dict) and isinstance(item.get("uuid"), str)]
            seen.listed = [*listed, *(uuid for uuid in seen.listed if uuid not in set(listed))]
        for item in items:
            seen.add_thread_json(item, request.user)
    elif request.path == "/api/chat-messages/":
        for item in items:
            seen.add_message_json(item, request.user)


def seed_yaml(cassette: Cassette) -> str:
    header = "# Seed data made by `waldur-chat-mock cassette to-seed` (serve --seed-data FILE).\n"
    return header + _dump(seed_document(cassette))


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
