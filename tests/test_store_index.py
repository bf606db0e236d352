"""The store's indexes answer what a scan of everything would: same rows, same order, any history.

Staff see every message in creation order; every per-thread, per-owner and newest-first
answer must equal that list filtered, after any mix of threads, questions, answers,
reloads, edits and resets by several users.
"""

from __future__ import annotations

from operator import attrgetter

from hypothesis import given, settings
from hypothesis import strategies as st

from mockserver.store import ChatState, ChatStore, Thread, User

ALICE = User(uuid="a" * 32, username="alice", token="alice-token")
BOB = User(uuid="b" * 32, username="bob", token="bob-token")
STAFF = User(uuid="c" * 32, username="staff", token="staff-token", is_staff=True)
USERS = [ALICE, BOB, STAFF]

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["thread", "ask", "answer", "reload", "edit", "reset"]), st.integers(0, 30)),
    max_size=40,
)


def play(store: ChatStore, actions: list[tuple[str, int]]) -> list[Thread]:
    threads: list[Thread] = []
    slots = []
    for action, pick in actions:
        if action == "thread" or not threads:
            threads.append(store.create_thread(USERS[pick % len(USERS)]))
            continue
        thread = threads[pick % len(threads)]
        if action == "ask":
            slots.append(store.add_question(thread, f"q{pick}")[1])
        elif action == "answer" and slots:
            store.fill_slot(slots.pop(pick % len(slots)), f"a{pick}")
        elif action == "reload":
            store.replace_answer(thread, f"r{pick}")
        elif action == "edit":
            question = store.last_active(thread, "user")
            if question is not None:
                store.answer_edit(thread, question, f"e{pick}")
        elif action == "reset" and pick % 5 == 0:
            store.reset()
            threads, slots = [], []
    return threads


def test_the_memory_store_implements_the_interface() -> None:
    store: ChatState = ChatStore(USERS)  # type-checked: a second backend implements the same
    assert list(store.threads_newest_first(ALICE)) == []  # an empty view, not an error


@settings(max_examples=150, deadline=None, database=None)
@given(actions=ACTIONS)
def test_indexes_agree_with_a_full_scan(actions: list[tuple[str, int]]) -> None:
    store = ChatStore(USERS)
    play(store, actions)
    every_message = store.messages_visible_to(STAFF)
    every_thread = store.threads_visible_to(STAFF)
    assert every_thread == sorted(every_thread, key=attrgetter("created"))
    for viewer in (ALICE, BOB):
        assert store.messages_visible_to(viewer) == [m for m in every_message if m.thread.owner == viewer]
        own = [t for t in every_thread if t.owner == viewer]
        assert store.threads_visible_to(viewer) == own
        assert list(store.threads_newest_first(viewer)) == sorted(own, key=attrgetter("created"), reverse=True)
    for thread in every_thread:
        rows = [m for m in every_message if m.thread is thread]
        assert store.thread_messages(thread) == rows
        assert store.message_count(thread) == len(rows)
        assert store.thread_messages_visible_to(thread.uuid, STAFF) == rows
        assert store.thread_messages_visible_to(thread.uuid, thread.owner) == rows
        stranger = BOB if thread.owner == ALICE else ALICE
        assert store.thread_messages_visible_to(thread.uuid, stranger) == ([] if thread.owner != stranger else rows)


def test_newest_first_is_a_snapshot_that_pages_slice() -> None:
    store = ChatStore(USERS)
    made = [store.create_thread(ALICE) for _ in range(5)]
    view = store.threads_newest_first(ALICE)
    store.create_thread(ALICE)  # after the view was taken: not in it
    store.create_thread(BOB)  # someone else's: never in it
    assert len(view) == 5
    assert list(view) == made[::-1]
    assert view[0] is made[-1] and view[-1] is made[0]
    assert view[1:3] == [made[3], made[2]]
    assert view[10:20] == []
    store.reset()
    assert list(view) == made[::-1]  # a reset starts new lists; the view keeps what it showed
    assert list(store.threads_newest_first(ALICE)) == [] and len(store.threads_newest_first(STAFF)) == 0


def test_counts_include_replaced_rows() -> None:
    store = ChatStore(USERS)
    thread = store.create_thread(ALICE)
    _, slot = store.add_question(thread, "q")
    store.fill_slot(slot, "a")
    store.replace_answer(thread, "a2")
    assert store.message_count(thread) == 3
    assert [m.is_active for m in store.thread_messages(thread)] == [True, False, True]


def test_sessions_one_per_user_newest_first() -> None:
    store = ChatStore(USERS)
    first = store.get_or_create_session(BOB)
    second = store.get_or_create_session(ALICE)
    assert store.get_or_create_session(BOB) is first
    assert store.sessions_visible_to(STAFF) == [second, first]
    assert store.sessions_visible_to(BOB) == [first]
    assert store.sessions_visible_to(ALICE) == [second]
