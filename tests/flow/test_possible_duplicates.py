"""Requests a client resends with PossDupFlag after a crash: one already
worked on is not worked again; one never seen is worked as usual."""

from __future__ import annotations

import time

import pytest
from test_lp_fault_properties import (
    SYMBOL,
    Harness,
)

from gateway.fix import codec


def request(msg_type: bytes, body: list[tuple[int, bytes]], poss_dup: bool) -> codec.FixMessage:
    now = time.time()
    header = [(34, b"7"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(now)), (56, b"GATEWAY")]
    if poss_dup:
        header += [(43, b"Y"), (122, codec.format_utc_timestamp(now - 5))]
    raw = codec.encode_message(b"FIX.4.4", msg_type, sorted(header), codec.encode_fields(body))
    return codec.parse_frame(raw)


def resting(cl_ord_id: bytes) -> list[tuple[int, bytes]]:
    return [
        (11, cl_ord_id),
        (38, b"1000"),
        (40, b"2"),
        (44, b"0.5"),
        (54, b"1"),
        (55, SYMBOL.encode()),
        (59, b"1"),
        (60, codec.format_utc_timestamp(0.0)),
    ]


@pytest.mark.asyncio
async def test_a_resent_request_already_worked_on_is_not_worked_again(
    flow_harness: Harness,
) -> None:
    harness = flow_harness
    flow = harness.flow
    session = harness.sessions["CLIENT1"]
    sent_before = session.store.next_sender_seq
    flow.on_message(session, request(b"D", resting(b"P1"), poss_dup=False), time.time())
    assert session.store.next_sender_seq == sent_before + 1  # the ack
    # the same order again, resent after a crash: nothing new happens
    flow.on_message(session, request(b"D", resting(b"P1"), poss_dup=True), time.time())
    cancel = [(11, b"P1-X"), (41, b"P1"), (54, b"1"), (55, SYMBOL.encode())]
    cancel.append((60, codec.format_utc_timestamp(0.0)))
    flow.on_message(session, request(b"F", cancel, poss_dup=False), time.time())
    flow.on_message(session, request(b"F", cancel, poss_dup=True), time.time())
    assert session.store.next_sender_seq == sent_before + 2  # ack, canceled
    # a resent order the gateway never saw is worked as usual
    flow.on_message(session, request(b"D", resting(b"P2"), poss_dup=True), time.time())
    assert session.store.next_sender_seq == sent_before + 3
    (open_order,) = flow.matcher.open_orders("CLIENT1")
    assert open_order.cl_ord_id == "P2"
