"""The message rate limit (``max_messages_per_second``) on cancels and
replaces: the order flow is fed directly, on a clock the test moves, so the
token bucket sees exactly the time the test says has passed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from strict_fix44 import message_problems
from structlog.testing import capture_logs

from config import SessionSettings, parse_config
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.dictionary import fix44
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.fix.validation import ValidationOptions, Validator
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow

START = 1_800_000_000.0
VALIDATOR = Validator(fix44(), ValidationOptions())

# one message per second, a bucket of one: after one message the next is
# over the rate until a whole second has passed
CONFIG = """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "10000000"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "20000000"
hard_limit_usd = "30000000"

[risk.default]
max_messages_per_second = 1
"""


class Clock:
    """The flow's clock: still unless the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Client:
    """CLIENT1's session on the gateway side, and what it was sent."""

    flow: OrderFlow
    session: Session
    clock: Clock
    _next: int = 1

    def send(self, msg_type: bytes, *fields: tuple[int, bytes]) -> None:
        now = self.clock.now
        header = [(34, b"2"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(now))]
        header.append((56, b"GATEWAY"))
        raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(fields))
        self.flow.on_message(self.session, codec.parse_frame(raw), now)

    def answers(self) -> list[FixMessage]:
        """Every message sent to the client since the last call, each
        checked to be valid FIX 4.4."""
        out = []
        for seq, raw in self.session.store.get_sent(self._next, 2**31 - 1):
            self._next = seq + 1
            msg = codec.parse_frame(raw)
            assert VALIDATOR.validate(msg) is None, msg
            out.append(msg)
        return out


def flow_client(text: str) -> Client:
    """CLIENT1 on an order flow built from the config ``text``, fed directly.
    The LP is never started: a limit order far from any price rests without
    routing, so every answer is sent inside on_message."""
    clock = Clock()
    session = Session(
        SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore()
    )
    flow = build_order_flow(parse_config(text), {"CLIENT1": session}, None, Outbox(), clock)
    return Client(flow, session, clock)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    yield flow_client(CONFIG)


def resting_fields(c: Client, cl_ord_id: bytes) -> list[tuple[int, bytes]]:
    """The body of a buy limit order of 1,000 at 0.50000 (GTC), far from any price."""
    return [
        (11, cl_ord_id),
        (38, b"1000"),
        (40, b"2"),
        (44, b"0.50000"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (59, b"1"),
        (60, codec.format_utc_timestamp(c.clock.now)),
    ]


def send_resting(c: Client, cl_ord_id: bytes) -> None:
    """Send a buy limit order of 1,000 at 0.50000 (GTC), far from any price."""
    c.send(b"D", *resting_fields(c, cl_ord_id))


def resting(c: Client, cl_ord_id: bytes) -> FixMessage:
    """A buy limit order of 1,000 at 0.50000 (GTC), acknowledged New."""
    send_resting(c, cl_ord_id)
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(11), ack.get(150), ack.get(39)) == (b"8", cl_ord_id, b"0", b"0")
    return ack


