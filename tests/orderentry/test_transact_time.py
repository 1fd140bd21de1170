"""TransactTime (60) on every ExecutionReport: those the gateway makes
without the matcher (a new order refused before it, the answer to a status
request naming no order) carry it as the matcher's do, the time of the
event.  The order flow is fed directly, as in test_throttles, on a clock
the test holds still."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from strict_fix44 import message_problems
from test_throttles import CONFIG, Client, flow_client, resting_fields

from gateway.fix import codec
from gateway.fix.codec import FixMessage

UNTHROTTLED = CONFIG.replace("[risk.default]\nmax_messages_per_second = 1\n", "")


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    yield flow_client(UNTHROTTLED)


def only_report(c: Client) -> FixMessage:
    (report,) = c.answers()
    assert report.msg_type == b"8"
    assert message_problems(report.raw) == []
    return report


def order_fields(c: Client, cl_ord_id: bytes, **changed: bytes) -> list[tuple[int, bytes]]:
    tags = {"qty": 38, "ord_type": 40, "tif": 59}
    fields = dict(resting_fields(c, cl_ord_id))
    for name, value in changed.items():
        fields[tags[name]] = value
    return sorted(fields.items())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"qty": b"1500"}, b"13"),  # refused as it is decoded: not a whole lot
        ({"ord_type": b"1", "tif": b"1"}, b"99"),  # refused by the matcher: a GTC market order
    ],
)
async def test_a_rejected_new_order_reports_when(
    client: Client, changed: dict[str, bytes], reason: bytes
) -> None:
    c = client
    c.clock.now += 1.25
    c.send(b"D", *order_fields(c, b"N1", **changed))
    report = only_report(c)
    assert (report.get(150), report.get(39), report.get(103)) == (b"8", b"8", reason)
    assert report.get(60) == codec.format_utc_timestamp(c.clock.now)


@pytest.mark.asyncio
async def test_a_status_answer_reports_when_the_order_is_known_or_not(client: Client) -> None:
    c = client
    c.send(b"D", *order_fields(c, b"S1"))
    only_report(c)
    c.clock.now += 2.5
    for cl_ord_id, status in ((b"S1", b"0"), (b"NO-SUCH", b"8")):
        c.send(b"H", (11, cl_ord_id), (54, b"1"), (55, b"EUR/USD"))
        answer = only_report(c)
        assert (answer.get(150), answer.get(39)) == (b"I", status)
        assert answer.get(60) == codec.format_utc_timestamp(c.clock.now)
