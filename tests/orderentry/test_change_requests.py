"""Requests that name an order: a cancel or replace that names another side,
symbol, order type or time in force than the order's is refused, not
applied; a request the client's application resent (PossResend) that was
worked already is not worked again; and a client's collateral subscriptions
are bounded.  The order flow is fed directly (``test_throttles``)."""

from __future__ import annotations

import pytest
from test_throttles import CONFIG, Client, flow_client, resting, resting_fields

from config import parse_config
from gateway.fix import codec
from gateway.orderflow.entry import MAX_COLLATERAL_SUBSCRIPTIONS
from gateway.orderflow.rules import build_rules

pytestmark = pytest.mark.asyncio

# no message rate limit here: every request is worked
UNTHROTTLED = CONFIG.replace("max_messages_per_second = 1", "max_messages_per_second = 1000")

MARGINED = (
    UNTHROTTLED
    + """
[margin]
[[margin.groups]]
name = "EUR"
symbols = ["EUR/USD"]
scan_pct = "0.0333"

[accounts.CLIENT1]
collateral_usd = "100000"
"""
)


def ts(c: Client) -> bytes:
    return codec.format_utc_timestamp(c.clock.now)


def replace_fields(c: Client, **changed: bytes) -> list[tuple[int, bytes]]:
    """A replace of B1 to 2,000 at 0.40000, as the order is but for ``changed``
    (side, ord_type, tif by name)."""
    fields = [
        (11, b"B1-R"),
        (38, b"2000"),
        (40, changed.get("ord_type", b"2")),
        (41, b"B1"),
        (44, b"0.40000"),
        (54, changed.get("side", b"1")),
        (55, b"EUR/USD"),
        (60, ts(c)),
    ]
    if "tif" in changed:
        fields.append((59, changed["tif"]))
    return fields


@pytest.mark.parametrize(
    ("changed", "text"),
    [
        ({"side": b"2"}, b"Side 2 is not the order's (1)"),
        ({"ord_type": b"1"}, b"OrdType 1 is not the order's (2)"),
        ({"tif": b"3"}, b"TimeInForce 3 is not the order's (1)"),
    ],
)
async def test_a_replace_naming_what_the_order_is_not_is_refused(
    changed: dict[str, bytes], text: bytes
) -> None:
    c = flow_client(UNTHROTTLED)
    ack = resting(c, b"B1")
    c.send(b"G", *replace_fields(c, **changed))
    (reject,) = c.answers()
    assert reject.msg_type == b"9"
    assert reject.get(434) == b"2"  # a replace's
    assert reject.get(58) == text
    assert (reject.get(37), reject.get(39)) == (ack.get(37), b"0")  # the order as it stands
    (order,) = c.flow.matcher.open_orders("CLIENT1")
    assert (order.cl_ord_id, order.qty) == ("B1", 1)


async def test_a_replace_as_the_order_is_and_leaving_out_its_time_in_force_is_applied() -> None:
    c = flow_client(UNTHROTTLED)
    resting(c, b"B1")
    c.send(b"G", *replace_fields(c))
    (replaced,) = c.answers()
    assert (replaced.msg_type, replaced.get(150), replaced.get(11)) == (b"8", b"5", b"B1-R")
    second = replace_fields(c, tif=b"1")
    second[0], second[3] = (11, b"B1-R2"), (41, b"B1-R")
    c.send(b"G", *second)
    (again,) = c.answers()
    assert (again.get(150), again.get(11)) == (b"5", b"B1-R2")


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ((54, b"2"), b"Side 2 is not the order's (1)"),
        ((55, b"GBP/USD"), b"Symbol GBP/USD is not the order's (EUR/USD)"),
    ],
)
async def test_a_cancel_naming_another_side_or_symbol_is_refused(
    field: tuple[int, bytes], text: bytes
) -> None:
    c = flow_client(UNTHROTTLED)
    resting(c, b"B1")
    fields = {11: b"B1-C", 38: b"1000", 41: b"B1", 54: b"1", 55: b"EUR/USD", 60: ts(c)}
    fields[field[0]] = field[1]
    c.send(b"F", *sorted(fields.items()))
    (reject,) = c.answers()
    assert (reject.msg_type, reject.get(434), reject.get(58)) == (b"9", b"1", text)
    assert [o.cl_ord_id for o in c.flow.matcher.open_orders("CLIENT1")] == ["B1"]