def replace(c: Client, cl_ord_id: bytes, orig: bytes, qty: bytes) -> None:
    c.send(
        b"G",
        (11, cl_ord_id),
        (38, qty),
        (40, b"2"),
        (41, orig),
        (44, b"0.50000"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (60, codec.format_utc_timestamp(c.clock.now)),
    )


def cancel(c: Client, cl_ord_id: bytes, orig: bytes) -> None:
    c.send(
        b"F",
        (11, cl_ord_id),
        (38, b"1000"),
        (41, orig),
        (54, b"1"),
        (55, b"EUR/USD"),
        (60, codec.format_utc_timestamp(c.clock.now)),
    )


def assert_throttle_reject(msg: FixMessage, cl_ord_id: bytes, orig: bytes, to: bytes) -> None:
    """An OrderCancelReject answering the request ``to`` (434: 1 cancel,
    2 replace) for being over the rate."""
    assert msg.msg_type == b"9"
    assert (msg.get(11), msg.get(41), msg.get(434)) == (cl_ord_id, orig, to)
    assert msg.get(102) == b"99"  # CxlRejReason Other: no reason of its own in FIX 4.4
    text = msg.get(58) or b""
    assert text.startswith(b"throttled: more than 1 messages per second")
    assert b"max_messages_per_second" in text


def assert_untouched(c: Client, cl_ord_id: str, qty: int) -> None:
    """The order is still open, as it was: same id, size and price, nothing
    executed."""
    (order,) = c.flow.matcher.open_orders("CLIENT1")
    assert (order.cl_ord_id, order.qty, order.price, order.cum_qty) == (cl_ord_id, qty, 50_000, 0)


@pytest.mark.asyncio
async def test_a_replace_over_the_rate_is_refused_and_one_after_the_refill_is_taken(
    client: Client,
) -> None:
    c = client
    ack = resting(c, b"R1")  # the bucket's only token
    replace(c, b"R1-G1", b"R1", b"2000")
    (reject,) = c.answers()
    assert_throttle_reject(reject, b"R1-G1", b"R1", b"2")
    assert_untouched(c, "R1", 1)
    # half a second brings half a token: still over the rate
    c.clock.now += 0.5
    replace(c, b"R1-G2", b"R1", b"2000")
    (reject,) = c.answers()
    assert_throttle_reject(reject, b"R1-G2", b"R1", b"2")
    assert_untouched(c, "R1", 1)
    # a whole second after the order: the bucket holds a token again
    c.clock.now += 0.5
    replace(c, b"R1-G3", b"R1", b"2000")
    (replaced,) = c.answers()
    assert replaced.msg_type == b"8"
    assert (replaced.get(11), replaced.get(41), replaced.get(37)) == (b"R1-G3", b"R1", ack.get(37))
    assert (replaced.get(150), replaced.get(39), replaced.get(38)) == (b"5", b"0", b"2000")
    assert_untouched(c, "R1-G3", 2)


@pytest.mark.asyncio
async def test_a_cancel_over_the_rate_is_refused_and_one_after_the_refill_is_taken(
    client: Client,
) -> None:
    c = client
    ack = resting(c, b"C1")
    cancel(c, b"C1-X1", b"C1")
    (reject,) = c.answers()
    assert_throttle_reject(reject, b"C1-X1", b"C1", b"1")
    assert_untouched(c, "C1", 1)
    c.clock.now += 1.0
    cancel(c, b"C1-X2", b"C1")
    (canceled,) = c.answers()
    assert canceled.msg_type == b"8"
    assert (canceled.get(11), canceled.get(41), canceled.get(37)) == (b"C1-X2", b"C1", ack.get(37))
    assert (canceled.get(150), canceled.get(39)) == (b"4", b"4")
    assert c.flow.matcher.open_orders("CLIENT1") == []


@pytest.mark.asyncio
async def test_every_message_takes_a_token_whatever_its_type(client: Client) -> None:
    """The order spent the only token: the cancel right after it is over
    the rate, and so is a status request (a BusinessMessageReject, as it has
    no reject of its own); a replace after the refill is taken."""
    c = client
    resting(c, b"M1")
    cancel(c, b"M1-X1", b"M1")
    c.send(b"H", (11, b"M1"), (54, b"1"), (55, b"EUR/USD"))
    reject, business = c.answers()
    assert_throttle_reject(reject, b"M1-X1", b"M1", b"1")
    assert (business.msg_type, business.get(372), business.get(380)) == (b"j", b"H", b"0")
    assert (business.get(58) or b"").startswith(b"throttled:")
    c.clock.now += 1.0
    replace(c, b"M1-G1", b"M1", b"3000")
    (replaced,) = c.answers()
    assert (replaced.get(150), replaced.get(38)) == (b"5", b"3000")
    assert_untouched(c, "M1-G1", 3)


@pytest.mark.asyncio
async def test_a_throttled_cancel_reject_reports_the_order_as_it_stands(client: Client) -> None:
    """FIX 4.4, OrderCancelReject: OrdStatus (39) is "the OrdStatus value
    after this cancel reject is applied" (Rejected only for an unknown
    order), OrderID (37) "NONE" only for an unknown order.  The order the
    cancel names is open and known."""
    c = client
    ack = resting(c, b"K1")
    cancel(c, b"K1-X1", b"K1")
    replace(c, b"K1-G1", b"K1", b"2000")
    for reject in c.answers():
        assert reject.msg_type == b"9"
        assert (reject.get(37), reject.get(39)) == (ack.get(37), b"0")


@pytest.mark.asyncio
async def test_a_business_reject_names_the_id_of_the_request_it_refuses(client: Client) -> None:
    """FIX 4.4, BusinessMessageReject: BusinessRejectRefID (379) is "the
    value of the business-level ID field on the message being referenced",
    required whenever that message carried one: the ClOrdID of a status
    request over the rate, the ClOrdID of a mass cancel the gateway does not
    support."""
    c = client
    resting(c, b"M1")  # the only token
    c.send(b"H", (11, b"M1"), (54, b"1"), (55, b"EUR/USD"), (790, b"S1"))
    (business,) = c.answers()
    assert (business.msg_type, business.get(372), business.get(380)) == (b"j", b"H", b"0")
    assert business.get(379) == b"M1"
    c.clock.now += 1.0
    now = codec.format_utc_timestamp(c.clock.now)
    c.send(b"q", (11, b"MC1"), (60, now), (530, b"7"))
    (unsupported,) = c.answers()
    assert (unsupported.get(372), unsupported.get(380), unsupported.get(379)) == (
        b"q",
        b"3",
        b"MC1",
    )
    for m in (business, unsupported):
        assert message_problems(m.raw) == []


def position_request(c: Client, pos_req_id: bytes) -> None:
    """Ask for the client's positions, now."""
    now = codec.format_utc_timestamp(c.clock.now)
    c.send(
        b"AN",
        (1, b"CLIENT1"),
        (60, now),
        (581, b"1"),
        (710, pos_req_id),
        (715, now[:8]),
        (724, b"0"),
    )


def assert_throttle_text(msg: FixMessage) -> None:
    text = msg.get(58) or b""
    assert text.startswith(b"throttled: more than 1 messages per second")
    assert b"max_messages_per_second" in text


@pytest.mark.asyncio
async def test_a_collateral_inquiry_over_the_rate_gets_a_collateral_inquiry_ack_rejecting_it(
    client: Client,
) -> None:
    """FIX 4.4 answers a CollateralInquiry it refuses with a
    CollateralInquiryAck (BG), as the gateway refuses one for any other
    reason: CollInquiryID echoed, CollInquiryStatus 4 (rejected),
    CollInquiryResult 99 (other: FIX 4.4 has no value for a rate), the Text
    naming the limit.  A client's collateral handler sees it; a
    BusinessMessageReject would leave its inquiry unanswered there."""
    c = client
    resting(c, b"M1")  # the only token
    c.send(b"BB", (909, b"CI1"))
    (ack,) = c.answers()
    assert ack.msg_type == b"BG"
    assert (ack.get(909), ack.get(945), ack.get(946), ack.get(1)) == (
        b"CI1",
        b"4",
        b"99",
        b"CLIENT1",
    )
    assert_throttle_text(ack)
    assert message_problems(ack.raw) == []
    # an id over max_id_length is echoed cut to it, as on any other refusal
    c.send(b"BB", (909, b"C" * 100))
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(909), ack.get(946)) == (b"BG", b"C" * 64, b"99")
    # no id at all: NONE, which FIX requires on the ack
    c.send(b"BB")
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(909), ack.get(945)) == (b"BG", b"NONE", b"4")
    assert message_problems(ack.raw) == []
    # after the refill the inquiry is served: no margin account here
    c.clock.now += 1.0
    c.send(b"BB", (909, b"CI2"))
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(909), ack.get(946)) == (b"BG", b"CI2", b"9")
    assert not (ack.get(58) or b"").startswith(b"throttled")


