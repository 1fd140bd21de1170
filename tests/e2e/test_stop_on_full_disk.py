"""SIGTERM to ``fixgw run`` once its disk has filled up while it ran: it
still stops everything it started (its drop-copy process first copying
what the journal holds), says in one named line which data directory
could not be written and why, and exits with status 3, without a
traceback; what it had acknowledged is there after a restart with room.

The disk fills up by the daemon's files no longer being allowed to grow
(RLIMIT_FSIZE set on the running process): every write to one fails, as
on a full disk, with EFBIG for ENOSPC.  Its log goes to a pipe, which the
limit does not touch."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from netkit import free_port, with_day_end_away
from test_crash_recovery import admin, until_ready
from test_order_flow import client, order, until_final

from config import SessionSettings, default_config_path
from gateway.dropcopy.process import READY_WITHIN, STOP_GRACE
from gateway.fix import codec
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient

ROOT = Path(__file__).resolve().parents[2]
# longer than the daemon's own waits (see conftest.py): slow, not red, on a busy machine
START_WITHIN = READY_WITHIN + 30
STOP_WITHIN = STOP_GRACE + 20


class Gateway:
    """A ``fixgw run`` process whose log (standard error) is read from a pipe."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        self.fix_port = free_port()
        self.http_port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "gateway", "run", "--config", str(config)),
                *("--fix-port", str(self.fix_port), "--http-port", str(self.http_port)),
                *("--drop-copy-port", str(free_port()), "--data-dir", str(data_dir)),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # a file that may not grow fails the write instead of ending the process
            preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
        )
        self._said: list[bytes] = []
        # until every writer of the pipe is gone: the drop-copy process too
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._said.append(line)

    def log(self) -> str:
        return b"".join(self._said).decode(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def until_said(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for said in self.events():
                if said["event"] == event:
                    return said
            time.sleep(0.02)  # polling, with the deadline above
        raise AssertionError(f"no {event} within {timeout} s: {self.log()[-3000:]}")

    def disk_full(self) -> None:
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    def stop(self) -> int:
        """SIGTERM; its exit status once it and every writer of its log ended."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_WITHIN)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(STOP_WITHIN)
        if not self._reader.is_alive():
            assert self.proc.stderr is not None
            self.proc.stderr.close()
        return code


@pytest.mark.asyncio
async def test_a_stop_on_a_full_disk_stops_everything_in_one_line_and_loses_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(with_day_end_away(default_config_path().read_text()))
    data_dir = tmp_path / "data"
    gw = Gateway(config, data_dir)
    request.addfinalizer(gw.stop)
    gw.until_said("gateway_started", START_WITHIN)
    await until_ready(gw.http_port)
    c = client("CLIENT2")
    request.addfinalizer(c.abort)
    await c.connect("127.0.0.1", gw.fix_port)
    c.send(b"D", order("ACKED", ord_type="2", price="0.50000", tif="1"))
    (new,) = await until_final(c, b"ACKED")
    assert new.get(39) == b"0"  # acknowledged, resting

    gw.disk_full()
    c.send(b"D", order("UNWRITTEN", ord_type="2", price="0.50000", tif="1"))
    await asyncio.to_thread(gw.until_said, "order_journal_write_failed", 20)
    assert c.messages.empty()  # nothing leaves before it is written

    code = await asyncio.to_thread(gw.stop)
    log = gw.log()
    assert "Traceback" not in log, log
    for line in log.splitlines():
        assert line.startswith("{"), f"not a named event: {line!r} in\n{log}"
    events = gw.events()
    names = [e["event"] for e in events]
    # the drop copy was stopped by its gateway (it copied what the journal held)
    assert "drop_copy_stopped" in names, names
    assert names.index("drop_copy_stopped") < names.index("gateway_stopped")
    (unwritten,) = [e for e in events if e["event"] == "journal_not_closed"]
    assert unwritten["data_dir"] == str(data_dir)
    assert "File too large" in unwritten["error"]
    # the writes that failed are tried no more once the files are closed
    assert "write_failed" not in names[names.index("journal_not_closed") :], names
    assert code == 3, log

    # room again: everything acknowledged is back
    again = Gateway(config, data_dir)
    request.addfinalizer(again.stop)
    again.until_said("gateway_started", START_WITHIN)
    await until_ready(again.http_port)
    listed = admin(again.http_port, "/admin/orders?client=CLIENT2")
    assert "ACKED" in [o["cl_ord_id"] for o in listed], listed
    assert again.stop() == 0


@pytest.mark.asyncio
async def test_a_report_the_journal_could_not_write_is_not_stored_by_the_stop(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The order journal cannot be written, a client's session store still
    can (its file is smaller, or a full disk's last block of it has room):
    the stop writes what the store holds, but not the reports of what the
    journal could not write, which the client would otherwise be sent
    after the restart, for an order the gateway no longer knows."""
    config = tmp_path / "gateway.toml"
    config.write_text(with_day_end_away(default_config_path().read_text()))
    data_dir = tmp_path / "data"
    gw = Gateway(config, data_dir)
    request.addfinalizer(gw.stop)
    gw.until_said("gateway_started", START_WITHIN)
    await until_ready(gw.http_port)
    kept = MemoryStore()
    c = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"), kept)
    request.addfinalizer(c.abort)
    await c.connect("127.0.0.1", gw.fix_port)
    # each order's state and a copy of its report go to the journal, the
    # report alone to the client's store: the journal grows past the store
    for n in range(50):
        c.send(b"D", order(f"ACKED{n}", ord_type="2", price="0.50000", tif="1"))
        (new,) = await until_final(c, f"ACKED{n}".encode())
        assert new.get(39) == b"0"
    journal = data_dir / "orders" / "journal"
    store = data_dir / "sessions" / "FIX.4.4-GATEWAY-CLIENT2" / "journal"
    assert store.stat().st_size + 2048 < journal.stat().st_size
    # the journal may not grow any more; the store may still grow a little
    limit = journal.stat().st_size
    resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    c.send(b"D", order("UNWRITTEN", ord_type="2", price="0.50000", tif="1"))
    await asyncio.to_thread(gw.until_said, "order_journal_write_failed", 20)
    assert c.messages.empty()  # nothing leaves before it is written
    assert await asyncio.to_thread(gw.stop) == 3
    await c.wait_closed()
    c.abort()

    again = Gateway(config, data_dir)
    request.addfinalizer(again.stop)
    again.until_said("gateway_started", START_WITHIN)
    await until_ready(again.http_port)
    listed = [o["cl_ord_id"] for o in admin(again.http_port, "/admin/orders?client=CLIENT2")]
    assert "ACKED49" in listed, listed
    assert "UNWRITTEN" not in listed, listed
    # the client logs on again and is sent what it missed, never a report
    # of an order the gateway does not know; the order it sent that was
    # never answered it sends again (the gateway asks for it), and it is
    # worked now
    c = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"), kept)
    request.addfinalizer(c.abort)
    await c.connect("127.0.0.1", again.fix_port)
    c.send(b"H", codec.encode_fields([(11, b"UNWRITTEN"), (54, b"1"), (55, b"EUR/USD")]))
    answers = []
    while True:
        msg = await c.receive(timeout=10)
        answers.append(msg)
        if msg.msg_type == b"8" and msg.get(150) == b"I":
            break
    reports = [m for m in answers if m.msg_type == b"8" and m.get(11) == b"UNWRITTEN"]
    status = reports[-1]
    assert status.get(58) != b"Unknown order", reports
    assert {m.get(37) for m in reports} == {status.get(37)}, reports
    await c.logout()
    assert again.stop() == 0
