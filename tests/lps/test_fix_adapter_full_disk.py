"""The FIX LP adapter stopped while its session store cannot be written (a
full disk: the process's files may not grow, RLIMIT_FSIZE): its
disconnect ends, naming the store it could not write, and the gateway's
stop goes on past it (the drop copy stopped, the journal's line said)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, resource, signal, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from structlog.testing import capture_logs
from test_fix_adapter import INSTRUMENTS, Acceptor, Sink, child, lp_settings
from lp_adapters.fix.adapter import FixLp

async def main():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    acceptor = Acceptor()
    await acceptor.start()
    adapter = FixLp("LPT", INSTRUMENTS, Sink(), lp_settings(acceptor.port, Path(sys.argv[1])))
    await adapter.connect()
    up = adapter.up
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    adapter.send(child("C1"))
    for _ in range(10):
        await asyncio.sleep(0)  # the turns in which the send's write fails
    error = ""
    with capture_logs() as logs:
        try:
            await adapter.disconnect()
        except OSError as exc:
            error = repr(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await acceptor.stop()
    lines = [e for e in logs if e["event"] == "lp_store_not_closed"]
    print(json.dumps({"up": up, "error": error, "lines": [
        {k: str(v) for k, v in e.items()} for e in lines]}))

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_a_disconnect_on_a_full_disk_ends_naming_the_store_it_could_not_write(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(Path(__file__).parent)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["up"] is True
    assert result["error"] == ""
    (line,) = result["lines"]
    assert line["lp"] == "LPT"
    assert "lp-sessions" in line["store"]
    assert line["error"]
