"""Collateral and positions over FIX 4.4: CollateralInquiry (BB) answered
with a CollateralReport (BA), RequestForPositions (AN) with a
RequestForPositionsAck (AO) and PositionReports (AP), every answer checked
against QuickFIX's FIX44.xml by an independent strict checker
(tests/strict_fix44.py), which is itself shown to catch wrong messages."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strict_fix44 import message_problems, parse_fields, problems

from gateway.fix.codec import FixMessage, encode_message, parse_frame
from gateway.orderflow.collateral import (
    COLL_INQUIRY_OTHER,
    COLL_INQUIRY_TYPE_NOT_SUPPORTED,
    COLL_INQUIRY_UNAUTHORIZED,
    POS_REQ_INVALID,
    POS_REQ_NO_POSITIONS,
    POS_REQ_NOT_AUTHORIZED,
    POS_REQ_NOT_SUPPORTED,
    SNAPSHOT,
    SNAPSHOT_AND_UPDATES,
    UNSUBSCRIBE,
    CollateralInquiry,
    CollateralRefusal,
    PositionRefusal,
    PositionRequest,
    answer_collateral_inquiry,
    answer_position_request,
    collateral_refusal_body,
    collateral_report_body,
    decode_collateral_inquiry,
    decode_position_request,
    position_refusal_body,
    position_report_body,
    positions_ack_body,
    utc_business_date,
)
from risk.accounts import Accounts, AccountTerms, AccountView, Marks
from risk.margin import MarginGroup, MarginParams, SpreadDef, SpreadLeg
from router.model import AssetClass, Instrument, Side

DATE = "20260102"
NOW = "20260102-10:00:00.000"


def instrument(
    symbol: str,
    tick: str,
    lot: str,
    cls: AssetClass = AssetClass.COMMODITY,
    quote: str = "USD",
    conversion: str = "quote",
) -> Instrument:
    return Instrument(symbol, cls, Decimal(tick), Decimal(lot), 1, 10_000, quote, conversion)


INSTRUMENTS = {
    "ZC": instrument("ZC", "0.01", "1"),
    "ZS": instrument("ZS", "0.01", "1"),
    "EUR/USD": instrument("EUR/USD", "0.00001", "1000", AssetClass.FX),
    "USD/JPY": instrument("USD/JPY", "0.001", "1000", AssetClass.FX, "JPY", "base"),
}
PARAMS = MarginParams(
    "cme-example-1",
    (
        MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),
        MarginGroup("soy", "commodity", ("ZS",), scan_usd=2500),
        MarginGroup("eur", "fx", ("EUR/USD",), scan_pct=0.02),
        MarginGroup("jpy", "fx", ("USD/JPY",), scan_pct=0.02),
    ),
    (SpreadDef("corn-soy", 1, 0.55, (SpreadLeg("corn", 2, "A"), SpreadLeg("soy", 1, "B"))),),
)
# price, and USD value of one unit: USD/JPY's unit is one USD
MARKS = Marks(
    {"ZC": 450.0, "ZS": 1200.0, "EUR/USD": 1.1, "USD/JPY": 150.0},
    {"ZC": 450.0, "ZS": 1200.0, "EUR/USD": 1.1, "USD/JPY": 1.0},
)


def book(collateral: str = "3000") -> Accounts:
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal(collateral))}, INSTRUMENTS)
    accounts.mark(MARKS)
    return accounts


def cme_example() -> tuple[Accounts, AccountView]:
    """CME's example: long 2 corn, short 1 soybeans, margin 2,700 USD."""
    accounts = book("3000")
    accounts.trade("C1", "ZC", Side.BUY, 2, 45000)
    accounts.trade("C1", "ZS", Side.SELL, 1, 120000)
    view = accounts.view("C1")
    assert view is not None
    return accounts, view


def ids() -> Callable[[], str]:
    counter: Iterator[int] = iter(range(1, 10**6))
    return lambda: f"PM{next(counter)}"


