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
# Characters of reply text cached in all (a chunk object costs about 25 bytes per character of a
# token-split text): a few MB at most, however long the inputs a `${input}` script echoes.
DEFAULT_PLAN_CACHE_WEIGHT = 262_144
UNCACHED_SHARE = 16  # a plan heavier than 1/16 of the budget is built per turn, not cached


class PlanCache(Generic[T]):
    """Least-recently-used plans, at most `size` of them and `weight` in all; thread-safe.

    A plan's weight is what its builder says it costs (the characters of its text).
    """

    def __init__(self, size: int = DEFAULT_PLAN_CACHE_SIZE, weight: int = DEFAULT_PLAN_CACHE_WEIGHT):
        if size < 1 or weight < 1:
            raise ValueError("a plan cache holds at least one plan")
        self.size = size
        self.weight = weight
        self.hits = 0
        self.misses = 0
        self._held = 0
        # key -> (owner, plan, weight): holding the owner keeps its id from being reused while cached
        self._entries: OrderedDict[tuple[int, Hashable], tuple[object, T, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: object, key: Hashable, build: Callable[[], T], weight: int = 1) -> T:
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
            if self.keeps(weight):
                self._store(slot, (owner, plan, weight))
        return plan

    def keeps(self, weight: int) -> bool:
        """Whether a plan of this weight is cached (heavier ones are built for each turn)."""
        return weight * UNCACHED_SHARE <= self.weight

    def _store(self, slot: tuple[int, Hashable], entry: tuple[object, T, int]) -> None:
        old = self._entries.pop(slot, None)
        self._held += entry[2] - (old[2] if old else 0)
        self._entries[slot] = entry
        while len(self._entries) > self.size or self._held > self.weight:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._held -= dropped

    def __len__(self) -> int:
        return len(self._entries)
