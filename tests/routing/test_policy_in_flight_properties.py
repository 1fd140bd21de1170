"""Properties of routing several orders before their children are answered.

Orders are routed one after another over one exposure ledger, each from its
``current`` view, and every child is reserved as the order flow reserves it;
in between, children fill in part, end, and the ledger is marked at new
mids (a symbol without one is valued at its last fill, EUR/GBP through the
mid of GBP/USD, or not at all).  After every routing, at the valuation the
routing saw:

* whatever part of each child in flight fills (none of it, all of it, or
  any part), no LP's gross notional ends past its hard limit, unless it
  was already past it before that routing, in which case the routing made
  its worst case no worse: children in flight may reduce a position, flip
  it, or add to it, and the routing does not count the same reducing lots
  twice;
* an LP, or a symbol, without a USD value gets only children that reduce
  its position, together with those in flight, and never past flat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_helpers import FixedPrices, book_with, instrument, quote

from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import Quote, Side
from router.policy import (
    BestPrice,
    BestPriceExposureAware,
    LpLimits,
    RouteRequest,
    RoutingLimits,
    RoutingPolicy,
)

LPS = ("A", "B", "C")
XAUUSD = instrument("XAU/USD", "quote", tick_size="1", lot_size="1")
USDJPY = instrument("USD/JPY", "base", tick_size="1", lot_size="100")
GBPUSD = instrument("GBP/USD", "quote", tick_size="0.001", lot_size="1")
EURGBP = instrument("EUR/GBP", "GBP/USD", tick_size="0.001", lot_size="1000", quote_currency="GBP")
INSTRUMENTS = {i.symbol: i for i in (XAUUSD, USDJPY, GBPUSD, EURGBP)}
SYMBOLS = tuple(INSTRUMENTS)


@dataclass
class InFlight:
    lp: str
    symbol: str
    side: Side
    price: int
    open: int


@dataclass(frozen=True)
class Case:
    quotes: tuple[Quote, ...]
    positions: tuple[tuple[str, str, int], ...]
    limits: RoutingLimits
    policy: RoutingPolicy
    steps: tuple[tuple[Any, ...], ...] = field(default=())


def _levels(low: int, high: int, descending: bool) -> st.SearchStrategy[list[tuple[int, int]]]:
    levels = st.tuples(st.integers(low, high), st.integers(1, 80))
    return st.lists(levels, max_size=3).map(lambda found: sorted(found, reverse=descending))


fills = st.tuples(st.just("fill"), st.integers(0, 99), st.integers(0, 100))
ends = st.tuples(st.just("end"), st.integers(0, 99))
marks = st.tuples(
    st.just("mark"), st.dictionaries(st.sampled_from(SYMBOLS), st.integers(900, 1100))
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    quotes = tuple(
        quote(
            lp, symbol, bids=draw(_levels(900, 1000, True)), asks=draw(_levels(1000, 1100, False))
        )
        for symbol in SYMBOLS
        for lp in LPS
        if draw(st.booleans())
    )
    positions = tuple(
        (lp, symbol, draw(st.integers(-150, 150)))
        for lp in LPS
        for symbol in SYMBOLS
        if draw(st.booleans())
    )
    # mostly one or two symbols, so that orders meet the children in flight
    # of those before them at the same LP
    traded = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=2, unique=True))
    # and mostly one side, so that they meet the same LPs' reducing lots
    side = draw(st.sampled_from(Side))
    sides = st.sampled_from([side, side, side, side.opposite])
    routes = st.tuples(st.just("route"), st.sampled_from(traded), sides, st.integers(1, 300))
    lps = {}
    for lp in LPS:
        soft = draw(st.integers(0, 100_000))
        hard = soft + draw(st.integers(0, 150_000))
        lps[lp] = LpLimits(
            Decimal(soft), Decimal(hard), soft_penalty_ticks=draw(st.integers(0, 30))
        )
    return Case(
        quotes=quotes,
        positions=positions,
        limits=RoutingLimits(lps, max_child_orders=draw(st.integers(1, 4))),
        policy=draw(st.sampled_from([BestPriceExposureAware(), BestPrice()])),
        steps=tuple(
            draw(st.lists(st.one_of(routes, routes, fills, ends, marks), min_size=1, max_size=12))
        ),
    )


def _worst_lots(position: int, children: list[InFlight], lp: str, symbol: str) -> int:
    """The largest absolute position the children in flight can leave."""
    bought = sum(
        c.open for c in children if c.lp == lp and c.symbol == symbol and c.side is Side.BUY
    )
    sold = sum(
        c.open for c in children if c.lp == lp and c.symbol == symbol and c.side is Side.SELL
    )
    return max(abs(position + bought), abs(position - sold))


def _worst_usd(exposure: ExposureSnapshot, children: list[InFlight], lp: str) -> Decimal | None:
    """The largest gross notional of ``lp`` the children in flight can
    leave, at the valuation of ``exposure`` (None: a symbol has no value)."""
    total = Decimal(0)
    for symbol in SYMBOLS:
        lots = _worst_lots(exposure.lp_position(lp, symbol), children, lp, symbol)
        if lots:
            per_lot = exposure.usd_per_lot.get(symbol)
            if per_lot is None:
                return None
            total += lots * per_lot
    return total


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_orders_routed_before_any_answer_keep_every_lp_within_its_hard_limit(case: Case) -> None:
    book = book_with(*case.quotes) if case.quotes else None
    ledger = ExposureLedger(INSTRUMENTS)
    for lp, symbol, lots in case.positions:
        if lots:
            side = Side.BUY if lots > 0 else Side.SELL
            ledger.apply_fill(lp, "C", symbol, side, abs(lots), 1000)
    ledger.mark(book if book is not None else FixedPrices({}))
    children: list[InFlight] = []
    for step in case.steps:
        kind = step[0]
        if kind == "route":
            _, symbol, side, qty = step
            snapshot = None if book is None else book.snapshot(symbol)
            if snapshot is None:
                continue
            exposure = ledger.current()
            before = {lp: _worst_usd(exposure, children, lp) for lp in LPS}
            before_lots = {
                lp: _worst_lots(exposure.lp_position(lp, symbol), children, lp, symbol)
                for lp in LPS
            }
            request = RouteRequest("P", "C", symbol, side, qty, None, INSTRUMENTS[symbol])
            plan = case.policy.route(request, snapshot, exposure, case.limits)
            assert plan.allocated + plan.remainder == qty
            for allocation in plan.children:
                ledger.reserve(allocation.lp, symbol, allocation.qty)
                children.append(
                    InFlight(allocation.lp, symbol, side, allocation.price, allocation.qty)
                )
            for lp in LPS:
                routed = any(allocation.lp == lp for allocation in plan.children)
                if not routed:
                    continue
                if symbol not in exposure.usd_per_lot or lp in exposure.unvalued_lps:
                    position = exposure.lp_position(lp, symbol)
                    after_lots = _worst_lots(position, children, lp, symbol)
                    assert after_lots <= before_lots[lp], (lp, symbol, position, after_lots)
                    continue
                worst_before = before[lp]
                worst_after = _worst_usd(exposure, children, lp)
                assert worst_before is not None
                assert worst_after is not None
                hard = case.limits.lps[lp].hard_limit_usd
                assert worst_after <= max(hard, worst_before), (lp, worst_after, worst_before, hard)
        elif kind == "fill" and children:
            child = children[step[1] % len(children)]
            lots = step[2] % (child.open + 1)
            if lots:
                ledger.reserve(child.lp, child.symbol, -lots)
                ledger.apply_fill(child.lp, "C", child.symbol, child.side, lots, child.price)
                child.open -= lots
        elif kind == "end" and children:
            child = children.pop(step[1] % len(children))
            if child.open:
                ledger.reserve(child.lp, child.symbol, -child.open)
        elif kind == "mark":
            ledger.mark(FixedPrices(step[1]))