def values(body: bytes) -> dict[int, bytes]:
    """The body's fields, the first value of each tag."""
    out: dict[int, bytes] = {}
    for tag, value in parse_fields(body):
        out.setdefault(tag, value)
    return out


def inbound(msg_type: bytes, body: bytes) -> FixMessage:
    """A client's message as the session hands it over, after checking that
    the test sends a valid one."""
    header = [(34, b"2"), (49, b"C1"), (52, NOW.encode()), (56, b"FIXGW")]
    raw = encode_message(b"FIX.4.4", msg_type, header, body)
    assert message_problems(raw) == []
    return parse_frame(raw)


def position_request(changes: dict[int, bytes] | None = None) -> bytes:
    """A valid RequestForPositions body, with ``changes`` (an empty value
    leaves the field out)."""
    fields = {1: b"C1", 60: NOW.encode(), 581: b"1", 710: b"P1", 715: DATE.encode(), 724: b"0"}
    fields.update(changes or {})
    parties = b"453=1\x01448=C1\x01447=D\x01452=3\x01"
    return b"".join(b"%d=%b\x01" % (t, v) for t, v in sorted(fields.items()) if v) + parties


def report(view: AccountView, symbol: str, marks: Marks) -> bytes:
    return position_report_body(
        view,
        symbol,
        INSTRUMENTS[symbol],
        marks,
        report_id="M9",
        request_id="P9",
        total_reports=2,
        business_date=DATE,
    )


# --------------------------------------------------------------------------
# (a) the checker refuses what a strict FIX 4.4 client would


GOOD_AO = (
    b"1=C1\x01453=1\x01448=C1\x01447=D\x01452=3\x01581=1\x01710=P1\x01"
    b"721=M1\x01727=0\x01728=2\x01729=0\x01"
)


def test_the_checker_takes_a_valid_message() -> None:
    assert problems(b"AO", GOOD_AO) == []
    order = b"11=A\x0138=100\x0140=2\x0144=1.5\x0154=1\x0155=X\x0160=" + NOW.encode() + b"\x01"
    assert problems(b"D", order) == []
    header = [(34, b"7"), (49, b"FIXGW"), (52, NOW.encode()), (56, b"C1")]
    whole = encode_message(b"FIX.4.4", b"AO", header, GOOD_AO)
    assert message_problems(whole) == []


