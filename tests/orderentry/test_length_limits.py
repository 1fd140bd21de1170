"""Bounds on what a client sends: ids beyond ``max_id_length`` are refused,
rejects echo client strings cut, Texts and logs repeat only an excerpt."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
from test_order_mapping import (
    INSTRUMENTS,
    TRANSACT_TIME,
    body_fields,
    inbound,
    new_order,
    outbound,
    replace,
)

from config import ConfigError, parse_config
from config.schema import DEFAULT_MAX_ID_LENGTH, MOST_ID_LENGTH
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.orderflow import mapping
from gateway.orderflow.mapping import (
    LOGGED_CHARS,
    REJ_OTHER,
    Refusal,
    cancel_reject_body,
    decode_cancel,
    decode_new_order,
    decode_replace,
    excerpt,
    new_order_reject_body,
    unknown_order_status_body,
)
from gateway.orderflow.market_data import MarketDataService
from matcher.engine import CancelOrder, NewOrder, ReplaceOrder
from matcher.orders import CancelReject, CxlRejReason, CxlRejResponseTo, OrdStatus
from router.book import AggregatedBook

LIMIT = DEFAULT_MAX_ID_LENGTH
HUGE = b"X" * 30_000


def cancel(cl_ord_id: bytes, orig_cl_ord_id: bytes) -> FixMessage:
    return inbound(
        b"F",
        (11, cl_ord_id),
        (41, orig_cl_ord_id),
        (54, b"1"),
        (55, b"EUR/USD"),
        (60, b"20261125-10:00:00.000"),
    )


def too_long(name: str, length: int, limit: int = LIMIT) -> Refusal:
    return Refusal(f"{name} too long: {length} bytes, at most {limit} (limit max_id_length)", 99)


# --------------------------------------------------------------------------
# the setting


ECHO_SESSION = """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
Application = "echo"
"""


def test_max_id_length_defaults_to_64_and_is_bounded() -> None:
    assert parse_config(ECHO_SESSION).orders.max_id_length == 64
    assert parse_config("[orders]\nmax_id_length = 16\n" + ECHO_SESSION).orders.max_id_length == 16
    for value, message in (
        ("15", "must be >= 16"),
        ("257", "must be <= 256"),
        ('"64"', "expected int, got str"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(f"[orders]\nmax_id_length = {value}\n" + ECHO_SESSION)
        assert info.value.errors == [f"orders.max_id_length: {message}"]


# --------------------------------------------------------------------------
# NewOrderSingle


def test_a_client_order_id_up_to_the_limit_is_accepted() -> None:
    order = decode_new_order(new_order(cl=b"C" * LIMIT), "CLIENT1", INSTRUMENTS)
    assert isinstance(order, NewOrder)
    assert order.cl_ord_id == "C" * LIMIT


@pytest.mark.parametrize("length", [LIMIT + 1, 30_000])
def test_a_longer_client_order_id_is_refused_naming_field_and_limit(length: int) -> None:
    refusal = decode_new_order(new_order(cl=b"C" * length), "CLIENT1", INSTRUMENTS)
    assert refusal == too_long("ClOrdID (11)", length)
    assert isinstance(refusal, Refusal)
    assert refusal.ord_rej_reason == REJ_OTHER
    assert "CCCC" not in refusal.text


def test_the_id_limit_is_the_one_passed() -> None:
    msg = new_order(cl=b"C" * 20)
    assert decode_new_order(msg, "CLIENT1", INSTRUMENTS, 19) == too_long("ClOrdID (11)", 20, 19)
    assert isinstance(decode_new_order(msg, "CLIENT1", INSTRUMENTS, 20), NewOrder)


def test_the_reject_echoes_the_client_order_id_cut_to_the_limit() -> None:
    msg = new_order(cl=HUGE, symbol=b"S" * 5000, qty=b"1" * 40)
    refusal = decode_new_order(msg, "CLIENT1", INSTRUMENTS)
    assert isinstance(refusal, Refusal)
    fields = body_fields(outbound(b"8", new_order_reject_body(msg, refusal, "E1")))
    assert fields[11] == b"X" * LIMIT
    assert fields[55] == b"S" * LIMIT
    assert fields[38] == b"0"  # a number no grid has is not echoed
    assert (fields[39], fields[150], fields[103]) == (b"8", b"8", b"99")
    assert fields[58] == b"ClOrdID (11) too long: 30000 bytes, at most 64 (limit max_id_length)"
    short = body_fields(outbound(b"8", new_order_reject_body(msg, refusal, "E2", max_id_length=20)))
    assert short[11] == b"X" * 20


def test_texts_repeat_only_an_excerpt_of_what_the_client_sent() -> None:
    long_symbol = decode_new_order(new_order(symbol=b"S" * 5000), "CLIENT1", INSTRUMENTS)
    assert long_symbol == Refusal(f"Unknown symbol {'S' * LOGGED_CHARS}...[5000 chars]", 1)
    not_a_number = decode_new_order(new_order(qty=b"9" * 5000 + b"x"), "CLIENT1", INSTRUMENTS)
    shown = f"{'9' * LOGGED_CHARS}...[5001 chars]"
    assert not_a_number == Refusal(f"OrderQty {shown} is not a number", 13)
    off_grid = b"1000." + b"0" * 5000 + b"1"
    refusal = decode_new_order(new_order(qty=off_grid), "CLIENT1", INSTRUMENTS)
    assert isinstance(refusal, Refusal)
    assert refusal.text.endswith("...[5006 chars] is not a multiple of the lot size 1000")
    assert len(refusal.text) < 200
    price = decode_new_order(new_order(price=b"1." + b"1" * 5000), "CLIENT1", INSTRUMENTS)
    assert isinstance(price, Refusal)
    assert len(price.text) < 200


def test_long_number_texts_are_not_remembered() -> None:
    before = (len(mapping._QTY_CACHE), len(mapping._PRICE_CACHE))
    for i in range(20):
        qty = b"2000." + b"0" * (40 + i)
        price = b"1.0832" + b"0" * (40 + i)
        order = decode_new_order(new_order(qty=qty, price=price), "CLIENT1", INSTRUMENTS)
        assert isinstance(order, NewOrder)
        assert (order.qty, order.price) == (2, 108_320)
    assert (len(mapping._QTY_CACHE), len(mapping._PRICE_CACHE)) == before


# --------------------------------------------------------------------------
# cancel and replace


def test_cancel_ids_up_to_the_limit_are_accepted() -> None:
    ids = (b"N" * LIMIT, b"O" * LIMIT)
    assert decode_cancel(cancel(*ids), "CLIENT1") == CancelOrder(
        "CLIENT1", "N" * LIMIT, "O" * LIMIT
    )
    # an OrigClOrdID past the limit may name an order accepted before a
    # reload lowered it: looked up as given, up to the largest limit
    longer = b"O" * MOST_ID_LENGTH
    assert decode_cancel(cancel(b"N", longer), "CLIENT1") == CancelOrder(
        "CLIENT1", "N", longer.decode()
    )


NAMES_NO_ORDER = Refusal(
    "OrigClOrdID (41) too long: 30000 bytes, longer than any order's ClOrdID (at most 256)",
    REJ_OTHER,
)


@pytest.mark.parametrize(
    ("cl_ord_id", "orig_cl_ord_id", "expected"),
    [
        (b"C2", HUGE, NAMES_NO_ORDER),
        (HUGE, b"C1", too_long("ClOrdID (11)", 30_000)),
        (b"O" * (LIMIT + 1), b"C1", too_long("ClOrdID (11)", LIMIT + 1)),
    ],
)
def test_a_cancel_with_a_longer_id_is_refused(
    cl_ord_id: bytes, orig_cl_ord_id: bytes, expected: Refusal
) -> None:
    assert decode_cancel(cancel(cl_ord_id, orig_cl_ord_id), "CLIENT1") == expected


def test_a_replace_with_a_longer_id_is_refused() -> None:
    base = [(11, b"C3"), (21, b"1"), (38, b"1000"), (40, b"2"), (54, b"1"), (55, b"EUR/USD")]
    orig = inbound(b"G", *sorted([*base, (41, HUGE), (60, b"20261125-10:00:00.000")]))
    assert decode_replace(orig, "CLIENT1", INSTRUMENTS) == NAMES_NO_ORDER
    new_id = [(11, b"R" * (LIMIT + 1)), *base[1:], (41, b"C1"), (60, b"20261125-10:00:00.000")]
    msg = inbound(b"G", *sorted(new_id))
    assert decode_replace(msg, "CLIENT1", INSTRUMENTS) == too_long("ClOrdID (11)", LIMIT + 1)
    assert isinstance(decode_replace(replace((38, b"1000")), "CLIENT1", INSTRUMENTS), ReplaceOrder)


def test_the_cancel_reject_of_a_longer_id_is_valid_fix() -> None:
    refusal = decode_cancel(cancel(b"C2", HUGE), "CLIENT1")
    assert isinstance(refusal, Refusal)
    reject = CancelReject(
        client="CLIENT1",
        cl_ord_id="C2",
        orig_cl_ord_id="O" * LIMIT,
        order_id=None,
        status=OrdStatus.REJECTED,
        reason=CxlRejReason.OTHER,
        response_to=CxlRejResponseTo.CANCEL,
        text=refusal.text,
    )
    fields = body_fields(outbound(b"9", cancel_reject_body(reject, TRANSACT_TIME)))
    assert (fields[41], fields[102], fields[434]) == (b"O" * LIMIT, b"99", b"1")
    assert fields[58] == NAMES_NO_ORDER.text.encode()


# --------------------------------------------------------------------------
# OrderStatusRequest


def test_an_unknown_order_status_echoes_strings_cut() -> None:
    msg = inbound(b"H", (11, HUGE), (37, HUGE), (54, b"1"), (55, HUGE))
    fields = body_fields(outbound(b"8", unknown_order_status_body(msg, "S1")))
    assert (fields[11], fields[37], fields[55]) == (b"X" * LIMIT, b"X" * LIMIT, b"X" * LIMIT)
    assert (fields[39], fields[150], fields[58]) == (b"8", b"I", b"Unknown order")


# --------------------------------------------------------------------------
# excerpts


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("C1", LOGGED_CHARS, "C1"),
        ("A" * LOGGED_CHARS, LOGGED_CHARS, "A" * LOGGED_CHARS),
        ("A" * 30_000, LOGGED_CHARS, "A" * LOGGED_CHARS + "...[30000 chars]"),
        (b"\xe9" * 10, 4, "\xe9" * 4 + "...[10 chars]"),
    ],
)
def test_excerpt(value: str | bytes, limit: int, expected: str) -> None:
    assert excerpt(value, limit) == expected


# --------------------------------------------------------------------------
# MarketDataRequest


class _Session:
    session_id = "FIX.4.4:GATEWAY->CLIENT1"
    is_logged_on = True


def market_data_request(md_req_id: bytes) -> FixMessage:
    return inbound(
        b"V",
        (146, b"1"),
        (55, b"EUR/USD"),
        (262, md_req_id),
        (263, b"1"),
        (264, b"0"),
        (267, b"2"),
        (269, b"0"),
        (269, b"1"),
    )


def served(md_req_id: bytes, limit: int = LIMIT) -> list[tuple[bytes, bytes]]:
    sent: list[tuple[bytes, bytes]] = []

    def send(session: Session, msg_type: bytes, body: bytes, now: float) -> None:
        sent.append((msg_type, body))

    class Feed:
        def send_transient(
            self, session: Session, msg_type: bytes, body: bytes, now: float
        ) -> bool:
            sent.append((msg_type, body))
            return True

        def backlog(self, session: Session) -> int | None:
            return 0

    owed: list[Callable[[], None]] = []
    service = MarketDataService(
        INSTRUMENTS,
        AggregatedBook(),
        send,
        Feed(),
        lambda: 0.0,
        defer=lambda delay, callback: owed.append(callback),
    )
    service.on_request(cast(Session, _Session()), market_data_request(md_req_id), 0.0, limit)
    while owed:  # the next turns
        owed.pop(0)()
    return sent


def test_a_market_data_request_id_up_to_the_limit_is_served() -> None:
    ((msg_type, body),) = served(b"M" * LIMIT)
    assert msg_type == b"W"
    assert b"262=" + b"M" * LIMIT + b"\x01" in body


def test_a_longer_market_data_request_id_is_rejected_cut() -> None:
    ((msg_type, body),) = served(HUGE)
    fields = body_fields(outbound(b"Y", body))
    assert msg_type == b"Y"
    assert fields[262] == b"X" * LIMIT
    assert fields[58] == b"MDReqID (262) too long: 30000 bytes, at most 64 (limit max_id_length)"
    assert 281 not in fields  # no MDReqRejReason fits; the Text says why
    ((msg_type, body),) = served(b"M" * 17, limit=16)
    assert body_fields(outbound(b"Y", body))[262] == b"M" * 16
