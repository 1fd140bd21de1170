"""A restart whose config changed the tick size and lot size of an
instrument the order journal holds orders and positions in: refused in
one line, every file of the data directory as it was; with the old sizes
put back, the gateway starts and the order rests as it was sent
(docs/operations.md, Instruments; docs/guarantees.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from config import SessionSettings, default_config_path
from gateway.fix import new_order_single
from gateway.net.client import FixClient

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dev-admin-token"
EURUSD = 'tick_size = "0.00001"         # smallest price increment\n'
EURUSD_LOTS = (
    'lot_size = "1000"             # units per lot: orders are whole multiples of 1,000 EUR\n'
    'min_qty = "1000"'
)


def config(path: Path, tick_size: str, lot_size: str) -> Path:
    """The default config with EUR/USD on the grid given, written to ``path``."""
    text = default_config_path().read_text()
    assert EURUSD in text
    assert EURUSD_LOTS in text
    text = text.replace(EURUSD, f'tick_size = "{tick_size}"\n', 1)
    text = text.replace(EURUSD_LOTS, f'lot_size = "{lot_size}"\nmin_qty = "{lot_size}"', 1)
    path.write_text(text)
    return path


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, by path, with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def admin(http_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def resting(http_port: int) -> list[tuple[str, str, str, str]]:
    return [
        (o["cl_ord_id"], o["side"], o["qty"], o["price"])
        for o in admin(http_port, "/admin/orders?client=CLIENT1")
    ]


async def rest_and_hold(fix_port: int) -> None:
    """CLIENT1 rests a GTC buy of 5,000 EUR/USD at 1.00000 and buys 7,000
    at the market (a position at the LPs)."""
    client = FixClient(
        SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", ResetOnLogon=True)
    )
    await client.connect("127.0.0.1", fix_port)
    now = time.time()
    limit = {"ord_type": "limit", "price": "1.00000", "time_in_force": "gtc"}
    client.send(*new_order_single("L0", "EUR/USD", "buy", 5000, transact_time=now, **limit))
    client.send(*new_order_single("M1", "EUR/USD", "buy", 7000, transact_time=now))
    filled = False
    while not filled:
        report = await client.receive(timeout=10)
        assert report.get(39) not in (b"4", b"8"), report
        filled = report.get(11) == b"M1" and report.get(39) == b"2"
    await client.logout()


def test_a_restart_that_changes_the_grid_of_an_instrument_held_is_refused(
    daemon_factory: Any, tmp_path: Path
) -> None:
    old = config(tmp_path / "old.toml", "0.00001", "1000")
    data = tmp_path / "data"
    d = daemon_factory("--config", str(old), data_dir=data).start()
    asyncio.run(rest_and_hold(d.fix_port))
    before = resting(d.http_port)
    assert before == [("L0", "buy", "5000", "1")]
    assert admin(d.http_port, "/admin/exposures")["clients"]["CLIENT1"]["EUR/USD"] == "7000"
    assert d.stop() == 0

    on_disk = files(data)
    new = config(tmp_path / "new.toml", "0.0001", "100")
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "gateway", "run", "--config", str(new)),
            *("--fix-port", str(d.fix_port), "--http-port", str(d.http_port)),
            *("--drop-copy-port", str(d.drop_copy_port), "--data-dir", str(data)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        re.escape(
            f"{new}: refusing to start: instruments: EUR/USD is configured with tick_size "
            "0.0001 and lot_size 100, but the order journal holds 1 open order"
        )
        + r"(, \d child orders? in flight)?"
        + re.escape(
            ", positions in it counted in ticks of 0.00001 and lots of 1000; put the old "
            "sizes back, or close the orders and positions in it first, or trade the new "
            "definition under a new symbol"
        ),
        said,
    ), said
    assert files(data) == on_disk

    # the old sizes back: the order and the position are as they were
    d2 = daemon_factory("--config", str(old), data_dir=data).start()
    assert resting(d2.http_port) == before
    assert admin(d2.http_port, "/admin/exposures")["clients"]["CLIENT1"]["EUR/USD"] == "7000"
    assert d2.stop() == 0
