"""A bounded cache of reply plans: a script's timed chunks are computed once per rendered text.

Splitting a long answer into tokens and drawing its jittered delays is most of what planning
a turn costs, and every turn that renders the same text gets the same result (the jitter is
seeded). Plans are immutable (tuples of frozen events), so one copy is shared by every stream
in flight. Entries are keyed by the script object itself (identity, not equality: a script
replaced through the control API is a new object) and by the text the request rendered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PLAN_CACHE_SIZE = 256  # distinct (script, text) pairs; `${input}` makes one per input


class PlanCache(Generic[T]):
    """Least-recently-used plans, at most `size` of them; safe to share between threads."""

    def __init__(self, size: int = DEFAULT_PLAN_CACHE_SIZE):
        if size < 1:
            raise ValueError("a plan cache holds at least one plan")
        self.size = size
        self.hits = 0
        self.misses = 0
        # key -> (owner, plan): holding the owner keeps its id from being reused while cached
        self._entries: OrderedDict[tuple[int, Hashable], tuple[object, T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: object, key: Hashable, build: Callable[[], T]) -> T:
        """The plan of `owner` for `key`, built (outside the lock) on a miss."""
        slot = (id(owner), key)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and entry[0] is owner:
                self._entries.move_to_end(slot)
                self.hits += 1
                return entry[1]
        plan = build()
        with self._lock:
            self.misses += 1
            self._entries[slot] = (owner, plan)
            self._entries.move_to_end(slot)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return plan

    def __len__(self) -> int:
        return len(self._entries)
