"""A client's ClOrdID index: a dict's behaviour, without one dict that has
to be rebuilt whole.

A dict keeping a bounded number of ids under churn is rebuilt by CPython
when its slots run out; at 100,000 ids that held the loop 4-5 ms every few
tens of seconds at 3,000 orders/s.  Past ``SPLIT_AT`` ids the index spreads
them over ``SHARDS`` dicts, so no table it holds grows much past a 64th of
the ids.
"""

from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matching_helpers import BUY, INSTRUMENTS, SELL, book, cancel, limit, market

from matcher.engine import Matcher
from matcher.ids import SHARDS, SPLIT_AT, IdIndex
from matcher.orders import ExecType, OrdRejReason
from router.model import TimeInForce

LPS = book(bids=((100, 50),), asks=((110, 50),))


def _order(n: int):  # an Order to name: any final one the matcher made
    m = Matcher(INSTRUMENTS, id_prefix=f"P{n}")
    m.submit(market("c", f"o{n}", BUY, 1), LPS)
    order = m.status("c", f"o{n}")
    assert order is not None
    return order


ORDERS = [_order(n) for n in range(4)]


def _check_against(index: IdIndex, model: dict[str, object], probes: list[str]) -> None:
    assert len(index) == len(model)
    assert index.is_empty() == (not model)
    for key in probes:
        assert index.get(key) is model.get(key)
    merged: dict[str, object] = {}
    for held in index.dicts():
        assert not merged.keys() & held.keys()  # each id in one dict only
        merged.update(held)
    assert merged == model


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_answers_as_a_dict_across_the_split(seed: int) -> None:
    rng = random.Random(seed)
    index, model = IdIndex(), {}
    keys = [f"id-{n}" for n in range(3 * SPLIT_AT)]
    for step in range(6 * SPLIT_AT):
        key = rng.choice(keys)
        order = rng.choice(ORDERS)
        draw = rng.random()
        if draw < 0.35:
            index.put(key, order)
            model[key] = order
        elif draw < 0.7:
            assert index.add(key, order) == (key not in model)
            model.setdefault(key, order)
        else:
            index.discard(key, order)
            if model.get(key) is order:
                del model[key]
        if step % 997 == 0:
            _check_against(index, model, rng.sample(keys, 50))
    _check_against(index, model, keys)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, len(ORDERS) - 1)),
        max_size=200,
    )
)
def test_small_indexes_answer_as_a_dict(ops: list[tuple[int, int, int]]) -> None:
    index, model = IdIndex(), {}
    for op, n, which in ops:
        key, order = f"k{n}", ORDERS[which]
        if op == 0:
            index.put(key, order)
            model[key] = order
        elif op == 1:
            assert index.add(key, order) == (key not in model)
            model.setdefault(key, order)
        else:
            index.discard(key, order)
            if model.get(key) is order:
                del model[key]
    _check_against(index, model, [f"k{n}" for n in range(41)])


def test_discard_leaves_an_id_that_names_another_order() -> None:
    index = IdIndex()
    for n in range(SPLIT_AT + 10):
        index.put(f"x{n}", ORDERS[0])
    index.put("x5", ORDERS[1])
    index.discard("x5", ORDERS[0])
    assert index.get("x5") is ORDERS[1]
    index.discard("x5", ORDERS[1])
    assert index.get("x5") is None
    index.discard("never", ORDERS[0])
    assert len(index) == SPLIT_AT + 9


def test_no_table_of_a_busy_client_holds_more_than_a_share_of_its_ids() -> None:
    """The matcher keeps 20,000 final orders of one client while 30,000 come
    and go (IOCs that cannot trade): each dict the ids live in holds a small share of them."""
    retained = 20_000
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=retained)
    for i in range(30_000):
        m.submit(limit("busy", f"m{i}", SELL, 1, 200, TimeInForce.IOC), LPS)  # canceled at once
    index = m.ids_of("busy")
    assert index is not None
    assert len(index) == retained
    largest = max(len(held) for held in index.dicts())
    assert largest < 2 * retained // SHARDS
    # and the ids still answer: the newest kept, the oldest forgotten
    assert m.status("busy", "m29999") is not None
    assert m.status("busy", f"m{30_000 - retained}") is not None
    assert m.status("busy", f"m{30_000 - retained - 1}") is None
    dup = m.submit(limit("busy", "m29999", SELL, 1, 200, TimeInForce.IOC), LPS)
    assert [e.exec_type for e in dup.executions] == [ExecType.REJECTED]
    assert dup.executions[0].ord_rej_reason is OrdRejReason.DUPLICATE_ORDER
    again = m.submit(market("busy", "m0", BUY, 1), LPS)  # forgotten: may be used again
    assert again.executions[0].exec_type is ExecType.NEW


def test_the_shards_stay_out_of_the_collector_s_young_generations() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T", retain_finished=SPLIT_AT * 2)
    for i in range(SPLIT_AT * 3):
        m.submit(limit("c", "".join(("l", str(i))), BUY, 1, 90), LPS)
        m.cancel(cancel("c", "".join(("x", str(i))), "".join(("l", str(i)))))
    gc.collect()
    for i in range(SPLIT_AT * 3, SPLIT_AT * 3 + 500):
        m.submit(limit("c", "".join(("l", str(i))), BUY, 1, 90), LPS)
    young = gc.get_objects(generation=0) + gc.get_objects(generation=1)
    index = m.ids_of("c")
    assert index is not None
    held = {id(d) for d in index.dicts()}
    assert not any(id(obj) in held for obj in young)


def test_a_day_end_lets_go_of_a_split_index_a_slice_at_a_time() -> None:
    m = Matcher(INSTRUMENTS, id_prefix="T")
    for i in range(SPLIT_AT + 100):
        m.submit(limit("c", f"m{i}", SELL, 1, 200, TimeInForce.IOC), LPS)
    m.submit(limit("c", "open", BUY, 1, 90, TimeInForce.GTC), LPS)
    m.expire_day()
    assert m.status("c", "m7") is None
    assert m.status("c", "open") is not None
    slices = 0
    while m.release_forgotten(500):
        slices += 1
        assert m.status("c", "open") is not None
    assert slices >= (SPLIT_AT + 100) // 500
    again = m.submit(market("c", "m7", BUY, 1), LPS)
    assert again.executions[0].exec_type is ExecType.NEW
