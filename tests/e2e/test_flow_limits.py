"""Per-client flow limits: open orders at once, and messages per second."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events
from test_order_scenarios import FINAL, order, reports_until, started

from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.net.client import FixClient

# bursts here test the limits, not load shedding (tests/e2e/test_load_shedding.py),
# which a slow machine could reach with a burst of 100
DEFAULT_TEXT = re.sub(
    r"(?m)^shed_after_ms = .*$", "shed_after_ms = 0", default_config_path().read_text()
)
RISK = (
    'max_open_position = "20000000" # largest net position per symbol, in units, '
    "open orders filled\n"
)


def with_risk(extra: str) -> str:
    """The default config with ``extra`` (``key = value`` lines) in
    [risk.default], in place of what the file sets for the same keys."""
    assert RISK in DEFAULT_TEXT
    text = DEFAULT_TEXT
    for line in extra.splitlines():
        key = line.split("=", 1)[0].strip()
        # [risk.default] is the file's first table to set the key
        text = re.sub(rf"(?m)^{key} = .*\n", "", text, count=1)
    return text.replace(RISK, RISK + extra, 1)


@pytest.mark.asyncio
async def test_orders_beyond_max_open_orders_are_rejected_naming_the_limit(
    tmp_path: Path,
) -> None:
    gateway, c = await started(with_risk("max_open_orders = 2\n"), tmp_path)
    try:
        resting = [("R1", "0.50000"), ("R2", "0.50100")]
        for cl_ord_id, price in resting:
            c.send(b"D", order(cl_ord_id, "1", "1000", ord_type="2", tif="1", price=price))
            await reports_until(c, cl_ord_id.encode(), b"0")
        c.send(b"D", order("R3", "1", "1000", ord_type="2", tif="1", price="0.50200"))
        (reject,) = await reports_until(c, b"R3", *FINAL)
        assert (reject.get(39), reject.get(103)) == (b"8", b"3")
        assert b"max_open_orders" in (reject.get(58) or b"")
        # an order that ends makes room for the next
        cancel = [(11, b"R1-C"), (38, b"1000"), (41, b"R1"), (54, b"1"), (55, b"EUR/USD")]
        cancel.append((60, codec.format_utc_timestamp(0.0)))
        c.send(b"F", codec.encode_fields(cancel))
        await reports_until(c, b"R1-C", b"4")
        c.send(b"D", order("R4", "1", "1000", ord_type="2", tif="1", price="0.50300"))
        (accepted,) = await reports_until(c, b"R4", b"0")
        assert accepted.get(150) == b"0"
        assert gateway.order_flow is not None
        rejects = gateway.order_flow.stats.order_rejects
        assert rejects[("CLIENT1", "risk_max_open_orders")] == 1
    finally:
        await c.logout()
        await gateway.stop()


class StoppedClock:
    """The gateway's clock, still unless moved: the token bucket sees no
    time pass while a burst is worked on, however slow the machine."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_messages_over_the_rate_are_rejected_not_queued(tmp_path: Path) -> None:
    clock = StoppedClock()
    gateway, c = await started(with_risk("max_messages_per_second = 5\n"), tmp_path, clock)
    try:
        for i in range(12):
            c.send(b"D", order(f"T{i}", "1" if i % 2 else "2", "1000"))
        c.send(b"H", codec.encode_fields([(11, b"T0"), (54, b"2"), (55, b"EUR/USD")]))
        finals: dict[bytes, bytes] = {}
        texts: dict[bytes, bytes] = {}
        business_reject = None
        while len(finals) < 12 or business_reject is None:
            msg = await c.receive(timeout=5)
            if msg.msg_type == b"j":
                business_reject = msg
            elif msg.msg_type == b"8" and msg.get(39) in FINAL:
                finals[msg.get(11) or b""] = msg.get(39) or b""
                texts[msg.get(11) or b""] = msg.get(58) or b""
        # a burst of one second's worth passes; the rest is rejected at once
        filled = sorted(k for k, v in finals.items() if v == b"2")
        assert filled == sorted(f"T{i}".encode() for i in range(5))
        for i in range(5, 12):
            key = f"T{i}".encode()
            assert finals[key] == b"8"
            assert b"throttled" in texts[key]
            assert b"max_messages_per_second" in texts[key]
        assert business_reject.get(372) == b"H"
        assert b"throttled" in (business_reject.get(58) or b"")
        # tokens come back with time
        clock.now += 1.1
        c.send(b"D", order("LATER", "1", "1000"))
        assert (await reports_until(c, b"LATER", *FINAL))[-1].get(39) == b"2"
    finally:
        await c.logout()
        await gateway.stop()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def reloaded(d: Any, path: Path, text: str, count: int) -> None:
    """Write ``text`` as the daemon's config, send SIGHUP, and wait until
    it has logged ``count`` applied reloads in all."""
    write_atomically(path, text)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while True:
        events = [e.get("event") for e in log_events(d.log_path)]
        assert "config_reload_refused" not in events
        if events.count("config_reloaded") >= count:
            return
        assert time.monotonic() < deadline, "the reload was never applied"
        await asyncio.sleep(0.02)  # polling, with a deadline


