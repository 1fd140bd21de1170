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

from config import default_config_path
from gateway.dropcopy.process import READY_WITHIN, STOP_GRACE

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
