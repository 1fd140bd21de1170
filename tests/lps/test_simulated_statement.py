"""The in-process simulated LP's statement: a line per fill event it hands
to the gateway, in the gateway's units, in ``statement_dir`` taken in the
gateway's data directory."""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from lp_test_kit import INSTRUMENTS, NO_TIMER_MS, EventQueue, child

from config import config_base, load_config, resolve_paths
from lp_adapters.base import LpAdapter
from lp_adapters.registry import adapter_settings, create_adapter
from lp_adapters.simulated import SimulatedLp
from lp_adapters.simulated.statement import HEADER
from router.model import ChildAck, ChildFill, ChildOrder, Side
from router.units import price_text, qty_text

# 2026-12-03T18:20:01.123Z
NOW = datetime(2026, 12, 3, 18, 20, 1, 123000, tzinfo=UTC).timestamp()
FILE = "lp-s-20261203.csv"

# EUR/USD asks 1.10001 / 1.10002 / 1.10003 and bids 1.09999 / ..., 10 lots each;
# BTC/USD around 30000.00, XAU/USD around 2000.00
SETTINGS: dict[str, Any] = {
    "symbols": ["EUR/USD", "BTC/USD", "XAU/USD"],
    "start_mid": {"EUR/USD": "1.10000", "BTC/USD": "30000.00", "XAU/USD": "2000.00"},
    "walk_ticks": 0,
    "spread_ticks": 2,
    "depth_levels": 3,
    "level_qty_lots": 10,
    "quote_interval_ms": NO_TIMER_MS,
}


@asynccontextmanager
async def simulated(
    data_dir: Path, events: EventQueue, clock: Callable[[], float] = lambda: NOW, **settings: Any
) -> AsyncIterator[SimulatedLp]:
    """A connected simulated LP ``lp-s`` built as the gateway builds it,
    disconnected (its statement written out) when the block ends."""
    lp: LpAdapter = create_adapter(
        "simulated", "lp-s", INSTRUMENTS, events, {**SETTINGS, **settings}, data_dir, clock=clock
    )
    assert isinstance(lp, SimulatedLp)
    await lp.connect()
    try:
        yield lp
    finally:
        await lp.disconnect()


async def trade(lp: SimulatedLp, events: EventQueue, *children: ChildOrder) -> None:
    """Send ``children`` and wait until each has ended."""
    for order in children:
        lp.send(order)
    for order in children:
        await events.child_events(order.child_id)


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def expected_rows(
    events: list[Any], children: dict[str, ChildOrder], now: float
) -> list[list[str]]:
    """The statement lines of the fill events, from the events and the children alone."""
    at = datetime.fromtimestamp(now, UTC)
    order_ids = {e.child_id: e.lp_order_id for e in events if isinstance(e, ChildAck)}
    found = []
    for e in events:
        if not isinstance(e, ChildFill):
            continue
        sent = children[e.child_id]
        instrument = INSTRUMENTS[sent.symbol]
        found.append(
            [
                at.strftime("%Y-%m-%d"),
                at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                e.exec_id,
                e.child_id,
                order_ids[e.child_id],
                sent.symbol,
                sent.side.name,
                qty_text(instrument, e.qty),
                price_text(instrument, e.price),
            ]
        )
    return found


@pytest.mark.asyncio
async def test_every_fill_is_a_line_of_the_statement(tmp_path: Path) -> None:
    events = EventQueue()
    children = {
        c.child_id: c
        for c in (
            child("c1", Side.BUY, 15, 110002, lp="lp-s"),  # two levels: 10 + 5 lots
            child("c2", Side.SELL, 25, 2999990, lp="lp-s", symbol="BTC/USD"),
            child("c3", Side.BUY, 5, 109990, lp="lp-s"),  # below the asks: nothing filled
            child("c4", Side.SELL, 3, 1, lp="lp-s", symbol="XAU/USD"),
        )
    }
    async with simulated(tmp_path, events) as lp:
        await trade(lp, events, *children.values())
    path = tmp_path / "statements" / FILE
    header, *lines = rows(path)
    assert header == HEADER.split(",")
    assert lines == expected_rows(events.seen, children, NOW)
    assert [line[2:] for line in lines] == [
        ["lp-s-x1", "c1", "lp-s-1", "EUR/USD", "BUY", "10000", "1.10001"],
        ["lp-s-x2", "c1", "lp-s-1", "EUR/USD", "BUY", "5000", "1.10002"],
        ["lp-s-x3", "c2", "lp-s-2", "BTC/USD", "SELL", "0.001", "29999.99"],
        ["lp-s-x4", "c2", "lp-s-2", "BTC/USD", "SELL", "0.001", "29999.98"],
        ["lp-s-x5", "c2", "lp-s-2", "BTC/USD", "SELL", "0.0005", "29999.97"],
        ["lp-s-x6", "c4", "lp-s-4", "XAU/USD", "SELL", "3", "1999.99"],
    ]
    assert lines[0][:2] == ["2026-12-03", "2026-12-03T18:20:01.123Z"]