async def burst(c: FixClient, prefix: str, count: int) -> dict[bytes, tuple[bytes, bytes]]:
    """``count`` market orders in one write; (OrdStatus, Text) of each final report."""
    for i in range(count):
        c.send(b"D", order(f"{prefix}{i}", "1" if i % 2 else "2", "1000"))
    finals: dict[bytes, tuple[bytes, bytes]] = {}
    while len(finals) < count:
        msg = await c.receive(timeout=10)
        if msg.msg_type == b"8" and msg.get(39) in FINAL:
            cl_ord_id = msg.get(11) or b""
            assert cl_ord_id not in finals, f"{cl_ord_id!r} finished twice"
            finals[cl_ord_id] = (msg.get(39) or b"", msg.get(58) or b"")
    return finals


@pytest.mark.asyncio
async def test_a_message_rate_changed_by_reload_is_in_force_for_the_next_orders(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The bucket holds one second's worth of messages: at 50,000 a second a
    burst of 100 orders in one write all pass, at 5 a second no more than
    5, plus 5 for each second the burst takes, can."""
    count = 100
    path = tmp_path / "fixgw.toml"
    write_atomically(path, DEFAULT_TEXT)
    d = daemon_factory("--config", str(path)).start()
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await c.connect("127.0.0.1", d.fix_port)
    try:
        before = await burst(c, "A", count)
        assert {status for status, _ in before.values()} == {b"2"}

        # lowered: part of the same burst is rejected, naming the new rate
        await reloaded(d, path, with_risk("max_messages_per_second = 5\n"), 1)
        lowered = await burst(c, "B", count)
        throttled = {k for k, (status, _) in lowered.items() if status == b"8"}
        assert throttled, "a burst of 100 passed a rate of 5 a second"
        for k in throttled:
            text = lowered[k][1]
            assert text.startswith(b"throttled: more than 5 messages per second"), text
            assert b"max_messages_per_second" in text
        assert {status for k, (status, _) in lowered.items() if k not in throttled} == {b"2"}

        # raised again: a burst passes whole, which a bucket of 5 never lets
        # happen (the bucket refills from empty at the new rate; polling,
        # with a deadline, should the first burst find it still low)
        await reloaded(d, path, DEFAULT_TEXT, 2)
        deadline = time.monotonic() + 15
        for attempt in range(100):
            raised = await burst(c, f"C{attempt}-", count)
            if {status for status, _ in raised.values()} == {b"2"}:
                break
            assert time.monotonic() < deadline, "the raised rate never came into force"
            await asyncio.sleep(0.05)  # polling, with the deadline above
    finally:
        await c.logout()