@pytest.mark.parametrize(
    ("msg_type", "body", "expected"),
    [
        # a missing required field
        (b"AO", GOOD_AO.replace(b"729=0\x01", b""), "required tag 729 (PosReqStatus) is missing"),
        (b"BA", b"908=R1\x01", "required tag 910 (CollStatus) is missing"),
        # a value that is not one of the field's enumeration
        (b"AO", GOOD_AO.replace(b"728=2", b"728=5"), "728 (PosReqResult)"),
        (b"BA", b"908=R1\x01910=9\x01", "not one of its enumerated values"),
        # a field the message does not have
        (b"BA", b"60=" + NOW.encode() + b"\x01908=R1\x01910=3\x01", "not in message"),
        (b"AO", GOOD_AO + b"898=1.5\x01", "898 (MarginRatio) is not in message"),
        # group counts that do not match the entries
        (b"AO", GOOD_AO.replace(b"453=1", b"453=2"), "count 2 but 1 entries"),
        (
            b"AO",
            GOOD_AO.replace(b"452=3\x01", b"452=3\x01448=X\x01447=D\x01452=3\x01"),
            "count 1 but 2 entries",
        ),
        # a group member outside its group
        (b"AO", GOOD_AO + b"448=X\x01", "outside its group NoPartyIDs"),
        # an entry that does not start with the group's first field
        (b"AO", GOOD_AO.replace(b"448=C1\x01447=D", b"447=D\x01448=C1"), "starts with tag 447"),
        # a required component missing, or present but empty
        (b"AO", GOOD_AO.replace(b"453=1\x01448=C1\x01447=D\x01452=3\x01", b""), "Parties"),
        (b"AO", GOOD_AO.replace(b"453=1\x01448=C1\x01447=D\x01452=3\x01", b"453=0\x01"), "empty"),
        # values of the wrong type
        (b"AO", GOOD_AO.replace(b"727=0", b"727=zero"), "not a valid INT"),
        (b"AO", GOOD_AO.replace(b"447=D", b"447=DD"), "not a valid CHAR"),
        (b"BA", b"715=2026-01-02\x01908=R1\x01910=3\x01", "not a valid LOCALMKTDATE"),
        (b"BA", b"715=20260231\x01908=R1\x01910=3\x01", "not a valid LOCALMKTDATE"),
        (b"BA", b"899=1,5\x01908=R1\x01910=3\x01", "not a valid AMT"),
        (b"BA", b"908=R1\x01910=3\x01912=yes\x01", "912 (LastRptRequested)"),
        (b"BA", b"15=usd\x01908=R1\x01910=3\x01", "not a valid CURRENCY"),
        (b"D", b"11=A\x0138=1\x0140=1\x0154=1\x0155=X\x0160=20260102-25:00:00\x01", "UTCTIMESTAMP"),
        # a tag twice, a tag FIX 4.4 does not define, a field with no value
        (b"AO", GOOD_AO + b"1=C2\x01", "repeated"),
        (b"AO", GOOD_AO + b"9999=x\x01", "9999 is not defined"),
        (b"AO", GOOD_AO.replace(b"710=P1", b"710="), "has no value"),
        # header fields in a body, and an unknown message type
        (b"AO", GOOD_AO + b"52=" + NOW.encode() + b"\x01", "belongs to the header"),
        (b"ZZ", GOOD_AO, "not a FIX 4.4 message"),
    ],
)
def test_the_checker_catches_wrong_messages(msg_type: bytes, body: bytes, expected: str) -> None:
    found = problems(msg_type, body)
    assert any(expected in p for p in found), found


def test_the_checker_follows_nested_groups_and_required_groups() -> None:
    _, view = cme_example()
    body = position_report_body(
        view,
        "ZC",
        INSTRUMENTS["ZC"],
        MARKS,
        report_id="M1",
        request_id="P1",
        total_reports=1,
        business_date=DATE,
    )
    assert problems(b"AP", body) == []
    # a required group (PositionQty's NoPositions) with no entry
    no_qty = body.replace(b"702=1\x01703=FIN\x01704=2\x01705=0\x01", b"702=0\x01")
    assert any("PositionQty is empty" in p for p in problems(b"AP", no_qty))
    # a party sub-id, nested in a party entry, is fine; outside it is not
    nested = body.replace(b"452=3\x01", b"452=3\x01802=1\x01523=desk\x01803=24\x01")
    assert problems(b"AP", nested) == []
    assert any("outside its group" in p for p in problems(b"AP", body + b"523=desk\x01"))
    # an entry's members in the dictionary's order
    swapped = body.replace(b"704=2\x01705=0\x01", b"705=0\x01704=2\x01")
    assert any("out of order" in p for p in problems(b"AP", swapped))


def test_the_checker_checks_the_frame_of_a_whole_message() -> None:
    header = [(34, b"7"), (49, b"FIXGW"), (52, NOW.encode()), (56, b"C1")]
    whole = encode_message(b"FIX.4.4", b"AO", header, GOOD_AO)
    assert any("CheckSum" in p for p in message_problems(whole[:-4] + b"000\x01"))
    assert any("BodyLength" in p for p in message_problems(whole.replace(b"9=", b"9=1", 1)))
    no_sender = encode_message(b"FIX.4.4", b"AO", header[:1] + header[2:], GOOD_AO)
    assert any("49 (SenderCompID) is missing" in p for p in message_problems(no_sender))


# --------------------------------------------------------------------------
# (b) and (c) the answers are valid, and carry the account's figures


