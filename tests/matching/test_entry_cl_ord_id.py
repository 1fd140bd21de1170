"""The ClOrdID an order was entered with: kept through its replaces, handed
to the router (which chooses the order's policy by it) and journaled."""

from __future__ import annotations

import msgspec
from matching_helpers import BUY, DAY, SYMBOL, book, matcher

from matcher.engine import NewOrder, ReplaceOrder
from matcher.orders import Order
from router.model import OrdType


def test_the_entry_clordid_outlives_replaces_and_the_journal() -> None:
    m = matcher()
    entered = m.submit(NewOrder("C1", "E1", SYMBOL, BUY, OrdType.LIMIT, DAY, 2, 100), None)
    order_id = entered.executions[0].order_id
    m.replace(ReplaceOrder("C1", "E2", "E1", 3, 101))
    m.replace(ReplaceOrder("C1", "E3", "E2", 3, 101))
    order = m.order_of("C1", "E3")
    assert order is not None
    assert (order.cl_ord_id, order.entry_cl_ord_id) == ("E3", "E1")
    (need,) = m.on_market(SYMBOL, book(asks=((100, 5),))).routes
    assert (need.order_id, need.cl_ord_id, need.entry_cl_ord_id) == (order_id, "E3", "E1")
    journaled = msgspec.msgpack.decode(msgspec.msgpack.encode(order), type=Order)
    assert journaled.entry_cl_ord_id == "E1"


def test_an_order_journaled_before_the_entry_clordid_was_kept_is_keyed_by_its_own() -> None:
    m = matcher()
    m.submit(NewOrder("C1", "E1", SYMBOL, BUY, OrdType.LIMIT, DAY, 2, 100), None)
    m.replace(ReplaceOrder("C1", "E2", "E1", 3, 101))
    order = m.order_of("C1", "E2")
    # the array the version before wrote: the same without the fields added
    # since (this one, and the house's flag after it)
    fields = msgspec.msgpack.decode(msgspec.msgpack.encode(order))
    assert fields[-2:] == ["E1", False]
    older = msgspec.msgpack.decode(msgspec.msgpack.encode(fields[:-2]), type=Order)
    assert (older.first_cl_ord_id, older.entry_cl_ord_id) == (None, "E2")


def test_an_order_never_renamed_journals_no_second_clordid() -> None:
    m = matcher()
    m.submit(NewOrder("C1", "E1", SYMBOL, BUY, OrdType.LIMIT, DAY, 2, 100), None)
    order = m.order_of("C1", "E1")
    assert order is not None
    assert (order.first_cl_ord_id, order.entry_cl_ord_id) == (None, "E1")
