"""Property: the incremental exposure view (``current``) always equals a full
revaluation (``snapshot``) at the prices of the last mark."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from routing_helpers import INSTRUMENTS, FixedPrices

from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import Side

LPS = ("LP1", "LP2", "LP3")
SYMBOLS = tuple(INSTRUMENTS)

fills = st.tuples(
    st.just("fill"),
    st.sampled_from(LPS),
    st.sampled_from(SYMBOLS),
    st.sampled_from(Side),
    st.integers(1, 50),
)
reserves = st.tuples(
    st.just("reserve"), st.sampled_from(LPS), st.sampled_from(SYMBOLS), st.integers(1, 50)
)
releases = st.tuples(st.just("release"), st.sampled_from(LPS), st.sampled_from(SYMBOLS))
# either every symbol has a mid, or only some: the fallback to the last fill
# price then applies at the mark, as it does in a full revaluation
marks = st.tuples(
    st.just("mark"),
    st.dictionaries(st.sampled_from(SYMBOLS), st.integers(50_000, 200_000)),
)
ops = st.lists(st.one_of(fills, reserves, releases, marks), max_size=60)


def _same(a: ExposureSnapshot, b: ExposureSnapshot) -> None:
    assert {lp: dict(p) for lp, p in a.lp_positions.items()} == {
        lp: dict(p) for lp, p in b.lp_positions.items()
    }
    assert dict(a.usd_per_lot) == dict(b.usd_per_lot)
    assert a.unvalued_lps == b.unvalued_lps
    for lp in LPS:
        assert a.gross_usd(lp) == b.gross_usd(lp)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_current_equals_a_full_revaluation_at_the_last_mark(script: list[tuple]) -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    mids: dict[str, int] = {}
    prices = FixedPrices(mids)
    ledger.mark(prices)
    fills_since_mark = False
    for op in script:
        kind = op[0]
        if kind == "fill":
            _, lp, symbol, side, qty = op
            ledger.apply_fill(lp, "C", symbol, side, qty, 100_000 + qty)
            fills_since_mark = True
        elif kind == "reserve":
            _, lp, symbol, lots = op
            ledger.reserve(lp, symbol, lots)
        elif kind == "release":
            _, lp, symbol = op
            held = ledger.reserved(lp, symbol)
            if held:
                ledger.reserve(lp, symbol, -held)
        else:
            mids = op[1]
            prices = FixedPrices(mids)
            ledger.mark(prices)
            fills_since_mark = False
        # a fill can change the fallback price of a symbol without a mid,
        # which the view only takes in at the next mark
        if not fills_since_mark or set(mids) >= set(SYMBOLS):
            _same(ledger.current(), ledger.snapshot(prices))
