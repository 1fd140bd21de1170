"""The ``fixgw_margin_*`` gauges of a gateway in a cluster: a client served
by another gateway is judged there, on its current positions; the figures
this gateway holds for it are those it last knew (before a failover or a
hand-over), so they are not served here, where an alert on them
(``fixgw_margin_level < 1``) would page about an account that no longer
stands so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_margin_metrics import GAUGES, MARGINED, Running, started

from gateway.ops import admin

SERVED = "CLIENT2"  # this gateway serves CLIENT2; CLIENT1 is served elsewhere
ELSEWHERE = "CLIENT1"


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async for r in started(tmp_path, margin=True):
        yield r


@pytest.mark.asyncio
async def test_a_client_served_by_another_gateway_has_no_margin_gauges_here(
    running: Running,
) -> None:
    # CLIENT1 traded here, then its session went to another gateway
    await running.trade(ELSEWHERE, "EUR/USD", "1", "60000")
    await running.trade(SERVED, "EUR/USD", "1", "1000")
    assert running.samples("fixgw_margin_level").keys() == {ELSEWHERE, SERVED}
    running.flow.watch.serves = lambda client: client == SERVED

    for name in (*GAUGES, "fixgw_margin_level"):
        assert set(running.samples(name)) == {SERVED}, name
    # the counters stay, from zero for every margined client: only the
    # gateway serving a client calls it
    assert running.samples("fixgw_margin_calls_total") == dict.fromkeys(MARGINED, 0.0)
    assert running.samples("fixgw_margin_stop_outs_total") == dict.fromkeys(MARGINED, 0.0)

    # served here again (taken over): its gauges are back
    running.flow.watch.serves = lambda client: True
    assert running.samples("fixgw_margin_level").keys() == {ELSEWHERE, SERVED}


@pytest.mark.asyncio
async def test_the_admin_margin_view_marks_a_client_served_by_another_gateway(
    running: Running,
) -> None:
    await running.trade(ELSEWHERE, "EUR/USD", "1", "60000")
    assert all("served_here" not in a for a in admin.margin(running.flow)["accounts"])
    running.flow.watch.serves = lambda client: client == SERVED
    accounts = {a["client"]: a for a in admin.margin(running.flow)["accounts"]}
    assert accounts[ELSEWHERE]["served_here"] is False
    assert accounts[SERVED]["served_here"] is True