def test_the_collateral_report_of_the_cme_example() -> None:
    _, view = cme_example()
    body = collateral_report_body(view, report_id="CR1", inquiry_id="Q1", business_date=DATE)
    assert problems(b"BA", body) == []
    f = values(body)
    assert f[908] == b"CR1"
    assert f[909] == b"Q1"
    assert f[910] == b"3"  # assigned
    assert (f[911], f[912]) == (b"1", b"Y")
    assert f[1] == f[448] == b"C1"
    assert (f[447], f[452], f[581]) == (b"D", b"3", b"1")
    assert f[15] == b"USD"
    assert f[715] == DATE.encode()
    assert f[901] == b"3000.00"  # collateral
    assert f[900] == b"3000.00"  # equity: traded at the marks, no P&L
    assert f[899] == b"300.00"  # free margin: 3,000 - 2,700
    text = f[58].decode()
    assert "margin 2700.00 USD" in text
    assert "siloed 2700.00 USD" in text
    assert "level 1.1111" in text
    assert "params cme-example-1" in text


def test_a_report_names_the_symbols_whose_pnl_it_leaves_out() -> None:
    """Before the first quote after a restart, the P&L of a position with
    no mark is not in the figures: the Text says so."""
    _, view = cme_example()
    partial = dataclasses.replace(view, unpriced=("ZC", "ZS"))
    body = collateral_report_body(partial, report_id="CR1", inquiry_id=None, business_date=DATE)
    assert problems(b"BA", body) == []
    assert values(body)[58].decode().endswith("params cme-example-1, no price for ZC ZS")
    assert (
        "no price"
        not in values(
            collateral_report_body(view, report_id="CR2", inquiry_id=None, business_date=DATE)
        )[58].decode()
    )


def test_a_deficit_and_an_account_without_margin_report_validly() -> None:
    accounts, _ = cme_example()
    accounts.mark(Marks({"ZC": 300.0}, {"ZC": 300.0}))  # corn falls: -300 of P&L
    accounts.trade("C1", "ZC", Side.BUY, 4, 30000)  # and more corn: margin above equity
    view = accounts.view("C1")
    assert view is not None
    assert view.free_margin_usd < 0
    body = collateral_report_body(view, report_id="CR2", inquiry_id=None, business_date=DATE)
    assert problems(b"BA", body) == []
    f = values(body)
    assert f[900] == b"2700.00"
    assert f[899] == b"%.2f" % view.free_margin_usd
    assert f[899].startswith(b"-")
    assert 909 not in f
    assert 911 not in f
    flat = book("500").view("C1")
    assert flat is not None
    body = collateral_report_body(flat, report_id="CR3", inquiry_id="Q", business_date=DATE)
    assert problems(b"BA", body) == []
    assert "level none" in values(body)[58].decode()
    assert values(body)[899] == b"500.00"


