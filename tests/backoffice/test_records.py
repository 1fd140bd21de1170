"""The back office reads the drop copy the gateway writes: its decoders are
tested against the gateway's own encoders of ExecutionReports, their drop
copies and TradeCaptureReports."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from strict_fix44 import message_problems

from backoffice.records import (
    HOUSE_ACCOUNT,
    INTERNAL_MARKET,
    TradeDay,
    client_trade,
    house_trade,
    parse_fix_time,
)
from gateway.dropcopy.copies import copy_body, trade_capture_body
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.orderflow.mapping import execution_body
from gateway.orderflow.recovery import HOUSE
from matcher.execution import Execution
from matcher.orders import INTERNAL, ExecType, OrdStatus
from router.model import AssetClass, Instrument, OrdType, Side, TimeInForce

EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal(1000),
    min_lots=1,
    max_lots=10_000,
    quote_currency="USD",
)
DAYS = TradeDay(dt.time(21, 0))
WHEN = 1_796_328_000.5  # 2026-12-03 20:00:00.500 UTC


def sent(msg_type: bytes, body: bytes, seq: int = 7) -> FixMessage:
    header = [(34, b"%d" % seq), (49, b"GATEWAY"), (52, b"20261203-20:00:00.500"), (56, b"BO")]
    raw = codec.encode_message(b"FIX.4.4", msg_type, header, body)
    assert message_problems(raw) == []
    return codec.parse_frame(raw)


def execution(**changes: object) -> Execution:
    fields: dict[str, object] = {
        "exec_id": "E42",
        "exec_type": ExecType.TRADE,
        "order_id": "1O5",
        "client": "CLIENT1",
        "cl_ord_id": "C9",
        "orig_cl_ord_id": None,
        "symbol": "EUR/USD",
        "side": Side.SELL,
        "ord_type": OrdType.MARKET,
        "tif": TimeInForce.IOC,
        "qty": 3,
        "price": None,
        "status": OrdStatus.PARTIALLY_FILLED,
        "cum_qty": 2,
        "leaves_qty": 1,
        "notional": 2 * 108_512,
        "last_qty": 2,
        "last_px": 108_512,
        "counterparty": "LP_A",
    }
    fields.update(changes)
    return Execution(**fields)  # type: ignore[arg-type]


def copy_of(ex: Execution) -> FixMessage:
    body = execution_body(ex, EURUSD, codec.format_utc_timestamp(WHEN))
    market = ex.counterparty if ex.last_qty else ""
    return sent(b"8", copy_body(body, ex.client.encode(), market))


def test_a_fills_copy_is_a_client_trade() -> None:
    trade = client_trade(copy_of(execution()), 7, DAYS)
    assert trade is not None
    assert (trade.exec_id, trade.client, trade.order_id, trade.cl_ord_id) == (
        "E42",
        "CLIENT1",
        "1O5",
        "C9",
    )
    assert (trade.symbol, trade.side, trade.qty, trade.price) == ("EUR/USD", -1, "2000", "1.08512")
    assert (trade.market, trade.time, trade.trade_date, trade.seq) == (
        "LP_A",
        "2026-12-03 20:00:00.500",
        "2026-12-03",
        7,
    )


def test_a_cross_is_marked_internal() -> None:
    trade = client_trade(copy_of(execution(counterparty=INTERNAL, side=Side.BUY)), 1, DAYS)
    assert trade is not None
    assert (trade.market, trade.side) == (INTERNAL_MARKET, 1)


@pytest.mark.parametrize(
    "ex",
    [
        execution(exec_type=ExecType.NEW, status=OrdStatus.NEW, last_qty=0, last_px=None),
        execution(exec_type=ExecType.CANCELED, status=OrdStatus.CANCELED, last_qty=0, last_px=None),
    ],
)
def test_reports_without_a_fill_are_no_trade(ex: Execution) -> None:
    assert client_trade(copy_of(ex), 1, DAYS) is None


def test_a_trade_capture_is_the_houses_booking() -> None:
    body = trade_capture_body(
        child_id="1O5.1C2",
        exec_id="LP_A-x9",
        lp="LP_A",
        account="CLIENT1",
        house=False,
        instrument=EURUSD,
        side=Side.SELL,
        lots=2,
        price=108_512,
        now=WHEN,
        client_exec_id="E42",
    )
    trade = house_trade(sent(b"AE", body), 8, DAYS)
    assert (trade.report_id, trade.lp, trade.lp_exec_id, trade.child_id) == (
        "1O5.1C2/LP_A-x9",
        "LP_A",
        "LP_A-x9",
        "1O5.1C2",
    )
    assert (trade.account, trade.client_exec_id, trade.side, trade.qty, trade.price) == (
        "CLIENT1",
        "E42",
        -1,
        "2000",
        "1.08512",
    )


def test_the_houses_own_booking_has_no_client_report() -> None:
    body = trade_capture_body(
        child_id="1O5.1C2",
        exec_id="LP_A-x9",
        lp="LP_A",
        account=HOUSE,
        house=True,
        instrument=EURUSD,
        side=Side.BUY,
        lots=1,
        price=108_512,
        now=WHEN,
    )
    trade = house_trade(sent(b"AE", body), 9, DAYS)
    assert (trade.account, trade.client_exec_id, trade.report_id) == (
        HOUSE_ACCOUNT,
        "",
        "1O5.1C2/LP_A-x9/house",
    )


def test_the_booking_of_a_bust_or_correction_names_the_booking_it_restates() -> None:
    def booked(restates: str, child_id: str = "1O5.1C2") -> str:
        body = trade_capture_body(
            child_id=child_id,
            exec_id="LP_A-b1",
            lp="LP_A",
            account=HOUSE,
            house=True,
            instrument=EURUSD,
            side=Side.SELL,
            lots=1,
            price=108_512,
            now=WHEN,
            restates=restates,
        )
        assert (b"\x01572=" in body) == bool(restates)
        return house_trade(sent(b"AE", body), 9, DAYS).restates

    assert booked("LP_A-x9") == "LP_A-x9"
    assert booked("") == ""


def test_a_trade_report_ref_naming_another_child_restates_nothing() -> None:
    body = trade_capture_body(
        child_id="1O5.1C2",
        exec_id="LP_A-b1",
        lp="LP_A",
        account=HOUSE,
        house=True,
        instrument=EURUSD,
        side=Side.SELL,
        lots=1,
        price=108_512,
        now=WHEN,
    )
    for ref in (b"9O9.1C1/LP_A-x9", b"LP_A-x9"):
        assert house_trade(sent(b"AE", body + b"572=" + ref + b"\x01"), 9, DAYS).restates == ""


def test_a_message_missing_a_field_is_refused() -> None:
    body = execution_body(execution(), EURUSD, codec.format_utc_timestamp(WHEN))
    # no Account (1): not a drop copy
    with pytest.raises(ValueError, match="tag 1"):
        client_trade(sent(b"8", body), 1, DAYS)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        (b"20261203-20:00:00", "2026-12-03 20:00:00"),
        (b"20261203-20:00:00.123", "2026-12-03 20:00:00.123"),
        (b"20261203-20:00:00.123456", "2026-12-03 20:00:00.123456"),
    ],
)
def test_fix_times(text: bytes, written: str) -> None:
    assert parse_fix_time(text) == written


@pytest.mark.parametrize(
    "text", [b"", b"2026-12-03 20:00", b"20261203 20:00:00", b"20261203-20:00:0x", b"x" * 17]
)
def test_not_fix_times(text: bytes) -> None:
    with pytest.raises(ValueError, match="UTCTimestamp"):
        parse_fix_time(text)


@pytest.mark.parametrize(
    ("cut", "when", "day"),
    [
        (dt.time(21, 0), "2026-12-03 20:59:59.999", "2026-12-03"),
        (dt.time(21, 0), "2026-12-03 21:00:00.000", "2026-12-04"),
        (dt.time(21, 0), "2026-12-31 23:00:00", "2027-01-01"),
        (dt.time(0, 0), "2026-12-03 23:59:59", "2026-12-03"),
        (dt.time(0, 0), "2026-12-04 00:00:00", "2026-12-04"),
    ],
)
def test_trading_days_end_at_the_cut(cut: dt.time, when: str, day: str) -> None:
    assert TradeDay(cut).of(when) == day


def test_a_trading_days_bounds() -> None:
    start, end = TradeDay(dt.time(21, 0)).bounds(dt.date(2026, 12, 4))
    assert (start, end) == (dt.datetime(2026, 12, 3, 21), dt.datetime(2026, 12, 4, 21))
    start, end = TradeDay(dt.time(0, 0)).bounds(dt.date(2026, 12, 4))
    assert (start, end) == (dt.datetime(2026, 12, 4), dt.datetime(2026, 12, 5))


@pytest.mark.parametrize(
    "qty", [b"NaN", b"1e400", b"12345678901", b"x", b"9999999999.999999995", b"-1e10"]
)
def test_a_quantity_the_ledger_cannot_hold_is_refused(qty: bytes) -> None:
    body = execution_body(execution(), EURUSD, codec.format_utc_timestamp(WHEN))
    body = copy_body(body, b"CLIENT1", "LP_A").replace(b"32=2000\x01", b"32=" + qty + b"\x01")
    raw = codec.encode_message(b"FIX.4.4", b"8", [(34, b"1"), (49, b"G"), (56, b"B")], body)
    with pytest.raises(ValueError, match="tag 32"):
        client_trade(codec.parse_frame(raw), 1, DAYS)


def test_a_leap_second_is_the_last_instant_of_its_minute() -> None:
    assert parse_fix_time(b"20261231-23:59:60.000") == "2026-12-31 23:59:59.999999"


@pytest.mark.parametrize("text", [b"20261203-25:00:00", b"20261332-10:00:00", b"20261203-10:61:00"])
def test_impossible_times_are_refused(text: bytes) -> None:
    with pytest.raises(ValueError, match="UTCTimestamp"):
        parse_fix_time(text)


def test_a_second_already_read_is_read_the_same_and_checked_the_same() -> None:
    # the first read of a second fills a cache; the reads after it take the
    # cache and must still answer and refuse as the first did
    for _ in range(2):
        assert parse_fix_time(b"20261204-09:30:15") == "2026-12-04 09:30:15"
        assert parse_fix_time(b"20261204-09:30:15.5") == "2026-12-04 09:30:15.5"
        assert parse_fix_time(b"20261204-09:30:15.250") == "2026-12-04 09:30:15.250"
        for bad in (b"20261204-09:30:15.", b"20261204-09:30:15.2x", b"20261204-09:30:15x1"):
            with pytest.raises(ValueError, match="UTCTimestamp"):
                parse_fix_time(bad)
    for _ in range(2):
        assert parse_fix_time(b"20261231-23:59:60.5") == "2026-12-31 23:59:59.999999"
        assert parse_fix_time(b"20261231-23:59:59.5") == "2026-12-31 23:59:59.5"


def test_a_number_already_read_is_read_as_the_wire_wrote_it_and_a_bad_one_always_refused() -> None:
    body = execution_body(execution(), EURUSD, codec.format_utc_timestamp(WHEN))
    body = copy_body(body, b"CLIENT1", "LP_A")

    def report(qty: bytes) -> FixMessage:
        raw = codec.encode_message(
            b"FIX.4.4",
            b"8",
            [(34, b"1"), (49, b"G"), (56, b"B")],
            body.replace(b"32=2000\x01", b"32=" + qty + b"\x01"),
        )
        return codec.parse_frame(raw)

    for _ in range(2):
        assert client_trade(report(b"2000.50"), 1, DAYS).qty == "2000.50"  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="tag 32"):
            client_trade(report(b"1e400"), 1, DAYS)


def _copy_with(old: bytes, new: bytes) -> FixMessage:
    body = execution_body(execution(), EURUSD, codec.format_utc_timestamp(WHEN))
    body = copy_body(body, b"CLIENT1", "LP_A")
    assert old in body
    raw = codec.encode_message(
        b"FIX.4.4", b"8", [(34, b"1"), (49, b"G"), (56, b"B")], body.replace(old, new)
    )
    return codec.parse_frame(raw)


def test_the_largest_quantity_the_ledger_holds_is_taken() -> None:
    trade = client_trade(_copy_with(b"32=2000\x01", b"32=9999999999.999999994\x01"), 1, DAYS)
    assert trade is not None
    assert trade.qty == "9999999999.999999994"


@pytest.mark.parametrize("year", [b"9999", b"1969", b"0001"])
def test_a_time_whose_trading_or_value_date_the_ledger_cannot_write_is_refused(
    year: bytes,
) -> None:
    """Before the cut or after it (the next day past the calendar), the
    year is refused by name, as a ValueError the intake names and goes on
    after."""
    for clock in (b"10:00:00", b"22:00:00"):
        stamp = codec.format_utc_timestamp(WHEN)
        msg = _copy_with(b"60=" + stamp, b"60=" + year + b"1231-" + clock + b".000")
        with pytest.raises(ValueError, match=f"tag 60 out of range: the year {int(year)}"):
            client_trade(msg, 1, DAYS)


def test_a_nul_in_a_text_is_kept_as_the_replacement_character() -> None:
    """PostgreSQL's text cannot hold a NUL; both ledgers keep U+FFFD instead."""
    trade = client_trade(_copy_with(b"17=", b"17=X\x00"), 1, DAYS)
    assert trade is not None
    assert trade.exec_id.startswith("X\ufffd")
