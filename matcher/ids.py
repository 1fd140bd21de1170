"""One client's ClOrdIDs and the orders they name, kept so that no single
change to them holds the event loop.

A dict that keeps a bounded number of ids while the oldest are forgotten and
new ones come in (the matcher keeps 100,000 final orders a client) must be
rebuilt whole from time to time: a deleted entry's slot is only reclaimed
by a rebuild, and CPython rebuilds when the slots run out.  Rebuilding
100,000 entries takes 4-5 ms on the loop (the new table's memory is faulted
in, then every key is placed again), once every few tens of seconds at
3,000 orders/s.  Past :data:`SPLIT_AT` ids, an :class:`IdIndex` keeps them
in :data:`SHARDS` dicts chosen by the id's hash, so that each rebuild is of
one shard: a 64th of the ids.
"""

from __future__ import annotations

from typing import Final

from matcher.orders import Order

SHARDS: Final = 64
"""Dicts the ids are spread over once there are many."""

SPLIT_AT: Final = 1024
"""Ids held in one dict before they are spread over :data:`SHARDS`.  The
spreading places each of them once, on the loop (64 tables made and grown):
0.6-0.8 ms compiled for 4,096 ids, about a quarter of that for 1,024."""

_MASK: Final = SHARDS - 1


class IdIndex:
    """ClOrdID -> order, for one client.  Its dicts hold only strings and
    orders (which the cyclic collector does not track), so they stay out of
    the collector's generations."""

    __slots__ = ("_one", "_shards")

    def __init__(self) -> None:
        self._one: dict[str, Order] | None = {}
        self._shards: list[dict[str, Order]] = []

    def get(self, cl_ord_id: str) -> Order | None:
        one = self._one
        if one is not None:
            return one.get(cl_ord_id)
        return self._shards[hash(cl_ord_id) & _MASK].get(cl_ord_id)

    def put(self, cl_ord_id: str, order: Order) -> None:
        one = self._one
        if one is None:
            self._shards[hash(cl_ord_id) & _MASK][cl_ord_id] = order
            return
        one[cl_ord_id] = order
        if len(one) >= SPLIT_AT:
            self._split(one)

    def add(self, cl_ord_id: str, order: Order) -> bool:
        """Name ``order`` by ``cl_ord_id`` unless the id is taken (False)."""
        one = self._one
        held = one if one is not None else self._shards[hash(cl_ord_id) & _MASK]
        size = len(held)
        held.setdefault(cl_ord_id, order)  # one lookup, where `in` and a store take two
        if len(held) == size:
            return False
        if one is not None and size + 1 >= SPLIT_AT:
            self._split(one)
        return True

    def discard(self, cl_ord_id: str, order: Order) -> None:
        """Forget ``cl_ord_id`` if it still names ``order``."""
        one = self._one
        held = one if one is not None else self._shards[hash(cl_ord_id) & _MASK]
        if held.get(cl_ord_id) is order:
            del held[cl_ord_id]

    def __len__(self) -> int:
        one = self._one
        if one is not None:
            return len(one)
        return sum(len(shard) for shard in self._shards)

    def is_empty(self) -> bool:
        one = self._one
        if one is not None:
            return not one
        return all(not shard for shard in self._shards)

    def dicts(self) -> list[dict[str, Order]]:
        """The dicts the ids are held in (for letting go of them a slice at
        a time)."""
        one = self._one
        return [one] if one is not None else list(self._shards)

    def _split(self, one: dict[str, Order]) -> None:
        shards: list[dict[str, Order]] = [{} for _ in range(SHARDS)]
        for cl_ord_id, order in one.items():
            shards[hash(cl_ord_id) & _MASK][cl_ord_id] = order
        self._shards = shards
        self._one = None
