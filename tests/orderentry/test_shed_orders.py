"""Load shedding (``orders.shed_after_ms``): a NewOrderSingle that waited
too long behind others on its connection is refused at once; cancels,
replaces and status requests are always worked.  The flow is fed directly
and the session is told how long its message waited, as the transport
does (tests/e2e/test_load_shedding.py drives it through a real connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from test_throttles import CONFIG, Client, flow_client, resting, send_resting

from gateway.fix import codec
from gateway.ops.metrics import LoopLag, OperationsCollector
from gateway.ops.reload import ReloadStats

# the throttle tests' gateway without their rate limit, shedding after 20 ms
SHED_CONFIG = (
    CONFIG.replace("[risk.default]\nmax_messages_per_second = 1\n", "")
    + "\n[orders]\nshed_after_ms = 20\n"
)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    assert "max_messages_per_second" not in SHED_CONFIG
    yield flow_client(SHED_CONFIG)


@pytest.mark.asyncio
async def test_an_order_that_waited_past_the_bound_is_refused_at_once(client: Client) -> None:
    c = client
    c.session.waited = 0.0205  # bound: 20 ms
    send_resting(c, b"LATE")
    (reject,) = c.answers()
    assert (reject.msg_type, reject.get(11), reject.get(150), reject.get(39)) == (
        b"8",
        b"LATE",
        b"8",
        b"8",
    )
    assert reject.get(103) == b"99"
    text = (reject.get(58) or b"").decode()
    assert text.startswith("gateway busy: the order waited 20 ms") or text.startswith(
        "gateway busy: the order waited 21 ms"
    )
    assert "shed_after_ms 20" in text
    assert c.flow.matcher.open_orders() == []
    # one that waited less goes through
    c.session.waited = 0.0195
    resting(c, b"IN-TIME")


@pytest.mark.asyncio
async def test_cancels_replaces_and_status_requests_are_never_shed(client: Client) -> None:
    c = client
    ack = resting(c, b"K1")
    c.session.waited = 5.0
    c.send(b"H", (11, b"K1"), (54, b"1"), (55, b"EUR/USD"))
    fields = [(11, b"K1-G"), (38, b"2000"), (40, b"2"), (41, b"K1"), (44, b"0.50000")]
    fields += [(54, b"1"), (55, b"EUR/USD"), (60, codec.format_utc_timestamp(c.clock.now))]
    c.send(b"G", *fields)
    fields = [(11, b"K1-F"), (38, b"2000"), (41, b"K1-G"), (54, b"1"), (55, b"EUR/USD")]
    fields += [(60, codec.format_utc_timestamp(c.clock.now))]
    c.send(b"F", *fields)
    status, replaced, canceled = c.answers()
    assert (status.get(150), status.get(37)) == (b"I", ack.get(37))
    assert (replaced.get(150), replaced.get(11)) == (b"5", b"K1-G")
    assert (canceled.get(150), canceled.get(11)) == (b"4", b"K1-F")


@pytest.mark.asyncio
async def test_with_the_bound_at_zero_nothing_is_shed() -> None:
    c = flow_client(SHED_CONFIG.replace("shed_after_ms = 20\n", "shed_after_ms = 0\n"))
    c.session.waited = 60.0
    resting(c, b"PATIENT")


@pytest.mark.asyncio
async def test_by_default_an_order_that_waited_100_ms_is_shed() -> None:
    c = flow_client(SHED_CONFIG.replace("shed_after_ms = 20\n", ""))
    assert c.flow.rules.config.orders.shed_after_ms == 100
    c.session.waited = 0.0995
    resting(c, b"IN-TIME")
    c.session.waited = 0.1005
    send_resting(c, b"LATE")
    (reject,) = c.answers()
    assert (reject.get(11), reject.get(39)) == (b"LATE", b"8")
    assert (reject.get(58) or b"").startswith(b"gateway busy:")


@pytest.mark.asyncio
async def test_shed_orders_are_counted_under_their_own_reason(client: Client) -> None:
    c = client
    registry = CollectorRegistry()
    registry.register(
        OperationsCollector(lambda: c.flow, ReloadStats, lambda: ("1-test", 1), LoopLag())
    )
    assert registry.get_sample_value("fixgw_orders_shed_total") == 0.0  # served before any
    c.session.waited = 1.0
    for i in range(3):
        send_resting(c, b"S%d" % i)
    assert len(c.answers()) == 3
    assert c.flow.stats.order_rejects.get(("CLIENT1", "shed")) == 3
    labels = {"client": "CLIENT1", "reason": "shed"}
    assert registry.get_sample_value("fixgw_order_rejects_total", labels) == 3.0
    assert registry.get_sample_value("fixgw_orders_shed_total") == 3.0


@pytest.mark.asyncio
async def test_the_shed_orders_line_is_written_again_after_the_clock_steps_back(
    client: Client,
) -> None:
    c = client
    c.session.waited = 1.0
    with capture_logs() as logs:
        send_resting(c, b"S1")
        send_resting(c, b"S2")  # the same second: counted, not logged
        c.clock.now -= 3600  # the wall clock set back an hour
        send_resting(c, b"S3")
    # S2 and S3 in the second line
    assert [e["count"] for e in logs if e["event"] == "orders_shed"] == [1, 2]
