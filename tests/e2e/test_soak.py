"""A soak of ``fixgw run``: a minute of steady orders from one client while a
second client logs on and off again and again and the configuration is
reloaded (SIGHUP) every second.  At the end every order has had exactly one
final ExecutionReport, the positions the admin API reports are the sum of
the fills the client was told of, and the daemon's memory has not kept
growing (a leak check against its size after the warm-up, not a timing).

Marked ``slow``: deselected by default, run with ``pytest -m slow``.
``FIXGW_SOAK_SECONDS`` sets the length of the run (60 by default).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from netkit import log_events
from test_crash_recovery import Ledger, assert_positions_match, until_ready
from test_reload_under_load import DEFAULT_TEXT, FINAL, order, write_atomically

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/proc/self/status").exists(), reason="reads the daemon's RSS from /proc"
    ),
]

SECONDS = float(os.environ.get("FIXGW_SOAK_SECONDS", "60"))
RATE = 1500  # orders a second from CLIENT1
WARMUP = min(10.0, SECONDS / 4)  # seconds of the stream before the memory baseline
TICK = 0.01  # seconds between two pacing steps of the sender
MAX_GROWTH = 2.0  # RSS at the end over RSS after the warm-up, at most

# Finished orders are kept for status requests and duplicate checks
# ([orders] retain_finished, 100,000 by default): a run this long would fill
# that history while it is being measured.  Kept small, it is full within
# the warm-up, so that what grows after it is a leak.
RETAINED = 2000


def soak_config() -> tuple[str, str]:
    """The default configuration with a short history of finished orders,
    and a variant of it with other LP limits and reroutes, to reload in
    turns."""
    base, replaced = re.subn(
        r"(?m)^retain_finished = \d+", f"retain_finished = {RETAINED}", DEFAULT_TEXT
    )
    assert replaced == 1
    variant = base.replace('soft_limit_usd = "20000000"', 'soft_limit_usd = "19000000"', 1)
    variant = variant.replace("max_reroutes = 2", "max_reroutes = 3")
    assert variant != base
    return base, variant


def rss_kib(pid: int) -> int:
    """The resident set of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class SoakLedger(Ledger):
    """The crash test's ledger of what the client was told, counting also
    the final ExecutionReports each ClOrdID got."""

    def __init__(self) -> None:
        super().__init__()
        self.finals: dict[bytes, int] = {}

    def take(self, msg: FixMessage) -> None:
        if msg.msg_type == b"8" and msg.get(150) != b"I" and msg.get(39) in FINAL:
            cl_ord_id = msg.get(11) or b""
            self.finals[cl_ord_id] = self.finals.get(cl_ord_id, 0) + 1
        super().take(msg)


@pytest.mark.asyncio
async def test_a_minute_of_orders_logons_and_reloads(daemon_factory: Any, tmp_path: Path) -> None:
    base, variant = soak_config()
    path = tmp_path / "fixgw.toml"
    write_atomically(path, base)
    d = daemon_factory("--config", str(path)).start()
    assert d.proc is not None
    pid = d.proc.pid
    await until_ready(d.http_port)

    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    ledger = SoakLedger()
    stop = asyncio.Event()
    counts = {"sent": 0, "reloads": 0, "logons": 0}
    baseline: list[int] = []

    async def send_paced() -> None:
        # pacing: the orders due by the time elapsed, RATE a second, are sent
        # every TICK; a late step sends what fell due meanwhile, so the rate
        # holds whatever the loop's delays
        loop = asyncio.get_running_loop()
        start = loop.time()
        warm = False
        while (elapsed := loop.time() - start) < SECONDS:
            due = int(elapsed * RATE)
            while counts["sent"] < due:
                n = counts["sent"]
                client.send(b"D", order(f"S{n}", b"1" if n % 2 else b"2"))
                counts["sent"] = n + 1
            if not warm and elapsed >= WARMUP:
                warm = True
                baseline.append(rss_kib(pid))
            await asyncio.sleep(TICK)  # pacing, see above

    async def collect() -> None:
        while True:
            ledger.take(await client.messages.get())

    async def reload_every_second() -> None:
        while not stop.is_set():
            write_atomically(path, variant if counts["reloads"] % 2 == 0 else base)
            os.kill(pid, signal.SIGHUP)
            counts["reloads"] += 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0)  # pacing: a reload a second
            except TimeoutError:
                pass

    async def log_on_and_off() -> None:
        # CLIENT2 keeps no store: its Logon resets both sequence numbers
        settings = SessionSettings(
            SenderCompID="CLIENT2", TargetCompID="GATEWAY", ResetOnLogon=True
        )
        while not stop.is_set():
            other = FixClient(settings)
            await other.connect("127.0.0.1", d.fix_port, timeout=15)
            # a status request for an order it never sent: the session works
            mark = b"PING%d" % counts["logons"]
            other.send(b"H", codec.encode_fields([(11, mark), (54, b"1"), (55, b"EUR/USD")]))
            answer = await other.receive(timeout=15)
            assert (answer.get(11), answer.get(39)) == (mark, b"8"), answer
            await other.logout(timeout=15)
            counts["logons"] += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.2)  # pacing: a few logons a second
            except TimeoutError:
                pass

    collector = asyncio.create_task(collect())
    side_tasks = [
        asyncio.create_task(reload_every_second()),
        asyncio.create_task(log_on_and_off()),
    ]
    try:
        await send_paced()
    finally:
        stop.set()
        collector.cancel()  # what is left is read below
        await asyncio.gather(*side_tasks)
    sent = counts["sent"]

    # the rest of the answers: the run fails only when they stop coming
    while len(ledger.finals) < sent:
        try:
            ledger.take(await client.receive(timeout=15))
        except TimeoutError:
            pytest.fail(f"{sent - len(ledger.finals)} of {sent} orders not final, nothing for 15 s")
    # anything more sent for these orders comes before this answer
    await ledger.through(client, "MARK-END")
    end_rss = rss_kib(pid)

    assert set(ledger.finals) == {b"S%d" % n for n in range(sent)}
    twice = {cl_ord_id for cl_ord_id, finals in ledger.finals.items() if finals != 1}
    assert not twice, f"{len(twice)} orders with more than one final report, e.g. {min(twice)!r}"
    assert not ledger.refused, next(iter(ledger.refused.values()))
    assert_positions_match(d.http_port, ledger)

    assert counts["logons"] > 0
    assert counts["reloads"] > 0
    events = log_events(d.log_text())
    names = [e["event"] for e in events]
    assert "config_reloaded" in names
    assert "config_reload_refused" not in names
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    assert not errors, errors[:3]

    (warm_rss,) = baseline
    assert end_rss <= MAX_GROWTH * warm_rss, (
        f"RSS grew from {warm_rss} KiB after the warm-up to {end_rss} KiB"
    )
    await client.logout()
    assert d.stop() == 0