def test_positions_answered_with_an_ack_and_a_report_each() -> None:
    accounts, _ = cme_example()
    accounts.trade("C1", "EUR/USD", Side.BUY, 100, 110000)  # 100,000 EUR at 1.1
    accounts.mark(Marks({"EUR/USD": 1.2}, {"EUR/USD": 1.2}))
    view = accounts.view("C1")
    assert view is not None
    answers = answer_position_request(
        PositionRequest("C1", "P1"),
        view,
        accounts.marks,
        INSTRUMENTS,
        next_id=ids(),
        business_date=DATE,
    )
    assert [t for t, _ in answers] == [b"AO", b"AP", b"AP", b"AP"]
    for msg_type, body in answers:
        assert problems(msg_type, body) == [], msg_type
    ack = values(answers[0][1])
    assert (ack[710], ack[721], ack[727], ack[728], ack[729]) == (b"P1", b"PM1", b"3", b"0", b"0")
    reports = {values(b)[55]: values(b) for _, b in answers[1:]}
    assert list(reports) == [b"EUR/USD", b"ZC", b"ZS"]
    assert len({r[721] for r in reports.values()}) == 3
    eur, corn, soy = reports[b"EUR/USD"], reports[b"ZC"], reports[b"ZS"]
    for r in reports.values():
        assert (r[710], r[715], r[724], r[727], r[728]) == (b"P1", DATE.encode(), b"0", b"3", b"0")
        assert (r[1], r[448], r[325], r[731], r[703], r[707]) == (
            b"C1",
            b"C1",
            b"N",
            b"2",
            b"FIN",
            b"IMTM",
        )
    # quantities in units: 100 lots of 1,000 EUR; 2 corn long, 1 soybeans short
    assert (eur[704], eur[705]) == (b"100000", b"0")
    assert (corn[704], corn[705]) == (b"2", b"0")
    assert (soy[704], soy[705]) == (b"0", b"1")
    # the mark, the average entry price, the P&L between them
    assert (eur[730], eur[734]) == (b"1.2", b"1.1")
    assert eur[708] == b"10000.00"
    assert "unrealized P&L 10000.00 USD" in eur[58].decode()
    assert (soy[730], soy[734], soy[708]) == (b"1200", b"1200", b"0.00")
    assert eur[15] == b"USD"


def test_a_position_quoted_in_another_currency() -> None:
    accounts = book("100000")
    accounts.trade("C1", "USD/JPY", Side.SELL, 10, 150000)  # short 10,000 USD at 150
    accounts.mark(Marks({"USD/JPY": 149.0}, {"USD/JPY": 1.0}))
    view = accounts.view("C1")
    assert view is not None
    body = position_report_body(
        view,
        "USD/JPY",
        INSTRUMENTS["USD/JPY"],
        accounts.marks,
        report_id="M1",
        request_id=None,
        total_reports=1,
        business_date=DATE,
    )
    assert problems(b"AP", body) == []
    f = values(body)
    assert f[15] == b"JPY"
    assert (f[704], f[705]) == (b"0", b"10000")
    assert (f[730], f[734]) == (b"149", b"150")
    assert f[708] == b"10000.00"  # JPY: 10,000 x (150 - 149)
    usd = 10_000 / 149.0
    assert math.isclose(view.unrealized_pnl_usd, usd)
    assert f"unrealized P&L {usd:.2f} USD" in f[58].decode()
    # an update, sent without a request: no PosReqID, unsolicited
    assert 710 not in f
    assert 724 not in f
    assert f[325] == b"Y"


def test_an_average_price_off_the_tick_grid_and_a_symbol_with_no_mark() -> None:
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal(10**6))}, INSTRUMENTS)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    accounts.trade("C1", "ZC", Side.BUY, 1, 45000)
    accounts.trade("C1", "ZC", Side.BUY, 2, 45001)
    accounts.trade("C1", "ZS", Side.SELL, 1, 120000)  # ZS never marked
    view = accounts.view("C1")
    assert view is not None
    corn = values(report(view, "ZC", accounts.marks))
    assert corn[734] == b"450.006667"  # (450 + 2 x 450.01) / 3, four places past the tick
    assert corn[708] == b"-0.02"
    soy_body = report(view, "ZS", accounts.marks)
    assert problems(b"AP", soy_body) == []
    soy = values(soy_body)
    assert soy[730] == soy[734] == b"1200"
    assert soy[708] == b"0.00"
    assert "no mark yet" in soy[58].decode()
    with pytest.raises(ValueError, match="no position"):
        report(view, "EUR/USD", accounts.marks)


