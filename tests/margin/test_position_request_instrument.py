"""A RequestForPositions (AN) narrowed to one instrument: by Symbol (55) it
is answered with that instrument's position alone; by SecurityID (48)
without a Symbol, which the gateway cannot match to an instrument, it is
refused, not answered with every position as if nothing narrowed it."""

from __future__ import annotations

from strict_fix44 import problems
from test_collateral_fix import (
    DATE,
    INSTRUMENTS,
    cme_example,
    ids,
    inbound,
    position_request,
    values,
)

from gateway.orderflow.collateral import (
    POS_REQ_NOT_SUPPORTED,
    PositionRefusal,
    PositionRequest,
    answer_position_request,
    decode_position_request,
    position_refusal_body,
)


def test_a_request_naming_its_instrument_by_symbol_gets_that_position_alone() -> None:
    accounts, view = cme_example()  # long 2 ZC, short 1 ZS
    msg = inbound(b"AN", position_request({55: b"ZC", 48: b"ZC", 22: b"8"}))
    request = decode_position_request(msg, "C1", current_date=DATE)
    assert isinstance(request, PositionRequest)
    answers = answer_position_request(
        request, view, accounts.marks, INSTRUMENTS, next_id=ids(), business_date=DATE
    )
    assert [values(body).get(55) for _, body in answers] == [None, b"ZC"]


def test_a_request_naming_its_instrument_by_security_id_alone_is_refused() -> None:
    """Answered, it would get both positions (ZC and ZS) with PosReqResult 0:
    the client would take ZS for a position in the instrument it named."""
    msg = inbound(b"AN", position_request({48: b"ZC", 22: b"8"}))
    refusal = decode_position_request(msg, "C1", current_date=DATE)
    assert isinstance(refusal, PositionRefusal), refusal
    assert refusal.result == POS_REQ_NOT_SUPPORTED
    assert "SecurityID (48)" in refusal.text
    ack = position_refusal_body(refusal, report_id="M1")
    assert problems(b"AO", ack) == []
    f = values(ack)
    assert (f[710], f[727], f[728], f[729]) == (b"P1", b"0", b"4", b"2")