@pytest.mark.asyncio
async def test_the_statement_is_written_while_the_lp_runs_and_goes_on_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "statements" / FILE
    events = EventQueue()
    async with simulated(tmp_path, events) as lp:
        await trade(lp, events, child("c1", Side.BUY, 1, 110001, lp="lp-s"))
        deadline = time.monotonic() + 5.0
        while not path.exists():  # the LP's timer writes it, within half a second
            assert time.monotonic() < deadline, "the statement was not written"
            await asyncio.sleep(0.02)  # polling, with the deadline above
        assert len(rows(path)) == 2
    again = EventQueue()  # the gateway restarted: a new adapter, the same data directory
    async with simulated(tmp_path, again) as lp:
        await trade(lp, again, child("c1", Side.SELL, 1, 109999, lp="lp-s"))
    header, *lines = rows(path)
    assert header == HEADER.split(",")
    assert [(line[3], line[6]) for line in lines] == [("c1", "BUY"), ("c1", "SELL")]


@pytest.mark.asyncio
async def test_where_the_statement_goes(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    for setting, folder in [("books", tmp_path / "d1" / "books"), (str(elsewhere), elsewhere)]:
        data_dir = folder.parent if setting == "books" else tmp_path / "d2"
        events = EventQueue()
        async with simulated(data_dir, events, statement_dir=setting) as lp:
            await trade(lp, events, child("c1", Side.BUY, 1, 110001, lp="lp-s"))
            assert lp.statement is not None
            assert lp.statement.directory == folder
        assert len(rows(folder / FILE)) == 2
    events = EventQueue()
    async with simulated(tmp_path / "d3", events, statement_dir="") as lp:
        await trade(lp, events, child("c1", Side.BUY, 1, 110001, lp="lp-s"))
        assert lp.statement is None
    assert not (tmp_path / "d3").exists()


@pytest.mark.asyncio
async def test_a_relative_statement_dir_is_the_gateways_data_dir_s_not_the_files_folder(
    tmp_path: Path,
) -> None:
    """Built as the daemon builds it: the config's paths resolved, then the
    adapter given the gateway's data directory."""
    path = tmp_path / "etc" / "gateway.toml"
    path.parent.mkdir()
    path.write_text(
        GATEWAY_CONFIG.format(data_dir="state", statement_dir='statement_dir = "books"')
    )
    config = resolve_paths(load_config(path), config_base(path), adapter_settings())
    (lp_config,) = config.lps
    assert lp_config.settings["statement_dir"] == "books"  # kept as written
    events = EventQueue()
    lp = create_adapter(
        lp_config.adapter,
        lp_config.name,
        INSTRUMENTS,
        events,
        {**lp_config.settings, "quote_interval_ms": NO_TIMER_MS},
        Path(config.gateway.data_dir),
        clock=lambda: NOW,
    )
    await lp.connect()
    try:
        lp.send(child("c1", Side.BUY, 1, 110001, lp="lp-s"))
        await events.child_events("c1")
    finally:
        await lp.disconnect()
    assert len(rows(tmp_path / "etc" / "state" / "books" / FILE)) == 2


GATEWAY_CONFIG = """
[gateway]
data_dir = "{data_dir}"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "1000000"
quote_currency = "USD"

[[lps]]
name = "lp-s"
adapter = "simulated"
soft_limit_usd = "1000000"
hard_limit_usd = "2000000"
[lps.settings]
start_mid = {{ "EUR/USD" = "1.10000" }}
walk_ticks = 0
{statement_dir}
"""


@pytest.mark.asyncio
async def test_a_statement_that_cannot_be_written_is_one_error_and_trading_goes_on(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    events = EventQueue()
    with structlog.testing.capture_logs() as logs:
        async with simulated(tmp_path, events, statement_dir=str(blocker / "st")) as lp:
            for n in range(3):
                await trade(lp, events, child(f"c{n}", Side.BUY, 12, 110003, lp="lp-s"))
                assert lp.statement is not None
                lp.statement.flush()
    fills = [e for e in events.seen if isinstance(e, ChildFill)]
    assert [(e.child_id, e.qty) for e in fills] == [
        (f"c{n}", qty) for n in range(3) for qty in (10, 2)
    ]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["file"]) for e in errors] == [
        ("lp_statement_write_failed", str(blocker / "st" / FILE))
    ]