@settings(max_examples=60)
@given(
    trades=st.lists(
        st.tuples(
            st.sampled_from(sorted(INSTRUMENTS)),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 50),
            st.integers(-50, 50),
        ),
        max_size=12,
    ),
    moves=st.lists(st.floats(0.5, 1.5), min_size=4, max_size=4),
)
def test_every_answer_is_valid_and_the_pnl_adds_up(
    trades: list[tuple[str, Side, int, int]], moves: list[float]
) -> None:
    accounts = book("50000")
    base = {"ZC": 45000, "ZS": 120000, "EUR/USD": 110000, "USD/JPY": 150000}
    for symbol, side, lots, offset in trades:
        accounts.trade("C1", symbol, side, lots, base[symbol] + offset)
    prices = {s: MARKS.price[s] * m for s, m in zip(sorted(INSTRUMENTS), moves, strict=True)}
    unit = {s: (1.0 if s == "USD/JPY" else p) for s, p in prices.items()}
    accounts.mark(Marks(prices, unit))
    view = accounts.view("C1")
    assert view is not None
    report = collateral_report_body(view, report_id="CR", inquiry_id="Q", business_date=DATE)
    assert problems(b"BA", report) == []
    answers = answer_position_request(
        PositionRequest("C1", "P1"),
        view,
        accounts.marks,
        INSTRUMENTS,
        next_id=ids(),
        business_date=DATE,
    )
    total = 0.0
    for msg_type, body in answers:
        assert problems(msg_type, body) == [], (msg_type, body)
        if msg_type == b"AP":
            f = values(body)
            symbol = f[55].decode()
            lots, _ = view.positions[symbol]
            units = INSTRUMENTS[symbol].lots_to_qty(abs(lots))
            assert Decimal(f[704 if lots > 0 else 705].decode()) == units
            to_usd = accounts.marks.quote_to_usd(symbol)
            assert to_usd is not None
            total += float(f[708]) * to_usd
    assert len(answers) == 1 + len(view.positions)
    # each PosAmt is rounded to the cent in its quote currency
    assert math.isclose(total, view.unrealized_pnl_usd, abs_tol=0.01 * len(view.positions))


# --------------------------------------------------------------------------
# (d) the requests


def test_a_collateral_inquiry_is_decoded_and_answered() -> None:
    _, view = cme_example()
    msg = inbound(b"BB", b"1=C1\x01263=0\x01909=Q7\x01")
    inquiry = decode_collateral_inquiry(msg, "C1")
    assert inquiry == CollateralInquiry("C1", "Q7", SNAPSHOT)
    ((msg_type, body),) = answer_collateral_inquiry(
        inquiry, view, report_id="CR1", business_date=DATE
    )
    assert msg_type == b"BA"
    assert problems(b"BA", body) == []
    assert values(body)[909] == b"Q7"
    # no CollInquiryID, no SubscriptionRequestType: a snapshot, answered
    bare = decode_collateral_inquiry(inbound(b"BB", b"58=hello\x01"), "C1")
    assert bare == CollateralInquiry("C1", None, SNAPSHOT)
    ((_, body),) = answer_collateral_inquiry(bare, view, report_id="CR2", business_date=DATE)
    assert problems(b"BA", body) == []
    assert 909 not in values(body)


def test_an_unsubscription_and_a_client_without_an_account() -> None:
    _, view = cme_example()
    stop = decode_collateral_inquiry(inbound(b"BB", b"263=2\x01909=Q8\x01"), "C1")
    assert stop == CollateralInquiry("C1", "Q8", UNSUBSCRIBE)
    ((msg_type, body),) = answer_collateral_inquiry(stop, view, report_id="X", business_date=DATE)
    assert msg_type == b"BG"
    assert problems(b"BG", body) == []
    assert (values(body)[945], values(body)[911]) == (b"2", b"0")
    stranger = CollateralInquiry("C9", None, SNAPSHOT)
    ((msg_type, body),) = answer_collateral_inquiry(
        stranger, None, report_id="X", business_date=DATE
    )
    assert msg_type == b"BG"
    assert problems(b"BG", body) == []
    f = values(body)
    assert (f[909], f[945], f[946], f[1]) == (b"NONE", b"4", b"9", b"C9")


