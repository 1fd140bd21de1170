"""Quotes from the simulated LP: on connect, on the timer, and their shape."""

from __future__ import annotations

import itertools

import pytest
from lp_test_kit import INSTRUMENTS, EventQueue, MakeLp

from lp_adapters.simulated.adapter import MarketModel
from router.model import LpStatus, Quote


def assert_well_formed(quote: Quote, *, spread: int, depth: int, qty: int, step: int) -> None:
    bids, asks = quote.bids, quote.asks
    assert len(bids) == depth
    assert len(asks) == depth
    assert bids[0].price < asks[0].price
    assert asks[0].price - bids[0].price == spread
    for better, worse in itertools.pairwise(bids):
        assert better.price - worse.price == step
    for better, worse in itertools.pairwise(asks):
        assert worse.price - better.price == step
    assert all(level.qty == qty for level in bids + asks)


@pytest.mark.asyncio
async def test_connect_emits_status_then_one_quote_per_symbol(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, symbols=["XAU/USD", "EUR/USD"])
    assert not lp.up
    await lp.connect()
    assert lp.up
    seen = events.drain()
    assert seen[0] == LpStatus("lp-a", True, "connected")
    assert [(q.lp, q.symbol) for q in seen[1:] if isinstance(q, Quote)] == [
        ("lp-a", "XAU/USD"),
        ("lp-a", "EUR/USD"),
    ]
    assert len(seen) == 3
    await lp.connect()  # already up: nothing happens
    assert events.empty()


@pytest.mark.asyncio
async def test_quotes_stream_on_the_timer_and_the_own_market_moves(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events, symbols=["EUR/USD"], quote_interval_ms=1, walk_ticks=3)
    await lp.connect()
    await events.next_of(Quote)  # the one published on connect
    for _ in range(5):
        quote = await events.next_of(Quote)
        assert quote.symbol == "EUR/USD"
    assert lp.market.steps >= 5


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spread", "depth", "qty", "step"),
    [(1, 1, 1, 1), (2, 5, 10, 1), (3, 4, 25, 2), (7, 10, 100, 5)],
)
async def test_quotes_are_well_formed(
    make_lp: MakeLp, spread: int, depth: int, qty: int, step: int
) -> None:
    events = EventQueue()
    lp = make_lp(
        sink=events,
        seed=spread * 100 + depth,
        walk_ticks=4,
        spread_ticks=spread,
        depth_levels=depth,
        level_qty_lots=qty,
        level_step_ticks=step,
    )
    await lp.connect()
    events.drain()
    for _ in range(100):
        lp.market.step()
        lp.publish_quotes()
        quotes = events.drain()
        assert [q.symbol for q in quotes if isinstance(q, Quote)] == list(lp.symbols)
        for quote in quotes:
            assert isinstance(quote, Quote)
            assert_well_formed(quote, spread=spread, depth=depth, qty=qty, step=step)
            mid = lp.market.mid(quote.symbol)
            assert quote.bids[0].price <= mid < quote.asks[0].price


@pytest.mark.asyncio
async def test_lps_sharing_a_market_move_together(make_lp: MakeLp) -> None:
    market = MarketModel(
        {"EUR/USD": INSTRUMENTS["EUR/USD"]},
        seed=3,
        start_mids={"EUR/USD": "1.08500"},
        walk_ticks=5,
    )
    tight_events, wide_events = EventQueue(), EventQueue()
    tight = make_lp("tight", tight_events, market=market, symbols=["EUR/USD"], spread_ticks=2)
    wide = make_lp("wide", wide_events, market=market, symbols=["EUR/USD"], spread_ticks=6)
    await tight.connect()
    await wide.connect()
    tight_events.drain()
    wide_events.drain()
    for _ in range(50):
        market.step()
        tight.publish_quotes()
        wide.publish_quotes()
        t = await tight_events.next_of(Quote)
        w = await wide_events.next_of(Quote)
        mid = market.mid("EUR/USD")
        assert (t.bids[0].price, t.asks[0].price) == (mid - 1, mid + 1)
        assert (w.bids[0].price, w.asks[0].price) == (mid - 3, mid + 3)


@pytest.mark.asyncio
async def test_a_shared_market_is_stepped_only_by_the_lp_told_to(make_lp: MakeLp) -> None:
    market = MarketModel({"EUR/USD": INSTRUMENTS["EUR/USD"]}, seed=1)
    follower_events = EventQueue()
    follower = make_lp("follower", follower_events, market=market, quote_interval_ms=1)
    await follower.connect()
    for _ in range(3):
        await follower_events.next_of(Quote)
    assert market.steps == 0

    driver_events = EventQueue()
    driver = make_lp("driver", driver_events, market=market, quote_interval_ms=1, steps_market=True)
    await driver.connect()
    for _ in range(4):
        await driver_events.next_of(Quote)
    assert market.steps >= 3


@pytest.mark.asyncio
async def test_levels_that_would_not_be_positive_are_left_out(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(
        sink=events,
        symbols=["EUR/USD"],
        start_mid={"EUR/USD": "0.00003"},
        walk_ticks=0,
        spread_ticks=2,
        depth_levels=5,
    )
    await lp.connect()
    quote = await events.next_of(Quote)
    assert [level.price for level in quote.bids] == [2, 1]
    assert [level.price for level in quote.asks] == [4, 5, 6, 7, 8]


@pytest.mark.asyncio
async def test_no_quotes_while_down(make_lp: MakeLp) -> None:
    events = EventQueue()
    lp = make_lp(sink=events)
    lp.publish_quotes()
    assert events.empty()
