"""Micro-benchmark of one routing decision.

Times ``BestPriceExposureAware.route`` on a EUR/USD book of 3 LPs x 5 levels
a side, for a few order shapes, and prints microseconds per call.  Also times
what surrounds it: rebuilding the book snapshot after a quote and taking an
exposure snapshot.

    .venv/bin/python bench/router_bench.py [--number N] [--repeat R]
"""

from __future__ import annotations

import argparse
import functools
import timeit
from decimal import Decimal

from router.book import AggregatedBook, BookSnapshot
from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import AssetClass, Instrument, Level, Quote, Side
from router.policy import (
    BestPriceExposureAware,
    LpLimits,
    RouteRequest,
    RoutingLimits,
)

EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal("1000"),
    min_lots=1,
    max_lots=100_000,
    quote_currency="USD",
)
LPS = ("LP1", "LP2", "LP3")


def make_book() -> AggregatedBook:
    book = AggregatedBook()
    for n, lp in enumerate(LPS):
        bids = tuple(Level(110_000 - n - 2 * i, 10 + 5 * i) for i in range(5))
        asks = tuple(Level(110_002 + n + 2 * i, 10 + 5 * i) for i in range(5))
        book.update(Quote(lp, EURUSD.symbol, bids, asks, time=0.0))
    return book


def make_exposure(book: AggregatedBook, lp1_lots: int) -> ExposureSnapshot:
    ledger = ExposureLedger({EURUSD.symbol: EURUSD})
    ledger.apply_fill("LP1", "C1", EURUSD.symbol, Side.BUY, lp1_lots, 110_000)
    ledger.apply_fill("LP2", "C1", EURUSD.symbol, Side.SELL, 40, 110_000)
    return ledger.snapshot(book)


def main() -> None:
    parser = argparse.ArgumentParser(description="Time one routing decision.")
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    book = make_book()
    snapshot = book.snapshot(EURUSD.symbol)
    assert isinstance(snapshot, BookSnapshot)
    limits = RoutingLimits(
        {lp: LpLimits(Decimal(1_000_000), Decimal(2_000_000), soft_penalty_ticks=5) for lp in LPS}
    )
    policy = BestPriceExposureAware()
    calm = make_exposure(book, 100)  # 110,000 USD: well under every limit
    # LP1 at 1,870,000 USD: past its soft limit (5 ticks worse), room for 118 lots
    stretched = make_exposure(book, 1700)
    # LP1 at 1,980,000 USD: room for 18 lots
    nearly_full = make_exposure(book, 1800)

    def order(side: Side, qty: int, limit: int | None) -> RouteRequest:
        return RouteRequest("P1", "C1", EURUSD.symbol, side, qty, limit, EURUSD)

    cases: list[tuple[str, RouteRequest, ExposureSnapshot]] = [
        ("buy 5 lots, top of book", order(Side.BUY, 5, None), calm),
        ("buy 60 lots, limit, 3 LPs", order(Side.BUY, 60, 110_010), calm),
        ("sell 150 lots, whole side", order(Side.SELL, 150, None), calm),
        ("buy 60 lots, LP1 penalised", order(Side.BUY, 60, 110_010), stretched),
        ("buy 250 lots, LP1 capped", order(Side.BUY, 250, None), nearly_full),
    ]

    print(f"route() on a 3 LP x 5 level book, best of {args.repeat} x {args.number} calls")
    for label, request, exposure_snapshot in cases:
        call = functools.partial(policy.route, request, snapshot, exposure_snapshot, limits)
        plan = call()
        best = min(timeit.repeat(call, number=args.number, repeat=args.repeat))
        children = ", ".join(f"{c.lp}:{c.qty}@{c.price}" for c in plan.children)
        print(f"  {label:30s} {best / args.number * 1e6:6.2f} us   [{children}]")

    quote = book.quote("LP2", EURUSD.symbol)
    assert quote is not None

    def requote() -> None:
        book.update(quote)
        book.snapshot(EURUSD.symbol)

    def exposure() -> None:
        make_exposure(book, 100)

    def new_request() -> None:
        order(Side.BUY, 5, 110_010)

    for label, call2 in (
        ("RouteRequest construction", new_request),
        ("quote update + snapshot rebuild", requote),
        ("ledger fills + exposure snapshot", exposure),
    ):
        best = min(timeit.repeat(call2, number=args.number // 4, repeat=args.repeat))
        print(f"  {label:30s} {best / (args.number // 4) * 1e6:6.2f} us")


if __name__ == "__main__":
    main()
