"""``fixgw status``, ``positions``, ``orders``, ``sessions`` and ``margin``
against a real ``fixgw run``: a client logs on over FIX, one order of it is
filled and one rests, and each command's table and JSON are read back (for
``margin``, after a few more trades across asset classes); then the errors
an operator meets (a wrong or missing token, no daemon, the admin API
disabled, a client without a margin account) are one line and exit status
1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netkit import free_port

from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.net.client import FixClient

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dev-admin-token"  # config/default.toml
CLIENT1 = "FIX.4.4:GATEWAY->CLIENT1"
FINAL = (b"2", b"4", b"8", b"C")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


async def fixgw(*args: str, env: dict[str, str] | None = None) -> Result:
    """``fixgw ARGS`` as an operator runs it, without FIXGW_ADMIN_TOKEN
    unless ``env`` gives it."""
    base = {k: v for k, v in os.environ.items() if k != "FIXGW_ADMIN_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", *args),
        cwd=REPO,
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def one_line_error(result: Result, command: str) -> str:
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"fixgw {command}: ")
    return lines[0]


def order(cl_ord_id: str, **extra: str) -> bytes:
    """A NewOrderSingle body: a market IOC buy of 1,000 EUR/USD unless
    ``extra`` (by tag number) says otherwise."""
    fields = {11: cl_ord_id, 38: "1000", 40: "1", 54: "1", 55: "EUR/USD", 59: "3"}
    fields.update({int(tag): value for tag, value in extra.items()})
    fields[60] = codec.format_utc_timestamp(0.0).decode()
    return codec.encode_fields(sorted((t, v.encode()) for t, v in fields.items()))


async def answered(client: FixClient, cl_ord_id: bytes, *statuses: bytes) -> None:
    while True:
        msg = await client.receive(timeout=10)
        if msg.get(11) == cl_ord_id and msg.get(39) in statuses:
            return


def config_text(http_port: int, admin_token: str) -> str:
    text = default_config_path().read_text()
    text = re.sub(r"(?m)^http_port = \d+", f"http_port = {http_port}", text, count=1)
    return re.sub(r'(?m)^admin_token = "[^"]*"', f'admin_token = "{admin_token}"', text)


async def wait_ready(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # polling, with the deadline above
    raise TimeoutError(f"/readyz not 200 after {timeout:g} s")


@dataclass
class Trading:
    url: str
    config: Path
    client: FixClient


@pytest_asyncio.fixture
async def trading(
    daemon_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Trading]:
    """A daemon (its config file names its HTTP port) and CLIENT1 logged on
    with one order filled (M1) and one resting (REST)."""
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    config = tmp_path / "gateway.toml"
    d = daemon_factory("--config", str(config))
    config.write_text(config_text(d.http_port, TOKEN))
    d.start()
    await wait_ready(d.http_port)
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port)
    client.send(b"D", order("M1"))
    await answered(client, b"M1", *FINAL)
    client.send(b"D", order("REST", **{"40": "2", "44": "0.50000", "59": "1"}))
    await answered(client, b"REST", b"0")
    yield Trading(f"http://127.0.0.1:{d.http_port}", config, client)
    await client.logout()


def rows(table: str) -> list[list[str]]:
    """A table's lines split into cells (cells are separated by 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]