@pytest.mark.asyncio
async def test_a_request_for_positions_over_the_rate_gets_a_positions_ack_rejecting_it(
    client: Client,
) -> None:
    """FIX 4.4 answers a RequestForPositions it refuses with a
    RequestForPositionsAck (AO), as the gateway refuses one for any other
    reason: PosReqID echoed, PosReqResult 99 (other: the client may ask
    for its positions, only not this fast), PosReqStatus 2 (rejected), no
    reports, the Text naming the limit."""
    c = client
    resting(c, b"M1")  # the only token
    position_request(c, b"PR1")
    (ack,) = c.answers()
    assert ack.msg_type == b"AO"
    assert (ack.get(710), ack.get(728), ack.get(729), ack.get(727)) == (
        b"PR1",
        b"99",
        b"2",
        b"0",
    )
    assert (ack.get(1), ack.get(581)) == (b"CLIENT1", b"1")
    assert ack.get(721)  # PosMaintRptID, required
    assert_throttle_text(ack)
    assert message_problems(ack.raw) == []
    position_request(c, b"P" * 100)
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(710), ack.get(728)) == (b"AO", b"P" * 64, b"99")
    # after the refill the request is served: no margin account here
    c.clock.now += 1.0
    position_request(c, b"PR2")
    (ack,) = c.answers()
    assert (ack.msg_type, ack.get(710), ack.get(728), ack.get(729)) == (b"AO", b"PR2", b"3", b"2")


