"""The drop copy's own process, on the default config: killed with SIGKILL it
is started again by the gateway and misses nothing; the gateway killed with
SIGKILL takes it down too, at once (a gateway started again at once has its
ports), and after the gateway's restart the back office gets every copy
exactly once; the gateway's metrics tell how it stands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from typing import Any

import pytest
from test_drop_copy import back_office, drain_until, execution_reports
from test_order_flow import client, order, until_final

from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient


def copier_pids(log: str) -> list[int]:
    """The drop-copy processes the daemon's log says were started, in order."""
    pids = []
    for line in log.splitlines():
        if '"drop_copy_started"' in line:
            pids.append(int(json.loads(line)["pid"]))
    return pids


async def until(check: Any, what: str, timeout: float = 20) -> None:
    """Poll ``check`` until it holds; past ``timeout`` fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)  # polling, with the deadline above


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def trade(trader: FixClient, prefix: str, n: int) -> list[FixMessage]:
    """``n`` market orders of ``trader``; every report it was told."""
    told: list[FixMessage] = []
    for i in range(n):
        trader.send(b"D", order(f"{prefix}{i}", side="2" if i % 2 else "1", qty="1000"))
        told += await until_final(trader, f"{prefix}{i}".encode())
    return told


async def trader_on(port: int, before: FixClient | None = None) -> FixClient:
    """CLIENT1 logged on; after ``before``, with its sequence numbers."""
    trader = client("CLIENT1")
    if before is not None:
        trader.session.store.set_next_target_seq(before.session.store.next_target_seq)
        trader.session.store.set_next_sender_seq(before.session.store.next_sender_seq)
    await trader.connect("127.0.0.1", port)
    return trader


async def everything(port: int, told: list[FixMessage]) -> list[FixMessage]:
    """All the drop copy holds, from sequence number 1, once it has a copy
    of each report in ``told`` and the house's side of each fill."""
    bo = back_office()
    await bo.connect("127.0.0.1", port)
    exec_ids = {m.get(17) for m in told}
    filled = sum(int(m.get(32) or b"0") for m in told if m.get(150) == b"F")
    got = await drain_until(
        bo,
        lambda seen: (
            exec_ids <= {m.get(17) for m in execution_reports(seen)}
            and sum(int(m.get(32) or b"0") for m in seen if m.msg_type == b"AE") >= filled
        ),
    )
    await bo.logout()
    return got


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric(port: int, name: str) -> float:
    for line in metrics_text(port).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.asyncio
async def test_the_process_killed_is_started_again_and_misses_nothing(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    await until(lambda: copier_pids(d.log_text()), "the drop copy started")
    first = copier_pids(d.log_text())[0]
    assert metric(d.http_port, "fixgw_drop_copy_up") == 1.0
    trader = await trader_on(d.fix_port)
    told = await trade(trader, "K", 3)
    os.kill(first, signal.SIGKILL)
    # trading goes on while it is down
    told += await trade(trader, "L", 3)
    await trader.logout()
    await until(lambda: len(copier_pids(d.log_text())) == 2, "started again")
    assert '"drop_copy_exited"' in d.log_text()
    got = await everything(d.drop_copy_port, told)
    copies = execution_reports(got)
    # each report copied once, in the order the client was told
    assert [m.get(17) for m in copies] == [m.get(17) for m in told]
    captures = [m for m in got if m.msg_type == b"AE"]
    assert len({m.get(571) for m in captures}) == len(captures)
    assert sum(int(m.get(32) or b"0") for m in captures) == 6 * 1000
    await until(lambda: metric(d.http_port, "fixgw_drop_copy_lag_batches") == 0, "caught up")
    # its sessions as it reports them: the back office logged out
    off = 'fixgw_drop_copy_session_logged_on{session="FIX.4.4:GATEWAY->BACKOFFICE"} 0.0'
    await until(lambda: off in metrics_text(d.http_port), "reported logged off")
    assert metric(d.http_port, "fixgw_drop_copy_restarts_total") == 1.0


@pytest.mark.asyncio
async def test_the_gateway_killed_takes_it_down_and_its_restart_copies_the_rest_once(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    await until(lambda: copier_pids(d.log_text()), "the drop copy started")
    first = copier_pids(d.log_text())[0]
    trader = await trader_on(d.fix_port)
    told = await trade(trader, "A", 3)
    d.kill9()
    # the drop copy sees its gateway gone and ends
    await until(lambda: not alive(first), "the drop copy ended", timeout=10)
    d.start()
    trader = await trader_on(d.fix_port, trader)
    told += await trade(trader, "B", 3)
    await trader.logout()
    got = await everything(d.drop_copy_port, told)
    assert [m.get(17) for m in execution_reports(got)] == [m.get(17) for m in told]
    captures = [m for m in got if m.msg_type == b"AE"]
    assert len({m.get(571) for m in captures}) == len(captures)
    assert sum(int(m.get(32) or b"0") for m in captures) == 6 * 1000


@pytest.mark.asyncio
async def test_the_gateway_killed_and_started_again_at_once_has_its_ports(
    daemon_factory: Any,
) -> None:
    """A supervisor starts the gateway again as soon as it is killed: its
    drop-copy process, whatever it is doing (here stopped, so that it cannot
    look whether its gateway is still there), must not keep the drop-copy
    port past the gateway's end, or the start fails on it."""
    d = daemon_factory().start()
    await until(lambda: copier_pids(d.log_text()), "the drop copy started")
    first = copier_pids(d.log_text())[0]
    ports = (d.fix_port, d.drop_copy_port, d.http_port)
    os.kill(first, signal.SIGSTOP)
    try:
        d.kill9()
        d.start()
    finally:
        if alive(first):
            os.kill(first, signal.SIGKILL)
    assert "cannot listen" not in d.log_text()
    assert (d.fix_port, d.drop_copy_port, d.http_port) == ports
    await until(lambda: len(copier_pids(d.log_text())) == 2, "its drop copy started again")
    trader = await trader_on(d.fix_port)
    told = await trade(trader, "R", 2)
    await trader.logout()
    got = await everything(d.drop_copy_port, told)
    assert [m.get(17) for m in execution_reports(got)] == [m.get(17) for m in told]
