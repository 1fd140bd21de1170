"""Child orders at the simulated LP: fills, partial fills, rejects, cancels."""

from __future__ import annotations

import random

import pytest
from lp_test_kit import EventQueue, MakeLp, child, is_terminal

from router.model import (
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildReject,
    LpEvent,
    Quote,
    Side,
)

# EUR/USD starts at 1.10000 = 110000 ticks; with spread 2, depth 3, step 1 and
# 10 lots a level the book is bids 109999/109998/109997, asks 110001/110002/110003.
BOOK = {
    "symbols": ["EUR/USD"],
    "start_mid": {"EUR/USD": "1.10000"},
    "walk_ticks": 0,
    "spread_ticks": 2,
    "depth_levels": 3,
    "level_qty_lots": 10,
}


def fills(events: list[LpEvent]) -> list[tuple[int, int, int]]:
    return [(e.qty, e.price, e.leaves) for e in events if isinstance(e, ChildFill)]


def check_child_totals(events: list[LpEvent], qty: int) -> None:
    """One terminal event, last; fills plus canceled lots equal the child's quantity."""
    assert [is_terminal(e) for e in events].count(True) == 1
    assert is_terminal(events[-1])
    filled = 0
    for event in events:
        if isinstance(event, ChildFill):
            filled += event.qty
            assert event.leaves == qty - filled
    last = events[-1]
    canceled = last.canceled_qty if isinstance(last, ChildCanceled) else 0
    if isinstance(last, ChildReject):
        assert filled == 0
    assert filled + canceled == qty


@pytest.mark.asyncio
async def test_a_child_walks_the_book_level_by_level(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, **BOOK)
    await lp.connect()

    lp.send(child("c1", Side.BUY, 25, 110003))
    c1 = await events.child_events("c1")
    assert c1[0] == ChildAck("c1", "lp-a-1")
    assert fills(c1) == [(10, 110001, 15), (10, 110002, 5), (5, 110003, 0)]

    lp.send(child("c2", Side.SELL, 12, 109997))
    c2 = await events.child_events("c2")
    assert fills(c2) == [(10, 109999, 2), (2, 109998, 0)]

    exec_ids = [e.exec_id for e in c1 + c2 if isinstance(e, ChildFill)]
    assert len(set(exec_ids)) == len(exec_ids) == 5


@pytest.mark.asyncio
async def test_the_remainder_beyond_the_limit_is_canceled(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, **BOOK)
    await lp.connect()

    lp.send(child("c1", Side.BUY, 40, 110002))
    c1 = await events.child_events("c1")
    assert fills(c1) == [(10, 110001, 30), (10, 110002, 20)]
    assert c1[-1] == ChildCanceled("c1", 20, "ioc remainder")

    # Bigger than the whole book, limit far away: all depth, then the rest canceled.
    lp.send(child("c2", Side.SELL, 100, 1))
    c2 = await events.child_events("c2")
    assert fills(c2) == [(10, 109999, 90), (10, 109998, 80), (10, 109997, 70)]
    assert c2[-1] == ChildCanceled("c2", 70, "ioc remainder")


@pytest.mark.asyncio
async def test_a_limit_the_book_does_not_reach_is_canceled_whole(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, **BOOK)
    await lp.connect()
    lp.send(child("c1", Side.BUY, 5, 110000))
    assert await events.child_events("c1") == [
        ChildAck("c1", "lp-a-1"),
        ChildCanceled("c1", 5, "price moved"),
    ]


@pytest.mark.asyncio
async def test_a_move_during_the_latency_is_seen_at_fill_time(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, latency_ms=20, **BOOK)
    await lp.connect()
    quote = await events.next_of(Quote)
    lp.send(child("up", Side.BUY, 5, quote.asks[0].price))
    lp.send(child("down", Side.SELL, 5, quote.bids[0].price))
    lp.market.set_mid("EUR/USD", 110010)
    up = await events.child_events("up")
    down = await events.child_events("down")
    assert up[-1] == ChildCanceled("up", 5, "price moved")
    # The sell limit is now far below the bid: filled at the LP's better price.
    assert fills(down) == [(5, 110009, 0)]


