"""Order scenarios over real loopback sockets against the daemon run in this
process (the same Gateway that ``fixgw run`` builds), so that a test can act
on a simulated LP (drop it) and read the exposure ledger."""

from __future__ import annotations

import asyncio
import calendar
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from netkit import day_end_away_from_now, free_port

from config import SessionSettings, default_config_path, load_config, parse_config, with_overrides
from gateway.daemon import Gateway
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient
from gateway.orderflow import flow as flow_module
from gateway.orderflow.flow import next_day_end
from lp_adapters.simulated.adapter import SimulatedLp

FINAL = (b"2", b"4", b"8", b"C")


def order(
    cl_ord_id: str, side: str, qty: str, ord_type: str = "1", tif: str = "3", price: str = ""
) -> bytes:
    fields = [(11, cl_ord_id), (38, qty), (40, ord_type), (54, side), (55, "EUR/USD"), (59, tif)]
    if price:
        fields.append((44, price))
    fields.append((60, codec.format_utc_timestamp(0.0).decode()))
    return codec.encode_fields(sorted((t, v.encode()) for t, v in fields))


async def reports_until(c: FixClient, cl_ord_id: bytes, *statuses: bytes) -> list[FixMessage]:
    out = []
    while True:
        msg = await c.receive(timeout=5)
        if msg.msg_type == b"8" and msg.get(11) == cl_ord_id:
            out.append(msg)
            if msg.get(39) in statuses:
                return out


async def started(
    config_text: str | None, tmp_path: Path, clock: Callable[[], float] | None = None
) -> tuple[Gateway, FixClient]:
    """A gateway in this process (on ``clock`` when given) and CLIENT1 logged on."""
    cfg = load_config(default_config_path()) if config_text is None else parse_config(config_text)
    cfg = with_overrides(
        cfg, fix_port=free_port(), http_port=0, drop_copy_port=0, data_dir=str(tmp_path)
    )
    # the day ends when a test ends it, never by the hour the test runs at
    orders = msgspec.structs.replace(cfg.orders, trading_day_end=day_end_away_from_now())
    cfg = msgspec.structs.replace(cfg, orders=orders)
    gateway = Gateway(cfg) if clock is None else Gateway(cfg, clock=clock)
    await gateway.start()
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", gateway.fix_port)
    return gateway, client


@pytest_asyncio.fixture
async def default_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, FixClient]]:
    gateway, client = await started(None, tmp_path)
    yield gateway, client
    await client.logout()
    await gateway.stop()


@pytest.mark.asyncio
async def test_large_order_is_split_across_lps_and_levels(
    default_gateway: tuple[Gateway, FixClient],
) -> None:
    _, c = default_gateway
    c.send(b"D", order("BIG", "1", "3000000"))
    reports = await reports_until(c, b"BIG", *FINAL)
    trades = [r for r in reports if r.get(150) == b"F"]
    assert reports[-1].get(39) == b"2"
    assert len(trades) >= 2
    assert sum(int(r.get(32) or b"0") for r in trades) == 3_000_000
    assert len({r.get(31) for r in trades}) >= 2  # more than one price level
    partial = [r for r in trades if r.get(39) == b"1"]
    assert partial, "the fills before the last one are partial fills"