@pytest.mark.asyncio
async def test_the_operator_commands_read_a_running_daemon(trading: Trading) -> None:
    auth = ("--url", trading.url, "--token", TOKEN)

    # status: one screen, and its JSON
    status = await fixgw("status", *auth)
    assert status.code == 0, status.err
    screen = status.out.splitlines()
    assert screen[0] == f"fixgw at {trading.url}"
    shown = {line[2:15].strip(): line[15:] for line in screen[1:]}
    assert set(shown) == {
        "up since",
        "config",
        "sessions",
        "LPs",
        "open orders",
        "exposure",
        "latency P99",
        "loop lag",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s\)", shown["up since"])
    assert shown["sessions"] == "1 logged on, 3 logged off (CLIENT2, CLIENT3, BACKOFFICE)"
    assert shown["LPs"] == "3 up, 0 down"
    assert shown["open orders"] == "1"
    assert re.match(r"\$[\d,]+ gross with the LPs; nearest its hard limit: LP_", shown["exposure"])
    assert re.fullmatch(r"[\d.]+ ms \(P50 [\d.]+ ms, 1 order timed\)", shown["latency P99"])
    data = (await fixgw("status", "--json", *auth)).json()
    assert data["sessions"]["logged_on"] == [CLIENT1]
    assert len(data["sessions"]["logged_off"]) == 3  # CLIENT2, CLIENT3 and the drop copy
    assert data["lps"] == {"up": ["LP_A", "LP_B", "LP_C"], "down": [], "disabled": []}
    assert data["open_orders"] == 1
    assert 0 <= data["uptime_seconds"] < 120
    assert data["started_at"] <= time.time()
    assert data["latency_ms"]["count"] == 1
    assert data["latency_ms"]["p99"] > 0
    assert float(data["exposure"]["gross_usd"]) > 0

    # positions: the client bought 1,000 EUR/USD, which the LPs sold to it
    positions = await fixgw("positions", *auth)
    assert positions.code == 0, positions.err
    assert ["CLIENT1", "EUR/USD", "+1,000"] in rows(positions.out)
    exposures = (await fixgw("positions", "--json", *auth)).json()
    assert exposures["clients"] == {"CLIENT1": {"EUR/USD": "1000"}}
    lp_total = sum(int(by.get("EUR/USD", "0")) for by in exposures["lps"].values())
    assert lp_total == 1000

    # orders: the resting one; with --all the filled one too, in arrival order
    listed = await fixgw("orders", "--client", "CLIENT1", *auth)
    assert listed.code == 0, listed.err
    head, *lines = rows(listed.out)
    assert head[:3] == ["ORDER ID", "CLIENT", "CLORDID"]
    assert head[-1] == "STATUS"
    assert [(r[2], r[-1]) for r in lines] == [("REST", "new")]
    every = await fixgw("orders", "--client", "CLIENT1", "--all", *auth)
    assert every.code == 0, every.err
    assert [(r[2], r[-1]) for r in rows(every.out)[1:]] == [("M1", "filled"), ("REST", "new")]
    orders = (await fixgw("orders", "--client", "CLIENT1", "--all", "--json", *auth)).json()
    m1, rest = orders
    assert (m1["cl_ord_id"], m1["cum_qty"], m1["leaves_qty"], m1["status"]) == (
        "M1",
        "1000",
        "0",
        "filled",
    )
    assert (rest["price"], rest["time_in_force"], rest["leaves_qty"]) == ("0.5", "gtc", "1000")
    latest = (await fixgw("orders", "--all", "--limit", "1", "--json", *auth)).json()
    assert [o["cl_ord_id"] for o in latest] == ["REST"]
    none = await fixgw("orders", "--client", "CLIENT2", "--all", *auth)
    assert none.out.strip() == "no orders of CLIENT2 retained"

    # sessions
    sessions = await fixgw("sessions", *auth)
    assert sessions.code == 0, sessions.err
    by_session = {r[0]: r for r in rows(sessions.out)}
    assert by_session["SESSION"][:3] == ["SESSION", "STATE", "LOGGED ON"]
    assert by_session[CLIENT1][1:3] == ["active", "yes"]
    listed_sessions = (await fixgw("sessions", "--json", *auth)).json()
    (mine,) = [s for s in listed_sessions if s["session"] == CLIENT1]
    assert mine["logged_on"] is True
    assert mine["messages_in"] >= 3  # Logon and two orders

    # the address and token from the daemon's config file, or the token from the environment
    from_file = (await fixgw("status", "--json", "--config", str(trading.config))).json()
    assert from_file["url"] == trading.url
    from_env = await fixgw("sessions", "--url", trading.url, env={"FIXGW_ADMIN_TOKEN": TOKEN})
    assert from_env.code == 0, from_env.err
    assert {r[0] for r in rows(from_env.out)} == set(by_session)


