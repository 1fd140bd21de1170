"""``kill -9`` of the daemon while child orders are held at a ``fixgw
lp-sim`` process: after the restart the FIX LP adapter learns what became
of each of those children (the LP's resent reports, then an
OrderStatusRequest), and every order and position ends exactly as the LPs
and the client were told."""

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
    admin,
    assert_positions_match,
    until_every_lp_quotes,
    until_ready,
)
from test_fix_lps import (
    LpSim,
    children_in_flight,
    fix_lp_units,
    gateway_config,
    lp_sim_config,
    order,
    wait_until,
)

from gateway.fix import codec
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient


def accepted_at(sim: LpSim) -> dict[str, str]:
    """The orders an lp-sim (logging at debug) accepted: the gateway's
    child id (the order's ClOrdID there) -> the LP's OrderID."""
    return {
        e["cl_ord_id"]: e["order_id"]
        for e in log_events(sim.log)
        if e.get("event") == "order_accepted"
    }


def parent_of(child_id: str) -> bytes:
    """The OrderID of the client order a child order was cut from (child
    ids are ``<OrderID>.<run>C<n>``)."""
    return child_id.rsplit(".", 1)[0].encode()


@pytest.mark.asyncio
async def test_kill_9_with_children_held_at_a_fix_lp_then_restart(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # LPX1 answers at once and fills some children in parts. LPX2 holds every
    # child it takes for a minute (the whole test: they are still open there
    # when the daemon dies), logs each one it accepts, and takes a price
    # moved by up to 50 ticks, so that it refuses none.
    a_config = lp_sim_config(tmp_path, "a", partial_fill_probability="0.3")
    b_config = lp_sim_config(
        tmp_path, "b", latency_ms="60000", price_tolerance_ticks="50", log_level='"debug"'
    )
    a = LpSim(a_config, tmp_path / "lpx1", tmp_path / "lpx1.log").start()
    b = LpSim(b_config, tmp_path / "lpx2", tmp_path / "lpx2.log").start()
    try:
        config = gateway_config(tmp_path, a, b)
        text = config.read_text()
        text = re.sub(r"(?m)^internal_crossing = .*$", "internal_crossing = false", text)
        # no child is timed out while the test waits on it
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

        # market orders, buys and sells; every third one is bigger than all
        # LPX1 quotes (five levels of 500 lots), so part of it goes to LPX2
        seen = Ledger()
        sent = 10
        for i in range(sent):
            side = b"1" if i % 2 else b"2"
            qty = b"3000000" if i % 3 == 0 else b"%d000" % (300 + 50 * i)
            client.send(b"D", order(f"K{i}", side, qty))

        # polling, with a deadline: until every order is acknowledged, no
        # child is open at LPX1, and the children open at LPX2 are exactly
        # those LPX2 says it holds
        held: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            seen.drain(client)
            held = accepted_at(b)
            in_flight = children_in_flight(d.http_port)
            if (
                len(seen.orders) == sent
                and in_flight["LPX1"] == 0
                and held
                and in_flight["LPX2"] == len(held)
            ):
                break
            if loop.time() > deadline:
                pytest.fail(f"children not settled at the LPs: {in_flight}, {len(held)} held")
            await asyncio.sleep(0.05)  # polling, with the deadline above
        # every report sent so far has reached the client (the daemon answers
        # a session's messages in order); the orders still open are exactly
        # those with a child held at LPX2
        await seen.through(client, "SYNC")
        waiting = {parent_of(child_id) for child_id in held}
        open_orders = {o for o, known in seen.orders.items() if not seen.ended(known.cl_ord_ids[0])}
        assert open_orders == waiting
        cum_at_kill = {o: seen.orders[o].cum for o in waiting}

        d.kill9()
        await client.wait_closed()
        seen.drain(client)
        acknowledged = set(seen.orders)

        # the LPs saw the session drop: LPX2 canceled exactly the children it
        # held, LPX1 had none left open
        def logged_out(sim: LpSim) -> list[dict[str, Any]]:
            return [e for e in log_events(sim.log) if e.get("event") == "gateway_logged_out"]

        await wait_until(lambda: bool(logged_out(a) and logged_out(b)), timeout=15)
        assert logged_out(b)[-1]["canceled_on_disconnect"] == len(held)
        assert logged_out(a)[-1]["canceled_on_disconnect"] == 0

        d2 = daemon_factory("--config", str(config), data_dir=data).start()
        await until_ready(d2.http_port)
        recovered = [e for e in log_events(d2.log_path) if e.get("event") == "orders_recovered"]
        assert len(recovered) == 1
        # the orders open at the kill come back routed out, waiting on exactly
        # the children held at LPX2
        assert recovered[0]["open"] == len(waiting)
        assert recovered[0]["routings"] == len(waiting)
        assert recovered[0]["children_to_check"] == len(held)

        client = FixClient(SETTINGS, store)
        await client.connect("127.0.0.1", d2.fix_port)
        # every order ends: the held children through LPX2's resent cancels
        await seen.until(
            client,
            lambda: all(seen.ended(seen.orders[o].cl_ord_ids[0]) for o in acknowledged),
            f"the end of all {len(acknowledged)} orders",
        )
        for order_id in waiting:
            last = seen.orders[order_id].last
            assert last is not None
            # canceled (market orders rest nowhere) with the fills of before:
            # LPX2 filled none of the held children, and said so
            assert last.get(39) == b"4", last
            assert b"cancel on disconnect" in (last.get(58) or b""), last
            assert seen.orders[order_id].cum == cum_at_kill[order_id]

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
        assert filled > 0, "LPX1 filled children before the crash"

        assert_positions_match(d2.http_port, seen)
        # LPX2 holds no position: it filled nothing
        lps = admin(d2.http_port, "/admin/exposures")["lps"]
        assert Decimal(lps.get("LPX2", {}).get("EUR/USD", "0")) == 0
        # and every order it held ended there canceled, unfilled
        finished = {
            e["order_id"]: e for e in log_events(b.log) if e.get("event") == "order_finished"
        }
        for lp_order_id in held.values():
            assert finished[lp_order_id]["status"] == "CANCELED"
            assert finished[lp_order_id]["cum_qty"] == 0

        # the LPs saw the gateway come back with its sequence numbers
        for sim in (a, b):
            logons = [e for e in log_events(sim.log) if e.get("event") == "logged_on"]
            assert len(logons) >= 2
            assert logons[-1]["next_target"] > 2
        await client.logout()
    finally:
        a.stop()
        b.stop()