@pytest.mark.asyncio
async def test_fills_are_never_worse_than_the_limit_and_totals_add_up(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(
        sink=events,
        seed=11,
        walk_ticks=3,
        depth_levels=5,
        level_qty_lots=10,
        level_step_ticks=2,
        partial_fill_probability=0.3,
    )
    await lp.connect()
    script = random.Random(99)
    outcomes: set[str] = set()
    exec_ids: list[str] = []
    for n in range(300):
        lp.market.step()
        symbol = script.choice(lp.symbols)
        book = lp.quote(symbol)
        side = script.choice([Side.BUY, Side.SELL])
        touch = book.asks[0].price if side is Side.BUY else book.bids[0].price
        limit = touch + side.sign * script.randint(-4, 12)
        qty = script.randint(1, 70)
        child_id = f"c{n}"
        lp.send(child(child_id, side, qty, limit, symbol=symbol))
        got = await events.child_events(child_id)

        assert isinstance(got[0], ChildAck)
        check_child_totals(got, qty)
        book_prices = {lv.price for lv in (book.asks if side is Side.BUY else book.bids)}
        for fill in got:
            if isinstance(fill, ChildFill):
                assert fill.price in book_prices
                if side is Side.BUY:
                    assert fill.price <= limit
                else:
                    assert fill.price >= limit
                exec_ids.append(fill.exec_id)
        last = got[-1]
        outcomes.add(last.reason if isinstance(last, ChildCanceled) else "filled")
    assert len(set(exec_ids)) == len(exec_ids)
    assert outcomes == {"filled", "ioc remainder", "price moved"}


@pytest.mark.asyncio
async def test_partial_fill_probability_one_fills_part_of_the_top_level(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, partial_fill_probability=1.0, **BOOK)
    await lp.connect()
    for n, qty in enumerate([1, 2, 7, 10, 30]):
        child_id = f"c{n}"
        lp.send(child(child_id, Side.BUY, qty, 110003))
        got = await events.child_events(child_id)
        check_child_totals(got, qty)
        [(filled, price, leaves)] = fills(got)
        assert price == 110001
        top = min(qty, 10)  # what the top level would give in full
        if top == 1:
            assert filled == 1
        else:
            assert 1 <= filled < top
        if leaves:
            assert got[-1] == ChildCanceled(child_id, leaves, "ioc remainder")


@pytest.mark.asyncio
async def test_reject_probability_one_rejects_everything(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, reject_probability=1.0, partial_fill_probability=0.5)
    await lp.connect()
    for n in range(50):
        lp.send(child(f"c{n}", Side.BUY if n % 2 else Side.SELL, 1 + n, 10**9 if n % 2 else 1))
    for n in range(50):
        assert await events.child_events(f"c{n}") == [ChildReject(f"c{n}", "last look")]
    assert not [e for e in events.drain() if not isinstance(e, Quote)]


@pytest.mark.asyncio
async def test_send_never_answers_before_it_returns(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, **BOOK)
    await lp.connect()
    events.drain()
    lp.send(child("c1", Side.BUY, 1, 110001))
    assert events.empty()
    assert lp.open_child_ids == ("c1",)
    assert fills(await events.child_events("c1")) == [(1, 110001, 0)]
    assert lp.open_child_ids == ()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (child("c1", Side.BUY, 1, 110001, symbol="GBP/USD"), "symbol 'GBP/USD' not quoted"),
        (child("c1", Side.BUY, 1, 200000, symbol="XAU/USD"), "symbol 'XAU/USD' not quoted"),
        (child("c1", Side.BUY, 1, 110001, lp="lp-b"), "child for LP 'lp-b' sent to LP 'lp-a'"),
        (child("c1", Side.BUY, 0, 110001), "invalid quantity 0"),
        (child("c1", Side.SELL, 1, 0), "invalid price 0"),
    ],
)
async def test_orders_the_lp_cannot_take_are_rejected(
    make_lp: MakeLp, order: object, reason: str
) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, **BOOK)
    await lp.connect()
    events.drain()
    lp.send(order)  # type: ignore[arg-type]
    assert events.empty()
    assert await events.next() == ChildReject("c1", reason)
    assert lp.open_child_ids == ()


@pytest.mark.asyncio
async def test_an_open_child_id_cannot_be_sent_twice(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, latency_ms=60_000, **BOOK)
    await lp.connect()
    lp.send(child("c1", Side.BUY, 1, 110001))
    with pytest.raises(ValueError, match="'c1' is already open"):
        lp.send(child("c1", Side.BUY, 1, 110001))


@pytest.mark.asyncio
async def test_cancel_ends_an_unanswered_child(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, latency_ms=60_000, **BOOK)
    await lp.connect()
    events.drain()
    lp.send(child("c1", Side.BUY, 8, 110001))
    lp.cancel("c1")
    lp.cancel("c1")  # already finished: ignored
    lp.cancel("nope")  # unknown: ignored
    assert lp.open_child_ids == ()
    assert events.empty()
    assert await events.next() == ChildCanceled("c1", 8, "canceled")
    # The id is free again once the child is finished.
    lp.send(child("c1", Side.BUY, 8, 110001))
    assert lp.open_child_ids == ("c1",)


@pytest.mark.asyncio
async def test_latency_orders_the_answers(make_lp: MakeLp) -> None:
    events = EventQueue()
    slow = make_lp("slow", events, latency_ms=50, **BOOK)
    fast = make_lp("fast", events, latency_ms=0, **BOOK)
    await slow.connect()
    await fast.connect()
    events.drain()
    slow.send(child("s1", Side.BUY, 5, 110001, lp="slow"))
    fast.send(child("f1", Side.BUY, 5, 110001, lp="fast"))
    answers = [await events.next() for _ in range(4)]
    assert [(type(e).__name__, getattr(e, "child_id", None)) for e in answers] == [
        ("ChildAck", "f1"),
        ("ChildFill", "f1"),
        ("ChildAck", "s1"),
        ("ChildFill", "s1"),
    ]