def usd_cell(text: str) -> float:
    """A ``$1,234.56`` (or ``-$0.50``) cell as a number."""
    match = re.fullmatch(r"(-?)\$([\d,]+\.\d\d)", text)
    assert match is not None, text
    return float(match.group(1) + match.group(2).replace(",", ""))


@pytest.mark.asyncio
async def test_fixgw_margin_lists_the_accounts_and_shows_one_in_full(trading: Trading) -> None:
    auth = ("--url", trading.url, "--token", TOKEN)
    # CLIENT1 holds 1,000 EUR/USD (M1); it buys 9,000 more and sells 0.5 BTC/USD:
    # long EUR against short BTC forms the default config's cross-asset spread
    trading.client.send(b"D", order("EUR-MORE", **{"38": "9000"}))
    await answered(trading.client, b"EUR-MORE", *FINAL)
    trading.client.send(b"D", order("BTC-SHORT", **{"38": "0.5", "54": "2", "55": "BTC/USD"}))
    await answered(trading.client, b"BTC-SHORT", *FINAL)

    listing = (await fixgw("margin", "--json", *auth)).json()
    assert listing["param_version"] == "default-2026-12"
    by_client = {a["client"]: a for a in listing["accounts"]}
    assert set(by_client) == {"CLIENT1", "CLIENT2", "CLIENT3"}
    mine = by_client["CLIENT1"]
    assert mine["positions"] == {
        "BTC/USD": {"qty": "-0.5", "avg_px": mine["positions"]["BTC/USD"]["avg_px"]},
        "EUR/USD": {"qty": "10000", "avg_px": mine["positions"]["EUR/USD"]["avg_px"]},
    }
    assert float(mine["margin_usd"]) > 0
    assert float(mine["freed_by_portfolio_usd"]) > 0
    assert [s["spread"] for s in mine["spreads"]] == ["EUR-BTC"]

    # the table: one row per account, the figures of the JSON in dollars and cents
    shown = await fixgw("margin", *auth)
    assert shown.code == 0, shown.err
    title, head, *lines = rows(shown.out)
    assert title[0].startswith("Margin accounts (USD): portfolio margin beside siloed")
    assert head == [
        "CLIENT",
        "EQUITY",
        "MARGIN",
        "SILOED",
        "FREED",
        "FREE MARGIN",
        "LEVEL",
        "PARAMS",
    ]
    table = {r[0]: dict(zip(head, r, strict=True)) for r in lines}
    assert set(table) == {"CLIENT1", "CLIENT2", "CLIENT3"}
    one = table["CLIENT1"]
    assert one["PARAMS"] == "default-2026-12"
    # the figures move with the marks between two reads: equal within a few dollars
    assert usd_cell(one["MARGIN"]) == pytest.approx(float(mine["margin_usd"]), abs=5)
    assert usd_cell(one["SILOED"]) > usd_cell(one["MARGIN"])
    freed = usd_cell(one["SILOED"]) - usd_cell(one["MARGIN"])
    assert usd_cell(one["FREED"]) == pytest.approx(freed, abs=0.011)
    assert usd_cell(one["EQUITY"]) == pytest.approx(5_000_000, rel=0.01)
    assert re.fullmatch(r"[\d,]+\.\d\d", one["LEVEL"]), one["LEVEL"]
    flat = table["CLIENT3"]
    assert (flat["EQUITY"], flat["MARGIN"], flat["LEVEL"]) == ("$1,000,000.00", "$0.00", "-")

    # one account in full: groups with their scan risk, the spread and its credit, positions
    full = await fixgw("margin", "CLIENT1", *auth)
    assert full.code == 0, full.err
    text = full.out
    assert text.startswith("Margin account of CLIENT1 (parameters default-2026-12, USD)")
    figures = {line[2:18].strip(): line[18:] for line in text.split("\n\n")[0].splitlines()[1:]}
    assert set(figures) == {
        "collateral",
        "realized P&L",
        "unrealized P&L",
        "equity",
        "margin",
        "siloed margin",
        "initial margin",
        "free margin",
        "level",
    }
    assert figures["collateral"] == "$5,000,000.00"
    assert re.fullmatch(
        r"\$[\d,.]+ \(scan risk \$[\d,.]+ less \$[\d,.]+ of spread credits\)",
        figures["margin"],
    )
    assert figures["level"].endswith("(margin call below 1.0, stop-out below 0.5)")
    sections = {part.splitlines()[0]: part for part in text.split("\n\n")[1:]}
    assert set(sections) == {
        "Risk groups (units net per group)",
        "Spreads formed",
        "Positions (units)",
    }
    groups = {r[0]: r for r in rows(sections["Risk groups (units net per group)"])[2:]}
    assert set(groups) == {"EUR", "BTC"}
    assert groups["EUR"][1] == "+10,000"
    assert groups["BTC"][1] == "-0.5"
    assert usd_cell(groups["BTC"][2]) > usd_cell(groups["EUR"][2]) > 0
    assert groups["EUR"][3] == "down 3/3"  # a long loses on the way down
    (spread,) = rows(sections["Spreads formed"])[2:]
    assert spread[:2] == ["EUR-BTC", "10"]
    assert usd_cell(spread[3]) > 0
    assert re.fullmatch(r"EUR [\d,.]+, BTC [\d,.]+", spread[4]), spread
    positions = {r[0]: r[1] for r in rows(sections["Positions (units)"])[2:]}
    assert positions == {"BTC/USD": "-0.5", "EUR/USD": "+10,000"}

    account = (await fixgw("margin", "CLIENT1", "--json", *auth)).json()
    assert account["client"] == "CLIENT1"
    assert {g["group"] for g in account["groups"]} == {"EUR", "BTC"}

    # a client without a margin account: one line, exit status 1
    line = one_line_error(await fixgw("margin", "NOBODY", *auth), "margin")
    assert line == f"fixgw margin: no margin account for NOBODY (HTTP 404 from {trading.url})"


