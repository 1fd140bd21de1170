"""SIGHUP sent again and again to a ``fixgw run`` process while orders flow:
every order reaches exactly one final state, and limits reloaded take effect
on the orders after the swap."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.net.client import FixClient

DEFAULT_TEXT = default_config_path().read_text()
FINAL = (b"2", b"4", b"8", b"C")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def order(cl_ord_id: str, side: bytes, qty: bytes = b"1000") -> bytes:
    fields = [
        (11, cl_ord_id.encode()),
        (38, qty),
        (40, b"1"),
        (54, side),
        (55, b"EUR/USD"),
        (59, b"3"),
        (60, codec.format_utc_timestamp(0.0)),
    ]
    return codec.encode_fields(fields)


@pytest.mark.asyncio
async def test_orders_survive_repeated_sighup_and_new_limits_apply(
    daemon_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "fixgw.toml"
    write_atomically(path, DEFAULT_TEXT)
    d = daemon_factory("--config", str(path)).start()
    pid = d.proc.pid
    variant = DEFAULT_TEXT.replace('soft_limit_usd = "20000000"', 'soft_limit_usd = "19000000"', 1)
    variant = variant.replace("max_reroutes = 2", "max_reroutes = 3")
    assert variant != DEFAULT_TEXT

    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    count = 3000
    finals: dict[bytes, list[bytes]] = {}
    stop_reloading = asyncio.Event()
    reloads = 0

    async def reload_forever() -> None:
        nonlocal reloads
        while not stop_reloading.is_set():
            write_atomically(path, variant if reloads % 2 == 0 else DEFAULT_TEXT)
            os.kill(pid, signal.SIGHUP)
            reloads += 1
            await asyncio.sleep(0.02)  # pacing: a reload every 20 ms

    async def send_all() -> None:
        for i in range(count):
            client.send(b"D", order(f"L{i}", b"1" if i % 2 else b"2"))
            if i % 20 == 19:
                await asyncio.sleep(0.01)  # about 2,000 orders/s

    async def collect() -> None:
        while sum(1 for v in finals.values() if v) < count:
            msg = await client.receive(timeout=10)
            if msg.msg_type == b"8" and msg.get(39) in FINAL:
                finals.setdefault(msg.get(11) or b"", []).append(msg.get(39) or b"")

    reloader = asyncio.create_task(reload_forever())
    await asyncio.gather(send_all(), collect())
    stop_reloading.set()
    await reloader

    assert set(finals) == {f"L{i}".encode() for i in range(count)}
    assert all(len(v) == 1 for v in finals.values()), "an order was finished twice"
    assert {v[0] for v in finals.values()} == {b"2"}
    log = d.log_text()
    # how many reloads were applied (several SIGHUPs may be taken as one)
    # depends on the machine; that every one read was valid and applied does not
    assert '"config_reloaded"' in log
    assert '"config_reload_refused"' not in log

    # a tighter limit, reloaded: once applied, orders are checked against it
    write_atomically(
        path, DEFAULT_TEXT.replace('max_order_qty = "5000000"', 'max_order_qty = "1000"', 1)
    )
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    for attempt in range(1000):
        cl_ord_id = b"TOO-BIG-%d" % attempt
        client.send(b"D", order(cl_ord_id.decode(), b"1" if attempt % 2 else b"2", b"2000"))
        while True:
            msg = await client.receive(timeout=5)
            if msg.get(11) == cl_ord_id and msg.get(39) in FINAL:
                break
        if msg.get(39) == b"8":
            break
        # filled: the reload was not in force yet (a reload is read beside
        # the loop); polled, with a deadline
        assert msg.get(39) == b"2", msg
        assert time.monotonic() < deadline, "the tighter limit never came into force"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    assert b"max_order_qty" in (msg.get(58) or b"")
    await client.logout()
