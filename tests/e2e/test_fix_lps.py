"""Client -> ``fixgw run`` -> FIX LP adapter -> two ``fixgw lp-sim`` processes
and back, every hop a real socket between separate processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from netkit import free_port, log_events, wait_for_port
from prometheus_client.parser import text_string_to_metric_families
from test_crash_recovery import eur_usd_lot, until_every_lp_quotes

from config import SessionSettings
from gateway.fix import codec
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
FINAL = (b"2", b"4", b"8", b"C")


TOKEN = "dev-admin-token"


class LpSim:
    def __init__(
        self, config: Path, data_dir: Path, log: Path, statements: Path | None = None
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.log = log
        self.statements = statements
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LpSim:
        out = open(self.log, "ab")  # noqa: SIM115 - the process owns it until it ends
        cmd = [sys.executable, "-m", "gateway", "lp-sim", "--config", str(self.config)]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.statements is not None:
            cmd += ["--statements", str(self.statements)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_for_port(self.port, self.proc)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def lp_sim_config(tmp_path: Path, name: str, **settings: str) -> Path:
    """config/lp-sim-<name>.toml with some settings (of any table) replaced,
    written to ``tmp_path``."""
    text = (REPO / "config" / f"lp-sim-{name}.toml").read_text()
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, f"{key} is not set once in lp-sim-{name}.toml"
    path = tmp_path / f"lp-sim-{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def lp_sims(tmp_path: Path) -> Iterator[tuple[LpSim, LpSim]]:
    # LPX1 fills in parts and rejects some children at last look. LPX2
    # fills every child in full: no random rejects, and a last look that
    # accepts a price moved by up to 20 ticks (its quotes move by one tick
    # at a time), so that an order it alone can take always fills. Orders
    # bigger than LPX1's five levels of 500 lots spill over to LPX2.
    a_config = lp_sim_config(
        tmp_path, "a", partial_fill_probability="0.3", reject_probability="0.2"
    )
    b_config = lp_sim_config(tmp_path, "b", price_tolerance_ticks="20")
    a = LpSim(a_config, tmp_path / "lpx1", tmp_path / "lpx1.log")
    b = LpSim(b_config, tmp_path / "lpx2", tmp_path / "lpx2.log")
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def gateway_config(tmp_path: Path, a: LpSim, b: LpSim) -> Path:
    text = (REPO / "config" / "fix-lps.toml").read_text()
    text = text.replace("port = 9901", f"port = {a.port}").replace(
        "port = 9902", f"port = {b.port}"
    )
    text = text.replace("reconnect_max_ms = 5000", "reconnect_max_ms = 500")
    # the ten buys of 3,000,000 the test has in flight at once would pass
    # the file's position limit of 20,000,000 (open orders count as filled)
    limit = 'max_open_position = "20000000"'
    assert limit in text
    text = text.replace(limit, 'max_open_position = "50000000"', 1)
    path = tmp_path / "fix-lps.toml"
    path.write_text(text)
    return path


def fix_lp_units(gateway_config: Path, *sims: LpSim) -> list[Decimal]:
    """What each lp-sim quotes of EUR/USD on a side, at most, in units, as
    far as the daemon's adapter subscribes (market_depth, 0 = everything)."""
    lps = tomllib.loads(gateway_config.read_text())["lps"]
    depth = {lp["settings"]["port"]: lp["settings"].get("market_depth", 0) for lp in lps}
    units = []
    for sim in sims:
        quoting = tomllib.loads(sim.config.read_text())
        levels = quoting["simulated"]["depth_levels"]
        if depth[sim.port]:
            levels = min(levels, depth[sim.port])
        units.append(levels * quoting["simulated"]["level_qty_lots"] * eur_usd_lot(quoting))
    return units


def order(cl_ord_id: str, side: bytes, qty: bytes, price: bytes | None = None) -> bytes:
    fields = [(11, cl_ord_id.encode()), (38, qty)]
    fields += [(40, b"2"), (44, price)] if price else [(40, b"1")]
    fields += [(54, side), (55, b"EUR/USD"), (59, b"3"), (60, codec.format_utc_timestamp(0.0))]
    return codec.encode_fields(fields)


async def run_orders(client: FixClient, orders: dict[str, bytes]) -> dict[str, list[Any]]:
    """Send the orders; collect every report of each until it is final."""
    for body in orders.values():
        client.send(b"D", body)
    reports: dict[str, list[Any]] = {k: [] for k in orders}
    waiting = set(orders)
    while waiting:
        msg = await client.receive(timeout=10)
        key = (msg.get(11) or b"").decode()
        if msg.msg_type != b"8" or key not in reports:
            continue
        reports[key].append(msg)
        if msg.get(39) in FINAL:
            waiting.discard(key)
    return reports


