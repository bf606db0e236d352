"""What differs between the Waldur versions the mock serves, in one object.

The app is built from one `ApiProfile`; nothing outside the profile modules names a
version. A new version is a new profile module, a spec and a handler table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mockserver.api.context import Handler
from mockserver.chat.service import UPSTREAM_MISSING
from mockserver.engine.scripted import ScriptedEngine
from mockserver.engine.writer import Encoder
from mockserver.errors import ApiError
from mockserver.openapi.loader import SpecIndex

# Dry-runs a script set in the profile's protocol; raises ScriptError naming file and line.
ScriptCheck = Callable[[ScriptedEngine, SpecIndex], None]


@dataclass(frozen=True)
class ApiTraits:
    """What a client (and the contract suite) must expect of this API beyond its spec.

    Plain data, so that a profile never imports the contract suite: the suite reads these
    and picks its grammar and its model from them, and never asks for a version by name."""

    thread_naming: Literal["client", "server"] = "client"  # `update_thread_name` vs a 2nd upstream call
    message_body: Literal["content", "blocks"] = "content"  # how a message carries its text
    load_records: bool = True  # `{"k":"load"}` records on the wire
    warning_record: bool = False  # an optional `{"w": ...}` after the thread's `m`
    cancel: bool = False  # `POST /api/chat-threads/{uuid}/cancel/`
    feedback: bool = False  # `POST /api/chat-messages/{uuid}/feedback/`
    stats: bool = False  # `GET /api/chat-threads/stats/`
    # Thread list filters by date: exact days (`created`, `modified`), or inclusive day bounds
    # (`created_after`...) with token bounds, `has_feedback` and `scope`, the exact days gone.
    thread_filters: Literal["exact_day", "bounds"] = "exact_day"
    role_gate: bool = False  # a role setting (AI_ASSISTANT_ENABLED_ROLES) refuses streams with 403 and a text
    global_budget: bool = False  # a deployment-wide budget answers streams 429 with `Retry-After`
    pre_stream_order_known: bool = True  # the order of 424, 401, 409 (upstream) and 400 before a stream is settled
    # The message fields only staff and support see (a regular user's rows lack them).
    staff_message_fields: tuple[str, ...] = (
        "is_flagged",
        "injection_score",
        "injection_severity",
        "injection_categories",
    )


@dataclass(frozen=True)
class ApiProfile:
    name: str  # the Waldur version: `--api`, the banner, health's spec_version, journal entries
    spec_file: Path
    handlers: Mapping[str, Handler]  # operationId -> handler; routing refuses a spec operation without one
    encoder: Encoder  # the stream's wire format (the adapter is composed in the stream handler)
    stream_item_schema: str  # the schema of one stream item (a record, an SSE data payload)
    check_scripts: ScriptCheck  # scripts are checked against the spec's stream schema(s) at load
    chat_disabled: Callable[[], ApiError]  # what a gated endpoint answers with chat disabled
    stream_path: str  # where the stream is served (the contract suite posts there)
    summary: str  # one line for `--help` and the banner
    contract_parts: tuple[str, ...]  # the parts of `verify` that apply to this API
    default_scripts: Path | None = None  # the profile's own default reply scripts (None: the packaged ones)
    # `--upstream-url` can feed the stream: the turn plans nothing ahead (7.9.4's SSE replay and
    # 8.1's title call plan their reply, which a real upstream cannot).
    live_upstream: bool = False
    traits: ApiTraits = ApiTraits()
    # The 409 texts when the upstream's URL / token is not configured (renamed after 8.0.5).
    upstream_missing: tuple[str, str] = UPSTREAM_MISSING