@pytest.mark.parametrize(
    ("body", "result", "text"),
    [
        (b"263=1\x01909=Q1\x01", COLL_INQUIRY_TYPE_NOT_SUPPORTED, "updates are not supported"),
        (b"1=C2\x01909=Q1\x01", COLL_INQUIRY_UNAUTHORIZED, "Account C2 is not the account of C1"),
        (b"55=ZC\x01909=Q1\x01", COLL_INQUIRY_TYPE_NOT_SUPPORTED, "Symbol (55) is not supported"),
        (b"11=O1\x01909=Q1\x01", COLL_INQUIRY_TYPE_NOT_SUPPORTED, "ClOrdID (11)"),
        (b"909=" + b"Q" * 65 + b"\x01", COLL_INQUIRY_OTHER, "CollInquiryID (909) too long"),
    ],
)
def test_collateral_inquiries_refused(body: bytes, result: int, text: str) -> None:
    refusal = decode_collateral_inquiry(inbound(b"BB", body), "C1")
    assert isinstance(refusal, CollateralRefusal)
    assert refusal.result == result
    assert text in refusal.text
    ack = collateral_refusal_body(refusal)
    assert problems(b"BG", ack) == []
    f = values(ack)
    assert (f[945], f[946]) == (b"4", str(result).encode())
    assert len(f[909]) <= 64
    assert f[909] in (b"Q1", b"Q" * 64)


def test_collateral_updates_when_the_caller_sends_them() -> None:
    msg = inbound(b"BB", b"263=1\x01909=Q1\x01")
    assert decode_collateral_inquiry(msg, "C1", updates=True) == CollateralInquiry(
        "C1", "Q1", SNAPSHOT_AND_UPDATES
    )


def test_a_position_request_is_decoded() -> None:
    msg = inbound(b"AN", position_request())
    assert decode_position_request(msg, "C1", current_date=DATE) == PositionRequest(
        "C1", "P1", SNAPSHOT, DATE, None
    )
    one = inbound(b"AN", position_request({55: b"ZC", 263: b"0"}))
    assert decode_position_request(one, "C1") == PositionRequest("C1", "P1", SNAPSHOT, DATE, "ZC")


@pytest.mark.parametrize(
    ("changes", "result", "text"),
    [
        ({724: b"1"}, POS_REQ_NOT_SUPPORTED, "PosReqType 1 (trades) is not supported"),
        ({724: b"3"}, POS_REQ_NOT_SUPPORTED, "(assignments)"),
        ({263: b"1"}, POS_REQ_NOT_SUPPORTED, "updates are not supported"),
        ({1: b"C2"}, POS_REQ_NOT_AUTHORIZED, "Account C2 is not the account of C1"),
        ({715: b"20260101"}, POS_REQ_NOT_SUPPORTED, "current business date 20260102 only"),
        ({710: b"P" * 65}, POS_REQ_INVALID, "PosReqID (710) too long: 65 bytes, at most 64"),
        ({55: b"Z" * 65}, POS_REQ_INVALID, "Symbol (55) too long"),
    ],
)
def test_position_requests_refused(changes: dict[int, bytes], result: int, text: str) -> None:
    refusal = decode_position_request(
        inbound(b"AN", position_request(changes)), "C1", current_date=DATE
    )
    assert isinstance(refusal, PositionRefusal)
    assert refusal.result == result
    assert text in refusal.text
    ack = position_refusal_body(refusal, report_id="M1")
    assert problems(b"AO", ack) == []
    f = values(ack)
    assert (f[728], f[729], f[727]) == (str(result).encode(), b"2", b"0")
    assert f[710] in (b"P1", b"P" * 64)


