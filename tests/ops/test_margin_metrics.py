"""The ``fixgw_margin_*`` metrics: read at scrape time from a running order
flow's margin accounts, they give the figures ``/admin/margin`` gives for
the same accounts, one sample per margined client, and the margin calls and
stop-outs the margin watch counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from config import SessionSettings, parse_config
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.ops import admin
from gateway.ops.metrics import LoopLag, OperationsCollector
from gateway.ops.reload import ReloadStats
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.rules import build_rules, config_digest

CLIENTS = ("CLIENT1", "CLIENT2", "CLIENT3")
MARGINED = ("CLIENT1", "CLIENT2")  # CLIENT3 has no account
SYMBOLS = ("EUR/USD", "GBP/USD", "BTC/USD")
FLAT = "CLIENT2"
VERSION = "ops-test-1"
GAUGES = {
    "fixgw_margin_equity_usd": "equity_usd",
    "fixgw_margin_usd": "margin_usd",
    "fixgw_margin_siloed_usd": "siloed_margin_usd",
    "fixgw_margin_free_usd": "free_margin_usd",
}

MARGIN = f"""
[margin]
version = "{VERSION}"

[[margin.groups]]
name = "EUR"
symbols = ["EUR/USD"]
scan_pct = "0.0333"

[[margin.groups]]
name = "GBP"
symbols = ["GBP/USD"]
scan_pct = "0.0333"

[[margin.groups]]
name = "BTC"
symbols = ["BTC/USD"]
scan_pct = "0.5"

[[margin.spreads]]
name = "EUR-GBP"
priority = 1
rate = "0.50"
legs = [
    {{ group = "EUR", ratio = "1", side = "A" }},
    {{ group = "GBP", ratio = "0.85", side = "B" }},
]

[[margin.spreads]]
name = "EUR-BTC"
priority = 10
rate = "0.20"
legs = [
    {{ group = "EUR", ratio = "27650", side = "A" }},
    {{ group = "BTC", ratio = "1", side = "B" }},
]

[accounts.CLIENT1]
collateral_usd = "100000"

[accounts.CLIENT2]
collateral_usd = "5000"
margin_call_level = "1.5"
"""


def config_text(data_dir: Path, margin: bool) -> str:
    sessions = "".join(
        f'[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "{c}"\n' for c in CLIENTS
    )
    return (
        f'[gateway]\ndata_dir = "{data_dir}"\n\n'
        + sessions
        + """