def admin(http_port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def lp_state(http_port: int) -> dict[str, dict[str, Any]]:
    return {lp["name"]: lp for lp in admin(http_port, "/admin/lps")}


def assert_exposure_exact(http_port: int) -> None:
    """Every lot a client holds was bought from or sold to exactly one LP."""
    exposures = admin(http_port, "/admin/exposures")
    clients = sum(int(by.get("EUR/USD", "0")) for by in exposures["clients"].values())
    lps = sum(int(by.get("EUR/USD", "0")) for by in exposures["lps"].values())
    assert clients == lps


def children_in_flight(http_port: int) -> dict[str, int]:
    """Child orders sent to each LP and not ended yet, from ``/metrics``."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    open_children: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            lp = sample.labels.get("lp", "")
            if sample.name == "fixgw_lp_child_orders_total":
                open_children[lp] = open_children.get(lp, 0) + int(sample.value)
            elif sample.name == "fixgw_lp_child_orders_ended_total":
                open_children[lp] = open_children.get(lp, 0) - int(sample.value)
    return open_children


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate``; an HTTP server not listening yet counts as not met."""
    for _ in range(int(timeout / 0.05)):
        try:
            if predicate():
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)  # polling, ``timeout`` at most
    raise TimeoutError("condition not met in time")


@pytest.mark.asyncio
async def test_orders_through_two_fix_lps_with_a_kill_and_a_restart(
    daemon_factory: Any, tmp_path: Path, lp_sims: tuple[LpSim, LpSim]
) -> None:
    a, b = lp_sims
    config = gateway_config(tmp_path, a, b)
    d = daemon_factory("--config", str(config)).start()
    await wait_until(lambda: all(lp["up"] for lp in lp_state(d.http_port).values()))
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    # quotes from both LPs reach the aggregated book
    await until_every_lp_quotes(client, fix_lp_units(config, a, b))

    # market and marketable limit orders, buys and sells
    orders = {f"M{i}": order(f"M{i}", b"1" if i % 2 else b"2", b"3000000") for i in range(20)}
    orders["LIM-B"] = order("LIM-B", b"1", b"50000", b"9")
    orders["LIM-S"] = order("LIM-S", b"2", b"50000", b"0.5")
    reports = await run_orders(client, orders)
    finals = {k: v[-1].get(39) for k, v in reports.items()}
    # filled, or canceled with what LPX1's partial fills left after the re-routes
    assert set(finals.values()) <= {b"2", b"4"}
    assert list(finals.values()).count(b"2") >= 15
    lps = lp_state(d.http_port)
    assert lps["LPX1"]["fills"] > 0
    assert lps["LPX2"]["fills"] > 0
    assert lps["LPX1"]["rejects"] > 0, "LPX1 rejects a share of children"
    partial = [r for v in reports.values() for r in v if r.get(150) == b"F" and r.get(39) == b"1"]
    assert partial, "some orders were filled in parts"
    assert_exposure_exact(d.http_port)

    # kill LPX1 while orders are in flight: nothing hangs, every order ends
    burst = {f"K{i}": order(f"K{i}", b"1" if i % 2 else b"2", b"100000") for i in range(40)}
    for body in burst.values():
        client.send(b"D", body)
    a.kill9()
    waiting = set(burst)
    while waiting:
        msg = await client.receive(timeout=15)
        key = (msg.get(11) or b"").decode()
        if msg.msg_type == b"8" and key in waiting and msg.get(39) in FINAL:
            waiting.discard(key)
    await wait_until(lambda: not lp_state(d.http_port)["LPX1"]["up"])
    assert_exposure_exact(d.http_port)
    # with LPX1 down, orders still fill: in full, and at LPX2 only
    before = lp_state(d.http_port)
    down = {f"D{i}": order(f"D{i}", b"1" if i % 2 else b"2", b"100000") for i in range(4)}
    reports = await run_orders(client, down)
    for key, sent in reports.items():
        final = sent[-1]
        assert final.get(39) == b"2", (key, final)
        assert final.get(14) == b"100000", (key, final)
        assert final.get(151) == b"0", (key, final)
        fills = [Decimal((r.get(32) or b"0").decode()) for r in sent if r.get(150) == b"F"]
        assert sum(fills) == Decimal(100000), (key, fills)
    after = lp_state(d.http_port)
    assert after["LPX1"]["child_orders"] == before["LPX1"]["child_orders"]
    assert after["LPX2"]["fills"] >= before["LPX2"]["fills"] + len(down)
    assert_exposure_exact(d.http_port)
    children_before = after["LPX1"]["child_orders"]

    # LPX1 restarts on the same port and data: the adapter logs on again,
    # sequence numbers continue, and flow returns to it
    a.start()
    await wait_until(lambda: lp_state(d.http_port)["LPX1"]["up"], timeout=15)
    # its quotes are back in the book
    await until_every_lp_quotes(client, fix_lp_units(config, a, b))
    more = {f"R{i}": order(f"R{i}", b"1" if i % 2 else b"2", b"100000") for i in range(20)}
    await run_orders(client, more)
    assert lp_state(d.http_port)["LPX1"]["child_orders"] > children_before
    assert_exposure_exact(d.http_port)
    # the LP's second logon continued the sequence numbers of the first
    logons = [e for e in log_events(a.log) if e.get("event") == "logged_on"]
    assert len(logons) >= 2
    assert logons[-1]["next_target"] > 2
    await client.logout()
