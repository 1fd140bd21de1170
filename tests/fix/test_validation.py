"""Tests for validating inbound messages against the FIX 4.4 dictionary
(gateway.fix.validation).

Every message is built on the wire with the codec (encode_message, then
parse_frame), so what is validated is exactly what a peer could send.  The
tables name the SessionRejectReason and RefTagID a peer must see.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gateway.fix.codec import encode_fields, encode_message, parse_frame
from gateway.fix.dictionary import fix44
from gateway.fix.validation import (
    REJECT_TEXT,
    Problem,
    SessionRejectReason,
    ValidationOptions,
    Validator,
)

R = SessionRejectReason
Field = tuple[int, bytes]

TS = b"20261125-10:00:00.000"
HEADER: list[Field] = [(34, b"2"), (49, b"CLIENT1"), (52, TS), (56, b"GATEWAY")]

NEW_ORDER_SINGLE: list[Field] = [
    (11, b"ORD-1"),
    (1, b"ACC-7"),
    (21, b"1"),
    (55, b"EUR/USD"),
    (54, b"1"),
    (60, TS),
    (38, b"1000000"),
    (40, b"2"),
    (44, b"1.08325"),
    (59, b"0"),
]

PARTIES: list[Field] = [
    (453, b"2"),
    (448, b"TRADER-7"),
    (447, b"D"),
    (452, b"11"),
    (802, b"2"),
    (523, b"desk 4"),
    (803, b"9"),
    (523, b"London"),
    (803, b"10"),
    (448, b"ACC-7"),
    (447, b"D"),
    (452, b"24"),
]

EXECUTION_REPORT: list[Field] = [
    (37, b"GW-000000421"),
    (11, b"ORD-1"),
    (17, b"EXEC-000000913"),
    (150, b"F"),
    (39, b"1"),
    (1, b"ACC-7"),
    (55, b"EUR/USD"),
    (167, b"FOR"),
    (54, b"1"),
    (38, b"1000000"),
    (40, b"2"),
    (44, b"1.08325"),
    (59, b"0"),
    (32, b"250000"),
    (31, b"1.08321"),
    (151, b"750000"),
    (14, b"250000"),
    (6, b"1.08321"),
    (60, TS),
    (15, b"EUR"),
    (120, b"USD"),
    (30, b"LP-ALPHA"),
    (382, b"2"),
    (375, b"LP-ALPHA"),
    (337, b"T1"),
    (375, b"LP-BETA"),
    (337, b"T2"),
    *PARTIES,
    (58, b"partial fill"),
]

MARKET_DATA_REQUEST: list[Field] = [
    (262, b"MDR-1"),
    (263, b"1"),
    (264, b"0"),
    (265, b"1"),
    (267, b"3"),
    (269, b"0"),
    (269, b"1"),
    (269, b"2"),
    (146, b"2"),
    (55, b"EUR/USD"),
    (55, b"USD/JPY"),
]

NEW_ORDER_LIST: list[Field] = [
    (66, b"LIST-1"),
    (68, b"2"),
    (394, b"3"),
    (73, b"2"),
    (11, b"A"),
    (67, b"1"),
    (55, b"EUR/USD"),
    (54, b"1"),
    (38, b"100"),
    (40, b"1"),
    (11, b"B"),
    (67, b"2"),
    (55, b"EUR/USD"),
    (54, b"2"),
    (38, b"100"),
    (40, b"1"),
]

LOGON: list[Field] = [(98, b"0"), (108, b"30"), (141, b"Y")]


def replace(fields: list[Field], tag: int, value: bytes) -> list[Field]:
    """``fields`` with every ``tag`` given ``value``."""
    return [(t, value if t == tag else v) for t, v in fields]


def without(fields: list[Field], *tags: int) -> list[Field]:
    return [(t, v) for t, v in fields if t not in tags]


def validate(
    msg_type: bytes,
    body: list[Field],
    header: list[Field] = HEADER,
    options: ValidationOptions | None = None,
) -> Problem | None:
    raw = encode_message(b"FIX.4.4", msg_type, header, encode_fields(body))
    validator = Validator(fix44(), options or ValidationOptions())
    return validator.validate(parse_frame(raw))


# (MsgType, header, body, expected problem)
Case = tuple[bytes, list[Field], list[Field], Problem | None]

REJECTS: dict[str, Case] = {
    # 0 InvalidTagNumber
    "unknown tag": (b"D", HEADER, [*NEW_ORDER_SINGLE, (999, b"HI")], Problem(R(0), 999)),
    "user-defined tag": (b"D", HEADER, [*NEW_ORDER_SINGLE, (5001, b"x")], Problem(R(0), 5001)),
    "tag 5000": (b"0", HEADER, [(5000, b"HI")], Problem(R(0), 5000)),
    "tag 0": (b"0", HEADER, [(0, b"HI")], Problem(R(0), 0)),
    "negative tag": (b"0", HEADER, [(-1, b"HI")], Problem(R(0), -1)),
    # 1 RequiredTagMissing
    "body tag missing": (b"D", HEADER, without(NEW_ORDER_SINGLE, 11), Problem(R(1), 11)),
    "lowest missing body tag": (
        b"D",
        HEADER,
        without(NEW_ORDER_SINGLE, 60, 40),
        Problem(R(1), 40),
    ),
    "SendingTime missing": (b"0", without(HEADER, 52), [], Problem(R(1), 52)),
    "SenderCompID missing": (b"0", without(HEADER, 49), [], Problem(R(1), 49)),
    "MsgSeqNum missing": (b"0", without(HEADER, 34), [], Problem(R(1), 34)),
    "header tag missing before body tag": (
        b"D",
        without(HEADER, 56),
        without(NEW_ORDER_SINGLE, 11),
        Problem(R(1), 56),
    ),
    "group required member missing": (
        b"E",
        HEADER,
        without(NEW_ORDER_LIST[:10], 54) + NEW_ORDER_LIST[10:],
        Problem(R(1), 54),
    ),
    "group required in second entry": (
        b"E",
        HEADER,
        NEW_ORDER_LIST[:10] + without(NEW_ORDER_LIST[10:], 67),
        Problem(R(1), 67),
    ),
    "MarketDataRequest without entry types": (
        b"V",
        HEADER,
        without(MARKET_DATA_REQUEST, 267, 269),
        Problem(R(1), 267),
    ),
    # 2 TagNotDefinedForMessageType
    "TestReqID on an order": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (112, b"x")],
        Problem(R(2), 112),
    ),
    "ClOrdID on a Heartbeat": (b"0", HEADER, [(11, b"x")], Problem(R(2), 11)),
    "group member outside its group": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (448, b"P")],
        Problem(R(2), 448),
    ),
    # 4 TagSpecifiedWithoutAValue
    "empty Text": (b"D", HEADER, [*NEW_ORDER_SINGLE, (58, b"")], Problem(R(4), 58)),
    "empty TestReqID": (b"1", HEADER, [(112, b"")], Problem(R(4), 112)),
    "empty header value": (b"0", replace(HEADER, 49, b""), [], Problem(R(4), 49)),
    "empty value in a group entry": (
        b"D",
        HEADER,
        NEW_ORDER_SINGLE + replace(PARTIES, 448, b""),
        Problem(R(4), 448),
    ),
    # 5 ValueIsIncorrect
    "Side not in the enum": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 54, b"Z"), Problem(R(5), 54)),
    "HandlInst 4": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 21, b"4"), Problem(R(5), 21)),
    "SecurityType BOO": (b"D", HEADER, [*NEW_ORDER_SINGLE, (167, b"BOO")], Problem(R(5), 167)),
    "ExecInst one bad value of three": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (18, b"1 T 2")],
        Problem(R(5), 18),
    ),
    "ExecInst bad single value": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (18, b"T")],
        Problem(R(5), 18),
    ),
    "ExecInst double space": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (18, b"1  2")],
        Problem(R(5), 18),
    ),
    "MDEntryType in a group entry": (
        b"V",
        HEADER,
        replace(MARKET_DATA_REQUEST, 269, b"X"),
        Problem(R(5), 269),
    ),
    "EncryptMethod 9": (b"A", HEADER, replace(LOGON, 98, b"9"), Problem(R(5), 98)),
    # 6 IncorrectDataFormatForValue
    "INT HeartBtInt": (b"A", HEADER, replace(LOGON, 108, b"3O"), Problem(R(6), 108)),
    "INT with plus sign": (b"A", HEADER, replace(LOGON, 108, b"+30"), Problem(R(6), 108)),
    "SEQNUM MsgSeqNum": (b"0", replace(HEADER, 34, b"2a"), [], Problem(R(6), 34)),
    "QTY +200.00": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 38, b"+200.00"), Problem(R(6), 38)),
    "QTY exponent": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 38, b"1e6"), Problem(R(6), 38)),
    "QTY lone dot": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 38, b"."), Problem(R(6), 38)),
    "PRICE two dots": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 44, b"1.2.3"), Problem(R(6), 44)),
    "UTCTIMESTAMP hour 25": (
        b"D",
        HEADER,
        replace(NEW_ORDER_SINGLE, 60, b"20261125-25:00:00"),
        Problem(R(6), 60),
    ),
    "UTCTIMESTAMP 30 February": (
        b"D",
        HEADER,
        replace(NEW_ORDER_SINGLE, 60, b"20260230-10:00:00"),
        Problem(R(6), 60),
    ),
    "UTCTIMESTAMP two fraction digits": (
        b"D",
        HEADER,
        replace(NEW_ORDER_SINGLE, 60, b"20261125-10:00:00.12"),
        Problem(R(6), 60),
    ),
    "UTCTIMESTAMP SendingTime without seconds": (
        b"0",
        replace(HEADER, 52, b"20261125-10:00"),
        [],
        Problem(R(6), 52),
    ),
    "BOOLEAN X": (b"A", HEADER, replace(LOGON, 141, b"X"), Problem(R(6), 141)),
    "BOOLEAN lower case": (b"A", HEADER, replace(LOGON, 141, b"y"), Problem(R(6), 141)),
    "CHAR two characters": (b"D", HEADER, replace(NEW_ORDER_SINGLE, 54, b"12"), Problem(R(6), 54)),
    "NUMINGROUP not a number": (
        b"D",
        HEADER,
        NEW_ORDER_SINGLE + replace(PARTIES, 453, b"two"),
        Problem(R(6), 453),
    ),
    # 11 InvalidMsgType
    "MsgType ZZ": (b"ZZ", HEADER, [], Problem(R(11))),
    "MsgType 0A": (b"0A", HEADER, [], Problem(R(11))),
    "MsgType *": (b"*", HEADER, [], Problem(R(11))),
    # 13 TagAppearsMoreThanOnce
    "OrdType twice": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE[:8], (40, b"1"), *NEW_ORDER_SINGLE[8:]],
        Problem(R(13), 40),
    ),
    "header tag twice": (b"0", [*HEADER, (49, b"OTHER")], [], Problem(R(13), 49)),
    # 14 TagSpecifiedOutOfRequiredOrder
    "whole header after body": (
        b"D",
        [],
        NEW_ORDER_SINGLE + HEADER,
        Problem(R(14), 34),
    ),
    "one header tag after body": (
        b"D",
        without(HEADER, 52),
        [*NEW_ORDER_SINGLE, (52, TS)],
        Problem(R(14), 52),
    ),
    "body tag after trailer": (
        b"0",
        HEADER,
        [(93, b"3"), (89, b"abc"), (112, b"x")],
        Problem(R(14), 112),
    ),
    # 15 RepeatingGroupFieldsOutOfOrder
    "group entry without its delimiter": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (453, b"1"), (447, b"D"), (452, b"11")],
        Problem(R(15), 453),
    ),
    "first group entry starts after the delimiter": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (453, b"2"), (452, b"11"), (448, b"P1"), (447, b"D")],
        Problem(R(15), 453),
    ),
    # 16 IncorrectNumInGroupCountForRepeatingGroup
    "NoTradingSessions 3 with 2 entries": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (386, b"3"), (336, b"PRE-OPEN"), (336, b"AFTER-HOURS")],
        Problem(R(16), 386),
    ),
    "NoPartyIDs 1 with 2 entries": (
        b"D",
        HEADER,
        NEW_ORDER_SINGLE + replace(PARTIES, 453, b"1"),
        Problem(R(16), 453),
    ),
    "count without entries": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (453, b"2")],
        Problem(R(16), 453),
    ),
    "negative count": (b"D", HEADER, [*NEW_ORDER_SINGLE, (453, b"-1")], Problem(R(16), 453)),
    "nested group count": (
        b"D",
        HEADER,
        NEW_ORDER_SINGLE + replace(PARTIES, 802, b"3"),
        Problem(R(16), 802),
    ),
    "MDReqGrp count": (
        b"V",
        HEADER,
        replace(MARKET_DATA_REQUEST, 267, b"2"),
        Problem(R(16), 267),
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTS))
def test_reject_reason_and_tag(name: str) -> None:
    msg_type, header, body, expected = REJECTS[name]
    assert validate(msg_type, body, header) == expected


def test_every_reason_in_the_table_has_a_reject_text() -> None:
    reasons = {case[3].reason for case in REJECTS.values() if case[3] is not None}
    assert reasons == {R(n) for n in (0, 1, 2, 4, 5, 6, 11, 13, 14, 15, 16)}
    for reason in reasons:
        assert REJECT_TEXT[reason]


# --------------------------------------------------------------------------
# which problem is reported when there are several

FIRST_PROBLEM: dict[str, Case] = {
    "lower tag wins over wire order": (
        b"D",
        HEADER,
        [(59, b"9"), *without(NEW_ORDER_SINGLE, 59, 21), (21, b"4")],
        Problem(R(5), 21),
    ),
    "lower tag wins whatever the reason": (
        b"D",
        HEADER,
        [(58, b""), *replace(NEW_ORDER_SINGLE, 21, b"4")],
        Problem(R(5), 21),
    ),
    "repeated lower tag wins over a higher bad value": (
        b"D",
        HEADER,
        [*replace(NEW_ORDER_SINGLE, 54, b"Z"), (40, b"1")],
        Problem(R(13), 40),
    ),
    "header before body": (
        b"D",
        replace(HEADER, 52, b"not a time"),
        replace(NEW_ORDER_SINGLE, 21, b"4"),
        Problem(R(6), 52),
    ),
    "lower header tag first": (
        b"0",
        replace(replace(HEADER, 52, b"not a time"), 49, b""),
        [],
        Problem(R(4), 49),
    ),
    "trailer before body": (
        b"D",
        HEADER,
        [*replace(NEW_ORDER_SINGLE, 21, b"4"), (93, b"x"), (89, b"abc")],
        Problem(R(6), 93),
    ),
    "required tag before bad values": (
        b"D",
        HEADER,
        without(replace(NEW_ORDER_SINGLE, 21, b"4"), 60),
        Problem(R(1), 60),
    ),
    "out of order before everything else": (
        b"D",
        without(HEADER, 52),
        [*without(replace(NEW_ORDER_SINGLE, 21, b"4"), 11), (52, TS)],
        Problem(R(14), 52),
    ),
    "out of order before invalid MsgType": (b"ZZ", [], [(112, b"x"), *HEADER], Problem(R(14), 34)),
    "invalid MsgType before required tags": (b"ZZ", without(HEADER, 52), [], Problem(R(11))),
    "top-level fields before group entries": (
        b"D",
        HEADER,
        [*NEW_ORDER_SINGLE, (78, b"1"), (79, b"ALLOC-1"), (80, b"abc"), (167, b"BOO")],
        Problem(R(5), 167),
    ),
    "count mismatch at its own tag": (
        b"D",
        HEADER,
        [*replace(NEW_ORDER_SINGLE, 59, b"9"), *replace(PARTIES, 453, b"3")],
        Problem(R(5), 59),
    ),
}


@pytest.mark.parametrize("name", sorted(FIRST_PROBLEM))
def test_first_problem_is_reported(name: str) -> None:
    msg_type, header, body, expected = FIRST_PROBLEM[name]
    assert validate(msg_type, body, header) == expected


# --------------------------------------------------------------------------
# options

NO_VALUES = ValidationOptions(fields_have_values=False)
NO_USER_DEFINED = ValidationOptions(user_defined_fields=False)
NO_ORDER = ValidationOptions(fields_out_of_order=False)

OPTIONS: dict[str, tuple[ValidationOptions, Case]] = {
    "empty Text allowed": (
        NO_VALUES,
        (b"D", HEADER, [*NEW_ORDER_SINGLE, (58, b"")], None),
    ),
    "empty TestReqID allowed": (NO_VALUES, (b"1", HEADER, [(112, b"")], None)),
    "empty INT still has the wrong format": (
        NO_VALUES,
        (b"A", HEADER, replace(LOGON, 108, b""), Problem(R(6), 108)),
    ),
    "user-defined tag 5001 allowed": (
        NO_USER_DEFINED,
        (b"D", HEADER, [*NEW_ORDER_SINGLE, (5001, b"x")], None),
    ),
    "user-defined tag 5000 allowed": (NO_USER_DEFINED, (b"0", HEADER, [(5000, b"HI")], None)),
    "unknown tag below 5000 still invalid": (
        NO_USER_DEFINED,
        (b"D", HEADER, [*NEW_ORDER_SINGLE, (4999, b"x")], Problem(R(0), 4999)),
    ),
    "header after body allowed": (NO_ORDER, (b"D", [], NEW_ORDER_SINGLE + HEADER, None)),
    "body after trailer allowed": (
        NO_ORDER,
        (b"0", HEADER, [(93, b"3"), (89, b"abc"), (112, b"x")], None),
    ),
    "out of order allowed, bad value still found": (
        NO_ORDER,
        (b"D", [], replace(NEW_ORDER_SINGLE, 54, b"Z") + HEADER, Problem(R(5), 54)),
    ),
    "defaults still reject the empty Text": (
        ValidationOptions(),
        (b"D", HEADER, [*NEW_ORDER_SINGLE, (58, b"")], Problem(R(4), 58)),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_options(name: str) -> None:
    options, (msg_type, header, body, expected) = OPTIONS[name]
    assert validate(msg_type, body, header, options) == expected


# --------------------------------------------------------------------------
# valid messages

VALID: dict[str, tuple[bytes, list[Field]]] = {
    "NewOrderSingle": (b"D", NEW_ORDER_SINGLE),
    "NewOrderSingle with nested parties": (b"D", NEW_ORDER_SINGLE + PARTIES),
    "NewOrderSingle with ExecInst values": (b"D", [*NEW_ORDER_SINGLE, (18, b"1 2 G")]),
    "NewOrderSingle with NoTradingSessions": (
        b"D",
        [*NEW_ORDER_SINGLE, (386, b"2"), (336, b"PRE-OPEN"), (336, b"AFTER-HOURS")],
    ),
    "NewOrderSingle with an empty group": (b"D", [*NEW_ORDER_SINGLE, (453, b"0")]),
    "NewOrderSingle with negative price": (b"D", replace(NEW_ORDER_SINGLE, 44, b"-0.5")),
    "NewOrderSingle with microsecond TransactTime": (
        b"D",
        replace(NEW_ORDER_SINGLE, 60, b"20261125-10:00:00.123456"),
    ),
    "ExecutionReport": (b"8", EXECUTION_REPORT),
    "MarketDataRequest": (b"V", MARKET_DATA_REQUEST),
    "NewOrderList": (b"E", NEW_ORDER_LIST),
    "Logon": (b"A", LOGON),
    "Logon with RawData": (b"A", [*LOGON, (95, b"5"), (96, b"a\x01b=c")]),
    "Heartbeat": (b"0", []),
    "Heartbeat with TestReqID": (b"0", [(112, b"T1")]),
    "TestRequest": (b"1", [(112, b"T1")]),
    "ResendRequest": (b"2", [(7, b"1"), (16, b"0")]),
    "Reject": (b"3", [(45, b"2"), (58, b"Invalid tag number"), (371, b"999"), (372, b"D")]),
    "SequenceReset": (b"4", [(36, b"10"), (123, b"Y")]),
    "Logout": (b"5", [(58, b"bye")]),
    "Heartbeat with signature": (b"0", [(93, b"3"), (89, b"a\x01b")]),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_passes(name: str) -> None:
    msg_type, body = VALID[name]
    assert validate(msg_type, body) is None


def test_valid_message_with_optional_header_fields_and_hops() -> None:
    header = [
        *HEADER,
        (43, b"Y"),
        (97, b"N"),
        (115, b"DESK9"),
        (122, TS),
        (627, b"2"),
        (628, b"HOP1"),
        (629, TS),
        (628, b"HOP2"),
    ]
    assert validate(b"D", NEW_ORDER_SINGLE, header) is None
    bad_hops = [*header[:-4], (627, b"3"), *header[-3:]]
    assert validate(b"D", NEW_ORDER_SINGLE, bad_hops) == Problem(R(16), 627)


def test_validator_is_reusable() -> None:
    validator = Validator(fix44(), ValidationOptions())
    good = parse_frame(encode_message(b"FIX.4.4", b"D", HEADER, encode_fields(NEW_ORDER_SINGLE)))
    bad = parse_frame(
        encode_message(b"FIX.4.4", b"D", HEADER, encode_fields([*NEW_ORDER_SINGLE, (999, b"x")]))
    )
    for _ in range(3):
        assert validator.validate(good) is None
        assert validator.validate(bad) == Problem(R(0), 999)


@pytest.fixture
def default_int_digit_limit() -> Iterator[None]:
    """Run with CPython's default limit on int() of long digit strings."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


@pytest.mark.usefixtures("default_int_digit_limit")
def test_numingroup_with_too_many_digits_is_a_data_format_problem() -> None:
    body = [*NEW_ORDER_SINGLE, (453, b"1" * 5000), (448, b"P"), (447, b"D"), (452, b"11")]
    assert validate(b"D", body) == Problem(R(6), 453)


def test_a_negative_data_length_is_a_data_format_problem() -> None:
    """A Length (a data field's size in bytes) is not negative: RawData
    after RawDataLength -1 is refused, not read up to the next SOH."""
    body = [*LOGON, (95, b"-1"), (96, b"abc")]
    assert validate(b"A", body) == Problem(R(6), 95)
    assert validate(b"A", [*LOGON, (95, b"3"), (96, b"abc")]) is None
