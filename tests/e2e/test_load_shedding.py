"""Load shedding through a real connection: a burst the gateway cannot take
in at once gets its late NewOrderSingles refused at once (ExecutionReport
Rejected, "gateway busy"), every order answered exactly once, cancels never
shed; orders sent one at a time are never shed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_order_scenarios import FINAL, order, reports_until, started

from config import default_config_path
from gateway.fix import codec


def shedding_after(ms: int) -> str:
    default = default_config_path().read_text()
    text, n = re.subn(r"(?m)^shed_after_ms = .*$", f"shed_after_ms = {ms}", default)
    assert n == 1
    return text


@pytest.mark.asyncio
async def test_a_burst_past_capacity_is_shed_cleanly_and_paced_orders_are_not(
    tmp_path: Path,
) -> None:
    # 1 ms: however fast the machine, 2,000 orders in one write take longer
    # than that to work through, so the last of them are shed
    gateway, c = await started(shedding_after(1), tmp_path)
    try:
        # a resting order, then a burst with its cancel in the middle
        c.send(b"D", order("REST", "1", "1000", ord_type="2", tif="1", price="0.50000"))
        await reports_until(c, b"REST", b"0")
        count = 2000
        for i in range(count):
            c.send(b"D", order(f"B{i}", "1" if i % 2 else "2", "1000"))
            if i == count - 10:
                cancel = [(11, b"REST-C"), (38, b"1000"), (41, b"REST"), (54, b"1")]
                cancel += [(55, b"EUR/USD"), (60, codec.format_utc_timestamp(0.0))]
                c.send(b"F", codec.encode_fields(cancel))
        finals: dict[bytes, tuple[bytes, bytes]] = {}
        canceled = False
        while len(finals) < count or not canceled:
            msg = await c.receive(timeout=20)
            if msg.msg_type != b"8":
                continue
            cl_ord_id = msg.get(11) or b""
            if cl_ord_id == b"REST-C":
                assert msg.get(39) == b"4", "a cancel is never shed"
                canceled = True
            elif msg.get(39) in FINAL:
                assert cl_ord_id not in finals, f"{cl_ord_id!r} answered twice"
                finals[cl_ord_id] = (msg.get(39) or b"", msg.get(58) or b"")
        shed = [k for k, (status, text) in finals.items() if text.startswith(b"gateway busy")]
        filled = [k for k, (status, _) in finals.items() if status == b"2"]
        assert shed, "nothing was shed"
        assert filled, "nothing was filled"
        assert len(shed) + len(filled) == count
        for key in shed:
            assert finals[key][0] == b"8"
            assert b"shed_after_ms 1" in finals[key][1]
        # the first turn's worth was taken in before anything waited
        assert all(f"B{i}".encode() in filled for i in range(64))
        assert gateway.order_flow is not None
        rejects = gateway.order_flow.stats.order_rejects
        assert rejects[("CLIENT1", "shed")] == len(shed)

        # one order at a time: nothing waits behind anything, nothing is shed
        for i in range(50):
            c.send(b"D", order(f"P{i}", "1" if i % 2 else "2", "1000"))
            (*_, last) = await reports_until(c, f"P{i}".encode(), *FINAL)
            assert last.get(39) == b"2", last.get(58)
        # caught up, a burst that fits in one turn waits behind nothing either
        small = {f"Q{i}".encode() for i in range(60)}
        for i in range(60):
            c.send(b"D", order(f"Q{i}", "1" if i % 2 else "2", "1000"))
        done: dict[bytes, bytes] = {}
        while len(done) < len(small):
            msg = await c.receive(timeout=20)
            if msg.msg_type == b"8" and msg.get(39) in FINAL and msg.get(11) in small:
                done[msg.get(11) or b""] = msg.get(39) or b""
        assert set(done.values()) == {b"2"}
    finally:
        await c.logout()
        await gateway.stop()