@pytest.mark.asyncio
async def test_a_clock_stepped_back_does_not_throttle_the_client_for_the_step(
    client: Client,
) -> None:
    """The gateway's clock is the wall clock: set back an hour (by hand, or
    by a time sync), the bucket refills from the new time on instead of
    owing the hour's worth of tokens."""
    c = client
    resting(c, b"B1")  # the only token
    c.clock.now -= 3600.0
    replace(c, b"B1-G1", b"B1", b"2000")
    (reject,) = c.answers()  # no time has passed: still over the rate
    assert_throttle_reject(reject, b"B1-G1", b"B1", b"2")
    c.clock.now += 1.0
    replace(c, b"B1-G2", b"B1", b"2000")
    (replaced,) = c.answers()
    assert (replaced.msg_type, replaced.get(150), replaced.get(38)) == (b"8", b"5", b"2000")
    # and a step forward gives at most the one second's worth the bucket holds
    c.clock.now += 3600.0
    replace(c, b"B1-G3", b"B1", b"3000")
    replace(c, b"B1-G4", b"B1-G3", b"4000")
    replaced, reject = c.answers()
    assert replaced.get(150) == b"5"
    assert_throttle_reject(reject, b"B1-G4", b"B1-G3", b"2")


def market_data_request(c: Client, md_req_id: bytes) -> None:
    """Subscribe to the best bid of EUR/USD."""
    c.send(
        b"V",
        (146, b"1"),
        (55, b"EUR/USD"),
        (262, md_req_id),
        (263, b"1"),
        (264, b"1"),
        (267, b"1"),
        (269, b"0"),
    )


@pytest.mark.asyncio
async def test_a_market_data_request_over_the_rate_gets_a_market_data_request_reject(
    client: Client,
) -> None:
    """FIX 4.4 refuses a MarketDataRequest with a MarketDataRequestReject
    (Y), as the gateway refuses one for any other reason: MDReqID echoed,
    MDReqRejReason 2 (insufficient bandwidth), the Text naming the limit.
    A client's market data handler sees it; a BusinessMessageReject would
    leave the subscription it waits for unanswered there."""
    c = client
    resting(c, b"M1")  # the only token
    market_data_request(c, b"MD1")
    (reject,) = c.answers()
    assert reject.msg_type == b"Y"
    assert (reject.get(262), reject.get(281)) == (b"MD1", b"2")
    text = reject.get(58) or b""
    assert text.startswith(b"throttled: more than 1 messages per second")
    assert b"max_messages_per_second" in text
    assert message_problems(reject.raw) == []
    c.clock.now += 1.0
    market_data_request(c, b"MD1")  # the same id: the refused one was never taken
    assert c.answers() == []  # served (its snapshot is sent, unstored, on a later turn)
    assert c.flow.market_data.pending == 1


