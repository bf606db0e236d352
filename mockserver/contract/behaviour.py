"""Behaviour (part 3): a hypothesis state machine drives the target and checks it against a model.

The model holds, per regular user, the threads and message rows the suite knows of
(threads that existed before are taken as they are). The rules here stream new turns,
reload, edit (valid and invalid), archive, unarchive, and read lists and details; what only
some APIs do (title calls, cancel, feedback, stats, day-bound filters) is in
`contract.machines`. After each step the target must agree with the model. Hypothesis shrinks a
failure to the shortest sequence of steps, and the violation carries the HTTP requests
of that sequence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from mockserver.chat.blocks import join_markdown, records_of_blocks
from mockserver.contract.findings import ContractViolation, Step
from mockserver.contract.streams import StreamChecker, StreamExpectation
from mockserver.contract.target import Target
from mockserver.profiles.base import ApiTraits

NO_THREAD = ""  # a bundle entry for a thread that was not made: rules skip it (see `known`)
MARK = "[contract-suite]"  # every input the suite sends starts with it: easy to find and clean up
LINK = re.compile(r'<([^>]*)>;\s*rel="(\w+)"')


@dataclass
class Row:
    uuid: str
    role: str
    sequence_index: int
    replaces: str | None = None
    replaced: bool = False
    feedback: bool | None = None  # the score given through the feedback endpoint


@dataclass
class ThreadModel:
    uuid: str
    owner: str  # "user" or "other": which token owns it
    known: bool = True  # False for threads that existed before: rows unknown
    rows: list[Row] = field(default_factory=list)
    archived: bool = False
    name: str | None = None  # where the server names threads: the name it gave (None: not checked)

    def active(self, role: str | None = None) -> list[Row]:
        return [r for r in self.rows if not r.replaced and (role is None or r.role == role)]

    def last_active(self, role: str) -> Row | None:
        rows = self.active(role)
        return max(rows, key=lambda r: r.sequence_index) if rows else None

    def next_index(self) -> int:
        return max((r.sequence_index for r in self.rows), default=0) + 1


@dataclass
class Budget:
    """Caps the streams a part may make: a real deployment pays an LLM call for each.

    Each part gets its own share of `--max-streams` (see `runner.plan_budget`); `created`
    is shared, so the threads of every part are found and archived at the end."""

    streams_left: int
    created: dict[str, set[str]] = field(default_factory=lambda: {"user": set(), "other": set()})
    left_out: int = 0  # stream cases that were not sent because the share was spent

    def __post_init__(self) -> None:
        self.granted = self.streams_left

    @property
    def used(self) -> int:
        return self.granted - self.streams_left

    def grant(self, streams: int) -> None:
        """Add (or with a negative number, withdraw) unused streams."""
        self.granted += streams
        self.streams_left += streams

    def take(self) -> bool:
        if self.streams_left <= 0:
            self.left_out += 1
            return False
        self.streams_left -= 1
        return True


class ChatMachine(RuleBasedStateMachine):
    """The rules every chat API with threads shares; `machines.run_behaviour` adds the rule sets
    of the API's traits (`machines.rule_sets`) and the target. One instance per hypothesis example."""

    traits: ApiTraits = ApiTraits()
    target: Target
    checker: StreamChecker
    budget: Budget
    log_sink: list[Step]  # the current example's requests, also for errors that are no violation
    first_violation: list[ContractViolation]  # the first one raised: hypothesis may lose it (see run_behaviour)
    on_example: Callable[[], None]
    threads = Bundle("threads")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, ThreadModel] = {}
        self.log = self.log_sink
        self.log.clear()
        self.session: dict[str, str] = {}
        type(self).on_example()

    # -- plumbing ----------------------------------------------------------------
    def token(self, who: str) -> str:
        return self.target.tokens.user if who == "user" else self.target.tokens.other

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        try:
            response = self.target.request(method, path, token=self.token(who), **kwargs)
        except httpx.TransportError as exc:
            self.log.append(Step(method, path, None, kwargs.get("json"), f"{type(exc).__name__}: {exc}"))
            raise self.fail("behaviour.connection", f"the connection broke: {type(exc).__name__}: {exc}") from None
        self.log.append(self.target.step(response, kwargs.get("json")))
        return response

    def fail(self, check: str, message: str) -> ContractViolation:
        if self.log:
            self.log[-1].excerpt = self.log[-1].excerpt or message
        return self.found(ContractViolation(check, message, list(self.log)))

    def found(self, violation: ContractViolation) -> ContractViolation:
        """Keep the run's first violation: a replay that draws differently loses it in hypothesis's error."""
        if not self.first_violation:
            self.first_violation.append(violation)
        return violation

    def expect_status(self, response: Any, status: int, check: str) -> None:
        if response.status_code != status:
            self.log[-1].excerpt = response.text[:200]
            raise self.fail(check, f"expected {status}, got {response.status_code}: {response.text[:200]}")

    def stream(self, who: str, body: dict[str, Any], expect: StreamExpectation) -> list[dict[str, Any]]:
        capture = self.target.stream(body, token=self.token(who))
        step = self.target.broken(capture, body) or Step("POST", self.target.stream_path, capture.status, body)
        self.log.append(step)
        if capture.error:
            raise self.fail("stream.connection", f"the connection broke mid-stream: {capture.error}")
        if capture.status != 200:
            step.excerpt = capture.body[:200].decode("utf-8", "replace")
            raise self.fail("behaviour.stream_status", f"expected 200, got {capture.status}")
        try:
            records = self.checker.check(capture, expect, step)
            if self.traits.message_body == "content":
                self.checker.check_rest(self.target, self.token(who), records, expect)
        except ContractViolation as violation:
            raise self.found(ContractViolation(violation.check, violation.message, list(self.log))) from None
        if self.traits.message_body == "blocks":
            self.check_blocks(who, body, records)
        return records

    def check_blocks(self, who: str, body: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """Messages made of blocks: the stored answer's blocks are the streamed content records
        (markdown deltas joined), and the question is one markdown block holding the input."""
        thread, final = records[0]["m"]["thread_uuid"], records[-1]["m"]
        params = {"thread": thread, "include_history": "true"}
        response = self.call("GET", "/api/chat-messages/", who, params=params)
        self.expect_status(response, 200, "behaviour.messages_list")
        rows = {row["uuid"]: row for row in response.json()}
        answer = rows.get(final["assistant_message_uuid"])
        if answer is None or answer.get("role") != "assistant":
            missing = final["assistant_message_uuid"]
            raise self.fail("stream.uuids_match_rest", f"assistant message {missing} not listed")
        blocks = answer.get("blocks")
        if not isinstance(blocks, list) or records_of_blocks(blocks) != join_markdown(records):
            raise self.fail("stream.blocks_reassembly", "the stored blocks are not the streamed content records")
        question = rows.get(final.get("user_message_uuid", ""))
        if question is not None and message_text(question) != body["input"]:
            raise self.fail("behaviour.user_message_blocks", f"the question's blocks hold {message_text(question)!r}")

    def refused(self, who: str, body: dict[str, Any], status: int, expected_body: Any, check: str) -> None:
        """A stream the target must refuse before streaming, with Waldur's exact body."""
        capture = self.target.stream(body, token=self.token(who))
        self.log.append(
            Step("POST", self.target.stream_path, capture.status, body, capture.body[:200].decode("utf-8", "replace"))
        )
        try:
            answer = json.loads(capture.body)
        except ValueError:
            answer = None
        if capture.status != status or answer != expected_body:
            raise self.fail(check, f"expected {status} {expected_body}, got {capture.status} {answer}")

    # -- set-up ------------------------------------------------------------------
    @initialize(target=threads)
    def snapshot(self) -> Any:
        """Threads that already exist are part of the model, with unknown rows. Those the suite
        created (earlier parts and examples) are drawn from by the rules too (one of them),
        so that the checks that need no stream (visibility, archive) run once the budget is
        spent. Exactly one entry either way: hypothesis needs the same draws on a replay."""
        for who in ("user", "other"):
            for thread in self.all_pages("/api/chat-threads/", who, {"page_size": 300}):
                self.model[thread["uuid"]] = ThreadModel(
                    thread["uuid"], who, known=False, archived=thread["is_archived"]
                )
        created = sorted(self.budget.created["user"]) + sorted(self.budget.created["other"])
        return next((uuid for uuid in created if uuid in self.model), NO_THREAD)

    def all_pages(self, path: str, who: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.call("GET", path, who, params={**params, "page": page})
            self.expect_status(response, 200, "behaviour.list_status")
            items.extend(response.json())
            if not any(rel == "next" for _, rel in LINK.findall(response.headers.get("link", ""))):
                return items
            page += 1

    # -- streaming rules ---------------------------------------------------------
    @rule(target=threads, who=st.sampled_from(["user", "other"]))
    def new_thread(self, who: str) -> Any:
        # No precondition on the budget: one shared by all examples would change which rules
        # exist between a run and its shrinking replays. Out of budget, stream rules do nothing
        # (this one adds the placeholder: the bundle grows the same way on every replay).
        if not self.budget.take():
            return NO_THREAD
        records = self.stream(who, {"input": f"{MARK} hello"}, StreamExpectation())
        uuid, final = records[0]["m"]["thread_uuid"], records[-1]["m"]
        self.budget.created[who].add(uuid)
        if uuid in self.model:
            raise self.fail("behaviour.new_thread", f"thread {uuid} was not new")
        model = ThreadModel(uuid, who)
        model.rows = [Row(final["user_message_uuid"], "user", 1), Row(final["assistant_message_uuid"], "assistant", 2)]
        self.model[uuid] = model
        self.named(model, self.check_thread(model))
        return uuid

    def named(self, model: ThreadModel, data: dict[str, Any]) -> None:
        """A new thread as the stream left it; where the server names threads, the name is checked
        and kept (see `ServerNamingRules`). Here (client naming) names are the title calls' business."""

    def known(self, uuid: str) -> ThreadModel | None:
        """The model of a bundle entry; None for the placeholder of a thread never made."""
        return self.model.get(uuid)

    @rule(thread=threads)
    def follow_up(self, thread: str) -> None:
        model = self.known(thread)
        if model is None:
            return
        if not self.budget.take():
            return
        before = self.retrieve(model)["modified"]
        final = self.stream(model.owner, {"input": f"{MARK} more", "thread_uuid": thread}, StreamExpectation())[-1]["m"]
        index = model.next_index()
        model.rows += [
            Row(final["user_message_uuid"], "user", index),
            Row(final["assistant_message_uuid"], "assistant", index + 1),
        ]
        after = self.check_thread(model)["modified"]
        if not after > before:
            raise self.fail("behaviour.modified_moves_forward", f"modified went from {before} to {after}")

    @rule(thread=threads)
    def reload(self, thread: str) -> None:
        model = self.known(thread)
        if model is None:
            return
        if not self.budget.take():
            return
        old = model.last_active("assistant")
        body = {"input": f"{MARK} again", "thread_uuid": thread, "mode": "reload"}
        final = self.stream(model.owner, body, StreamExpectation())[-1]["m"]
        if old is None:
            return  # fallback to a normal turn; rows then unknown in shape, keep the model simple
        if set(final) != {"assistant_message_uuid"}:
            raise self.fail("behaviour.reload_final_m", f"reload's final m has {sorted(final)}")
        old.replaced = True
        model.rows.append(Row(final["assistant_message_uuid"], "assistant", old.sequence_index, old.uuid))
        self.check_thread(model)

    @rule(thread=threads)
    def edit_last(self, thread: str) -> None:
        model = self.known(thread)
        if model is None:
            return
        last_user = model.last_active("user")
        if last_user is None or not self.budget.take():
            return
        old_assistant = model.last_active("assistant")
        body = {"input": f"{MARK} edited", "thread_uuid": thread, "mode": "edit", "edit_message_uuid": last_user.uuid}
        final = self.stream(model.owner, body, StreamExpectation())[-1]["m"]
        last_user.replaced = True
        model.rows.append(Row(final["user_message_uuid"], "user", last_user.sequence_index, last_user.uuid))
        if old_assistant is not None:
            old_assistant.replaced = True
            index, replaces = old_assistant.sequence_index, old_assistant.uuid
        else:
            index, replaces = last_user.sequence_index + 1, None
        model.rows.append(Row(final["assistant_message_uuid"], "assistant", index, replaces))
        self.check_thread(model)

    @rule(thread=threads)
    def edit_refused(self, thread: str) -> None:
        """Editing an assistant row or a user row that is not the last: 400 with a bare list."""
        model = self.known(thread)
        if model is None:
            return
        users = sorted(model.active("user"), key=lambda r: r.sequence_index)
        assistant = model.last_active("assistant")
        if assistant is not None:
            body = {"input": f"{MARK} x", "thread_uuid": thread, "mode": "edit", "edit_message_uuid": assistant.uuid}
            self.refused(model.owner, body, 400, ["Can only edit user messages."], "behaviour.edit_assistant_refused")
        if len(users) > 1:
            body = {"input": f"{MARK} x", "thread_uuid": thread, "mode": "edit", "edit_message_uuid": users[0].uuid}
            self.refused(
                model.owner, body, 400, ["Can only edit the last user message."], "behaviour.edit_not_last_refused"
            )
        foreign = next((r for t in self.model.values() if t.owner != model.owner for r in t.active("user")), None)
        if foreign is not None:  # another user's message, named in one's own thread
            body = {"input": f"{MARK} x", "thread_uuid": thread, "mode": "edit", "edit_message_uuid": foreign.uuid}
            self.refused(model.owner, body, 404, {"detail": "Message not found."}, "behaviour.edit_foreign_refused")

    @rule(thread=threads)
    def foreign_thread_refused(self, thread: str) -> None:
        """The other regular user can neither read nor stream into the thread: 404."""
        model = self.known(thread)
        if model is None:
            return
        stranger = "other" if model.owner == "user" else "user"
        response = self.call("GET", f"/api/chat-threads/{thread}/", stranger)
        self.expect_status(response, 404, "behaviour.foreign_thread_hidden")
        body = {"input": f"{MARK} x", "thread_uuid": thread}
        self.refused(stranger, body, 404, {"detail": "Thread not found."}, "behaviour.foreign_stream_refused")
        messages = self.call("GET", "/api/chat-messages/", stranger, params={"thread": thread})
        self.expect_status(messages, 200, "behaviour.foreign_messages_hidden")
        if messages.json() != []:
            raise self.fail("behaviour.foreign_messages_hidden", "another user's messages are visible")

    # -- archive -----------------------------------------------------------------
    @rule(thread=threads, end_archived=st.booleans(), twice=st.booleans())
    def archive(self, thread: str, end_archived: bool, twice: bool) -> None:
        """Archive, then unarchive unless the thread should end archived; each maybe twice (idempotent)."""
        model = self.known(thread)
        if model is None:
            return
        for action in ("archive",) if end_archived else ("archive", "unarchive"):
            for _ in range(2 if twice else 1):
                response = self.call("POST", f"/api/chat-threads/{thread}/{action}/", model.owner)
                self.expect_status(response, 204, f"behaviour.{action}_status")
                if response.content:
                    raise self.fail(f"behaviour.{action}_status", "204 with a body")
            model.archived = action == "archive"
            self.check_thread(model)

    # -- reads -------------------------------------------------------------------
    def retrieve(self, model: ThreadModel) -> dict[str, Any]:
        response = self.call("GET", f"/api/chat-threads/{model.uuid}/", model.owner)
        self.expect_status(response, 200, "behaviour.thread_retrieve")
        return response.json()

    def check_thread(self, model: ThreadModel) -> dict[str, Any]:
        """Retrieve and messages (with and without history) agree with the model."""
        data = self.retrieve(model)
        if data.get("is_archived") != model.archived:
            raise self.fail("behaviour.archive_flag", f"is_archived is {data.get('is_archived')}")
        if model.name is not None and data.get("name") != model.name:
            raise self.fail("behaviour.thread_name_kept", f"the name went from {model.name!r} to {data.get('name')!r}")
        if model.known and data.get("message_count") != len(model.rows):
            raise self.fail(
                "behaviour.message_count", f"message_count {data.get('message_count')} != {len(model.rows)}"
            )
        if model.known:
            self.check_messages(model, history=True)
            self.check_messages(model, history=False)
        if self.traits.feedback and model.known:
            self.check_has_feedback(model, data)
        return data

    def check_has_feedback(self, model: ThreadModel, data: dict[str, Any]) -> None:
        """`has_feedback`: true once an active answer has feedback, false while no row has any
        (whether feedback on a replaced answer still counts is not settled: not checked)."""
        if any(r.feedback is not None for r in model.active()):
            wanted = True
        elif all(r.feedback is None for r in model.rows):
            wanted = False
        else:
            return
        if data.get("has_feedback") is not wanted:
            raise self.fail("behaviour.has_feedback", f"has_feedback is {data.get('has_feedback')}, expected {wanted}")

    def check_messages(self, model: ThreadModel, history: bool) -> None:
        params = {"thread": model.uuid, **({"include_history": "true"} if history else {})}
        response = self.call("GET", "/api/chat-messages/", model.owner, params=params)
        self.expect_status(response, 200, "behaviour.messages_list")
        rows = response.json()
        expected = model.rows if history else model.active()
        check = "behaviour.include_history" if history else "behaviour.active_messages"
        if sorted(r["uuid"] for r in rows) != sorted(r.uuid for r in expected):
            raise self.fail(check, f"listed {len(rows)} rows, the model has {len(expected)}")
        indexes = [r["sequence_index"] for r in rows]
        if indexes != sorted(indexes):
            raise self.fail("behaviour.messages_order", f"not ordered by sequence_index: {indexes}")
        wanted = {r.uuid: r for r in expected}
        for row in rows:
            mine = wanted[row["uuid"]]
            if (row["role"], row["sequence_index"], row["replaces"]) != (mine.role, mine.sequence_index, mine.replaces):
                raise self.fail(
                    "behaviour.message_rows",
                    f"row {row['uuid']}: {row['role']} #{row['sequence_index']} "
                    f"replaces {row['replaces']}, expected {mine.role} #{mine.sequence_index} "
                    f"replaces {mine.replaces}",
                )
            if mine.feedback is not None and row.get("feedback_score") is not mine.feedback:
                raise self.fail(
                    "behaviour.feedback_kept", f"row {row['uuid']}: feedback_score {row.get('feedback_score')}"
                )
            if any(key.startswith("injection_") or key == "is_flagged" for key in row):
                raise self.fail("behaviour.injection_fields_hidden", "a regular user sees injection fields")

    @rule(
        who=st.sampled_from(["user", "other"]),
        archived=st.sampled_from([None, True, False]),
        order=st.sampled_from(["-created", "created", "-modified", "modified", "created,-modified"]),
        page_size=st.integers(1, 4),
    )
    def list_threads(self, who: str, archived: bool | None, order: str, page_size: int) -> None:
        """Filtered, ordered, paginated lists: headers, links and pages that form the whole list."""
        params: dict[str, Any] = {"o": order, "page_size": page_size}
        if archived is not None:
            params["is_archived"] = str(archived).lower()
        expected = {t.uuid for t in self.model.values() if t.owner == who and archived in (None, t.archived)}
        seen: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.call("GET", "/api/chat-threads/", who, params={**params, "page": page})
            self.expect_status(response, 200, "behaviour.list_status")
            count = response.headers.get("x-result-count")
            if count != str(len(expected)):
                raise self.fail("behaviour.x_result_count", f"X-Result-Count {count}, expected {len(expected)}")
            rels = [rel for _, rel in LINK.findall(response.headers.get("link", ""))]
            pages = max(1, -(-len(expected) // page_size))
            wanted = ["first", *(["prev"] if page > 1 else []), *(["next"] if page < pages else []), "last"]
            if rels != wanted:
                raise self.fail("behaviour.link_header", f"Link rels {rels} on page {page}/{pages}, expected {wanted}")
            batch = response.json()
            if len(batch) != min(page_size, len(expected) - (page - 1) * page_size):
                raise self.fail("behaviour.page_size", f"page {page} has {len(batch)} items")
            seen.extend(batch)
            if page >= pages:
                break
            page += 1
        uuids = [t["uuid"] for t in seen]
        if len(uuids) != len(set(uuids)) or set(uuids) != expected:
            raise self.fail("behaviour.pages_partition", "pages overlap or miss threads")
        self.check_order(seen, order)
        for thread in seen:
            if archived is not None and thread["is_archived"] != archived:
                raise self.fail("behaviour.filter_is_archived", f"is_archived={archived} listed {thread['uuid']}")

    def check_order(self, threads: list[dict[str, Any]], order: str) -> None:
        keys = order.split(",")

        def sort_key(thread: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(_Desc(_nulls_last(thread[k[1:]])) if k[0] == "-" else _nulls_last(thread[k]) for k in keys)

        if [t["uuid"] for t in sorted(threads, key=sort_key)] != [t["uuid"] for t in threads]:
            raise self.fail("behaviour.ordering", f"not ordered by o={order}")

    @rule(who=st.sampled_from(["user", "other"]))
    def current_session(self, who: str) -> None:
        response = self.call("GET", "/api/chat-sessions/current/", who)
        self.expect_status(response, 200, "behaviour.current_session")
        uuid = response.json()["uuid"]
        if self.session.setdefault(who, uuid) != uuid:
            raise self.fail("behaviour.current_session_idempotent", "current session changed between calls")
        stranger = "other" if who == "user" else "user"
        foreign = self.call("GET", f"/api/chat-sessions/{uuid}/", stranger)
        self.expect_status(foreign, 404, "behaviour.foreign_session_hidden")

    @invariant()
    def nothing(self) -> None:
        """Checks run inside the rules; this keeps hypothesis from skipping invariant phases."""


def _nulls_last(value: Any) -> tuple[int, Any]:
    """Null sorts as the largest value, as PostgreSQL orders (last ascending, first descending)."""
    return (1, 0) if value is None else (0, value)


def message_text(row: dict[str, Any]) -> str:
    """A message row's text: its `content`, or (messages made of blocks) its markdown blocks' contents."""
    if "content" in row:
        return str(row["content"])
    blocks = row.get("blocks") if isinstance(row.get("blocks"), list) else []
    return "".join(str(b.get("content", "")) for b in blocks if isinstance(b, dict) and b.get("key") == "markdown")


@dataclass(frozen=True)
class _Desc:
    """Reverses comparison, for descending sort keys of any type."""

    value: Any

    def __lt__(self, other: _Desc) -> bool:
        return other.value < self.value


__all__ = ["MARK", "Budget", "ChatMachine", "ThreadModel", "message_text"]
