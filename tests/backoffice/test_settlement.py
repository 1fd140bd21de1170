"""Value dates and currencies (:mod:`backoffice.settlement`): business days
for all but crypto, which settles on calendar days; the asset class's
settlement days unless the instrument says otherwise."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backoffice.settlement import DEFAULT_DAYS, Settlement
from config import InstrumentSettings, default_config_path, load_config


def instrument(symbol: str, asset_class: str, **extra: Any) -> InstrumentSettings:
    fields = {
        "symbol": symbol,
        "asset_class": asset_class,
        "tick_size": "0.01",
        "lot_size": "1",
        "min_qty": "1",
        "max_qty": "1000000",
        "quote_currency": symbol.partition("/")[2] or "USD",
        **extra,
    }
    return msgspec.convert(fields, InstrumentSettings, strict=False)


SETTLEMENT = Settlement(
    [
        instrument("EUR/USD", "fx"),
        instrument("USD/CAD", "fx", settlement_days=1),
        instrument("XAU/USD", "metal"),
        instrument("BTC/USD", "crypto"),
        instrument("ETH/USD", "crypto", settlement_days=2),
        instrument("US500", "index"),
        instrument("EUR/JPY", "fx", settlement_days=0),
    ]
)

# 2026-03-02 is a Monday
MON, TUE, WED, THU, FRI, SAT, SUN = (f"2026-03-{d:02d}" for d in range(2, 9))
NEXT_MON, NEXT_TUE, NEXT_WED = "2026-03-09", "2026-03-10", "2026-03-11"


@pytest.mark.parametrize(
    ("symbol", "trade_date", "value_date"),
    [
        # T+2, business days
        ("EUR/USD", MON, WED),
        ("EUR/USD", WED, FRI),
        ("EUR/USD", THU, NEXT_MON),
        ("EUR/USD", FRI, NEXT_TUE),
        ("EUR/USD", SAT, NEXT_WED),  # a weekend trade counts from Monday
        ("EUR/USD", SUN, NEXT_WED),
        ("XAU/USD", FRI, NEXT_TUE),  # metal: T+2 as fx
        # T+1 by the instrument's own settings
        ("USD/CAD", MON, TUE),
        ("USD/CAD", THU, FRI),
        ("USD/CAD", FRI, NEXT_MON),
        ("USD/CAD", SAT, NEXT_TUE),
        # T+0
        ("EUR/JPY", WED, WED),
        ("US500", FRI, FRI),
        ("US500", SAT, NEXT_MON),  # business days: the weekend's trades settle Monday
        # crypto: calendar days, weekends included
        ("BTC/USD", FRI, FRI),
        ("BTC/USD", SAT, SAT),
        ("BTC/USD", SUN, SUN),
        ("ETH/USD", FRI, SUN),
        ("ETH/USD", SAT, NEXT_MON),
        # across a month's and a year's end
        ("EUR/USD", "2026-02-27", "2026-03-03"),
        ("EUR/USD", "2025-12-31", "2026-01-02"),
        ("BTC/USD", "2025-12-31", "2025-12-31"),
        # a symbol not configured settles on its trade date
        ("GBP/CHF", FRI, FRI),
        ("GBP/CHF", SAT, SAT),
    ],
)
def test_value_dates(symbol: str, trade_date: str, value_date: str) -> None:
    assert SETTLEMENT.value_date(symbol, trade_date) == value_date
    assert SETTLEMENT.value_date(symbol, trade_date) == value_date  # and from the cache


def test_terms_come_from_the_asset_class_unless_the_instrument_says() -> None:
    terms = SETTLEMENT.terms
    assert (terms["EUR/USD"].days, terms["EUR/USD"].calendar_days) == (DEFAULT_DAYS["fx"], False)
    assert terms["USD/CAD"].days == 1
    assert (terms["BTC/USD"].days, terms["BTC/USD"].calendar_days) == (0, True)
    assert terms["US500"].days == DEFAULT_DAYS["index"] == 0
    assert terms["XAU/USD"].days == 2


def test_currencies() -> None:
    assert SETTLEMENT.currencies("EUR/USD") == ("EUR", "USD")
    assert SETTLEMENT.currencies("USD/CAD") == ("USD", "CAD")
    assert SETTLEMENT.currencies("US500") == ("US500", "USD")  # units of the index
    # a symbol not configured: the currencies of its name
    assert SETTLEMENT.currencies("GBP/JPY") == ("GBP", "JPY")
    assert SETTLEMENT.currencies("UK100") == ("UK100", "USD")


def test_the_default_configurations_instruments_all_settle() -> None:
    config = load_config(default_config_path())
    settlement = Settlement(config.instruments)
    assert set(settlement.terms) == {i.symbol for i in config.instruments}
    for symbol, terms in settlement.terms.items():
        value = dt.date.fromisoformat(settlement.value_date(symbol, FRI))
        assert value >= dt.date.fromisoformat(FRI)
        if not terms.calendar_days:
            assert value.weekday() < 5


def _business_days_between(start: dt.date, end: dt.date) -> int:
    """Weekdays after ``start`` up to and including ``end``."""
    days, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        days += day.weekday() < 5
    return days


@given(
    day=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)),
    days=st.integers(min_value=0, max_value=10),
    crypto=st.booleans(),
)
def test_value_dates_count_the_settlement_days(day: dt.date, days: int, crypto: bool) -> None:
    settlement = Settlement(
        [instrument("X/USD", "crypto" if crypto else "fx", settlement_days=days)]
    )
    value = dt.date.fromisoformat(settlement.value_date("X/USD", day.isoformat()))
    if crypto:
        assert value == day + dt.timedelta(days=days)
        return
    assert value.weekday() < 5
    monday_or_day = day
    while monday_or_day.weekday() >= 5:
        monday_or_day += dt.timedelta(days=1)
    assert _business_days_between(monday_or_day, value) == days


def test_a_pair_written_without_a_slash_settles_its_two_currencies() -> None:
    settlement = Settlement(
        [
            instrument("EURUSD", "fx", quote_currency="USD"),
            instrument("USDJPY", "fx", quote_currency="JPY"),
            instrument("XAUUSD", "metal", quote_currency="USD"),
            instrument("BTC-USD", "crypto", quote_currency="USD"),
            instrument("SPXUSD", "index", quote_currency="USD"),  # an index's units
            instrument("WTI", "commodity", quote_currency="USD"),
        ]
    )
    assert settlement.currencies("EURUSD") == ("EUR", "USD")
    assert settlement.currencies("USDJPY") == ("USD", "JPY")
    assert settlement.currencies("XAUUSD") == ("XAU", "USD")
    assert settlement.currencies("BTC-USD") == ("BTC", "USD")
    assert settlement.currencies("SPXUSD") == ("SPXUSD", "USD")
    assert settlement.currencies("WTI") == ("WTI", "USD")
