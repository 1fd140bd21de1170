"""The orders a matcher retains stay out of the cyclic collector's way.

Up to ``retain_finished`` final orders are kept for status requests and
duplicate checks.  A container the collector tracks is walked on every
collection of its generation; one that holds 100,000 orders costs
milliseconds each time, a pause every order behind it waits for.  The
ClOrdID index therefore holds only objects the collector does not track, so
that it is itself untracked once a full collection has looked at it, and
inserting into it does not bring it back.
"""

from __future__ import annotations

import gc

from matching_helpers import BUY, INSTRUMENTS, SELL, book, cancel, limit, market

from matcher.engine import Matcher
from matcher.orders import Order

LPS = book(bids=((100, 50),), asks=((110, 50),))


def _young_holders_of_orders() -> list[int]:
    """How many objects each young tracked container refers to, for those
    that hold orders."""
    young = gc.get_objects(generation=0) + gc.get_objects(generation=1)
    sizes = []
    for obj in young:
        referents = gc.get_referents(obj)
        if any(isinstance(r, Order) for r in referents):
            sizes.append(len(referents))
    return sizes


def test_the_clordid_index_stays_untracked_as_orders_come_and_go() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=50)
    for i in range(100):
        client = f"c{i % 3}"
        m.submit(market(client, f"m{i}", BUY if i % 2 else SELL, 1), LPS)
        m.submit(limit(client, f"l{i}", BUY, 1, 90), LPS)
        m.cancel(cancel(client, f"x{i}", f"l{i}"))
    gc.collect()
    # orders made of freshly built strings, as decoded from the wire
    for i in range(100, 200):
        client = "".join(("c", str(i % 3)))
        m.submit(limit(client, "".join(("l", str(i))), BUY, 1, 90), LPS)
        m.cancel(cancel(client, "".join(("x", str(i))), "".join(("l", str(i)))))
    assert max(_young_holders_of_orders(), default=0) < 10
    assert m.status("c1", "l199") is not None
    assert m.status("c1", "l100") is None  # beyond retain_finished: forgotten