@pytest.mark.asyncio
async def test_errors_are_one_line_and_exit_1(
    daemon_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXGW_ADMIN_TOKEN", raising=False)
    nobody = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(await fixgw("status", "--url", nobody, "--token", TOKEN), "status")
    assert line == (
        f"fixgw status: no daemon at {nobody}: connection refused "
        "(is `fixgw run` running with its HTTP server on that address?)"
    )

    d = daemon_factory().start()
    await wait_ready(d.http_port)
    url = f"http://127.0.0.1:{d.http_port}"
    line = one_line_error(await fixgw("orders", "--url", url, "--token", "wrong"), "orders")
    assert "refused the token (HTTP 401)" in line
    line = one_line_error(await fixgw("positions", "--url", url), "positions")
    assert "no token given (HTTP 401" in line
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for bad in ("x", "-1"):
            async with http.get(f"{url}/admin/orders?all=1&limit={bad}") as resp:
                assert resp.status == 400
                assert "limit" in (await resp.json())["error"]
        # a client that is not configured is not a client without orders
        async with http.get(f"{url}/admin/orders?client=NOPE") as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "error": "no client NOPE: no order session is configured for it"
            }
        async with http.get(f"{url}/admin/orders?client=CLIENT2&all=1") as resp:
            assert (resp.status, await resp.json()) == (200, [])
    for flags in ((), ("--all",), ("--json",)):
        result = await fixgw("orders", "--client", "NOPE", *flags, "--url", url, "--token", TOKEN)
        assert one_line_error(result, "orders") == (
            f"fixgw orders: no client NOPE: no order session is configured for it "
            f"(HTTP 404 from {url})"
        )

    config = tmp_path / "no-admin.toml"
    closed = daemon_factory("--config", str(config), data_dir=tmp_path / "closed")
    config.write_text(config_text(closed.http_port, ""))
    closed.start()
    await wait_ready(closed.http_port)
    closed_url = f"http://127.0.0.1:{closed.http_port}"
    line = one_line_error(await fixgw("sessions", "--url", closed_url, "--token", "x"), "sessions")
    assert line == (
        f"fixgw sessions: the daemon at {closed_url} refused admin access "
        "(HTTP 403): admin API disabled: no gateway.admin_token or gateway.read_token configured"
    )