def test_position_requests_the_session_would_not_pass_are_refused_all_the_same() -> None:
    """Requests that break FIX 4.4 (the session rejects them first) still
    decode to a refusal, never an exception."""

    def raw(body: bytes) -> FixMessage:
        header = [(34, b"2"), (49, b"C1"), (52, NOW.encode()), (56, b"FIXGW")]
        return parse_frame(encode_message(b"FIX.4.4", b"AN", header, body))

    cases = [
        (position_request({710: b""}), POS_REQ_INVALID, "PosReqID (710) is required"),
        (position_request({724: b""}), POS_REQ_INVALID, "PosReqType (724) is required"),
        (position_request({724: b"7"}), POS_REQ_INVALID, "PosReqType 7 is not valid"),
        (position_request({263: b"5"}), POS_REQ_INVALID, "SubscriptionRequestType 5"),
        (position_request({715: b"20261340"}), POS_REQ_INVALID, "not a date"),
    ]
    for body, result, text in cases:
        refusal = decode_position_request(raw(body), "C1")
        assert isinstance(refusal, PositionRefusal), body
        assert refusal.result == result, refusal
        assert text in refusal.text, refusal
        assert problems(b"AO", position_refusal_body(refusal, report_id="M")) == []
    weird = parse_frame(
        encode_message(
            b"FIX.4.4", b"BB", [(34, b"2"), (49, b"C1"), (52, b"x"), (56, b"G")], b"263=9\x01"
        )
    )
    refused = decode_collateral_inquiry(weird, "C1")
    assert isinstance(refused, CollateralRefusal)
    assert refused.result == COLL_INQUIRY_OTHER
    assert problems(b"BG", collateral_refusal_body(refused)) == []


def test_position_answers_with_nothing_to_report() -> None:
    accounts, view = cme_example()
    # one symbol asked for, not held
    asked = PositionRequest("C1", "P2", symbol="EUR/USD")
    ((msg_type, body),) = answer_position_request(
        asked, view, accounts.marks, INSTRUMENTS, next_id=ids(), business_date=DATE
    )
    assert msg_type == b"AO"
    assert problems(b"AO", body) == []
    f = values(body)
    assert (f[727], f[728], f[729]) == (b"0", str(POS_REQ_NO_POSITIONS).encode(), b"0")
    # one symbol asked for and held
    corn = answer_position_request(
        PositionRequest("C1", "P3", symbol="ZC"),
        view,
        accounts.marks,
        INSTRUMENTS,
        next_id=ids(),
        business_date=DATE,
    )
    assert [values(b).get(55) for _, b in corn] == [None, b"ZC"]
    # a client with no margin account
    ((_, body),) = answer_position_request(
        PositionRequest("C9", "P4"),
        None,
        accounts.marks,
        INSTRUMENTS,
        next_id=ids(),
        business_date=DATE,
    )
    assert problems(b"AO", body) == []
    f = values(body)
    assert (f[1], f[728], f[729]) == (b"C9", str(POS_REQ_NOT_AUTHORIZED).encode(), b"2")
    # an unsubscription
    ((_, body),) = answer_position_request(
        PositionRequest("C1", "P5", UNSUBSCRIBE),
        view,
        accounts.marks,
        INSTRUMENTS,
        next_id=ids(),
        business_date=DATE,
    )
    assert (values(body)[728], values(body)[727]) == (b"0", b"0")
    # a position in a symbol no longer configured: left out, with a warning
    fewer = {s: i for s, i in INSTRUMENTS.items() if s != "ZS"}
    answers = answer_position_request(
        PositionRequest("C1", "P6"), view, accounts.marks, fewer, next_id=ids(), business_date=DATE
    )
    assert [t for t, _ in answers] == [b"AO", b"AP"]
    f = values(answers[0][1])
    assert (f[727], f[729]) == (b"1", b"1")
    assert "ZS" in f[58].decode()
    for msg_type, body in answers:
        assert problems(msg_type, body) == []


def test_echoed_strings_and_a_plain_ack() -> None:
    body = positions_ack_body("C1", report_id="M1", request_id="", total_reports=0)
    assert problems(b"AO", body) == []
    assert 710 not in values(body)
    assert utc_business_date(0) == "19700101"
    assert utc_business_date(1767348000.0) == "20260102"
