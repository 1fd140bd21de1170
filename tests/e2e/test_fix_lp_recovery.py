"""``kill -9`` of the daemon while child orders are at two ``fixgw lp-sim``
processes: after the restart the FIX LP adapters learn what became of each
child (the LP's resent reports, then an OrderStatusRequest), and every
order and position ends exactly as the LPs and the client were told."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events
from test_crash_recovery import (
    FINAL,
    SETTINGS,
    Ledger,
    assert_positions_match,
    until_every_lp_quotes,
    until_ready,
)
from test_fix_lps import LpSim, fix_lp_units, gateway_config, order

from gateway.fix import codec
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]


def slow_lp_config(tmp_path: Path, name: str) -> Path:
    """An lp-sim that answers after 300 ms and fills some children in parts."""
    text = (REPO / "config" / f"lp-sim-{name}.toml").read_text()
    text = re.sub(r"(?m)^latency_ms = .*$", "latency_ms = 300", text)
    text = re.sub(r"(?m)^partial_fill_probability = .*$", "partial_fill_probability = 0.3", text)
    path = tmp_path / f"lp-sim-{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.asyncio
async def test_kill_9_with_children_at_fix_lps_then_restart(
    daemon_factory: Any, tmp_path: Path
) -> None:
    a = LpSim(slow_lp_config(tmp_path, "a"), tmp_path / "lpx1", tmp_path / "lpx1.log").start()
    b = LpSim(slow_lp_config(tmp_path, "b"), tmp_path / "lpx2", tmp_path / "lpx2.log").start()
    try:
        config = gateway_config(tmp_path, a, b)
        text = config.read_text()
        text = re.sub(r"(?m)^internal_crossing = .*$", "internal_crossing = false", text)
        text = re.sub(r"(?m)^child_timeout_ms = .*$", "child_timeout_ms = 10000", text)
        config.write_text(text)
        data = tmp_path / "data"
        d = daemon_factory("--config", str(config), data_dir=data).start()
        await until_ready(d.http_port)
        store = MemoryStore()
        client = FixClient(SETTINGS, store)
        await client.connect("127.0.0.1", d.fix_port)
        # both LPs' quotes are in the book
        await until_every_lp_quotes(client, fix_lp_units(config, a, b))
        seen = Ledger()
        # one order every 20 ms, the daemon killed after 450 ms: the first
        # ones are filled, some fills are on the wire, the last ones wait
        # at the LPs (which cancel them when the gateway's session drops)
        for i in range(30):
            side = b"1" if i % 2 else b"2"
            client.send(b"D", order(f"K{i}", side, b"%d000" % (200 + 50 * i)))
            await asyncio.sleep(0.02)  # pacing: one order every 20 ms
            seen.drain(client)
            if i == 22:
                break
        while len(seen.orders) < 23:
            seen.take(await client.receive(timeout=5))
        d.kill9()
        await client.wait_closed()
        seen.drain(client)
        acknowledged = set(seen.orders)
        assert len(acknowledged) == 23

        d2 = daemon_factory("--config", str(config), data_dir=data).start()
        await until_ready(d2.http_port)
        client = FixClient(SETTINGS, store)
        await client.connect("127.0.0.1", d2.fix_port)
        # every order ends: resent, or learnt from the LPs after the restart
        await seen.until(
            client,
            lambda: all(seen.ended(seen.orders[o].cl_ord_ids[0]) for o in acknowledged),
            f"the end of all {len(acknowledged)} orders",
        )

        # every order ended, with exactly the fills the client was told of
        asked = []
        for order_id in acknowledged:
            known = seen.orders[order_id]
            assert known.last is not None
            assert known.last.get(39) in FINAL, known.cl_ord_ids
            fields = [(11, known.cl_ord_ids[-1]), (37, order_id), (54, known.side)]
            client.send(b"H", codec.encode_fields([*fields, (55, b"EUR/USD")]))
            asked.append(known.cl_ord_ids[-1])
        await seen.until(
            client,
            lambda: all(cl_ord_id in seen.status_answers for cl_ord_id in asked),
            f"answers to all {len(asked)} status requests",
        )
        for order_id in acknowledged:
            known = seen.orders[order_id]
            answer, cum_known = seen.status_answers[known.cl_ord_ids[-1]]
            assert answer.get(37) == order_id
            assert Decimal((answer.get(14) or b"").decode()) == cum_known == known.cum
        filled = sum(known.cum for known in seen.orders.values())
        assert filled > 0, "some children filled at the LPs before or after the crash"

        assert_positions_match(d2.http_port, seen)

        # the LPs saw the gateway come back with its sequence numbers
        for sim in (a, b):
            logons = [e for e in log_events(sim.log) if e.get("event") == "logged_on"]
            assert len(logons) >= 2
            assert logons[-1]["next_target"] > 2
        events = [e.get("event") for e in log_events(d2.log_path)]
        assert "orders_recovered" in events
        await client.logout()
    finally:
        a.stop()
        b.stop()
