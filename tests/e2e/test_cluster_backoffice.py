"""One back office over the two gateways of a cluster, every part a process
of its own: three ``nats-server`` nodes, two ``fixgw lp-sim`` LPs (each
with a session per gateway, one statement for both), two gateways, and
``fixgw backoffice`` following both drop copies into one ledger.

A client trades at each gateway; one gateway is killed (-9), its client
logs on to the other and trades on there; the dead gateway is started
again and its drop copy read to the end.  Then the three records agree
with zero breaks, positions included: the house's at each LP summed over
the gateways, each client's as the gateway serving it holds it (its
fills at both), which is the sum of its fills in the ledger."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from netkit import free_port
from test_backoffice import (  # noqa: F401 - processes: a fixture
    Process,
    config_text,
    get,
    processes,
    statement_lines,
    until,
)
from test_cluster_failover import nats  # noqa: F401 - a fixture
from test_fix_lps import LpSim, lp_sim_config

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient, LogonError
from gateway.sim.nats_cluster import NatsCluster

SECOND_SESSION = """
[[sessions]]
SenderCompID = "{lp}"
TargetCompID = "GATEWAY2"
ResetOnLogon = false
ResetOnLogout = false
ResetOnDisconnect = false
"""


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[list[FixClient]]:
    """The test's FIX clients, closed at its end however it ends (a failure
    half-way would leave their sockets to be found by a later test)."""
    opened: list[FixClient] = []
    yield opened
    for client in opened:
        if client.connected:
            client.abort()
            with contextlib.suppress(TimeoutError):
                await client.wait_closed(2)


def lp_sim(tmp_path: Path, name: str, lp: str, statements: Path) -> LpSim:
    """An lp-sim with a session for each gateway (GATEWAY and GATEWAY2)."""
    path = lp_sim_config(tmp_path, name)
    text = path.read_text()
    head, sep, tail = text.partition("\n[[instruments]]")
    path.write_text(head + SECOND_SESSION.format(lp=lp) + sep + tail)
    return LpSim(path, tmp_path / lp.lower(), tmp_path / f"{lp.lower()}.log", statements)


def market(cl_ord_id: str, side: bytes) -> bytes:
    return codec.encode_fields(
        [
            (11, cl_ord_id.encode()),
            (38, b"3000"),
            (40, b"1"),
            (54, side),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(time.time())),
        ]
    )


async def trade(client: FixClient, prefix: str, count: int, fills: dict[str, FixMessage]) -> None:
    """``count`` market orders, one at a time, each until it is done; every
    fill reported kept by ExecID (a resend after a failover counted once)."""
    for i in range(count):
        cl_ord_id = f"{prefix}-{i}".encode()
        client.send(b"D", market(cl_ord_id.decode(), b"1" if i % 3 else b"2"))
        while True:
            m = await client.receive(10)
            if m.msg_type == b"8" and m.get(150) in (b"F",):
                fills[m.get(17, b"").decode()] = m
            if m.get(11) == cl_ord_id and m.get(39) in (b"2", b"4", b"8", b"C"):
                break


def position(fills: dict[str, FixMessage]) -> Decimal:
    return sum(
        (
            Decimal((m.get(32) or b"0").decode()) * (1 if m.get(54) == b"1" else -1)
            for m in fills.values()
        ),
        Decimal(0),
    )


@pytest.mark.asyncio
async def test_one_back_office_follows_both_gateways_through_a_failover(
    tmp_path: Path,
    processes: list[Any],  # noqa: F811 - the fixture
    daemon_factory: Callable[..., Any],
    nats: NatsCluster,  # noqa: F811 - the fixture
    clients: list[FixClient],
) -> None:
    statements = tmp_path / "statements"
    sims = [lp_sim(tmp_path, "a", "LPX1", statements), lp_sim(tmp_path, "b", "LPX2", statements)]
    processes += [sim.start() for sim in sims]
    a, b = sims
    urls = ",".join(nats.urls)

    def gateway(name: str, comp_id: str) -> Any:
        config = tmp_path / f"{name}.toml"
        daemon = daemon_factory(
            "--config", str(config), "--cluster", urls, data_dir=tmp_path / name
        )
        text = config_text(
            fix_port=daemon.fix_port,
            drop_copy_port=daemon.drop_copy_port,
            http_port=daemon.http_port,
            bo_port=0,
            data_dir=tmp_path / name,
            statements=statements,
            a=a,
            b=b,
            ledger="",
        )
        config.write_text(
            text.replace('sender_comp_id = "GATEWAY"', f'sender_comp_id = "{comp_id}"')
        )
        return daemon.start()

    gw1, gw2 = gateway("gw1", "GATEWAY"), gateway("gw2", "GATEWAY2")
    for gw in (gw1, gw2):
        await until(
            lambda gw=gw: all(lp["up"] for lp in get(gw.http_port, "/admin/lps")),
            20,
            "the LPs connected to each gateway",
        )

    # the back office: its own data, both gateways' drop copies
    bo_port = free_port()
    bo_config = tmp_path / "bo.toml"
    text = (
        (tmp_path / "gw1.toml")
        .read_text()
        .replace("http_port = 0\n", f"http_port = {bo_port}\n", 1)
    )
    assert f"http_port = {bo_port}" in text
    for name, gw in (("gw1", gw1), ("gw2", gw2)):
        text += (
            f'\n[[backoffice.gateways]]\nname = "{name}"\n'
            f"drop_copy_port = {gw.drop_copy_port}\nhttp_port = {gw.http_port}\n"
        )
    bo_config.write_text(text)
    office = Process(
        ["backoffice", "run", "--config", str(bo_config), "--data-dir", str(tmp_path / "bo")],
        tmp_path / "bo.log",
    )
    processes.append(office.start())
    await until(
        lambda: all(f["logged_on"] for f in get(bo_port, "/backoffice/status")["drop_copies"]),
        30,
        "the back office logged on to both drop copies",
    )

    at1, at2 = ("127.0.0.1", gw1.fix_port), ("127.0.0.1", gw2.fix_port)
    one = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"), MemoryStore())
    two = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"), MemoryStore())
    clients += [one, two]
    assert await one.connect_any([at1, at2]) == at1
    assert await two.connect_any([at2, at1]) == at2
    fills1: dict[str, FixMessage] = {}
    fills2: dict[str, FixMessage] = {}
    await trade(one, "one-a", 12, fills1)
    await trade(two, "two-a", 12, fills2)

    # gw1 dies; its client trades on at gw2
    gw1.kill9()
    one.abort()
    deadline = time.monotonic() + 20
    while True:
        try:
            assert await one.connect_any([at1, at2], timeout=3) == at2
            break
        except LogonError:
            assert time.monotonic() < deadline, "CLIENT1 was not taken at gw2"
    await trade(one, "one-b", 12, fills1)
    await trade(two, "two-b", 6, fills2)

    # the back office waits for gw1's drop copy; gw1 started again serves it
    await until(
        lambda: (
            [f["logged_on"] for f in get(bo_port, "/backoffice/status")["drop_copies"]]
            == [False, True]
        ),
        10,
        "gw1's drop copy seen gone",
    )
    gw1.start()

    def settled() -> dict[str, Any] | None:
        status = get(bo_port, "/backoffice/status")
        records = status["records"]
        done = (
            all(f["logged_on"] for f in status["drop_copies"])
            and records["client_trades"] == len(fills1) + len(fills2)
            and records["pending"] == 0
            and records["breaks"] == 0
        )
        return status if done else None

    status = await until(settled, 60, "the ledger holds every fill of both, zero breaks")
    # the positions compared twice since (a difference is a break once seen
    # twice), every client among them
    compared = status["positions"]["compared"]
    status = await until(
        lambda: (
            (s := get(bo_port, "/backoffice/status"))["positions"]["compared"] >= compared + 2 and s
        ),
        30,
        "positions compared twice more",
    )
    assert status["positions"]["clients_not_compared"] == []
    assert status["records"]["breaks"] == 0
    full = get(bo_port, "/backoffice/recon", method="POST")
    assert (full["breaks"], full["pending"]) == (0, 0)
    assert get(bo_port, "/backoffice/breaks")["count"] == 0
    # every line of the LPs' one statement is in the ledger, and only those
    lines = statement_lines(statements)
    assert status["records"]["lp_trades"] == len(lines) > 0

    # the positions the back office compared, checked here too: CLIENT1's at
    # gw2 (which serves it) is the sum of its fills at both gateways, and so
    # is the ledger's; gw1, started again, shows the one it last knew
    treasury = get(bo_port, "/backoffice/treasury")["positions"]
    ledger_clients = {(p["holder"], p["symbol"]): Decimal(p["qty"]) for p in treasury["clients"]}
    served = get(gw2.http_port, "/admin/exposures")
    assert "CLIENT1" in served["served"]
    assert Decimal(served["clients"]["CLIENT1"]["EUR/USD"]) == position(fills1)
    assert ledger_clients[("CLIENT1", "EUR/USD")] == position(fills1)
    assert ledger_clients[("CLIENT2", "EUR/USD")] == position(fills2)
    assert "CLIENT1" not in get(gw1.http_port, "/admin/exposures")["served"]
    lp_total: dict[tuple[str, str], Decimal] = {}
    for gw in (gw1, gw2):
        for lp, by in get(gw.http_port, "/admin/exposures")["lps"].items():
            for symbol, qty in by.items():
                lp_total[(lp, symbol)] = lp_total.get((lp, symbol), Decimal(0)) + Decimal(qty)
    ledger_lps = {(p["holder"], p["symbol"]): Decimal(p["qty"]) for p in treasury["lps"]}
    assert {k: v for k, v in ledger_lps.items() if v} == {k: v for k, v in lp_total.items() if v}
    await one.logout()
    await two.logout()
