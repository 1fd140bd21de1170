"""The DuckDB ledger on a disk that takes no more: a write that fails is
reported with what failed (the back office logs it once as
``ledger_write_failed``), nothing of it is kept, and the same write goes
through once the disk has room.

The ledger runs in a process of its own whose files may not grow while
the disk is "full" (RLIMIT_FSIZE): every write to them fails, as on a full
disk, with EFBIG for ENOSPC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN_WITHIN = 120

SCRIPT = r"""
import asyncio, json, resource, signal, sys
from backoffice.duck import DuckLedger
from backoffice.ledger import LedgerError
from backoffice.records import ClientTrade
from backoffice.settlement import Settlement

def trade(n):
    return ClientTrade(
        exec_id=f"E{n}", client="CLIENT1", order_id=f"O{n}", cl_ord_id=f"K{n}",
        symbol="EUR/USD", side=1, qty="1000", price="1.085", market="LP_A",
        time="2026-03-02T10:00:00.000", trade_date="2026-03-02", seq=n,
    )

def disk(full):
    soft = 0 if full else resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

async def main():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    ledger = DuckLedger(sys.argv[1], Settlement([]))
    await ledger.open()
    await ledger.write("BACKOFFICE-GATEWAY", 1, [trade(1)], [])
    batch = [trade(n) for n in range(2, 2002)]
    disk(full=True)
    error = ""
    try:
        await ledger.write("BACKOFFICE-GATEWAY", 2001, batch, [])
    except LedgerError as exc:
        error = str(exc)
    disk(full=False)
    kept = (await ledger.counts())["client_trades"], await ledger.last_seq("BACKOFFICE-GATEWAY")
    await ledger.write("BACKOFFICE-GATEWAY", 2001, batch, [])
    after = (await ledger.counts())["client_trades"], await ledger.last_seq("BACKOFFICE-GATEWAY")
    await ledger.close()
    print(json.dumps({"error": error, "kept": kept, "after": after}))

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_a_write_the_disk_refuses_says_why_and_goes_through_once_it_has_room(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ledger.duckdb")],
        capture_output=True,
        timeout=RUN_WITHIN,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result = json.loads(done.stdout.decode().splitlines()[-1])
    # the cause, not what undoing the failed write said afterwards
    assert "File too large" in result["error"], result["error"]
    assert "rollback" not in result["error"], result["error"]
    # nothing of the failed write kept
    assert result["kept"] == [1, 1]
    assert result["after"] == [2001, 2001]
