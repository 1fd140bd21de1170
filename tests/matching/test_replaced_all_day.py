"""An order replaced all day: what it is known by, kept and journaled, stays
bounded, and the ClOrdIDs a client may still name keep answering."""

from __future__ import annotations

import msgspec
from matching_helpers import BUY, cancel, limit, matcher, replace

from gateway.orderflow.journal_entries import OrderState
from matcher.engine import MAX_ALIASES

_encode = msgspec.msgpack.Encoder().encode


def test_an_order_replaced_all_day_keeps_its_latest_and_first_ids_and_no_more() -> None:
    m = matcher()
    m.submit(limit("c1", "A0", BUY, 10, 100), None)
    sizes: dict[int, int] = {}
    for n in range(1, 2001):
        result = m.replace(replace("c1", f"A{n}", f"A{n - 1}", 10 + n % 2, 100))
        assert not result.cancel_rejects, n
        if n in (1100, 2000):  # ClOrdIDs of one length
            order = m.order_of("c1", f"A{n}")
            assert order is not None
            assert len(order.aliases) == MAX_ALIASES
            assert len(set(order.aliases)) == MAX_ALIASES  # each once
            sizes[n] = len(_encode(OrderState(order)))
    # the state journaled at each change stays as it was 900 replaces before
    assert sizes[2000] == sizes[1100], sizes
    # known by its own, its latest ClOrdIDs and its first; older ones are forgotten
    first = m.status("c1", "A0")
    assert first is not None
    for known in ("A2000", "A1999", f"A{2000 - MAX_ALIASES + 1}"):
        status = m.status("c1", known)
        assert status is not None, known
        assert status.order_id == first.order_id, known
    assert m.status("c1", "A1000") is None
    assert len(m._by_cl_ord_id["c1"]) == MAX_ALIASES + 1  # its aliases hold its own


def test_an_order_restored_from_its_state_is_known_by_the_same_ids() -> None:
    m = matcher()
    m.submit(limit("c1", "A0", BUY, 10, 100), None)
    for n in range(1, 201):
        m.replace(replace("c1", f"A{n}", f"A{n - 1}", 10 + n % 2, 100))
    order = m.order_of("c1", "A200")
    assert order is not None
    state = msgspec.msgpack.decode(_encode(OrderState(order)), type=OrderState)
    again = matcher()
    again.restore([state.order])
    for known in ("A200", "A199", f"A{200 - MAX_ALIASES + 1}", "A0"):
        assert again.status("c1", known) is not None, known
    assert again.status("c1", "A100") is None


def test_orders_restored_past_retain_finished_are_let_go_at_once() -> None:
    """A journal holding more final orders than are kept (the bound
    lowered): those past it are forgotten by the restore itself, not held
    until the first order of the day."""
    m = matcher()
    for n in range(5):
        m.submit(limit("c1", f"F{n}", BUY, 10, 100), None)
        m.cancel(cancel("c1", f"X{n}", f"F{n}"))
    finals = list(m.orders())
    again = matcher()
    again.retain_finished = 2
    again.restore(finals)
    assert again._evicted == {}
    assert again.status("c1", "X0") is None
    assert again.status("c1", "X4") is not None
