"""Subscriptions made before a reload lowered ``[orders] max_id_length``:
the client can still end them (SubscriptionRequestType 2) by their own id,
as it can still cancel an order named before the reload; a new id past the
limit is still refused.  The order flow is fed directly (``test_throttles``)."""

from __future__ import annotations

import pytest
from test_change_requests import MARGINED, UNTHROTTLED
from test_throttles import Client, flow_client

from config import parse_config
from gateway.orderflow.rules import build_rules

pytestmark = pytest.mark.asyncio

LONG_ID = b"SUB-" + b"X" * 32  # a UUID's length


def lower_the_id_limit(c: Client, text: str) -> None:
    lower = parse_config(text + "\n[orders]\nmax_id_length = 16\n")
    c.flow.apply_rules(build_rules(lower, c.flow.instruments, ["CLIENT1"], 2))


def market_data_request(c: Client, md_req_id: bytes, request_type: bytes) -> None:
    c.send(
        b"V",
        (146, b"1"),
        (55, b"EUR/USD"),
        (262, md_req_id),
        (263, request_type),
        (264, b"0"),
        (265, b"1"),
        (267, b"2"),
        (269, b"0"),
        (269, b"1"),
    )


async def test_a_market_data_subscription_made_before_the_limit_was_lowered_can_be_ended() -> None:
    c = flow_client(UNTHROTTLED)
    market_data = c.flow.market_data
    market_data_request(c, LONG_ID, b"1")
    assert c.answers() == []  # the refreshes are not stored
    assert market_data.pending == 1  # its snapshot, owed
    lower_the_id_limit(c, UNTHROTTLED)
    market_data_request(c, LONG_ID, b"2")
    assert c.answers() == []  # ended, not refused
    assert market_data.pending == 0
    # ended for good: the same id names no subscription any more
    market_data_request(c, LONG_ID, b"2")
    (refused,) = c.answers()
    assert (refused.msg_type, refused.get(262)) == (b"Y", LONG_ID[:16])
    # a new subscription past the limit is still refused
    market_data_request(c, LONG_ID, b"1")
    (refused,) = c.answers()
    assert refused.msg_type == b"Y"
    assert b"MDReqID (262) too long" in (refused.get(58) or b"")
    assert market_data.pending == 0


async def test_a_collateral_subscription_made_before_the_limit_was_lowered_can_be_ended() -> None:
    c = flow_client(MARGINED)
    c.send(b"BB", (263, b"1"), (909, LONG_ID))
    assert [m.msg_type for m in c.answers()] == [b"BA"]
    subscribers = c.flow.entry.collateral_subscribers["CLIENT1"]
    assert list(subscribers) == [LONG_ID.decode()]
    lower_the_id_limit(c, MARGINED)
    c.send(b"BB", (263, b"2"), (909, LONG_ID))
    (ended,) = c.answers()
    assert (ended.msg_type, ended.get(909), ended.get(945)) == (b"BG", LONG_ID, b"2")
    assert not subscribers
    # a new subscription past the limit is still refused
    c.send(b"BB", (263, b"1"), (909, LONG_ID))
    (refused,) = c.answers()
    assert (refused.msg_type, refused.get(945)) == (b"BG", b"4")
    assert b"CollInquiryID (909) too long" in (refused.get(58) or b"")
    assert not subscribers
