"""Collateral and positions over FIX 4.4: the CollateralInquiry (35=BB) and
the RequestForPositions (35=AN) a client sends, and the answers.

Inbound, :func:`decode_collateral_inquiry` and :func:`decode_position_request`
turn a request into a :class:`CollateralInquiry` or :class:`PositionRequest`,
or into the :class:`CollateralRefusal` / :class:`PositionRefusal` to report;
:func:`refuse_collateral_inquiry` and :func:`refuse_position_request` make
the refusal of a request turned away before it is read (over the client's
message rate).

Outbound, every function returns a message *body* (``tag=value<SOH>``
fields, no header or trailer, like :mod:`gateway.orderflow.mapping`), built
from a margin account's :class:`~risk.accounts.AccountView`:

* :func:`collateral_report_body`: a CollateralReport (35=BA);
* :func:`collateral_inquiry_ack_body`: a CollateralInquiryAck (35=BG), the
  answer to an inquiry that is refused or that only unsubscribes;
* :func:`positions_ack_body`: a RequestForPositionsAck (35=AO);
* :func:`position_report_body`: a PositionReport (35=AP) per position;
* :func:`answer_collateral_inquiry` and :func:`answer_position_request`:
  every message answering one decoded request, as ``(MsgType, body)``.

Each body holds what QuickFIX's FIX 4.4 dictionary requires of its message
and only fields it allows there, so that a client validating strictly takes
it.  Fields are written in ascending tag order, each repeating group right
after its count field with its members in the dictionary's order.  Neither
BA, AO nor AP has a TransactTime (60) in FIX 4.4 (nor BA a MarginRatio,
898): the header's SendingTime dates them, and the figures that have no
field of their own are in Text (58).

**Who and what.**  The account is the client's: Account (1) is its CompID,
AccountType (581) 1 (carried customer side), and the Parties block names the
same CompID, PartyIDSource (447) D (proprietary code) and PartyRole (452) 3
(client ID).  Money is in USD unless a Currency (15) says otherwise, written
in cents; quantities are in units of the instrument (lots times the lot
size), written by :mod:`router.units`.

A string a client sent is echoed cut to ``max_length`` bytes (the order
entry's ``max_id_length``); a longer id refuses the request, as a longer
ClOrdID does.

Everything here is a pure function of its arguments.  The figures are the
margin engine's estimate (binary floating point, rounded to cents against
the client: margin up; collateral, equity, free margin and P&L down, as is
the margin level to four places), not the back office's books.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from config.schema import DEFAULT_MAX_ID_LENGTH
from gateway.fix.codec import FixMessage, encode_fields
from gateway.orderflow.mapping import excerpt, too_long_text
from risk.accounts import AccountView, Marks, against_client
from router.model import Instrument
from router.units import format_decimal, instrument_formats

__all__ = [
    "ACCOUNT_TYPE_CUSTOMER",
    "COLL_INQUIRY_COMPLETED",
    "COLL_INQUIRY_OTHER",
    "COLL_INQUIRY_REJECTED",
    "COLL_INQUIRY_TYPE_NOT_SUPPORTED",
    "COLL_INQUIRY_UNAUTHORIZED",
    "COLL_STATUS_ASSIGNED",
    "PARTY_ID_SOURCE_PROPRIETARY",
    "PARTY_ROLE_CLIENT_ID",
    "POS_AMT_TYPE_MARK_TO_MARKET",
    "POS_REQ_INVALID",
    "POS_REQ_NOT_AUTHORIZED",
    "POS_REQ_NOT_SUPPORTED",
    "POS_REQ_NO_POSITIONS",
    "POS_REQ_OTHER",
    "POS_REQ_STATUS_COMPLETED",
    "POS_REQ_STATUS_REJECTED",
    "POS_REQ_STATUS_WARNINGS",
    "POS_REQ_VALID",
    "POS_TYPE_NET",
    "SETTL_PRICE_THEORETICAL",
    "SNAPSHOT",
    "SNAPSHOT_AND_UPDATES",
    "UNSUBSCRIBE",
    "CollateralInquiry",
    "CollateralRefusal",
    "PositionRefusal",
    "PositionRequest",
    "answer_collateral_inquiry",
    "answer_position_request",
    "collateral_inquiry_ack_body",
    "collateral_refusal_body",
    "collateral_report_body",
    "decode_collateral_inquiry",
    "decode_position_request",
    "margin_text",
    "position_refusal_body",
    "position_report_body",
    "positions_ack_body",
    "refuse_collateral_inquiry",
    "refuse_position_request",
    "utc_business_date",
]

# SubscriptionRequestType (263)
SNAPSHOT: Final = "0"
SNAPSHOT_AND_UPDATES: Final = "1"
UNSUBSCRIBE: Final = "2"

# PosReqResult (728)
POS_REQ_VALID: Final = 0
POS_REQ_INVALID: Final = 1  # invalid or unsupported request
POS_REQ_NO_POSITIONS: Final = 2  # no positions found that match criteria
POS_REQ_NOT_AUTHORIZED: Final = 3  # not authorized to request positions
POS_REQ_NOT_SUPPORTED: Final = 4  # request for position not supported
POS_REQ_OTHER: Final = 99

# PosReqStatus (729)
POS_REQ_STATUS_COMPLETED: Final = 0
POS_REQ_STATUS_WARNINGS: Final = 1  # completed with warnings
POS_REQ_STATUS_REJECTED: Final = 2

# CollInquiryStatus (945)
COLL_INQUIRY_COMPLETED: Final = 2
COLL_INQUIRY_REJECTED: Final = 4

# CollInquiryResult (946)
COLL_INQUIRY_TYPE_NOT_SUPPORTED: Final = 8
COLL_INQUIRY_UNAUTHORIZED: Final = 9
COLL_INQUIRY_OTHER: Final = 99

# CollStatus (910): the account's collateral is held for it, all of it
COLL_STATUS_ASSIGNED: Final = 3

# AccountType (581): an account carried on the customer side of the books
ACCOUNT_TYPE_CUSTOMER: Final = 1

# Parties: the client's CompID, a proprietary code (D), role client ID (3)
PARTY_ID_SOURCE_PROPRIETARY: Final = b"D"
PARTY_ROLE_CLIENT_ID: Final = 3

# SettlPriceType (731): the mark is no settlement of record
SETTL_PRICE_THEORETICAL: Final = 2

# PosType (703) of the one quantity reported: the net position as it stands
POS_TYPE_NET: Final = b"FIN"

# PosAmtType (707) of the unrealized P&L: marked to market, intraday
POS_AMT_TYPE_MARK_TO_MARKET: Final = b"IMTM"

# PosReqType (724) values; only positions (0) are answered
_POS_REQ_POSITIONS: Final = b"0"
_POS_REQ_TYPES: Final = {b"1": "trades", b"2": "exercises", b"3": "assignments"}

_SUBSCRIPTIONS: Final = {b"0": SNAPSHOT, b"1": SNAPSHOT_AND_UPDATES, b"2": UNSUBSCRIBE}

# Fields that would narrow a CollateralInquiry to orders, trades or an
# instrument: collateral is held, and reported, per account only.
_NARROWING: Final = (
    (11, "ClOrdID (11)"),
    (37, "OrderID (37)"),
    (48, "SecurityID (48)"),
    (55, "Symbol (55)"),
    (124, "NoExecs (124)"),
    (198, "SecondaryOrderID (198)"),
    (526, "SecondaryClOrdID (526)"),
    (897, "NoTrades (897)"),
)

# Extra decimal places of a mark or an average price beyond the tick size
# (a mid may fall between ticks; an average anywhere).
_PRICE_EXTRA_PLACES: Final = 4


# --------------------------------------------------------------------------
# requests


@dataclass(frozen=True, slots=True)
class CollateralInquiry:
    """A client's CollateralInquiry (35=BB): CollInquiryID (909), None when
    it sent none, and SubscriptionRequestType (263, default snapshot)."""

    client: str
    inquiry_id: str | None
    subscription: str = SNAPSHOT


@dataclass(frozen=True, slots=True)
class CollateralRefusal:
    """Why a CollateralInquiry is refused: the CollInquiryResult (946) and
    Text (58) of the CollateralInquiryAck (35=BG) answering it, with its
    CollInquiryID echoed cut ("" when it sent none)."""

    client: str
    inquiry_id: str
    result: int
    text: str


@dataclass(frozen=True, slots=True)
class PositionRequest:
    """A client's RequestForPositions (35=AN) for its positions (PosReqType
    0): PosReqID (710), SubscriptionRequestType (263, default snapshot),
    ClearingBusinessDate (715) as sent (None when absent) and Symbol (55),
    when it asks for one instrument only."""

    client: str
    request_id: str
    subscription: str = SNAPSHOT
    clearing_business_date: str | None = None
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class PositionRefusal:
    """Why a RequestForPositions is refused: the PosReqResult (728) and Text
    (58) of the RequestForPositionsAck (35=AO, PosReqStatus 2 rejected)
    answering it, with its PosReqID echoed cut ("" when it sent none)."""

    client: str
    request_id: str
    result: int
    text: str


def refuse_collateral_inquiry(
    msg: FixMessage,
    client: str,
    result: int,
    text: str,
    *,
    max_length: int = DEFAULT_MAX_ID_LENGTH,
) -> CollateralRefusal:
    """The refusal of the CollateralInquiry ``msg`` with CollInquiryResult
    ``result`` and ``text``, its CollInquiryID echoed cut to ``max_length``
    bytes: what :func:`decode_collateral_inquiry` refuses, or an inquiry
    refused before it is read (over the client's message rate)."""
    inquiry_id = (msg.get(909) or b"")[:max_length].decode("latin-1")
    return CollateralRefusal(client, inquiry_id, result, text)


def refuse_position_request(
    msg: FixMessage,
    client: str,
    result: int,
    text: str,
    *,
    max_length: int = DEFAULT_MAX_ID_LENGTH,
) -> PositionRefusal:
    """The refusal of the RequestForPositions ``msg`` with PosReqResult
    ``result`` and ``text``, its PosReqID echoed cut to ``max_length``
    bytes: what :func:`decode_position_request` refuses, or a request
    refused before it is read (over the client's message rate)."""
    request_id = (msg.get(710) or b"")[:max_length].decode("latin-1")
    return PositionRefusal(client, request_id, result, text)


def _subscription(msg: FixMessage) -> str | None:
    raw = msg.get(263)
    if raw is None:
        return SNAPSHOT
    return _SUBSCRIPTIONS.get(raw)


def _other_account(msg: FixMessage, client: str) -> bytes | None:
    """Account (1) when it names an account other than the client's."""
    account = msg.get(1)
    if account and account != client.encode("latin-1", "replace"):
        return account
    return None


def decode_collateral_inquiry(
    msg: FixMessage,
    client: str,
    *,
    updates: bool = False,
    max_length: int = DEFAULT_MAX_ID_LENGTH,
) -> CollateralInquiry | CollateralRefusal:
    """A CollateralInquiry (35=BB) of ``client``, or why it is refused.

    Refused, with CollInquiryResult (946):

    * 99 (other): a CollInquiryID (909) longer than ``max_length`` bytes,
      or a SubscriptionRequestType (263) other than 0, 1 and 2;
    * 8 (inquiry type not supported): SubscriptionRequestType 1 (snapshot
      and updates) unless ``updates``; an inquiry narrowed to orders,
      trades or an instrument (ClOrdID, OrderID, SecondaryOrderID,
      SecondaryClOrdID, SecurityID, Symbol, NoExecs, NoTrades): collateral
      is kept per account;
    * 9 (unauthorized): an Account (1) that is not the client's.

    CollInqQualGrp qualifiers are not refused: the report covers the whole
    account, which answers them all.  Parties are not read: the session
    names the client."""
    raw_id = msg.get(909)

    def refuse(result: int, text: str) -> CollateralRefusal:
        return refuse_collateral_inquiry(msg, client, result, text, max_length=max_length)

    if raw_id is not None and len(raw_id) > max_length:
        return refuse(
            COLL_INQUIRY_OTHER, too_long_text("CollInquiryID (909)", len(raw_id), max_length)
        )
    subscription = _subscription(msg)
    if subscription is None:
        shown = excerpt(msg.get(263) or b"")
        return refuse(COLL_INQUIRY_OTHER, f"SubscriptionRequestType {shown} is not supported")
    if subscription == SNAPSHOT_AND_UPDATES and not updates:
        return refuse(
            COLL_INQUIRY_TYPE_NOT_SUPPORTED,
            "collateral updates are not supported: send SubscriptionRequestType 0 (snapshot)",
        )
    account = _other_account(msg, client)
    if account is not None:
        return refuse(
            COLL_INQUIRY_UNAUTHORIZED, f"Account {excerpt(account)} is not the account of {client}"
        )
    for tag, name in _NARROWING:
        if msg.get(tag) is not None:
            return refuse(
                COLL_INQUIRY_TYPE_NOT_SUPPORTED,
                f"collateral is reported per account: {name} is not supported",
            )
    inquiry_id = None if raw_id is None else raw_id.decode("latin-1")
    return CollateralInquiry(client, inquiry_id, subscription)


def decode_position_request(
    msg: FixMessage,
    client: str,
    *,
    current_date: str | None = None,
    updates: bool = False,
    max_length: int = DEFAULT_MAX_ID_LENGTH,
) -> PositionRequest | PositionRefusal:
    """A RequestForPositions (35=AN) of ``client``, or why it is refused.

    Refused, with PosReqResult (728):

    * 1 (invalid or unsupported request): no PosReqID (710), or one longer
      than ``max_length`` bytes; a PosReqType (724) missing or not a FIX 4.4
      value; a SubscriptionRequestType (263) other than 0, 1 and 2; a
      ClearingBusinessDate (715) that is not a date (YYYYMMDD); a Symbol
      (55) longer than ``max_length`` bytes;
    * 4 (request for position not supported): PosReqType 1, 2 or 3 (trades,
      exercises, assignments: only 0, positions, is answered);
      SubscriptionRequestType 1 (snapshot and updates) unless ``updates``;
      a ClearingBusinessDate other than ``current_date`` (when given):
      positions are kept as they are now, not per past date; an instrument
      named by SecurityID (48) without a Symbol (answered, it would get
      every position, as if it named none);
    * 3 (not authorized): an Account (1) that is not the client's.

    An absent Account or ClearingBusinessDate (both required by FIX, which
    the session checks) means the client's own account, now."""
    raw_id = msg.get(710)

    def refuse(result: int, text: str) -> PositionRefusal:
        return refuse_position_request(msg, client, result, text, max_length=max_length)

    if not raw_id:
        return refuse(POS_REQ_INVALID, "PosReqID (710) is required")
    if len(raw_id) > max_length:
        return refuse(POS_REQ_INVALID, too_long_text("PosReqID (710)", len(raw_id), max_length))
    req_type = msg.get(724)
    if req_type != _POS_REQ_POSITIONS:
        if req_type is not None and req_type in _POS_REQ_TYPES:
            kind = _POS_REQ_TYPES[req_type]
            return refuse(
                POS_REQ_NOT_SUPPORTED,
                f"PosReqType {req_type.decode()} ({kind}) is not supported: only 0 (positions)",
            )
        if req_type is None:
            return refuse(POS_REQ_INVALID, "PosReqType (724) is required: 0 (positions)")
        return refuse(
            POS_REQ_INVALID, f"PosReqType {excerpt(req_type)} is not valid: 0 (positions)"
        )
    subscription = _subscription(msg)
    if subscription is None:
        shown = excerpt(msg.get(263) or b"")
        return refuse(POS_REQ_INVALID, f"SubscriptionRequestType {shown} is not supported")
    if subscription == SNAPSHOT_AND_UPDATES and not updates:
        return refuse(
            POS_REQ_NOT_SUPPORTED,
            "position updates are not supported: send SubscriptionRequestType 0 (snapshot)",
        )
    account = _other_account(msg, client)
    if account is not None:
        return refuse(
            POS_REQ_NOT_AUTHORIZED, f"Account {excerpt(account)} is not the account of {client}"
        )
    raw_date = msg.get(715)
    date: str | None = None
    if raw_date is not None:
        if not _is_date(raw_date):
            return refuse(
                POS_REQ_INVALID, f"ClearingBusinessDate {excerpt(raw_date)} is not a date"
            )
        date = raw_date.decode("ascii")
        if current_date is not None and date != current_date:
            return refuse(
                POS_REQ_NOT_SUPPORTED,
                f"positions are kept for the current business date {current_date} only",
            )
    raw_symbol = msg.get(55)
    symbol: str | None = None
    if raw_symbol:
        if len(raw_symbol) > max_length:
            return refuse(
                POS_REQ_INVALID, too_long_text("Symbol (55)", len(raw_symbol), max_length)
            )
        symbol = raw_symbol.decode("latin-1")
    elif msg.get(48) is not None:
        return refuse(
            POS_REQ_NOT_SUPPORTED,
            "positions are asked for by Symbol (55): SecurityID (48) alone is not supported",
        )
    return PositionRequest(client, raw_id.decode("latin-1"), subscription, date, symbol)


def _is_date(raw: bytes) -> bool:
    if len(raw) != 8 or not raw.isdigit():
        return False
    try:
        time.strptime(raw.decode("ascii"), "%Y%m%d")
    except ValueError:
        return False
    return True


def utc_business_date(now: float) -> str:
    """The UTC calendar date of ``now`` (epoch seconds) as YYYYMMDD, the
    ClearingBusinessDate (715) of figures taken then."""
    return time.strftime("%Y%m%d", time.gmtime(now))


# --------------------------------------------------------------------------
# numbers and texts


def _out(text: str) -> bytes:
    """``text`` as a field value: Latin-1, with no SOH in it."""
    return text.encode("latin-1", "replace").replace(b"\x01", b" ")


def _cents(amount: float, *, up: bool = False) -> bytes:
    """``amount`` in cents, e.g. ``2700.00`` (never ``-0.00``), rounded
    against the client: ``up`` for what it must hold (margin), down for
    what it has (collateral, equity, free margin, P&L)."""
    if not math.isfinite(amount):
        raise ValueError(f"{amount} is not an amount")
    return str(against_client(amount, 2, up=up)).encode("ascii")


def _money(amount: float, *, up: bool = False) -> str:
    return _cents(amount, up=up).decode("ascii")


def _level(level: float) -> Decimal:
    """A margin level (equity / margin) to four places, rounded down: a
    level below the call level is never shown at it."""
    return against_client(level, 4, up=False)


def _price(value: float, instrument: Instrument) -> bytes:
    """A price in price units of ``instrument``, exact to four places beyond
    its tick size, rounded half to even, without trailing zeros."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a price")
    places = instrument_formats(instrument).tick_scale + _PRICE_EXTRA_PLACES
    return format_decimal(Decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN))


def _parties(client: bytes) -> bytes:
    """The Parties block: one party, the client."""
    return b"453=1\x01448=%b\x01447=%b\x01452=%d\x01" % (
        client,
        PARTY_ID_SOURCE_PROPRIETARY,
        PARTY_ROLE_CLIENT_ID,
    )


def margin_text(view: AccountView) -> str:
    """The figures a CollateralReport has no field for, e.g. ``margin
    2700.00 USD, initial 2700.00 USD, siloed 2700.00 USD, level 1.1111,
    realized 0.00 USD, unrealized 0.00 USD, params cme-1``.  The level is
    equity / margin (rounded down), ``none`` with no margin.  Symbols whose P&L the
    figures leave out for want of a price follow (``, no price for
    USD/JPY``)."""
    level = "none" if view.margin_level is None else str(_level(view.margin_level))
    unpriced = f", no price for {' '.join(view.unpriced)}" if view.unpriced else ""
    return (
        f"margin {_money(view.margin_usd, up=True)} USD, "
        f"initial {_money(view.initial_margin_usd, up=True)} USD, "
        f"siloed {_money(view.siloed_margin_usd, up=True)} USD, "
        f"level {level}, "
        f"realized {_money(view.realized_pnl_usd)} USD, "
        f"unrealized {_money(view.unrealized_pnl_usd)} USD, "
        f"params {view.param_version}{unpriced}"
    )


# --------------------------------------------------------------------------
# collateral


def collateral_report_body(
    view: AccountView,
    *,
    report_id: str,
    inquiry_id: str | None,
    business_date: str,
) -> bytes:
    """The body of a CollateralReport (35=BA) of ``view``'s account.

    ====================  ====================================================
    CollRptID (908)       ``report_id``
    CollInquiryID (909)   ``inquiry_id``, when answering an inquiry that
                          named one; TotNumReports (911) 1 and
                          LastRptRequested (912) Y with it
    CollStatus (910)      3, assigned: the collateral is the account's, all
                          of it held for its positions
    Parties, Account (1)  the client; AccountType (581) 1, customer
    Currency (15)         USD, the currency of every amount
    CashOutstanding (901) the collateral deposited
    TotalNetValue (900)   equity: collateral + realized + unrealized P&L
    MarginExcess (899)    free margin: equity - initial margin (negative: a
                          deficit)
    ClearingBusinessDate  ``business_date`` (YYYYMMDD)
    Text (58)             :func:`margin_text`: margin, initial and siloed
                          margin, margin level, P&L and parameter version
    ====================  ====================================================
    """
    client = _out(view.client)
    parts = [
        b"1=%b\x0115=USD\x0158=%b\x01" % (client, _out(margin_text(view))),
        _parties(client),
        b"581=%d\x01715=%b\x01899=%b\x01900=%b\x01901=%b\x01908=%b\x01"
        % (
            ACCOUNT_TYPE_CUSTOMER,
            _out(business_date),
            _cents(view.free_margin_usd),
            _cents(view.equity_usd),
            _cents(view.collateral_usd),
            _out(report_id),
        ),
    ]
    if inquiry_id is not None:
        parts.append(b"909=%b\x01" % _out(inquiry_id))
    parts.append(b"910=%d\x01" % COLL_STATUS_ASSIGNED)
    if inquiry_id is not None:
        parts.append(b"911=1\x01912=Y\x01")
    return b"".join(parts)


def collateral_inquiry_ack_body(
    client: str,
    *,
    inquiry_id: str,
    status: int,
    result: int | None = None,
    total_reports: int | None = None,
    text: str | None = None,
) -> bytes:
    """The body of a CollateralInquiryAck (35=BG): CollInquiryID (909,
    ``NONE`` when the inquiry had none), CollInquiryStatus (945)
    ``status``, CollInquiryResult (946) ``result``, TotNumReports (911)
    ``total_reports``, the client as Parties and Account, and ``text``."""
    c = _out(client)
    fields = [(1, c)]
    if text:
        fields.append((58, _out(text)))
    parts = [encode_fields(fields), _parties(c)]
    tail = [(581, b"%d" % ACCOUNT_TYPE_CUSTOMER), (909, _out(inquiry_id or "NONE"))]
    if total_reports is not None:
        tail.append((911, b"%d" % total_reports))
    tail.append((945, b"%d" % status))
    if result is not None:
        tail.append((946, b"%d" % result))
    parts.append(encode_fields(tail))
    return b"".join(parts)


def collateral_refusal_body(refusal: CollateralRefusal) -> bytes:
    """The CollateralInquiryAck (35=BG) body refusing an inquiry:
    CollInquiryStatus 4 (rejected) with the refusal's result and text."""
    return collateral_inquiry_ack_body(
        refusal.client,
        inquiry_id=refusal.inquiry_id,
        status=COLL_INQUIRY_REJECTED,
        result=refusal.result,
        text=refusal.text,
    )


def answer_collateral_inquiry(
    inquiry: CollateralInquiry,
    view: AccountView | None,
    *,
    report_id: str,
    business_date: str,
) -> list[tuple[bytes, bytes]]:
    """Every message answering ``inquiry``, as ``(MsgType, body)``: the
    CollateralReport of ``view``; for an unsubscription (263=2) a
    CollateralInquiryAck completed (945=2) with no report; for a client
    with no margin account (``view`` None) one rejected (945=4, 946=9).

    A subscription (263=1, when decoded with ``updates``) is answered with
    the snapshot here; sending the updates is the caller's."""
    if view is None:
        return [
            (
                b"BG",
                collateral_inquiry_ack_body(
                    inquiry.client,
                    inquiry_id=inquiry.inquiry_id or "",
                    status=COLL_INQUIRY_REJECTED,
                    result=COLL_INQUIRY_UNAUTHORIZED,
                    text=f"no margin account for {inquiry.client}",
                ),
            )
        ]
    if inquiry.subscription == UNSUBSCRIBE:
        return [
            (
                b"BG",
                collateral_inquiry_ack_body(
                    inquiry.client,
                    inquiry_id=inquiry.inquiry_id or "",
                    status=COLL_INQUIRY_COMPLETED,
                    total_reports=0,
                ),
            )
        ]
    body = collateral_report_body(
        view, report_id=report_id, inquiry_id=inquiry.inquiry_id, business_date=business_date
    )
    return [(b"BA", body)]


# --------------------------------------------------------------------------
# positions


def positions_ack_body(
    client: str,
    *,
    report_id: str,
    request_id: str | None,
    total_reports: int,
    result: int = POS_REQ_VALID,
    status: int = POS_REQ_STATUS_COMPLETED,
    text: str | None = None,
) -> bytes:
    """The body of a RequestForPositionsAck (35=AO): PosMaintRptID (721)
    ``report_id``, PosReqID (710) ``request_id`` (left out when empty),
    TotalNumPosReports (727), PosReqResult (728), PosReqStatus (729), the
    client as Parties and Account (AccountType 1), and ``text``."""
    c = _out(client)
    head = [(1, c)]
    if text:
        head.append((58, _out(text)))
    tail = [(581, b"%d" % ACCOUNT_TYPE_CUSTOMER)]
    if request_id:
        tail.append((710, _out(request_id)))
    tail += [
        (721, _out(report_id)),
        (727, b"%d" % total_reports),
        (728, b"%d" % result),
        (729, b"%d" % status),
    ]
    return encode_fields(head) + _parties(c) + encode_fields(tail)


def position_refusal_body(refusal: PositionRefusal, *, report_id: str) -> bytes:
    """The RequestForPositionsAck (35=AO) body refusing a request:
    PosReqStatus 2 (rejected), no reports, the refusal's result and text."""
    return positions_ack_body(
        refusal.client,
        report_id=report_id,
        request_id=refusal.request_id,
        total_reports=0,
        result=refusal.result,
        status=POS_REQ_STATUS_REJECTED,
        text=refusal.text,
    )


def position_report_body(
    view: AccountView,
    symbol: str,
    instrument: Instrument,
    marks: Marks,
    *,
    report_id: str,
    request_id: str | None,
    total_reports: int,
    business_date: str,
) -> bytes:
    """The body of a PositionReport (35=AP) of the account's position in
    ``symbol`` (``instrument``), valued at ``marks`` (the marks the account
    figures were taken at: ``Accounts.marks``).  Raises ValueError when
    the account holds no position in ``symbol``.

    ====================  ====================================================
    PosMaintRptID (721)   ``report_id``
    PosReqID (710)        ``request_id``, with PosReqType (724) 0 and
                          UnsolicitedIndicator (325) N; without one (an
                          update), 325 is Y
    TotalNumPosReports    ``total_reports`` (727)
    PosReqResult (728)    0, valid request
    ClearingBusinessDate  ``business_date`` (715, YYYYMMDD)
    Parties, Account (1)  the client; AccountType (581) 1, customer
    Symbol (55)           the instrument; Currency (15) its quote currency,
                          the currency of the prices and of PosAmt
    SettlPrice (730)      the mark (mid price, or last fill) the account is
                          valued at
    SettlPriceType (731)  2, theoretical: a mark, not a settlement of record
    PriorSettlPrice (734) the position's average entry price: the price its
                          P&L is measured from, as a prior settlement price
                          is for a variation margin, so that the quantity
                          times (730 - 734) is the P&L reported in PosAmt
    NoPositions (702)     one entry: PosType (703) FIN, the net position as
                          it stands now (what the day would end with, no
                          start-of-day quantity kept); LongQty (704) and
                          ShortQty (705) in units, the side not held 0
    NoPosAmt (753)        one entry: PosAmtType (707) IMTM, incremental
                          mark-to-market, with PosAmt (708) the unrealized
                          P&L in the quote currency, in cents
    Text (58)             the unrealized P&L in USD, and when the symbol has
                          no mark yet, that the average price stands for it
    ====================  ====================================================
    """
    held = view.positions.get(symbol)
    if held is None or not held[0]:
        raise ValueError(f"{view.client} holds no position in {symbol}")
    lots, avg = held
    fmt = instrument_formats(instrument)
    units = fmt.qty(abs(lots))
    long_qty, short_qty = (units, b"0") if lots > 0 else (b"0", units)
    mark = marks.price.get(symbol)
    if mark is None or not mark > 0:
        mark = avg
        note = ", no mark yet: priced at the average entry price"
    else:
        note = ""
    pnl = lots * float(instrument.lot_size) * (mark - avg)
    to_usd = marks.quote_to_usd(symbol)
    usd = "unknown" if to_usd is None else f"{_money(pnl * to_usd)} USD"
    text = f"unrealized P&L {usd}{note}"
    client = _out(view.client)
    parts = [
        b"1=%b\x0115=%b\x0155=%b\x0158=%b\x01325=%b\x01"
        % (
            client,
            _out(instrument.quote_currency),
            _out(symbol),
            _out(text),
            b"Y" if request_id is None else b"N",
        ),
        _parties(client),
        b"581=%d\x01702=1\x01703=%b\x01704=%b\x01705=%b\x01"
        % (ACCOUNT_TYPE_CUSTOMER, POS_TYPE_NET, long_qty, short_qty),
    ]
    if request_id is not None:
        parts.append(b"710=%b\x01" % _out(request_id))
    parts.append(b"715=%b\x01721=%b\x01" % (_out(business_date), _out(report_id)))
    if request_id is not None:
        parts.append(b"724=0\x01")
    parts.append(
        b"727=%d\x01728=%d\x01730=%b\x01731=%d\x01734=%b\x01753=1\x01707=%b\x01708=%b\x01"
        % (
            total_reports,
            POS_REQ_VALID,
            _price(mark, instrument),
            SETTL_PRICE_THEORETICAL,
            _price(avg, instrument),
            POS_AMT_TYPE_MARK_TO_MARKET,
            _cents(pnl),
        )
    )
    return b"".join(parts)


def answer_position_request(
    request: PositionRequest,
    view: AccountView | None,
    marks: Marks,
    instruments: Mapping[str, Instrument],
    *,
    next_id: Callable[[], str],
    business_date: str,
) -> list[tuple[bytes, bytes]]:
    """Every message answering ``request``, as ``(MsgType, body)``: a
    RequestForPositionsAck, then a PositionReport per position (in symbol
    order, only ``request.symbol``'s when it names one).  ``next_id`` gives
    each message its PosMaintRptID.

    The ack's PosReqResult: 0 with the number of reports; 2 (no positions
    found) when there are none; 3 (not authorized, rejected) for a client
    with no margin account (``view`` None).  An unsubscription (263=2) is
    acknowledged (0, completed) with no reports.  A position in a symbol
    no longer configured is left out and the ack completes with warnings
    (729=1), naming it.  A subscription (263=1, when decoded with
    ``updates``) is answered with the snapshot here; the updates are the
    caller's."""
    client = request.client
    if view is None:
        body = positions_ack_body(
            client,
            report_id=next_id(),
            request_id=request.request_id,
            total_reports=0,
            result=POS_REQ_NOT_AUTHORIZED,
            status=POS_REQ_STATUS_REJECTED,
            text=f"no margin account for {client}",
        )
        return [(b"AO", body)]
    if request.subscription == UNSUBSCRIBE:
        body = positions_ack_body(
            client, report_id=next_id(), request_id=request.request_id, total_reports=0
        )
        return [(b"AO", body)]
    wanted = sorted(
        s for s, (lots, _) in view.positions.items() if lots and request.symbol in (None, s)
    )
    unknown = [s for s in wanted if s not in instruments]
    symbols = [s for s in wanted if s in instruments]
    status = POS_REQ_STATUS_WARNINGS if unknown else POS_REQ_STATUS_COMPLETED
    text = f"no instrument configured for {', '.join(unknown)}" if unknown else None
    if not symbols:
        body = positions_ack_body(
            client,
            report_id=next_id(),
            request_id=request.request_id,
            total_reports=0,
            result=POS_REQ_NO_POSITIONS,
            status=status,
            text=text or "no positions",
        )
        return [(b"AO", body)]
    out = [
        (
            b"AO",
            positions_ack_body(
                client,
                report_id=next_id(),
                request_id=request.request_id,
                total_reports=len(symbols),
                status=status,
                text=text,
            ),
        )
    ]
    for symbol in symbols:
        body = position_report_body(
            view,
            symbol,
            instruments[symbol],
            marks,
            report_id=next_id(),
            request_id=request.request_id,
            total_reports=len(symbols),
            business_date=business_date,
        )
        out.append((b"AP", body))
    return out
