"""The drop copy's own process, on the default config: killed with SIGKILL it
is started again by the gateway and misses nothing; the gateway killed with
SIGKILL takes it down too, at once (a gateway started again at once has its
ports), and after the gateway's restart the back office gets every copy
exactly once; the gateway's metrics tell how it stands."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from netkit import free_port, log_events
from test_drop_copy import back_office, drain_until, execution_reports
from test_order_flow import client, order, until_final

from config import default_config_path
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]


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
    assert '"drop_copy_exited"' not in d.log_text()


def run_in_a_group_of_its_own(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``fixgw run`` on the default config, in a process group of its own,
    as a terminal's foreground job is (CLIENT1 given 5 s to answer a
    Logout); and the file it logs to."""
    text, count = re.subn(
        r"(?m)^LogoutTimeout = 2 ", "LogoutTimeout = 5 ", default_config_path().read_text()
    )
    assert count == 1
    config = tmp_path / "fixgw.toml"
    config.write_text(text)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "run", "--config", str(config)),
                *("--fix-port", str(free_port()), "--http-port", "0"),
                *("--drop-copy-port", str(free_port()), "--data-dir", str(tmp_path / "data")),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


@pytest.mark.asyncio
async def test_ctrl_c_leaves_the_drop_copy_to_its_gateway(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Ctrl-C in the terminal of ``fixgw run`` sends SIGINT to its whole
    process group, the drop copy's process too.  The gateway stops it once
    its sessions are logged out and its journal's last batch written: it
    must not end first (and be taken for a process that died, and started
    again) while a client takes its time to answer the Logout."""
    proc, log_path = run_in_a_group_of_its_own(tmp_path)

    def end() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    request.addfinalizer(end)

    def started() -> list[dict[str, Any]]:
        return [e for e in log_events(log_path) if e["event"] == "gateway_started"]

    await until(lambda: started() or proc.poll() is not None, "the gateway started", timeout=60)
    assert started(), log_path.read_text()[-2000:]
    # a client that does not read: the gateway waits for its Logout's answer
    slow = client("CLIENT1")
    request.addfinalizer(slow.abort)
    await slow.connect("127.0.0.1", started()[0]["fix_port"])
    slow.hold_reading(True)
    os.killpg(proc.pid, signal.SIGINT)
    await until(lambda: proc.poll() is not None, "the gateway stopped", timeout=60)
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    events = [e["event"] for e in log_events(log_path)]
    assert events.count("drop_copy_started") == 1, events
    assert "drop_copy_exited" not in events, events
    # stopped by the gateway, after the client's session ended
    ended = events.index("session_ended")
    assert events.index("drop_copy_stopped") > ended, events
    assert events[-1] == "gateway_stopped"


def trade_date(now: float, day_end: str) -> bytes:
    """The TradeDate (75) of a fill at ``now`` under ``day_end`` (HH:MM UTC)."""
    hours, minutes = day_end.split(":")
    at = now + 86400 - (int(hours) * 3600 + int(minutes) * 60)
    return time.strftime("%Y%m%d", time.gmtime(at)).encode()


@pytest.mark.asyncio
async def test_a_day_end_moved_by_a_reload_names_the_captures_of_the_process_started_again(
    daemon_factory: Any, tmp_path: Path
) -> None:
    # two day ends, neither within the next two minutes, that name the
    # fills of the test with different trading days; from three minutes
    # before a UTC midnight to just after it there are none (every end left
    # names the same day), and the clock is polled until that has passed
    ends = [f"{h:02}:{m:02}" for h in range(24) for m in range(60)]
    deadline = time.monotonic() + 300
    while True:
        now = time.time()
        far = [e for e in ends if (int(e[:2]) * 3600 + int(e[3:]) * 60 - now) % 86400 > 120]
        by_date = {trade_date(now, e): e for e in far}
        if len(by_date) > 1:
            old, new = list(by_date.values())[:2]
            break
        assert time.monotonic() < deadline, "no two day ends naming different trading days"
        await asyncio.sleep(1.0)  # polling the clock past midnight, with the deadline above
    text = default_config_path().read_text()
    assert 'trading_day_end = "21:00"' in text
    path = tmp_path / "gw.toml"
    path.write_text(text.replace('trading_day_end = "21:00"', f'trading_day_end = "{old}"'))
    d = daemon_factory("--config", str(path)).start()
    await until(lambda: copier_pids(d.log_text()), "the drop copy started")
    first = copier_pids(d.log_text())[0]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace('trading_day_end = "21:00"', f'trading_day_end = "{new}"'))
    os.replace(tmp, path)
    d.proc.send_signal(signal.SIGHUP)
    await until(lambda: '"config_reloaded"' in d.log_text(), "the reload applied")
    await until(lambda: metric(d.http_port, "fixgw_drop_copy_lag_batches") == 0, "caught up")
    os.kill(first, signal.SIGKILL)
    await until(lambda: len(copier_pids(d.log_text())) == 2, "started again")
    trader = await trader_on(d.fix_port)
    before = trade_date(time.time(), new)
    told = await trade(trader, "R", 1)
    after = trade_date(time.time(), new)
    await trader.logout()
    got = await everything(d.drop_copy_port, told)
    dates = {m.get(75) for m in got if m.msg_type == b"AE"}
    # the trading day as the gateway now ends it, not as it did at its start
    assert dates
    assert dates <= {before, after}
