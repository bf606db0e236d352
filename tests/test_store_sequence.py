"""Sequence indexes allocated by the store, under any interleaving of overlapping turns.

Waldur's database keeps one original row per `(thread, sequence_index)`; the store must keep
that, plus what a client needs to render the thread: every index from 1 up has exactly one
active row, questions and answers alternate, and `message_count` counts every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockserver.store import AnswerSlot, ChatStore, Message, Thread, User
from mockserver.store.memory import SequenceConflict

ALICE = User(uuid="a" * 32, username="alice", token="alice-token")


def new_thread() -> tuple[ChatStore, Thread]:
    store = ChatStore([ALICE])
    return store, store.create_thread(ALICE)


def active_layout(store: ChatStore, thread: Thread) -> list[tuple[int, str]]:
    rows = sorted((m for m in store.thread_messages(thread) if m.is_active), key=lambda m: m.sequence_index)
    return [(m.sequence_index, m.role) for m in rows]


def assert_consistent(store: ChatStore, thread: Thread) -> None:
    """Unique, contiguous active indexes; one original per index; links that agree both ways."""
    rows = store.thread_messages(thread)
    layout = active_layout(store, thread)
    assert [index for index, _ in layout] == list(range(1, len(layout) + 1))
    assert [role for _, role in layout] == ["user" if i % 2 else "assistant" for i in range(1, len(layout) + 1)]
    for index in {m.sequence_index for m in rows}:
        at_index = [m for m in rows if m.sequence_index == index]
        assert len([m for m in at_index if m.replaces is None]) == 1, f"index {index}: one original row"
        assert len({m.role for m in at_index}) == 1, f"index {index}: one role"
    for message in rows:
        if message.replaced_by is not None:
            assert message.replaced_by.replaces is message
        if message.replaces is not None:
            assert message.replaces.replaced_by is message
    assert store.message_count(thread) == len(rows)


def test_a_follow_up_sent_while_the_answer_streams_goes_after_that_answer() -> None:
    store, thread = new_thread()
    first, first_slot = store.add_question(thread, "first")
    second, second_slot = store.add_question(thread, "second")  # the first answer is still streaming
    assert (first.sequence_index, first_slot.index, second.sequence_index, second_slot.index) == (1, 2, 3, 4)
    second_answer = store.fill_slot(second_slot, "answer 2")  # finishes first
    first_answer = store.fill_slot(first_slot, "answer 1")
    assert (first_answer.sequence_index, second_answer.sequence_index) == (2, 4)
    assert [m.content for m in sorted(store.thread_messages(thread), key=lambda m: m.sequence_index)] == [
        "first",
        "answer 1",
        "second",
        "answer 2",
    ]
    assert_consistent(store, thread)


def test_an_edit_answered_before_the_original_answer_keeps_its_place() -> None:
    store, thread = new_thread()
    question, slot = store.add_question(thread, "typo")
    edited = store.add_message(thread, "user", "fixed", 1, replaces=question)
    edit_answer = store.answer_edit(thread, edited, "answer to fixed")
    late = store.fill_slot(slot, "answer to typo")  # the original answer ends after the edit's
    assert edit_answer.is_active and not late.is_active
    assert late.replaced_by is edit_answer and edit_answer.replaces is late
    assert [m.content for m in store.thread_messages(thread) if m.is_active] == ["fixed", "answer to fixed"]
    assert_consistent(store, thread)


def test_a_reload_during_a_follow_up_supersedes_the_last_stored_answer() -> None:
    store, thread = new_thread()
    _, slot = store.add_question(thread, "one")
    answer = store.fill_slot(slot, "answer 1")
    _, pending = store.add_question(thread, "two")
    reloaded = store.replace_answer(thread, "answer 1 again")
    assert reloaded.replaces is answer and reloaded.sequence_index == 2
    store.fill_slot(pending, "answer 2")
    assert_consistent(store, thread)


def test_a_second_original_row_at_one_index_is_refused() -> None:
    store, thread = new_thread()
    store.add_message(thread, "user", "one", 1)
    with pytest.raises(SequenceConflict):
        store.add_message(thread, "assistant", "clash", 1)


def test_reset_forgets_reserved_slots_and_counts_the_reset() -> None:
    store, thread = new_thread()
    _, slot = store.add_question(thread, "before the reset")
    epoch = store.epoch
    store.reset()
    assert store.epoch == epoch + 1
    store.fill_slot(slot, "late answer")
    assert store.thread_messages(thread) == []
    fresh = store.create_thread(ALICE)
    question, fresh_slot = store.add_question(fresh, "after")
    assert (question.sequence_index, fresh_slot.index) == (1, 2)


# -- any interleaving ------------------------------------------------------------
@dataclass
class Pending:
    """A turn whose answer is still streaming, finished later by `finish`."""

    kind: str
    slot: AnswerSlot | None = None
    question: Message | None = None

    def finish(self, store: ChatStore, thread: Thread) -> None:
        if self.slot is not None:
            store.fill_slot(self.slot, "answer")
        elif self.question is not None:
            store.answer_edit(thread, self.question, "edited answer")
        else:
            store.replace_answer(thread, "reloaded answer")


def start(store: ChatStore, thread: Thread, kind: str) -> Pending | None:
    """Start a turn as the chat service does; None where the service would refuse it."""
    if kind == "message":
        _, slot = store.add_question(thread, "question")
        return Pending(kind, slot=slot)
    if kind == "reload":
        return Pending(kind) if store.last_active(thread, "assistant") else None
    edited = store.last_active(thread, "user")
    if edited is None:
        return None
    return Pending(kind, question=store.add_message(thread, "user", "edit", edited.sequence_index, replaces=edited))


# Each step starts a turn (message, reload, edit) or finishes the pending turn at some position.
STEPS = st.lists(
    st.one_of(st.sampled_from(["message", "reload", "edit"]), st.integers(min_value=0, max_value=7)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_any_interleaving_of_turns_keeps_the_thread_consistent(steps: list[str | int]) -> None:
    store, thread = new_thread()
    pending: list[Pending] = []
    for step in steps:
        if isinstance(step, str):
            turn = start(store, thread, step)
            if turn is not None:
                pending.append(turn)
        elif pending:
            pending.pop(step % len(pending)).finish(store, thread)
    for turn in pending:
        turn.finish(store, thread)
    assert_consistent(store, thread)
