"""The ``fixgw_lp_*`` metrics of an LP the config disables: it is neither
connected nor routed to, so it has no link to report on (the alert on a
link down, ``fixgw_lp_up == 0``, must not page for it)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from config import SessionSettings, parse_config
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.ops import admin
from gateway.ops.metrics import LoopLag, OperationsCollector
from gateway.ops.reload import ReloadStats
from gateway.orderflow.flow import OrderFlow

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
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"

[lps.settings.start_mid]
"EUR/USD" = "1.08500"

[[lps]]
name = "LP_OFF"
adapter = "simulated"
enabled = false
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"

[lps.settings.start_mid]
"EUR/USD" = "1.08500"
"""


@pytest_asyncio.fixture
async def flow(tmp_path: Path) -> AsyncIterator[OrderFlow]:
    config = parse_config(f'[gateway]\ndata_dir = "{tmp_path}"\n' + CONFIG)
    sessions = {
        "CLIENT1": Session(
            SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore()
        )
    }
    started = build_order_flow(config, sessions, None, Outbox(), time.time)
    await started.start()
    try:
        for _ in range(200):
            if started.lps_up():
                break
            await asyncio.sleep(0.05)  # polling, 10 s at most
        yield started
    finally:
        await started.stop()


def samples(flow: OrderFlow, name: str) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(
        OperationsCollector(lambda: flow, ReloadStats, lambda: ("1-test", 1), LoopLag())
    )
    return {
        s.labels["lp"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


@pytest.mark.asyncio
async def test_an_lp_disabled_in_the_config_is_not_reported_down(flow: OrderFlow) -> None:
    assert flow.lps_up() == ["LP_A"]
    assert samples(flow, "fixgw_lp_up") == {"LP_A": 1.0}
    # its limits are still shown, and the admin API tells it is disabled
    assert samples(flow, "fixgw_lp_hard_limit_usd") == {"LP_A": 2e6, "LP_OFF": 2e6}
    shown = {lp["name"]: (lp["enabled"], lp["up"]) for lp in admin.lps(flow)}
    assert shown == {"LP_A": (True, True), "LP_OFF": (False, False)}


@pytest.mark.asyncio
async def test_an_lp_a_reload_disabled_is_not_reported_down(flow: OrderFlow) -> None:
    limits = flow.rules.limits
    off = dataclasses.replace(limits.lps["LP_A"], enabled=False)
    flow.apply_rules(
        dataclasses.replace(
            flow.rules, limits=dataclasses.replace(limits, lps={**limits.lps, "LP_A": off})
        )
    )
    assert flow.lps_up() == ["LP_A"]  # still linked, routed to no more
    assert samples(flow, "fixgw_lp_up") == {}


@pytest.mark.asyncio
async def test_the_lp_counters_are_served_from_zero_before_the_first_child(
    flow: OrderFlow,
) -> None:
    """An LP's counters have a series before its first child order: one
    born at its first value hides that value from ``increase()`` and
    ``rate()``, so a first burst of rejects would not fire the reject-rate
    alerts."""
    assert "LP_A" not in flow.stats.lps  # no child order yet
    registry = CollectorRegistry()
    registry.register(
        OperationsCollector(lambda: flow, ReloadStats, lambda: ("1-test", 1), LoopLag())
    )
    ended = {
        (s.labels["lp"], s.labels["outcome"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "fixgw_lp_child_orders_ended_total"
    }
    for outcome in ("filled", "rejected", "unfilled"):
        assert ended.get(("LP_A", outcome)) == 0.0
    for name in (
        "fixgw_lp_child_orders_total",
        "fixgw_lp_fills_total",
        "fixgw_lp_child_timeouts_total",
    ):
        assert samples(flow, name).get("LP_A") == 0.0