@pytest.mark.asyncio
async def test_a_flood_over_the_rate_is_answered_in_full_and_logged_once_a_second(
    client: Client,
) -> None:
    """Every message over the rate gets its reject, but the log gets one
    ``messages_throttled`` line a second at most per client, the next one
    counting those not logged: a client over its rate does not write the
    log at its own rate."""
    c = client
    resting(c, b"T0")  # the only token
    flood = 200
    with capture_logs() as logs:
        for i in range(flood):
            send_resting(c, b"T%d" % (i + 1))
            cancel(c, b"T0-X%d" % i, b"T0")
            market_data_request(c, b"MD%d" % i)
            c.clock.now += 0.001
    answers = c.answers()
    assert len(answers) == 3 * flood
    assert all(b"throttled" in (m.get(58) or b"") for m in answers)
    per_message = ("order_rejected", "cancel_rejected", "market_data_rejected")
    assert [e for e in logs if e["event"] in per_message] == []
    [line] = [e for e in logs if e["event"] == "messages_throttled"]
    assert (line["client"], line["limit"]) == ("CLIENT1", 1)
    c.clock.now += 1.0
    with capture_logs() as logs:
        send_resting(c, b"T-AFTER")  # the refill's token: taken
        send_resting(c, b"T-OVER")
    [line] = [e for e in logs if e["event"] == "messages_throttled"]
    assert line["repeated_since_last"] == 3 * flood - 1


@pytest.mark.asyncio
async def test_orders_resent_that_were_worked_already_are_logged_once_a_second(
    client: Client,
) -> None:
    """A NewOrderSingle sent again with PossResend (97=Y) under its ClOrdID
    is not worked again and not answered; as many as the client sends
    make one ``possible_duplicate_ignored`` line a second."""
    c = client
    resting(c, b"P1")
    fields = resting_fields(c, b"P1")
    with capture_logs() as logs:
        for _ in range(100):
            c.send(b"D", (97, b"Y"), *fields)
    assert c.answers() == []
    assert len([e for e in logs if e["event"] == "possible_duplicate_ignored"]) == 1


@pytest.mark.asyncio
async def test_messages_over_the_rate_not_logged_are_counted_when_the_session_ends(
    client: Client,
) -> None:
    """As the lines the session itself paces: the session's ``session_ended``
    line counts the ``messages_throttled`` and ``possible_duplicate_ignored``
    lines not written since the last (``not_logged``), and the next session
    starts the count afresh."""
    c = client
    c.session.connection_made(c.clock.now)
    resting(c, b"P1")  # the only token
    fields = resting_fields(c, b"P1")
    with capture_logs() as logs:
        for i in range(10):
            send_resting(c, b"T%d" % i)
            c.send(b"D", (97, b"Y"), *fields)
        c.session.connection_lost(c.clock.now)
    assert len([e for e in logs if e["event"] == "messages_throttled"]) == 1
    assert len([e for e in logs if e["event"] == "possible_duplicate_ignored"]) == 1
    [ended] = [e for e in logs if e["event"] == "session_ended"]
    assert ended["not_logged"] == {"messages_throttled": 9, "possible_duplicate_ignored": 9}
    c.session.connection_made(c.clock.now)
    with capture_logs() as logs:
        send_resting(c, b"T-NEXT")
    [line] = [e for e in logs if e["event"] == "messages_throttled"]
    assert "repeated_since_last" not in line
