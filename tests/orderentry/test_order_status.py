"""OrderStatusRequest (H): the ExecutionReport (ExecType I) answering it,
for an order of the client and for none, each checked against QuickFIX's
FIX44.xml by the strict checker.  The order flow is fed directly, as in
test_throttles."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from strict_fix44 import message_problems
from test_throttles import CONFIG, Client, flow_client, resting

from config.schema import DEFAULT_MAX_ID_LENGTH
from gateway.fix.codec import FixMessage

STATUS_CONFIG = CONFIG.replace("[risk.default]\nmax_messages_per_second = 1\n", "")


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    yield flow_client(STATUS_CONFIG)


def status(c: Client, cl_ord_id: bytes, req_id: bytes | None) -> FixMessage:
    """Send an OrderStatusRequest; its one answer, valid strict FIX 4.4."""
    fields = [(11, cl_ord_id), (54, b"1"), (55, b"EUR/USD")]
    if req_id is not None:
        fields.append((790, req_id))
    c.send(b"H", *fields)
    (answer,) = c.answers()
    assert message_problems(answer.raw) == []
    assert (answer.msg_type, answer.get(150), answer.get(11)) == (b"8", b"I", cl_ord_id)
    return answer


@pytest.mark.asyncio
async def test_a_status_answer_echoes_the_ord_status_req_id(client: Client) -> None:
    c = client
    ack = resting(c, b"S1")
    known = status(c, b"S1", b"REQ-1")
    assert (known.get(37), known.get(39), known.get(790)) == (ack.get(37), b"0", b"REQ-1")
    unknown = status(c, b"NO-SUCH", b"REQ-2")
    assert (unknown.get(37), unknown.get(39), unknown.get(790)) == (b"NONE", b"8", b"REQ-2")


@pytest.mark.asyncio
async def test_a_status_answer_has_no_ord_status_req_id_when_none_was_sent(
    client: Client,
) -> None:
    c = client
    resting(c, b"S1")
    assert status(c, b"S1", None).get(790) is None
    assert status(c, b"NO-SUCH", None).get(790) is None


@pytest.mark.asyncio
async def test_a_long_ord_status_req_id_is_echoed_cut(client: Client) -> None:
    c = client
    resting(c, b"S1")
    long_id = b"R" * (DEFAULT_MAX_ID_LENGTH + 100)
    cut = b"R" * DEFAULT_MAX_ID_LENGTH
    assert status(c, b"S1", long_id).get(790) == cut
    assert status(c, b"NO-SUCH", long_id).get(790) == cut
