"""The daemon's JSON log: no line per order at info level; with debug (set
by a reload) every route decision is one event naming the order and LPs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
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


async def until_logged(
    log: Callable[[], str], wanted: Callable[[dict[str, Any]], bool], what: str
) -> list[dict[str, Any]]:
    """The log's events once one of them is ``wanted``; fails naming ``what``
    after 15 s."""
    end = time.monotonic() + 15.0
    while True:
        text = log()
        events = log_events(text[: text.rfind("\n") + 1])  # whole lines only
        if any(wanted(e) for e in events):
            return events
        if time.monotonic() > end:
            pytest.fail(f"not logged within 15 s: {what}")
        await asyncio.sleep(0.02)  # polling, with the deadline above


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
    # another client's logon, logged at info after everything the daemon
    # did for those orders, marks the end of what to look at
    marker = FixClient(SessionSettings(SenderCompID="CLIENT3", TargetCompID="GATEWAY"))
    await marker.connect("127.0.0.1", d.fix_port)
    quiet = await until_logged(
        d.log_text,
        lambda e: e["event"] == "logged_on" and e.get("session", "").endswith("CLIENT3"),
        "the logon of CLIENT3",
    )
    await marker.logout()
    assert not [e for e in quiet if str(e.get("cl_ord_id", "")).startswith("Q")]

    write_atomically(path, DEFAULT_TEXT.replace('log_level = "info"', 'log_level = "debug"', 1))
    os.kill(d.proc.pid, signal.SIGHUP)
    for _ in range(100):
        if any(e["event"] == "config_reloaded" for e in log_events(d.log_text())):
            break
        await asyncio.sleep(0.05)  # polling, 5 s at most
    client.send(b"D", order("LOUD", b"1"))
    await finish(client, {b"LOUD"})
    logged = await until_logged(
        d.log_text,
        lambda e: e["event"] == "route_decision" and e.get("cl_ord_id") == "LOUD",
        "the route decision of LOUD",
    )
    (decision,) = [e for e in logged if e["event"] == "route_decision" and e["cl_ord_id"] == "LOUD"]
    assert decision["client"] == "CLIENT1"
    assert decision["policy"] == "best_price_exposure_aware"
    assert decision["children"]
    assert all(child[0] in ("LP_A", "LP_B", "LP_C") for child in decision["children"])
    assert decision["level"] == "debug"
    await client.logout()
    logged = {e["event"] for e in log_events(d.log_text())}
    assert {"gateway_started", "lp_status", "logged_on", "config_reloaded"} <= logged
