"""The three records of a trade, as rows, and how drop-copy messages become
them.  Pure: no I/O, no clock.

* :class:`ClientTrade`: a fill a client was told of (the drop copy of its
  ExecutionReport, 150=F).
* :class:`HouseTrade`: lots of an LP fill the house booked (a
  TradeCaptureReport, AE), to a client or to the house.
* :class:`LpTrade`: one line of an LP's statement (see
  :mod:`backoffice.statements`).

Quantities and prices stay the decimal strings of the wire; sides are +1 (a
buy) and -1 (a sell) so that a position is ``sum(side * qty)``; times are
UTC, written ``YYYY-MM-DD HH:MM:SS.fff`` (what a database casts to a
timestamp at once), and dates ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from gateway.fix.codec import FixMessage

__all__ = [
    "HOUSE_ACCOUNT",
    "INTERNAL_MARKET",
    "ClientTrade",
    "HouseTrade",
    "LpTrade",
    "TradeDay",
    "client_trade",
    "day_stamp",
    "house_trade",
    "parse_fix_time",
    "time_text",
]

HOUSE_ACCOUNT: Final = "(house)"
"""The account the gateway books what no client holds (an LP's overfill, a
fill after the client was told the order ended)."""

INTERNAL_MARKET: Final = "internal"
"""LastMkt (30) of a client fill crossed with another client's order."""

_SIDES: Final = {b"1": 1, b"2": -1}


class ClientTrade(msgspec.Struct, frozen=True, gc=False):
    exec_id: str
    client: str
    order_id: str
    cl_ord_id: str
    symbol: str
    side: int
    qty: str
    price: str
    market: str
    time: str
    trade_date: str
    seq: int


class HouseTrade(msgspec.Struct, frozen=True, gc=False):
    report_id: str
    lp: str
    lp_exec_id: str
    child_id: str
    account: str
    client_exec_id: str
    symbol: str
    side: int
    qty: str
    price: str
    time: str
    trade_date: str
    seq: int
    restates: str = ""
    """For the booking of an LP's Trade Cancel or Correct, the LP ExecID of
    the booking of the same child it reverses or corrects (from
    TradeReportRefID, 572): it is booked as of that booking's trade date."""


class LpTrade(msgspec.Struct, frozen=True, gc=False):
    lp: str
    exec_id: str
    cl_ord_id: str
    symbol: str
    side: int
    qty: str
    price: str
    time: str
    trade_date: str
    source: str


_CACHED: Final = 4096
"""Entries each cache below holds before it starts again (a trading day's
reports come from a few seconds and prices at a time)."""

# the seconds already read (``YYYYMMDD-HH:MM:SS`` -> ``YYYY-MM-DD HH:MM:SS``)
_seconds: dict[bytes, str] = {}
# numbers already checked, as the wire wrote them
_numbers: dict[bytes, str] = {}


def parse_fix_time(value: bytes) -> str:
    """A FIX UTCTimestamp (``YYYYMMDD-HH:MM:SS[.sss...]``) written
    ``YYYY-MM-DD HH:MM:SS[.sss...]``; ValueError if it is not one."""
    seconds = _seconds.get(value[:17])
    if seconds is not None:
        fraction = value[17:]
        if not fraction:
            return seconds
        if fraction[:1] == b"." and fraction[1:].isdigit():
            return seconds + fraction.decode("ascii")
    written = _parse_fix_time(value)
    if value[15:17] != b"60":  # a leap second is written :59.999999 whatever its fraction
        if len(_seconds) >= _CACHED:
            _seconds.clear()
        _seconds[value[:17]] = written[:19]
    return written


def _parse_fix_time(value: bytes) -> str:
    text = value.decode("ascii")
    if (
        len(text) < 17
        or text[8] != "-"
        or text[11] != ":"
        or text[14] != ":"
        or not text[:8].isdigit()
        or not (text[9:11] + text[12:14] + text[15:17]).isdigit()
        or (len(text) > 17 and (text[17] != "." or not text[18:].isdigit()))
    ):
        raise ValueError(f"not a UTCTimestamp: {text!r}")
    seconds = int(text[15:17])
    try:
        dt.datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[12:14]),
            min(seconds, 59),
        )
    except ValueError:
        raise ValueError(f"not a UTCTimestamp: {text!r}") from None
    if seconds == 60:  # a leap second (FIX allows it): the last instant of the minute
        return f"{text[0:4]}-{text[4:6]}-{text[6:8]} {text[9:15]}59.999999"
    if seconds > 60:
        raise ValueError(f"not a UTCTimestamp: {text!r}")
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]} {text[9:]}"


def time_text(when: dt.datetime) -> str:
    """A naive UTC datetime written as the records write times."""
    return when.isoformat(sep=" ", timespec="milliseconds")


def day_stamp(day: dt.date) -> str:
    """``YYYYMMDD``, as the export's files are named: the year in four
    digits always (``strftime("%Y")`` leaves a year before 1000 short)."""
    return day.isoformat().replace("-", "")


