"""The final orders a matcher keeps (matcher.engine.Retained): oldest first,
the oldest forgotten one at a time, and a view taken at any moment that
stays what it was while orders are added and forgotten after it (what a
checkpoint written over many loop turns reads)."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matching_helpers import BUY, INSTRUMENTS, IOC, book, limit

import matcher.engine as engine
from matcher.engine import Matcher, Retained
from matcher.orders import Order, OrdStatus, OrdType, Side, TimeInForce


def order(n: int) -> Order:
    return Order(
        f"O{n}",
        "C1",
        f"K{n}",
        None,
        "EUR/USD",
        Side.BUY,
        OrdType.MARKET,
        TimeInForce.IOC,
        1000,
        None,
        n,
        OrdStatus.FILLED,
    )


# append n orders, forget n, take a view
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 700)),
        st.tuples(st.just("popleft"), st.integers(1, 700)),
        st.tuples(st.just("view"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(_OPS)
def test_it_keeps_what_a_queue_keeps_and_views_do_not_move(ops: list[tuple[str, int]]) -> None:
    kept = Retained()
    model: deque[Order] = deque()
    views: list[tuple[object, list[Order]]] = []
    made = 0
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                made += 1
                o = order(made)
                kept.append(o)
                model.append(o)
        elif op == "popleft":
            for _ in range(min(n, len(model))):
                assert kept.popleft() is model.popleft()
        else:
            views.append((kept.view(), list(model)))
        assert len(kept) == len(model)
    assert list(kept) == list(model)
    for view, then in views:
        assert list(view) == then  # read after everything that came later


def test_forgetting_from_an_empty_one_is_an_error() -> None:
    kept = Retained()
    with pytest.raises(IndexError):
        kept.popleft()
    kept.append(order(1))
    kept.popleft()
    with pytest.raises(IndexError):
        kept.popleft()


def test_a_view_costs_a_reference_per_chunk() -> None:
    kept = Retained()
    for n in range(10 * engine._CHUNK + 5):
        kept.append(order(n))
    assert len(kept._chunks) == 11
    for _ in range(engine._CHUNK + 3):  # the first chunk let go of whole
        kept.popleft()
    assert len(kept._chunks) == 10
    assert next(kept.view()).seq == engine._CHUNK + 3


def test_let_go_of_in_whole_chunks_a_view_keeps_its_own() -> None:
    kept = Retained()
    for n in range(3 * engine._CHUNK):
        kept.append(order(n))
    view = kept.view()
    assert kept.release(10) == engine._CHUNK  # the newest chunk
    assert len(kept) == 2 * engine._CHUNK
    assert kept.release(10 * engine._CHUNK) == 2 * engine._CHUNK
    assert len(kept) == 0
    assert [o.seq for o in view] == list(range(3 * engine._CHUNK))


def test_what_was_forgotten_is_not_counted_again_when_let_go_of() -> None:
    kept = Retained()
    for n in range(engine._CHUNK + 15):
        kept.append(order(n))
    for _ in range(engine._CHUNK + 5):
        kept.popleft()
    assert len(kept) == 10
    assert kept.release(1) == 10
    assert len(kept) == 0
    assert list(kept) == []
    kept.append(order(1))
    for _ in range(3):
        kept.append(order(2))
    kept.popleft()
    assert kept.release(1) == 3


def test_the_checkpoints_view_of_a_matcher_holds_the_final_orders_at_its_start() -> None:
    lps = book(bids=((100, 10_000),), asks=((110, 10_000),))
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=1500)

    def ended_at_once(n: int) -> None:  # an IOC that cannot trade: canceled, final
        m.submit(limit("c1", f"i{n}", BUY, 1, 90, IOC), lps)

    for n in range(2000):
        ended_at_once(n)
    before = list(m.finished_view())
    assert len(before) == 1500
    view = m.finished_view()
    for n in range(2000, 2600):  # more end meanwhile; the oldest are forgotten
        ended_at_once(n)
    assert m.status("c1", "i500") is None
    assert list(view) == before
    assert [o.cl_ord_id for o in m.finished_view()][-1] == "i2599"
