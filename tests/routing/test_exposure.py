"""The exposure ledger: position signs, USD valuation for the three kinds of
conversion, gross notional and snapshots."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from routing_helpers import INSTRUMENTS, FixedPrices, book_with, instrument, quote

from router.exposure import ExposureLedger, ExposureSnapshot
from router.model import Side

NO_PRICES = FixedPrices({})


def test_a_client_buy_makes_the_client_and_the_lp_position_long() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, 5, 110_000)
    assert ledger.lp_position("LP1", "EUR/USD") == 5
    assert ledger.client_position("C1", "EUR/USD") == 5
    ledger.apply_fill("LP2", "C2", "EUR/USD", Side.SELL, 3, 110_010)
    assert ledger.lp_position("LP2", "EUR/USD") == -3
    assert ledger.client_position("C2", "EUR/USD") == -3
    # C1 sells through LP2: both net down
    ledger.apply_fill("LP2", "C1", "EUR/USD", Side.SELL, 2, 110_020)
    assert ledger.lp_position("LP2", "EUR/USD") == -5
    assert ledger.client_position("C1", "EUR/USD") == 3
    assert ledger.lp_position("LP1", "EUR/USD") == 5
    assert ledger.lp_position("LP9", "EUR/USD") == 0
    assert ledger.client_position("C9", "USD/JPY") == 0


def test_flat_positions_leave_the_snapshot() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP1", "C1", "USD/JPY", Side.BUY, 4, 150_000)
    ledger.apply_fill("LP1", "C1", "USD/JPY", Side.SELL, 4, 150_100)
    snap = ledger.snapshot(NO_PRICES)
    assert dict(snap.lp_positions) == {}
    assert snap.gross_usd("LP1") == 0


@pytest.mark.parametrize("qty", [0, -2])
def test_fills_must_have_a_positive_quantity(qty: int) -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    with pytest.raises(ValueError, match="positive"):
        ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, qty, 110_000)


def test_quote_conversion_is_quantity_times_price() -> None:
    # EUR/USD, 1000 EUR a lot, mid 1.10000 -> 1100 USD a lot
    ledger = ExposureLedger(INSTRUMENTS)
    prices = FixedPrices({"EUR/USD": 110_000})
    assert ledger.lot_value_usd("EUR/USD", prices) == Decimal("1100.00000")
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.SELL, 2, 109_990)
    assert ledger.gross_usd("LP1", prices) == Decimal(2200)


def test_base_conversion_is_the_quantity() -> None:
    # USD/JPY, 1000 USD a lot, whatever the price
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP1", "C1", "USD/JPY", Side.BUY, 3, 150_000)
    assert ledger.lot_value_usd("USD/JPY", NO_PRICES) == Decimal(1000)
    assert ledger.gross_usd("LP1", NO_PRICES) == Decimal(3000)


def test_cross_conversion_multiplies_by_a_usd_quoted_symbol() -> None:
    # EUR/GBP 0.85000, GBP/USD 1.25000: 1000 x 0.85 x 1.25 = 1062.5 USD a lot
    ledger = ExposureLedger(INSTRUMENTS)
    prices = FixedPrices({"EUR/GBP": 85_000, "GBP/USD": 125_000})
    assert ledger.lot_value_usd("EUR/GBP", prices) == Decimal("1062.5")
    ledger.apply_fill("LP1", "C1", "EUR/GBP", Side.BUY, 2, 85_000)
    assert ledger.gross_usd("LP1", prices) == Decimal(2125)


def test_cross_conversion_divides_by_a_usd_based_symbol() -> None:
    # EUR/JPY 162.000, USD/JPY 150.000: 1000 x 162 / 150 = 1080 USD a lot
    ledger = ExposureLedger(INSTRUMENTS)
    prices = FixedPrices({"EUR/JPY": 162_000, "USD/JPY": 150_000})
    assert ledger.lot_value_usd("EUR/JPY", prices) == Decimal(1080)


def test_a_half_tick_mid_is_valued_exactly() -> None:
    book = book_with(quote("LP1", "EUR/USD", bids=[(110_000, 1)], asks=[(110_001, 1)]))
    assert book.mid("EUR/USD") == Fraction(220_001, 2)
    ledger = ExposureLedger(INSTRUMENTS)
    assert ledger.lot_value_usd("EUR/USD", book) == Decimal("1100.005")


def test_gross_adds_absolute_values_across_symbols() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    prices = FixedPrices({"EUR/USD": 110_000})
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, 2, 110_000)  # +2 x 1100
    ledger.apply_fill("LP1", "C2", "USD/JPY", Side.SELL, 3, 150_000)  # -3 x 1000
    snap = ledger.snapshot(prices)
    assert snap.gross_usd("LP1") == Decimal(5200)
    assert snap.gross_usd("LP2") == 0
    assert snap.lp_position("LP1", "USD/JPY") == -3
    assert ledger.client_position("C2", "USD/JPY") == -3
    assert ledger.client_position("C1", "EUR/USD") == 2
    assert snap.usd_per_lot["USD/JPY"] == Decimal(1000)


def test_the_last_fill_price_values_a_symbol_without_a_mid() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, 1, 120_000)
    assert ledger.lot_value_usd("EUR/USD", NO_PRICES) == Decimal(1200)
    # a mid, when there is one, wins
    assert ledger.lot_value_usd("EUR/USD", FixedPrices({"EUR/USD": 110_000})) == Decimal(1100)


def test_an_lp_holding_an_unvalued_symbol_has_no_gross() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    # EUR/GBP has a fill price, but GBP/USD has neither a mid nor a fill
    ledger.apply_fill("LP1", "C1", "EUR/GBP", Side.BUY, 1, 85_000)
    ledger.apply_fill("LP2", "C1", "USD/JPY", Side.BUY, 1, 150_000)
    snap = ledger.snapshot(NO_PRICES)
    assert ledger.gross_usd("LP1", NO_PRICES) is None
    assert snap.gross_usd("LP1") is None
    assert snap.unvalued_lps == frozenset({"LP1"})
    assert snap.gross_usd("LP2") == Decimal(1000)
    assert "EUR/GBP" not in snap.usd_per_lot
    assert ledger.lot_value_usd("XAG/USD", NO_PRICES) is None


def test_a_conversion_symbol_that_is_not_usd_based_or_quoted_is_unvalued() -> None:
    eurgbp_via_eurchf = instrument("EUR/GBP", "EUR/CHF")
    eurchf = instrument("EUR/CHF", "USD/CHF")
    ledger = ExposureLedger({"EUR/GBP": eurgbp_via_eurchf, "EUR/CHF": eurchf})
    prices = FixedPrices({"EUR/GBP": 85_000, "EUR/CHF": 95_000})
    assert ledger.lot_value_usd("EUR/GBP", prices) is None


def test_snapshots_do_not_move_with_later_fills_and_are_read_only() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.apply_fill("LP1", "C1", "USD/JPY", Side.BUY, 2, 150_000)
    snap = ledger.snapshot(NO_PRICES)
    ledger.apply_fill("LP1", "C1", "USD/JPY", Side.BUY, 5, 150_000)
    ledger.apply_fill("LP2", "C1", "USD/JPY", Side.BUY, 5, 150_000)
    assert snap.lp_position("LP1", "USD/JPY") == 2
    assert snap.lp_position("LP2", "USD/JPY") == 0
    assert snap.gross_usd("LP1") == Decimal(2000)
    with pytest.raises(TypeError):
        snap.lp_positions["LP1"]["USD/JPY"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.lp_gross_usd["LP1"] = Decimal(0)  # type: ignore[index]


def test_an_empty_snapshot_knows_nothing() -> None:
    snap = ExposureSnapshot()
    assert snap.lp_position("LP1", "EUR/USD") == 0
    assert snap.gross_usd("LP1") == 0
    assert dict(snap.usd_per_lot) == {}


def test_child_orders_in_flight_count_in_gross_at_their_worst() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    prices = FixedPrices({"EUR/USD": 110_000})
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, 2, 110_000)  # +2 x 1100
    ledger.reserve("LP1", "EUR/USD", 3)
    ledger.reserve("LP2", "EUR/USD", 1)
    snap = ledger.snapshot(prices)
    # 3 lots at LP1 may still fill either way: counted as adding to the position
    assert snap.gross_usd("LP1") == Decimal(5500)
    assert snap.gross_usd("LP2") == Decimal(1100)
    # positions stay as filled
    assert snap.lp_position("LP1", "EUR/USD") == 2
    assert snap.lp_position("LP2", "EUR/USD") == 0
    ledger.reserve("LP1", "EUR/USD", -3)
    ledger.reserve("LP2", "EUR/USD", -1)
    assert ledger.snapshot(prices).gross_usd("LP1") == Decimal(2200)
    assert ledger.snapshot(prices).gross_usd("LP2") == 0


def test_lots_in_flight_never_go_below_zero() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.reserve("LP1", "EUR/USD", 2)
    with pytest.raises(ValueError, match="in flight"):
        ledger.reserve("LP1", "EUR/USD", -3)
    assert ledger.reserved("LP1", "EUR/USD") == 2


def test_current_is_valued_at_the_last_mark_and_reused_until_a_change() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.mark(FixedPrices({"EUR/USD": 110_000}))
    ledger.apply_fill("LP1", "C1", "EUR/USD", Side.BUY, 2, 110_000)
    first = ledger.current()
    assert first.gross_usd("LP1") == Decimal(2200)
    assert ledger.current() is first
    # a new price is not seen until the next mark
    ledger.apply_fill("LP2", "C1", "EUR/USD", Side.SELL, 1, 120_000)
    second = ledger.current()
    assert second is not first
    assert second.gross_usd("LP2") == Decimal(1100)
    assert first.gross_usd("LP2") == 0  # the earlier snapshot did not move
    ledger.mark(FixedPrices({"EUR/USD": 120_000}))
    third = ledger.current()
    assert third.gross_usd("LP1") == Decimal(2400)
    assert third.usd_per_lot["EUR/USD"] == Decimal(1200)
    assert second.usd_per_lot["EUR/USD"] == Decimal(1100)


def test_current_leaves_an_lp_exposed_in_an_unmarked_symbol_unvalued() -> None:
    ledger = ExposureLedger(INSTRUMENTS)
    ledger.mark(NO_PRICES)
    ledger.reserve("LP1", "EUR/USD", 1)
    assert ledger.current().unvalued_lps == frozenset({"LP1"})
    assert ledger.current().gross_usd("LP1") is None
    ledger.mark(FixedPrices({"EUR/USD": 100_000}))
    assert ledger.current().gross_usd("LP1") == Decimal(1000)
    assert ledger.is_marked("EUR/USD")
    ledger.reserve("LP1", "EUR/USD", -1)
    assert ledger.current().gross_usd("LP1") == 0
    assert dict(ledger.current().lp_positions) == {}