class TradeDay:
    """Which trading day a time belongs to: the day that ends at the cut
    (``orders.trading_day_end``, UTC) is named by the date it ends on."""

    def __init__(self, cut: dt.time) -> None:
        self.shift = dt.timedelta(hours=cut.hour, minutes=cut.minute)
        self._cut = f"{cut.hour:02d}:{cut.minute:02d}"
        self._days: dict[tuple[str, bool], str] = {}

    def of(self, when: str) -> str:
        """The trading day (``YYYY-MM-DD``) of a time written as the records
        write them."""
        after = bool(self.shift) and when[11:16] >= self._cut
        key = (when[:10], after)
        day = self._days.get(key)
        if day is None:
            date = dt.date.fromisoformat(when[:10])
            if after:
                date += dt.timedelta(days=1)
            day = date.isoformat()
            if len(self._days) > 10_000:
                self._days.clear()
            self._days[key] = day
        return day

    def bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The first instant of ``day`` and the first of the next."""
        end = dt.datetime.combine(day, dt.time()) + self.shift
        if not self.shift:
            end += dt.timedelta(days=1)
        return end - dt.timedelta(days=1), end


_BEYOND: Final = Decimal("9999999999.999999995")
"""The least magnitude that rounds past the ledger's 18 digits, 8 of them
decimals (10 integer digits a quantity or price may have)."""

YEARS: Final = (1970, 2199)
"""The years a trade's time may fall in: its trading day and value date
must be dates the ledger can write (a time past the calendar is a feed's
mistake, epoch microseconds read as milliseconds say)."""


def ledger_number(number: Decimal) -> bool:
    """Whether the ledger can hold ``number`` (finite, and within 18 digits
    once rounded to 8 decimals)."""
    return number.is_finite() and abs(number) < _BEYOND


def check_year(year: int, what: str) -> None:
    """ValueError when a trade's ``year`` is outside :data:`YEARS`."""
    if not YEARS[0] <= year <= YEARS[1]:
        raise ValueError(f"{what} out of range: the year {year} (not {YEARS[0]}-{YEARS[1]})")


def ledger_text(value: str) -> str:
    """A text as the ledger keeps it: a NUL, which PostgreSQL's text cannot
    hold, becomes U+FFFD on either ledger (so both keep the same keys)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _number(msg: FixMessage, tag: int) -> str:
    """A quantity or price field: a finite decimal the ledger can hold."""
    value = msg.get(tag)
    if value is None:
        raise ValueError(f"tag {tag} missing")
    known = _numbers.get(value)
    if known is not None:
        return known
    text = value.decode("latin-1")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"tag {tag} is not a number: {text[:40]!r}") from None
    if not ledger_number(number):
        raise ValueError(f"tag {tag} out of range: {text[:40]!r}")
    if len(_numbers) >= _CACHED:
        _numbers.clear()
    _numbers[value] = text
    return text


def _text(msg: FixMessage, tag: int) -> str:
    value = msg.get(tag)
    if value is None:
        raise ValueError(f"tag {tag} missing")
    return ledger_text(value.decode("latin-1"))


def _time_and_side(msg: FixMessage) -> tuple[str, int]:
    """TransactTime (60) and Side (54) of a trade report, as the records keep them."""
    side = _SIDES.get(msg.get(54) or b"")
    if side is None:
        raise ValueError(f"side {msg.get(54)!r}")
    time = parse_fix_time(msg.get(60) or b"")
    check_year(int(time[:4]), "tag 60")
    return time, side


def client_trade(msg: FixMessage, seq: int, days: TradeDay) -> ClientTrade | None:
    """The fill a drop-copied ExecutionReport reports (None if it reports
    none: an ack, a cancel, a reject); ValueError if a field is missing."""
    if msg.get(150) != b"F":
        return None
    time, side = _time_and_side(msg)
    return ClientTrade(
        exec_id=_text(msg, 17),
        client=_text(msg, 1),
        order_id=_text(msg, 37),
        cl_ord_id=_text(msg, 11),
        symbol=_text(msg, 55),
        side=side,
        qty=_number(msg, 32),
        price=_number(msg, 31),
        market=ledger_text((msg.get(30) or b"").decode("latin-1")),
        time=time,
        trade_date=days.of(time),
        seq=seq,
    )


def house_trade(msg: FixMessage, seq: int, days: TradeDay) -> HouseTrade:
    """The house's booking a TradeCaptureReport reports; ValueError if a
    field is missing."""
    time, side = _time_and_side(msg)
    return HouseTrade(
        report_id=_text(msg, 571),
        lp=_text(msg, 448),
        lp_exec_id=_text(msg, 17),
        child_id=_text(msg, 37),
        account=_text(msg, 1),
        client_exec_id=ledger_text((msg.get(527) or b"").decode("latin-1")),
        symbol=_text(msg, 55),
        side=side,
        qty=_number(msg, 32),
        price=_number(msg, 31),
        time=time,
        trade_date=days.of(time),
        seq=seq,
        restates=_restated(msg.get(572), msg.get(37) or b""),
    )


def _restated(reference: bytes | None, child_id: bytes) -> str:
    """The ExecID a TradeReportRefID (``<child>/<ExecID>``) names, for a
    booking of ``child_id``; "" when it names none of its child."""
    if not reference:
        return ""
    child, sep, exec_id = reference.partition(b"/")
    if not sep or child != child_id:
        return ""
    return ledger_text(exec_id.decode("latin-1"))
