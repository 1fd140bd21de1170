"""The daemon's JSON log: no line per order at info level; with debug (set
by a reload) every route decision is one event naming the order and LPs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events
from test_reload_under_load import FINAL, order, write_atomically

from config import SessionSettings, default_config_path
from gateway.net.client import FixClient

DEFAULT_TEXT = default_config_path().read_text()


async def finish(client: FixClient, cl_ord_ids: set[bytes]) -> None:
    while cl_ord_ids:
        msg = await client.receive(timeout=5)
        if msg.msg_type == b"8" and msg.get(39) in FINAL:
            cl_ord_ids.discard(msg.get(11) or b"")


@pytest.mark.asyncio
async def test_no_per_order_lines_at_info_and_route_decisions_at_debug(
    daemon_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "fixgw.toml"
    write_atomically(path, DEFAULT_TEXT)
    d = daemon_factory("--config", str(path)).start()
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    for i in range(50):
        client.send(b"D", order(f"Q{i}", b"1" if i % 2 else b"2"))
    await finish(client, {f"Q{i}".encode() for i in range(50)})
    await asyncio.sleep(0.2)
    quiet = log_events(d.log_text())
    assert not [e for e in quiet if str(e.get("cl_ord_id", "")).startswith("Q")]

    write_atomically(path, DEFAULT_TEXT.replace('log_level = "info"', 'log_level = "debug"', 1))
    os.kill(d.proc.pid, signal.SIGHUP)
    for _ in range(100):
        if any(e["event"] == "config_reloaded" for e in log_events(d.log_text())):
            break
        await asyncio.sleep(0.05)
    client.send(b"D", order("LOUD", b"1"))
    await finish(client, {b"LOUD"})
    await asyncio.sleep(0.2)
    (decision,) = [
        e
        for e in log_events(d.log_text())
        if e["event"] == "route_decision" and e["cl_ord_id"] == "LOUD"
    ]
    assert decision["client"] == "CLIENT1"
    assert decision["policy"] == "best_price_exposure_aware"
    assert decision["children"]
    assert all(child[0] in ("LP_A", "LP_B", "LP_C") for child in decision["children"])
    assert decision["level"] == "debug"
    await client.logout()
    logged = {e["event"] for e in log_events(d.log_text())}
    assert {"gateway_started", "lp_status", "logged_on", "config_reloaded"} <= logged
