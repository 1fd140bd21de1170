"""A CollateralInquiry (BB) narrowed to one order is refused whichever of the
order's ids names it: collateral is kept, and reported, per account only."""

from __future__ import annotations

import pytest
from strict_fix44 import problems
from test_collateral_fix import inbound, values

from gateway.orderflow.collateral import (
    COLL_INQUIRY_TYPE_NOT_SUPPORTED,
    CollateralRefusal,
    collateral_refusal_body,
    decode_collateral_inquiry,
)


@pytest.mark.parametrize(
    ("field", "name"),
    [
        (b"11=O1\x01", "ClOrdID (11)"),
        (b"37=O1\x01", "OrderID (37)"),
        (b"198=O1\x01", "SecondaryOrderID (198)"),
        (b"526=O1\x01", "SecondaryClOrdID (526)"),
    ],
)
def test_an_inquiry_narrowed_to_an_order_is_refused(field: bytes, name: str) -> None:
    refusal = decode_collateral_inquiry(inbound(b"BB", field + b"909=Q1\x01"), "C1")
    assert isinstance(refusal, CollateralRefusal), refusal
    assert refusal.result == COLL_INQUIRY_TYPE_NOT_SUPPORTED
    assert name in refusal.text
    ack = collateral_refusal_body(refusal)
    assert problems(b"BG", ack) == []
    f = values(ack)
    assert (f[909], f[945], f[946]) == (b"Q1", b"4", b"8")