async def test_an_order_the_clients_application_resent_is_not_worked_twice() -> None:
    c = flow_client(UNTHROTTLED)
    resting(c, b"P1")
    # the same NewOrderSingle, under a new MsgSeqNum, PossResend=Y
    now = c.clock.now
    header = [(34, b"3"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(now))]
    header += [(56, b"GATEWAY"), (97, b"Y")]
    body = resting_fields(c, b"P1")
    raw = codec.encode_message(b"FIX.4.4", b"D", header, codec.encode_fields(body))
    c.flow.on_message(c.session, codec.parse_frame(raw), now)
    assert c.answers() == []  # no "duplicate ClOrdID" reject of a live order
    assert [o.cl_ord_id for o in c.flow.matcher.open_orders("CLIENT1")] == ["P1"]
    # one it has not seen is a new order
    body[0] = (11, b"P2")
    raw = codec.encode_message(b"FIX.4.4", b"D", header, codec.encode_fields(body))
    c.flow.on_message(c.session, codec.parse_frame(raw), now)
    (ack,) = c.answers()
    assert (ack.get(11), ack.get(150)) == (b"P2", b"0")


async def test_a_clients_collateral_subscriptions_are_bounded() -> None:
    c = flow_client(MARGINED)
    for i in range(MAX_COLLATERAL_SUBSCRIPTIONS):
        c.send(b"BB", (263, b"1"), (909, b"INQ-%d" % i))
    c.answers()
    subscribers = c.flow.entry.collateral_subscribers["CLIENT1"]
    assert len(subscribers) == MAX_COLLATERAL_SUBSCRIPTIONS
    c.send(b"BB", (263, b"1"), (909, b"ONE-MORE"))
    (refused,) = c.answers()
    assert (refused.msg_type, refused.get(909), refused.get(945)) == (b"BG", b"ONE-MORE", b"4")
    assert b"too many collateral subscriptions" in (refused.get(58) or b"")
    # the same id again is the same subscription; one ended frees a place
    c.send(b"BB", (263, b"1"), (909, b"INQ-0"))
    assert [m.msg_type for m in c.answers()] == [b"BA"]
    c.send(b"BB", (263, b"2"), (909, b"INQ-1"))
    c.send(b"BB", (263, b"1"), (909, b"ONE-MORE"))
    assert [m.msg_type for m in c.answers()][-1] == b"BA"
    assert len(subscribers) == MAX_COLLATERAL_SUBSCRIPTIONS


async def test_an_order_named_before_a_reload_lowered_the_id_limit_can_be_canceled() -> None:
    c = flow_client(UNTHROTTLED)
    long_id = b"ORDER-" + b"X" * 30  # a UUID's length
    resting(c, long_id)
    lower = parse_config(UNTHROTTLED + "\n[orders]\nmax_id_length = 16\n")
    c.flow.apply_rules(build_rules(lower, c.flow.instruments, ["CLIENT1"], 2))
    c.send(
        b"F", (11, b"C-1"), (38, b"1000"), (41, long_id), (54, b"1"), (55, b"EUR/USD"), (60, ts(c))
    )
    (canceled,) = c.answers()
    assert (canceled.msg_type, canceled.get(150), canceled.get(41)) == (b"8", b"4", long_id)
    # a new id past the limit is still refused
    resting(c, b"B2")
    c.send(
        b"F", (11, b"C" * 17), (38, b"1000"), (41, b"B2"), (54, b"1"), (55, b"EUR/USD"), (60, ts(c))
    )
    (refused,) = c.answers()
    assert refused.msg_type == b"9"
    assert b"ClOrdID (11) too long" in (refused.get(58) or b"")


async def test_a_refused_request_naming_an_earlier_id_gets_the_orders_last_accepted_id() -> None:
    c = flow_client(UNTHROTTLED)
    resting(c, b"B1")
    c.send(b"G", *replace_fields(c))
    (replaced,) = c.answers()
    assert (replaced.get(150), replaced.get(11), replaced.get(41)) == (b"5", b"B1-R", b"B1")
    # a request sent before the client saw the replace, naming B1
    fields = {11: b"B1-C", 38: b"2000", 41: b"B1", 54: b"2", 55: b"EUR/USD", 60: ts(c)}
    c.send(b"F", *sorted(fields.items()))
    (reject,) = c.answers()
    assert (reject.msg_type, reject.get(11), reject.get(434)) == (b"9", b"B1-C", b"1")
    # OrigClOrdID: "ClOrdID of the previous accepted order" (FIX 4.4)
    assert (reject.get(37), reject.get(41)) == (replaced.get(37), b"B1-R")
