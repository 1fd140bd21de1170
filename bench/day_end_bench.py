"""What a trading day's end holds the event loop for.

A matcher keeps up to 100,000 final orders (for status requests and
duplicate ClOrdID checks) and forgets them all when the trading day ends.
This fills one with ``--orders`` final orders (limit orders, each canceled),
then times ``expire_day()`` and each ``release_forgotten()`` slice the order
flow runs after it, one a loop turn.

    .venv/bin/python bench/day_end_bench.py [--orders 100000] [--slice 1000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from router_bench import EURUSD  # the same instrument

from matcher.engine import CancelOrder, Matcher, NewOrder
from router.book import AggregatedBook
from router.model import Level, OrdType, Quote, Side, TimeInForce


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--slice", type=int, default=1000, help="entries freed per loop turn")
    args = parser.parse_args()
    book = AggregatedBook()
    book.update(Quote("lp1", EURUSD.symbol, (Level(100, 50),), (Level(110, 50),), 0.0))
    snapshot = book.snapshot(EURUSD.symbol)
    m = Matcher({EURUSD.symbol: EURUSD}, id_prefix="B", retain_finished=args.orders)
    for i in range(args.orders):
        m.submit(
            NewOrder(
                "C1", f"L{i}", EURUSD.symbol, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 5, 101
            ),
            snapshot,
        )
        m.cancel(CancelOrder("C1", f"L{i}-c", f"L{i}"))
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    m.expire_day()
    held = time.perf_counter() - started
    print(f"expire_day with {args.orders:,} final orders: {held * 1e3:.2f} ms")
    if not hasattr(m, "release_forgotten"):
        return 0
    slices, longest = 0, 0.0
    while True:
        started = time.perf_counter()
        more = m.release_forgotten(args.slice)
        longest = max(longest, time.perf_counter() - started)
        slices += 1
        if not more:
            break
    print(f"then freed in {slices} slices of {args.slice:,}, the longest {longest * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