[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "10000000"
quote_currency = "USD"

[[instruments]]
symbol = "GBP/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "10000000"
quote_currency = "USD"

[[instruments]]
symbol = "BTC/USD"
asset_class = "crypto"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "100"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "1000000000"
hard_limit_usd = "2000000000"

[lps.settings]
seed = 5
spread_ticks = 4
depth_levels = 3
level_qty_lots = 1000
quote_interval_ms = 50
walk_ticks = 3

[lps.settings.start_mid]
"EUR/USD" = "1.08500"
"GBP/USD" = "1.27000"
"BTC/USD" = "30000.00"
"""
        + (MARGIN if margin else "")
    )


class Running:
    """A started order flow and its client sessions (never logged on: the
    flow writes its reports to their stores)."""

    def __init__(self, flow: OrderFlow, sessions: dict[str, Session]) -> None:
        self.flow = flow
        self.sessions = sessions
        self.registry = CollectorRegistry()
        self.registry.register(
            OperationsCollector(lambda: flow, ReloadStats, lambda: ("1-test", 1), LoopLag())
        )
        self._ids = 0

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def samples(self, name: str) -> dict[str, float]:
        """Every sample of ``name``, by its client label."""
        out = {}
        for family in self.registry.collect():
            for s in family.samples:
                if s.name == name:
                    out[s.labels["client"]] = s.value
        return out

    async def trade(self, client: str, symbol: str, side: str, qty: str) -> None:
        """A market order of ``client``, once it is booked in the client's
        account (polling, with a deadline)."""
        lots = int(Decimal(qty) / self.flow.instruments[symbol].lot_size)
        before = self.flow.accounts.position(client, symbol)
        self._ids += 1
        now = time.time()
        body = [
            (11, f"M{self._ids}".encode()),
            (38, qty.encode()),
            (40, b"1"),
            (54, side.encode()),
            (55, symbol.encode()),
            (59, b"3"),
            (60, codec.format_utc_timestamp(now)),
        ]
        header = [
            (34, b"1"),
            (49, client.encode()),
            (52, codec.format_utc_timestamp(now)),
            (56, b"GATEWAY"),
        ]
        raw = codec.encode_message(b"FIX.4.4", b"D", header, codec.encode_fields(body))
        self.flow.on_message(self.sessions[client], codec.parse_frame(raw), now)
        deadline = time.monotonic() + 10
        while self.flow.accounts.position(client, symbol) == before:
            assert time.monotonic() < deadline, f"{client}'s {symbol} order never filled"
            await asyncio.sleep(0.01)  # polling, with the deadline above
        signed = lots if side == "1" else -lots
        assert self.flow.accounts.position(client, symbol) == before + signed


async def started(tmp_path: Path, margin: bool) -> AsyncIterator[Running]:
    config = parse_config(config_text(tmp_path, margin))
    sessions = {
        c: Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID=c), MemoryStore())
        for c in CLIENTS
    }
    flow = build_order_flow(config, sessions, None, Outbox(), time.time)
    await flow.start()
    try:
        deadline = time.monotonic() + 10
        while not (flow.lps_up() and all(flow.routing.book.snapshot(s) for s in SYMBOLS)):
            assert time.monotonic() < deadline, "the simulated LP never quoted"
            await asyncio.sleep(0.01)  # polling, with the deadline above
        yield Running(flow, sessions)
    finally:
        await flow.stop()


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async for r in started(tmp_path, margin=True):
        yield r


@pytest_asyncio.fixture
async def unmargined(tmp_path: Path) -> AsyncIterator[Running]:
    async for r in started(tmp_path, margin=False):
        yield r


def cents(text: str) -> Any:
    return pytest.approx(float(text), abs=0.005)


@pytest.mark.asyncio
async def test_the_gauges_are_the_admin_views_figures(running: Running) -> None:
    # CLIENT1: long EUR/USD against short GBP/USD (a spread within FX) and
    # against short BTC/USD (a cross-asset spread, which frees collateral);
    # CLIENT3, not margined, trades too
    await running.trade("CLIENT1", "EUR/USD", "1", "60000")
    await running.trade("CLIENT1", "GBP/USD", "2", "20000")
    await running.trade("CLIENT1", "BTC/USD", "2", "1")
    await running.trade("CLIENT3", "EUR/USD", "1", "1000")
    await running.trade("CLIENT1", "EUR/USD", "2", "10000")  # realizes some P&L

    # both read in one turn of the loop: the same marks
    listing = admin.margin(running.flow)
    views = {c: running.flow.accounts.view(c) for c in MARGINED}
    gauges = {name: running.samples(name) for name in (*GAUGES, "fixgw_margin_level")}

    accounts = {a["client"]: a for a in listing["accounts"]}
    assert set(accounts) == set(MARGINED)
    for name, field in GAUGES.items():
        assert set(gauges[name]) == set(MARGINED), name
        for client in MARGINED:
            assert gauges[name][client] == cents(accounts[client][field]), (name, client)
            view = views[client]
            assert view is not None
            exact = {
                "equity_usd": view.equity_usd,
                "margin_usd": view.margin_usd,
                "siloed_margin_usd": view.siloed_margin_usd,
                "free_margin_usd": view.free_margin_usd,
            }[field]
            assert gauges[name][client] == exact, (name, client)

    one = accounts["CLIENT1"]
    assert float(one["margin_usd"]) > 0
    assert float(one["freed_by_portfolio_usd"]) > 0  # the cross-asset spread formed
    assert float(one["realized_pnl_usd"]) != 0 or float(one["unrealized_pnl_usd"]) != 0
    assert gauges["fixgw_margin_siloed_usd"]["CLIENT1"] > gauges["fixgw_margin_usd"]["CLIENT1"]
    # the level is sampled only with a margin: CLIENT2 is flat
    assert float(accounts[FLAT]["margin_usd"]) == 0
    assert set(gauges["fixgw_margin_level"]) == {"CLIENT1"}
    assert gauges["fixgw_margin_level"]["CLIENT1"] == pytest.approx(one["margin_level"], abs=5e-5)

    assert running.sample("fixgw_margin_param_info", version=VERSION) == 1
    assert listing["param_version"] == VERSION


@pytest.mark.asyncio
async def test_margin_calls_and_stop_outs_are_counters_per_client(running: Running) -> None:
    # every margined client is served from zero
    assert running.samples("fixgw_margin_calls_total") == dict.fromkeys(MARGINED, 0.0)
    assert running.samples("fixgw_margin_stop_outs_total") == dict.fromkeys(MARGINED, 0.0)
    stats = running.flow.stats
    stats.margin_calls["CLIENT2"] = 3
    stats.stop_outs["CLIENT2"] = 1
    stats.margin_calls["GONE"] = 2  # counted before a reload took its account away
    assert running.samples("fixgw_margin_calls_total") == {
        "CLIENT1": 0.0,
        "CLIENT2": 3.0,
        "GONE": 2.0,
    }
    assert running.samples("fixgw_margin_stop_outs_total") == {
        "CLIENT1": 0.0,
        "CLIENT2": 1.0,
        "GONE": 0.0,
    }


@pytest.mark.asyncio
async def test_no_margin_config_serves_no_margin_samples(unmargined: Running) -> None:
    await unmargined.trade("CLIENT1", "EUR/USD", "1", "1000")
    names = [
        s.name
        for family in unmargined.registry.collect()
        for s in family.samples
        if s.name.startswith("fixgw_margin_")
    ]
    assert names == []
    assert admin.margin(unmargined.flow) == {"param_version": None, "accounts": []}


@pytest.mark.asyncio
async def test_a_reload_names_the_margin_by_the_configs_new_version(tmp_path: Path) -> None:
    # no `version` of its own: the margin is named by the config's, which
    # a reload changing anything else moves too
    text = config_text(tmp_path, True).replace(f'version = "{VERSION}"\n', "")
    config = parse_config(text)
    sessions = {
        c: Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID=c), MemoryStore())
        for c in CLIENTS
    }
    flow = build_order_flow(config, sessions, None, Outbox(), time.time)
    first = admin.margin(flow)["param_version"]
    reloaded = parse_config(text + "\n[risk.default]\nmax_open_orders = 500\n")
    flow.apply_rules(build_rules(reloaded, flow.instruments, list(sessions), 2))
    now = admin.margin(flow)["param_version"]
    assert now == f"2-{config_digest(reloaded)}"
    assert now != first
