"""Quotes and the client book: a quote makes resting limit orders that it
crosses marketable, and a symbol with nothing resting costs no merged book
per quote (it is built when an order or a market-data refresh asks)."""

from __future__ import annotations

import time

import msgspec
import pytest
from test_lp_fault_properties import SYMBOL, Harness, PlaceOrder, ScriptedLp

from router.model import Level, Side

# ORDER_KINDS[4]: a DAY limit; offset -1: one tick short of the best LP price
_RESTING_BUY = PlaceOrder(client=0, side=Side.BUY, lots=2, kind=4, offset=-1)
_RESTING_SELL = PlaceOrder(client=1, side=Side.SELL, lots=2, kind=4, offset=-1)


@pytest.mark.asyncio
async def test_a_quote_that_reaches_a_resting_limit_routes_it(flow_harness: Harness) -> None:
    harness = flow_harness
    flow = harness.flow
    await harness.run(_RESTING_BUY)
    harness.sync()
    assert harness.kids == {}  # it rests: nothing sent
    assert flow.matcher.rests(SYMBOL)
    lp = harness.lps["LP_A"]
    assert isinstance(lp, ScriptedLp)
    lp.ask -= 1  # LP_A now offers at the order's limit
    lp.publish()
    harness.sync()
    (kid,) = harness.kids.values()
    assert (kid.child.lp, kid.child.price) == ("LP_A", lp.ask)


@pytest.mark.asyncio
async def test_a_quote_that_reaches_a_resting_sell_routes_it(flow_harness: Harness) -> None:
    harness = flow_harness
    await harness.run(_RESTING_SELL)
    harness.sync()
    assert harness.kids == {}
    assert harness.flow.matcher.rests(SYMBOL)
    lp = harness.lps["LP_C"]  # the best bid
    assert isinstance(lp, ScriptedLp)
    lp.bid += 1  # now bids the order's limit
    lp.publish()
    harness.sync()
    (kid,) = harness.kids.values()
    assert (kid.child.lp, kid.child.price) == ("LP_C", lp.bid)


@pytest.mark.asyncio
async def test_quotes_with_nothing_resting_build_no_merged_book(flow_harness: Harness) -> None:
    harness = flow_harness
    flow = harness.flow
    assert not flow.matcher.rests(SYMBOL)
    book = flow.book
    before = book.snapshot(SYMBOL)
    for name in ("LP_A", "LP_B", "LP_C"):
        lp = harness.lps[name]
        assert isinstance(lp, ScriptedLp)
        lp.bid += 1
        lp.ask += 1
        lp.publish()
    harness.sync()
    # the quotes are in; the merged book is built on the next read of it,
    # once for all three, and shows them
    assert book._snapshots.get(SYMBOL) is None
    after = book.snapshot(SYMBOL)
    assert after is not before
    assert after is not None
    assert after.best_bid is not None
    assert after.best_bid.price == before.best_bid.price + 1  # type: ignore[union-attr]
    assert book._snapshots.get(SYMBOL) is after


@pytest.mark.asyncio
async def test_a_quote_older_than_quote_max_age_is_not_routed_to(flow_harness: Harness) -> None:
    harness = flow_harness
    flow = harness.flow
    max_age = flow.rules.config.routing.quote_max_age_ms / 1000
    lp = harness.lps["LP_A"]  # the best ask
    assert isinstance(lp, ScriptedLp)
    quote = flow.book.quote("LP_A", SYMBOL)
    assert quote is not None
    # received longer ago than quote_max_age_ms, not yet swept from the book
    lp.report(msgspec.structs.replace(quote, time=time.time() - max_age - 1))
    harness.sync()
    # ORDER_KINDS[0]: a market IOC
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    harness.sync()
    assert [kid.child.lp for kid in harness.kids.values()] == ["LP_B"]
    assert flow.book.quote("LP_A", SYMBOL) is None


@pytest.mark.asyncio
async def test_the_exposure_is_valued_anew_after_the_clock_steps_back(
    flow_harness: Harness,
) -> None:
    """Positions are valued at mids at most 0.1 s old: a wall clock set
    back (by an hour here) does not keep an old valuation for the hour."""
    harness = flow_harness
    routing = harness.flow.routing
    now = time.time()
    before = routing.exposure(now).usd_per_lot[SYMBOL]
    for lp in harness.lps.values():
        lp.bid += 5_000
        lp.ask += 5_000
        lp.publish()
    assert routing.exposure(now).usd_per_lot[SYMBOL] == before  # marked just now
    assert routing.exposure(now - 3600).usd_per_lot[SYMBOL] != before


@pytest.mark.asyncio
async def test_a_level_without_a_positive_price_is_not_routed_to(flow_harness: Harness) -> None:
    """An LP's quote with a level at zero (or below) beside its real ones:
    a market order takes the real levels, no child goes out at such a price."""
    harness = flow_harness
    flow = harness.flow
    quote = flow.book.quote("LP_A", SYMBOL)  # the best ask
    assert quote is not None
    broken = (Level(0, 4), Level(-1, 4))
    lp = harness.lps["LP_A"]
    lp.report(msgspec.structs.replace(quote, bids=broken, asks=broken + quote.asks))
    harness.sync()
    # ORDER_KINDS[0]: a market IOC
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    await harness.run(PlaceOrder(client=1, side=Side.SELL, lots=2, kind=0, offset=0))
    sent = [(kid.child.lp, kid.child.side, kid.child.price) for kid in harness.kids.values()]
    assert sent == [("LP_A", Side.BUY, lp.ask), ("LP_C", Side.SELL, harness.lps["LP_C"].bid)]
