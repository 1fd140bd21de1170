"""The latest entries of a kind, up to a bound, the oldest let go first.

Children an LP has ended are watched for a fill it should not report any
more, in the order flow and in the FIX adapter: only the latest ones,
since such a fill comes soon after the end if at all.  Letting go of a
dict's oldest key with ``next(iter(d))`` walks past every slot the earlier
deletions left at the dict's front (a few microseconds each time at 10,000
entries); here a queue of the keys in the order they came lets it go in
O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from typing import Generic, TypeVar

from router.model import EXEC_ID_SEP

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """``bound`` entries at most, each under a key put once (a key put again
    takes the new value and keeps its place in line)."""

    __slots__ = ("_items", "_order", "bound")

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("a Recent keeps at least one entry")
        self.bound = bound
        self._items: dict[K, V] = {}
        self._order: deque[K] = deque()

    def put(self, key: K, value: V) -> None:
        items = self._items
        size = len(items)
        items[key] = value
        if len(items) == size:
            return  # known already: its place in line stays
        order = self._order
        order.append(key)
        if len(order) > self.bound:
            del items[order.popleft()]

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def oldest_first(self) -> list[K]:
        """The keys as they are now, oldest first (copied from the queue at
        C speed: a copy of the dict, whose front is full of the slots its
        deletions left, can take milliseconds)."""
        return list(self._order)


def joined_ids(exec_ids: Collection[str] | None) -> str:
    """ExecIDs as a :class:`~router.model.EndedChild` keeps them (most
    children have one: it is kept as it is, no list made to join)."""
    if not exec_ids:
        return ""
    if len(exec_ids) == 1:
        for exec_id in exec_ids:
            return exec_id
    return EXEC_ID_SEP.join(exec_ids)


class SeqWindow(Generic[V]):
    """Values under increasing sequence numbers, each kept while its number
    is within ``span`` of the latest one put (numbers between may be
    missing).  A number not above the latest one starts the numbering again
    (a session reset): what was kept goes.  Each number leaves once, in
    O(1) amortised, where letting go of a dict's oldest key walks past
    every slot the earlier deletions left."""

    __slots__ = ("_items", "_last", "_low", "span")

    def __init__(self, span: int) -> None:
        if span < 1:
            raise ValueError("a SeqWindow spans at least one number")
        self.span = span
        self._items: dict[int, V] = {}
        self._low = 0
        """Numbers below this one are gone."""
        self._last = 0

    def put(self, seq: int, value: V) -> None:
        items = self._items
        if seq <= self._last:
            items.clear()
            self._low = 0
        self._last = seq
        items[seq] = value
        floor = seq - self.span + 1
        low = self._low
        if floor - low > len(items):
            # a long stretch without a put: fewer kept than numbers to pass
            for old in [k for k in items if k < floor]:
                del items[old]
            low = floor
        while low < floor:
            items.pop(low, None)
            low += 1
        self._low = low

    def pop(self, seq: int) -> V | None:
        return self._items.pop(seq, None)

    def clear(self) -> None:
        self._items.clear()
        self._low = self._last = 0

    def __len__(self) -> int:
        return len(self._items)
