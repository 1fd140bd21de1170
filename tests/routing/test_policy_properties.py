"""Properties of the best-price, exposure-aware policy over random books,
exposures, limits and orders.

For every plan: no LP is taken past its hard limit (a child may only go past
it, or stay past it, while it reduces the LP's position towards flat, never
beyond); children and remainder add up to the order; every child is within
the order's limit price and fillable by its LP at its own limit; excluded,
disabled and unconfigured LPs get nothing; the plan does not depend on the
order quotes arrived in, and routing twice gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from routing_helpers import book_with, instrument, quote

from router.book import BookSnapshot
from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import Instrument, Quote, Side
from router.policy import (
    BestPriceExposureAware,
    LpLimits,
    RoutePlan,
    RouteRequest,
    RoutingLimits,
)

LPS = ("A", "B", "C", "D")
# routed symbols: valued at the book's mid (quote) or by quantity (base)
XAUUSD = instrument("XAU/USD", "quote", tick_size="1", lot_size="1")
USDJPY = instrument("USD/JPY", "base", tick_size="1", lot_size="100")
OTHER = instrument("EUR/USD", "quote", tick_size="1", lot_size="1")
INSTRUMENTS = {i.symbol: i for i in (XAUUSD, USDJPY, OTHER)}
POLICY = BestPriceExposureAware()
MOSTLY = st.sampled_from([True, True, True, True, False])


@dataclass(frozen=True)
class Case:
    instrument: Instrument
    quotes: tuple[Quote, ...]
    positions: dict[str, tuple[int, int]]  # lp -> (routed symbol lots, other symbol lots)
    limits: RoutingLimits
    side: Side
    qty: int
    limit_price: int | None
    excluded: frozenset[str]


def level_lists(descending: bool) -> st.SearchStrategy[list[tuple[int, int]]]:
    levels = st.tuples(st.integers(980, 1020), st.integers(1, 60))
    # now and then a side is empty
    return (
        st.sampled_from([0, 1, 1, 1])
        .flatmap(lambda least: st.lists(levels, min_size=least, max_size=5))
        .map(lambda found: sorted(found, reverse=descending))
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    inst = draw(st.sampled_from([XAUUSD, USDJPY]))
    quoting = draw(st.lists(st.sampled_from(LPS), min_size=2, max_size=4, unique=True))
    quotes = tuple(
        quote(lp, inst.symbol, bids=draw(level_lists(True)), asks=draw(level_lists(False)))
        for lp in quoting
    )
    positions = {
        lp: (draw(st.integers(-300, 300)), draw(st.integers(-200, 200)))
        for lp in draw(st.lists(st.sampled_from(LPS), unique=True))
    }
    lps: dict[str, LpLimits] = {}
    # mostly configured and enabled, so that limits rather than absence decide
    for lp in LPS:
        if not draw(MOSTLY):
            continue
        soft = draw(st.integers(0, 300_000))
        hard = soft + draw(st.integers(0, 200_000))
        lps[lp] = LpLimits(
            Decimal(soft),
            Decimal(hard),
            soft_penalty_ticks=draw(st.integers(0, 30)),
            enabled=draw(MOSTLY),
        )
    limits = RoutingLimits(lps, max_child_orders=draw(st.integers(1, 4)))
    return Case(
        instrument=inst,
        quotes=quotes,
        positions=positions,
        limits=limits,
        side=draw(st.sampled_from(Side)),
        qty=draw(st.integers(1, 400)),
        limit_price=draw(st.none() | st.integers(975, 1025)),
        excluded=draw(st.sampled_from([frozenset()] * 3 + [frozenset({lp}) for lp in LPS])),
    )


def build(case: Case, quotes: tuple[Quote, ...]) -> tuple[BookSnapshot, ExposureSnapshot]:
    book = book_with(*quotes, quote("X", OTHER.symbol, bids=[(1000, 1)], asks=[(1001, 1)]))
    ledger = ExposureLedger(INSTRUMENTS)
    for lp, lots_by_symbol in case.positions.items():
        for symbol, lots in zip(
            (case.instrument.symbol, OTHER.symbol), lots_by_symbol, strict=True
        ):
            if lots:
                side = Side.BUY if lots > 0 else Side.SELL
                ledger.apply_fill(lp, "client", symbol, side, abs(lots), 1000)
    snapshot = book.snapshot(case.instrument.symbol)
    assert snapshot is not None
    return snapshot, ledger.snapshot(book)


def plan_for(case: Case, quotes: tuple[Quote, ...]) -> tuple[RoutePlan, ExposureSnapshot]:
    book, exposure = build(case, quotes)
    req = RouteRequest(
        "P1", "C1", case.instrument.symbol, case.side, case.qty, case.limit_price, case.instrument
    )
    return POLICY.route(req, book, exposure, case.limits, case.excluded), exposure


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_plans_respect_every_limit(case: Case) -> None:
    plan, exposure = plan_for(case, case.quotes)
    buy = case.side is Side.BUY
    sign = 1 if buy else -1

    # quantities
    assert plan.remainder >= 0
    assert plan.allocated + plan.remainder == case.qty
    assert all(child.qty > 0 for child in plan.children)
    assert (plan.reason == "") == (plan.remainder == 0)

    # LPs
    lps = [child.lp for child in plan.children]
    assert len(lps) == len(set(lps))
    assert len(lps) <= case.limits.max_child_orders
    allowed = case.limits.enabled_lps - case.excluded
    assert set(lps) <= allowed

    quotes = {q.lp: q for q in case.quotes}
    lot_usd = exposure.usd_per_lot.get(case.instrument.symbol)
    for child in plan.children:
        # within the order's limit price
        if case.limit_price is not None:
            assert child.price <= case.limit_price if buy else child.price >= case.limit_price
        # the LP quotes the child's price and enough at or better than it
        levels = quotes[child.lp].asks if buy else quotes[child.lp].bids
        assert child.price in {level.price for level in levels}
        available = sum(
            level.qty
            for level in levels
            if (level.price <= child.price if buy else level.price >= child.price)
        )
        assert child.qty <= available

        # the hard limit; what cannot be valued may only be reduced
        before = exposure.lp_position(child.lp, case.instrument.symbol)
        only_reduces = before * sign < 0 and child.qty <= abs(before)
        gross = exposure.gross_usd(child.lp)
        if lot_usd is None or gross is None:
            assert only_reduces
            continue
        after = before + sign * child.qty
        gross_after = gross + (abs(after) - abs(before)) * lot_usd
        hard = case.limits.lps[child.lp].hard_limit_usd
        assert gross_after <= hard or only_reduces, (child, before, gross, gross_after, hard)


@settings(max_examples=200, deadline=None)
@given(case=cases(), data=st.data())
def test_plans_are_deterministic(case: Case, data: st.DataObject) -> None:
    first, _ = plan_for(case, case.quotes)
    again, _ = plan_for(case, case.quotes)
    assert first == again
    shuffled = tuple(data.draw(st.permutations(case.quotes)))
    reordered, _ = plan_for(case, shuffled)
    assert reordered == first


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_without_limits_in_the_way_the_plan_is_the_book_sweep(case: Case) -> None:
    """With every LP enabled and far from its limits, the plan takes exactly
    what a sweep of the book takes, at the same cost."""
    unlimited = RoutingLimits(
        {lp: LpLimits(Decimal(10**12), Decimal(10**12)) for lp in LPS}, max_child_orders=4
    )
    free = Case(
        case.instrument,
        case.quotes,
        case.positions,
        unlimited,
        case.side,
        case.qty,
        case.limit_price,
        frozenset(),
    )
    plan, exposure = plan_for(free, free.quotes)
    # a one-sided book without a fill has no mid to value the symbol at
    assume(free.instrument.symbol in exposure.usd_per_lot)
    book, _ = build(free, free.quotes)
    filled, _cost = book.sweep(free.side, free.qty, free.limit_price)
    assert plan.allocated == filled