@pytest.mark.asyncio
async def test_reads_keep_the_loop_polling_and_it_sleeps_again_after(
    default_gateway: tuple[Gateway, FixClient],
) -> None:
    """The default config keeps the loop polling after each read of a
    session's connection (``busy_poll_us``) and lets it sleep once reads
    stop."""
    gateway, c = default_gateway
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1:
        pytest.skip("busy polling is off on a single CPU")
    busy = gateway.outbox.busy_poll
    assert busy is not None
    window = busy.window
    assert window == gateway.config.gateway.busy_poll_us / 1e6 > 0
    busy.window = 60.0  # long enough for any machine: the order's read starts it
    async with asyncio.timeout(5):
        while busy.spinning:  # the Logon's polling ends first
            busy.window = 0.0
            await asyncio.sleep(0.001)  # polling, within the timeout above
    busy.window = 60.0
    c.send(b"D", order("POLL1", "1", "1000"))
    await reports_until(c, b"POLL1", *FINAL)
    assert busy.spinning
    assert busy.turns > 0
    metrics = gateway.metrics
    assert metrics.get_sample_value("fixgw_busy_polling") == 1.0
    scraped = metrics.get_sample_value("fixgw_busy_poll_turns_total")
    assert scraped is not None
    assert 0 < scraped <= busy.turns
    busy.window = window
    async with asyncio.timeout(5):
        while busy.spinning:  # noqa: ASYNC110 - the window is a real clock's
            await asyncio.sleep(0.001)  # polling, within the timeout above
    stopped = busy.turns
    for _ in range(3):
        await asyncio.sleep(0)
    assert busy.turns == stopped  # no turn left scheduled
    assert metrics.get_sample_value("fixgw_busy_polling") == 0.0


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
@pytest.mark.asyncio
async def test_busy_polling_is_off_on_a_single_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On one CPU a polling loop would keep the drop copy (at idle priority)
    off it for as long as orders keep coming: the gateway sleeps when idle
    instead, and says so (with a second CPU it polls: the test above)."""
    cfg = with_overrides(
        load_config(default_config_path()),
        fix_port=free_port(),
        http_port=0,
        drop_copy_port=0,
        data_dir=str(tmp_path),
    )
    assert cfg.gateway.busy_poll_us > 0
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        gateway = Gateway(cfg)
    finally:
        os.sched_setaffinity(0, before)
    await gateway.start()
    try:
        assert gateway.outbox.busy_poll is None
        assert "busy_poll_off" in capsys.readouterr().out
    finally:
        await gateway.stop()


@pytest.mark.asyncio
async def test_fill_or_kill_fills_whole_or_expires(
    default_gateway: tuple[Gateway, FixClient],
) -> None:
    _, c = default_gateway
    c.send(b"D", order("FOK1", "2", "1000", tif="4"))
    assert (await reports_until(c, b"FOK1", *FINAL))[-1].get(39) == b"2"
    c.send(b"D", order("FOK2", "1", "5000000", tif="4"))  # more than all LPs quote
    reports = await reports_until(c, b"FOK2", *FINAL)
    assert reports[-1].get(39) == b"C"
    assert all(r.get(150) != b"F" for r in reports)


@pytest.mark.asyncio
async def test_marketable_limit_fills_and_resting_limit_is_replaced(
    default_gateway: tuple[Gateway, FixClient],
) -> None:
    _, c = default_gateway
    c.send(b"D", order("LIM1", "1", "2000", ord_type="2", tif="1", price="9.00000"))
    assert (await reports_until(c, b"LIM1", *FINAL))[-1].get(39) == b"2"
    c.send(b"D", order("LIM2", "1", "2000", ord_type="2", tif="0", price="0.50000"))
    await reports_until(c, b"LIM2", b"0")
    replace = codec.encode_fields(
        [
            (11, b"LIM2-R"),
            (38, b"3000"),
            (40, b"2"),
            (41, b"LIM2"),
            (44, b"0.60000"),
            (54, b"1"),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(0.0)),
        ]
    )
    c.send(b"G", replace)
    (replaced,) = await reports_until(c, b"LIM2-R", b"0", b"5")
    assert replaced.get(150) == b"5"
    assert (replaced.get(38), replaced.get(44), replaced.get(41)) == (b"3000", b"0.6", b"LIM2")


SLOW_BEST_LP = """
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
name = "LP_SLOW"
adapter = "simulated"
soft_limit_usd = "{soft}"
hard_limit_usd = "{hard}"
soft_penalty_ticks = 50
[lps.settings]
seed = 1
spread_ticks = 1
latency_ms = {latency}
[[lps]]
name = "LP_OTHER"
adapter = "simulated"
soft_limit_usd = "20000000"
hard_limit_usd = "30000000"
[lps.settings]
seed = 2
spread_ticks = 6
"""


@pytest.mark.asyncio
async def test_an_lp_dropping_mid_order_is_routed_around(tmp_path: Path) -> None:
    gateway, c = await started(
        SLOW_BEST_LP.format(soft=20_000_000, hard=30_000_000, latency=2000), tmp_path
    )
    try:
        assert gateway.order_flow is not None
        slow = gateway.order_flow.adapters["LP_SLOW"]
        assert isinstance(slow, SimulatedLp)
        c.send(b"D", order("DROP1", "1", "5000"))
        await reports_until(c, b"DROP1", b"0")  # acknowledged, the child is at LP_SLOW
        assert slow.open_child_ids
        slow.disconnect_now()
        reports = await reports_until(c, b"DROP1", *FINAL)
        assert reports[-1].get(39) == b"2"
        ledger = gateway.order_flow.ledger
        assert ledger.lp_position("LP_SLOW", "EUR/USD") == 0
        assert ledger.lp_position("LP_OTHER", "EUR/USD") == 5
    finally:
        await c.logout()
        await gateway.stop()


@pytest.mark.asyncio
async def test_exposure_moves_flow_away_at_the_soft_limit_and_never_past_the_hard_limit(
    tmp_path: Path,
) -> None:
    # one lot of EUR/USD is worth about 1,100 USD: soft limit at ~3 lots, hard at ~9
    gateway, c = await started(SLOW_BEST_LP.format(soft=3_000, hard=10_000, latency=0), tmp_path)
    try:
        assert gateway.order_flow is not None
        ledger = gateway.order_flow.ledger
        for i in range(20):
            c.send(b"D", order(f"EX{i}", "1", "1000"))
            assert (await reports_until(c, f"EX{i}".encode(), *FINAL))[-1].get(39) == b"2"
        slow = ledger.lp_position("LP_SLOW", "EUR/USD")
        other = ledger.lp_position("LP_OTHER", "EUR/USD")
        assert slow + other == 20
        assert 1 <= slow <= 9, "the cheaper LP took flow until its limits steered it away"
        assert other >= 11
    finally:
        await c.logout()
        await gateway.stop()


@pytest.mark.asyncio
async def test_a_child_unanswered_in_time_is_canceled_and_routed_elsewhere(tmp_path: Path) -> None:
    config = SLOW_BEST_LP.format(soft=20_000_000, hard=30_000_000, latency=5000)
    config += "[routing]\nchild_timeout_ms = 200\n"
    gateway, c = await started(config, tmp_path)
    try:
        assert gateway.order_flow is not None
        c.send(b"D", order("TO1", "2", "2000"))
        reports = await reports_until(c, b"TO1", *FINAL)
        assert reports[-1].get(39) == b"2"
        ledger = gateway.order_flow.ledger
        assert ledger.lp_position("LP_SLOW", "EUR/USD") == 0
        assert ledger.lp_position("LP_OTHER", "EUR/USD") == -2
    finally:
        await c.logout()
        await gateway.stop()


@pytest.mark.asyncio
async def test_orders_routed_at_the_same_time_never_take_an_lp_past_its_hard_limit(
    tmp_path: Path,
) -> None:
    # the cheap LP answers after 50 ms, so all 20 orders are routed before
    # any of them has filled: only the child orders in flight, counted in its
    # exposure, keep it under its hard limit (about 9 lots)
    gateway, c = await started(SLOW_BEST_LP.format(soft=3_000, hard=10_000, latency=50), tmp_path)
    try:
        assert gateway.order_flow is not None
        for i in range(20):
            c.send(b"D", order(f"C{i}", "1", "1000"))
        finals: dict[bytes, bytes] = {}
        while len(finals) < 20:
            msg = await c.receive(timeout=5)
            if msg.msg_type == b"8" and msg.get(39) in FINAL:
                finals[msg.get(11) or b""] = msg.get(39) or b""
        assert set(finals.values()) == {b"2"}
        ledger = gateway.order_flow.ledger
        slow = ledger.lp_position("LP_SLOW", "EUR/USD")
        assert slow + ledger.lp_position("LP_OTHER", "EUR/USD") == 20
        assert 1 <= slow <= 9
    finally:
        await c.logout()
        await gateway.stop()


@pytest.mark.asyncio
async def test_day_orders_expire_at_the_end_of_the_trading_day(
    default_gateway: tuple[Gateway, FixClient],
) -> None:
    gateway, c = default_gateway
    assert gateway.order_flow is not None
    c.send(b"D", order("DAY1", "1", "1000", ord_type="2", tif="0", price="0.50000"))
    c.send(b"D", order("GTC1", "1", "1000", ord_type="2", tif="1", price="0.50000"))
    await reports_until(c, b"DAY1", b"0")
    await reports_until(c, b"GTC1", b"0")
    gateway.order_flow.end_trading_day(time.time())
    (expired,) = await reports_until(c, b"DAY1", b"C")
    assert (expired.get(150), expired.get(151), expired.get(58)) == (
        b"C",
        b"0",
        b"end of the trading day",
    )
    c.send(b"H", codec.encode_fields([(11, b"GTC1"), (54, b"1"), (55, b"EUR/USD")]))
    (status,) = await reports_until(c, b"GTC1", b"0")
    assert status.get(150) == b"I"


@pytest.mark.asyncio
async def test_a_day_end_frees_what_it_forgot_over_several_loop_turns(
    default_gateway: tuple[Gateway, FixClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, c = default_gateway
    flow = gateway.order_flow
    assert flow is not None
    monkeypatch.setattr(flow_module, "RELEASED_PER_TURN", 1)
    for i in range(5):
        c.send(b"D", order(f"M{i}", "1", "1000"))
        await reports_until(c, f"M{i}".encode(), b"2")
    flow.end_trading_day(time.time())
    assert flow.matcher.release_forgotten(0)  # left for the turns to come
    turns = 0
    while flow.matcher.release_forgotten(0):
        await asyncio.sleep(0)
        turns += 1
    assert turns >= 5  # the five orders at once (one chunk), then their ClOrdIDs one a turn
    c.send(b"D", order("M1", "1", "1000"))  # yesterday's ClOrdID, used again
    await reports_until(c, b"M1", b"2")


def test_the_trading_day_ends_at_the_configured_utc_time() -> None:
    monday_noon = calendar.timegm((2026, 11, 30, 12, 0, 0))
    assert next_day_end(monday_noon, "21:00") == calendar.timegm((2026, 11, 30, 21, 0, 0))
    assert next_day_end(monday_noon, "09:30") == calendar.timegm((2026, 12, 1, 9, 30, 0))
    at = calendar.timegm((2026, 11, 30, 21, 0, 0))
    assert next_day_end(at, "21:00") == at + 86400
