"""Portfolio margin in a running daemon: CME's corn and soybean example
through the config and the admin API, an order refused for margin over FIX
beside a reducing one accepted, internal crosses moving both clients, and
accounts coming back whole after kill -9."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netkit import day_end_away_from_now, log_events
from strict_fix44 import message_problems
from test_order_flow import client, order, until_final

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

TOKEN = "margin-test-token"

CONFIG = """
[gateway]
admin_token = "{token}"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
Application = "orders"

[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT2"
Application = "orders"

[[instruments]]
symbol = "ZC"
asset_class = "commodity"
tick_size = "0.25"
lot_size = "1"
min_qty = "1"
max_qty = "100"
quote_currency = "USD"

[[instruments]]
symbol = "ZS"
asset_class = "commodity"
tick_size = "0.25"
lot_size = "1"
min_qty = "1"
max_qty = "100"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "100000000"
hard_limit_usd = "200000000"

[lps.settings]
seed = 7
spread_ticks = 2
depth_levels = 5
level_qty_lots = 50
level_step_ticks = 1
quote_interval_ms = 100
walk_ticks = 0

[lps.settings.start_mid]
ZC = "450.00"
ZS = "1200.00"

[margin]
version = "cme-example-1"

[[margin.groups]]
name = "corn"
symbols = ["ZC"]
scan_usd = "1750"

[[margin.groups]]
name = "soy"
symbols = ["ZS"]
scan_usd = "2500"

[[margin.spreads]]
name = "corn-soy"
priority = 1
rate = "0.55"
legs = [{{ group = "corn", ratio = "2", side = "A" }}, {{ group = "soy", ratio = "1", side = "B" }}]

[accounts.CLIENT1]
collateral_usd = "3000"
"""


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "margin.toml"
    # its resting DAY orders never meet a day end of the hour the test runs at
    day_end = f'\n[orders]\ntrading_day_end = "{day_end_away_from_now()}"\n'
    path.write_text(CONFIG.format(token=TOKEN) + day_end)
    return path


async def admin(port: int, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def trade(c: FixClient, cl_ord_id: str, side: str, qty: str, symbol: str) -> bytes:
    """Send a market order, return its final ExecutionReport's OrdStatus."""
    c.send(b"D", order(cl_ord_id, side=side, qty=qty, symbol=symbol))
    *_, final = await until_final(c, cl_ord_id.encode())
    return final.get(39) or b""


@pytest.mark.asyncio
async def test_the_cme_example_an_order_refused_for_margin_and_a_reducing_one_accepted(
    tmp_path: Path, daemon_factory: Any
) -> None:
    d = daemon_factory("--config", str(write_config(tmp_path))).start()
    c = client("CLIENT1")
    await c.connect("127.0.0.1", d.fix_port)
    # short soybeans first (2,500 USD), then long corn: the spread brings
    # the whole to 2,700, which 3,000 USD of collateral covers (2 corn
    # alone, 3,500 USD, would be refused)
    assert await trade(c, "SELL-SOY", "2", "1", "ZS") == b"2"
    assert await trade(c, "BUY-CORN", "1", "2", "ZC") == b"2"

    status, account = await admin(d.http_port, "/admin/margin/CLIENT1")
    assert status == 200
    assert account["param_version"] == "cme-example-1"
    assert account["scan_risk_usd"] == "6000.00"
    assert account["credit_usd"] == "3300.00"
    assert account["margin_usd"] == "2700.00"
    assert account["siloed_margin_usd"] == "2700.00"  # one asset class
    assert account["collateral_usd"] == "3000.00"
    (spread,) = account["spreads"]
    assert (spread["spread"], spread["count"], spread["credit_usd"]) == ("corn-soy", "1", "3300.00")
    assert spread["legs"] == {"corn": "2", "soy": "1"}
    assert {g["group"]: g["scan_risk_usd"] for g in account["groups"]} == {
        "corn": "3500.00",
        "soy": "2500.00",
    }

    # one more corn: 3 corn and 1 soy form one spread, 4,450 USD > the equity
    c.send(b"D", order("MORE-CORN", side="1", qty="1", symbol="ZC"))
    *_, refused = await until_final(c, b"MORE-CORN")
    assert refused.get(39) == b"8"
    assert refused.get(103) == b"3"  # order exceeds limit
    text = (refused.get(58) or b"").decode()
    assert text.startswith("insufficient margin: 4450.00 USD initial margin required, ")
    assert "USD free (limit margin)" in text

    # selling corn lowers the margin: accepted at the same state
    assert await trade(c, "LESS-CORN", "2", "1", "ZC") == b"2"
    _, after = await admin(d.http_port, "/admin/margin/CLIENT1")
    # 1 corn, -1 soy: half a spread, 0.55 x (1,750 + 1,250) credited
    assert after["margin_usd"] == f"{1750 + 2500 - 0.55 * 3000:.2f}"
    assert after["positions"]["ZC"]["qty"] == "1"

    # the list names every margined client; one without an account is not found
    _, listing = await admin(d.http_port, "/admin/margin")
    assert [a["client"] for a in listing["accounts"]] == ["CLIENT1"]
    assert listing["param_version"] == "cme-example-1"
    status, _ = await admin(d.http_port, "/admin/margin/CLIENT2")
    assert status == 404
    await c.logout()


@pytest.mark.asyncio
async def test_an_internal_cross_moves_both_clients(tmp_path: Path, daemon_factory: Any) -> None:
    d = daemon_factory("--config", str(write_config(tmp_path))).start()
    seller, buyer = client("CLIENT2"), client("CLIENT1")
    await seller.connect("127.0.0.1", d.fix_port)
    await buyer.connect("127.0.0.1", d.fix_port)
    # a sell at the mid (above the LP's bid) rests; a buy at its price, below
    # the LP's ask,
    # crosses it inside the gateway
    seller.send(
        b"D", order("REST", side="2", qty="1", symbol="ZC", ord_type="2", price="450", tif="0")
    )
    while (await seller.receive()).get(39) != b"0":
        pass
    buyer.send(
        b"D", order("CROSS", side="1", qty="1", symbol="ZC", ord_type="2", price="450", tif="3")
    )
    *_, filled = await until_final(buyer, b"CROSS")
    assert filled.get(39) == b"2"
    assert filled.get(31) == b"450"
    _, exposures = await admin(d.http_port, "/admin/exposures")
    assert exposures["clients"] == {"CLIENT1": {"ZC": "1"}, "CLIENT2": {"ZC": "-1"}}
    assert exposures["lps"] == {}
    _, account = await admin(d.http_port, "/admin/margin/CLIENT1")
    assert account["positions"] == {"ZC": {"qty": "1", "avg_px": "450"}}
    await seller.logout()
    await buyer.logout()


@pytest.mark.asyncio
async def test_accounts_come_back_whole_after_kill_9(tmp_path: Path, daemon_factory: Any) -> None:
    config = str(write_config(tmp_path))
    data = tmp_path / "data"
    d = daemon_factory("--config", config, data_dir=data).start()
    c = client("CLIENT1")
    await c.connect("127.0.0.1", d.fix_port)
    assert await trade(c, "S1", "2", "1", "ZS") == b"2"
    assert await trade(c, "B1", "1", "2", "ZC") == b"2"
    assert await trade(c, "S2", "2", "1", "ZC") == b"2"  # realizes P&L on one corn
    _, before = await admin(d.http_port, "/admin/margin/CLIENT1")
    d.kill9()

    again = daemon_factory("--config", config, data_dir=data).start()
    _, after = await admin(again.http_port, "/admin/margin/CLIENT1")
    for key in ("positions", "realized_pnl_usd", "collateral_usd", "margin_usd", "groups"):
        assert after[key] == before[key], key
    assert after["positions"]["ZC"]["qty"] == "1"
    assert after["positions"]["ZS"]["qty"] == "-1"


async def reload_with(port: int, path: Path, text: str) -> dict[str, Any]:
    """Write ``text`` as the config and ask for a reload over HTTP."""
    path.write_text(text)  # noqa: ASYNC240 - a small file, before the request
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/admin/reload", headers=headers) as resp,
    ):
        outcome: dict[str, Any] = await resp.json()
        assert resp.status == 200, outcome
        return outcome


async def logged(d: Any, event: str, **fields: Any) -> dict[str, Any]:
    """The first ``event`` the daemon logged with ``fields``, waited for."""
    deadline = time.monotonic() + 15
    while True:
        for e in log_events(d.log_path):
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                return e
        assert time.monotonic() < deadline, f"no {event} logged"
        await asyncio.sleep(0.05)  # polling, with the deadline above


@pytest.mark.asyncio
async def test_a_margin_call_then_a_stop_out_closing_the_largest_loss(
    tmp_path: Path, daemon_factory: Any
) -> None:
    path = write_config(tmp_path)
    text = path.read_text()
    rich = text.replace('collateral_usd = "3000"', 'collateral_usd = "100000"')
    path.write_text(rich)
    d = daemon_factory("--config", str(path)).start()
    c = client("CLIENT1")
    await c.connect("127.0.0.1", d.fix_port)
    # long 4 corn (bought at the ask, 4 x 0.25 USD under the mid) and short 1
    # soybean (0.25 under): 7,000 + 2,500 - 3,300 = 6,200 USD of margin
    assert await trade(c, "C4", "1", "4", "ZC") == b"2"
    assert await trade(c, "S1", "2", "1", "ZS") == b"2"
    c.send(b"D", order("REST", side="1", qty="1", symbol="ZC", ord_type="2", price="400", tif="0"))
    *_, resting = await until_final(c, b"REST")
    assert resting.get(39) == b"0"
    _, account = await admin(d.http_port, "/admin/margin/CLIENT1")
    assert account["margin_usd"] == "6200.00"

    # 6,000 of collateral: level 0.97, below the call (1.0), above the stop-out (0.5)
    await reload_with(
        d.http_port, path, text.replace('collateral_usd = "3000"', 'collateral_usd = "6000"')
    )
    call = await logged(d, "margin_call", client="CLIENT1")
    assert 0.5 < call["margin_level"] < 1.0
    assert call["margin_usd"] == 6200.0

    # 2,000: level 0.32, below the stop-out
    await reload_with(
        d.http_port, path, text.replace('collateral_usd = "3000"', 'collateral_usd = "2000"')
    )
    await logged(d, "stop_out_started", client="CLIENT1")
    seen: dict[bytes, list[Any]] = {}
    closing = None
    while closing is None or closing[-1].get(39) not in (b"2", b"4"):
        msg = await c.receive(timeout=10)
        if msg.msg_type != b"8":
            continue
        seen.setdefault(msg.get(11) or b"", []).append(msg)
        if (msg.get(11) or b"").startswith(b"SO-") and msg.get(55) == b"ZC" and msg.get(54) == b"2":
            closing = seen[msg.get(11) or b""]
    # the resting order was canceled first, unsolicited (under its own
    # ClOrdID: the house takes none of the client's), saying why
    (canceled,) = seen[b"REST"]
    assert (canceled.get(150), canceled.get(39), canceled.get(41)) == (b"4", b"4", None)
    assert canceled.get(58) == b"stop out"
    # then the corn (the larger loss) was sold, all 4, in a report saying why
    assert closing[-1].get(39) == b"2"
    assert closing[-1].get(14) == b"4"
    assert {m.get(58) for m in closing} == {b"stop out"}
    done = await logged(d, "stop_out_done", client="CLIENT1")
    assert done["closing_orders"] == 1  # soybeans alone (2,500 USD) leave level 0.8
    _, after = await admin(d.http_port, "/admin/margin/CLIENT1")
    assert list(after["positions"]) == ["ZS"]
    assert after["margin_usd"] == "2500.00"
    # the stop-out is over: the client trades again
    assert await trade(c, "AFTER", "1", "1", "ZS") == b"2"
    await c.logout()


@pytest.mark.asyncio
async def test_a_replace_that_adds_beyond_the_margin_is_refused_and_the_order_kept(
    tmp_path: Path, daemon_factory: Any
) -> None:
    d = daemon_factory("--config", str(write_config(tmp_path))).start()
    c = client("CLIENT1")
    await c.connect("127.0.0.1", d.fix_port)
    # a resting buy of 1 corn holds 1,750 of the 3,000
    c.send(b"D", order("REST", side="1", qty="1", symbol="ZC", ord_type="2", price="400", tif="0"))
    *_, resting = await until_final(c, b"REST")
    assert resting.get(39) == b"0"
    # to 2 corn: 3,500 > 3,000
    c.send(
        b"G",
        codec.encode_fields(
            [
                (11, b"MORE"),
                (38, b"2"),
                (40, b"2"),
                (41, b"REST"),
                (44, b"400"),
                (54, b"1"),
                (55, b"ZC"),
                (60, codec.format_utc_timestamp(0.0)),
            ]
        ),
    )
    while (refused := await c.receive()).msg_type != b"9":
        pass
    assert refused.get(434) == b"2"  # a replace
    assert refused.get(41) == b"REST"
    assert (refused.get(37), refused.get(39)) == (resting.get(37), b"0")  # as it stands
    assert (refused.get(58) or b"").startswith(b"insufficient margin: 3500.00 USD initial")
    # the order is as it was
    c.send(b"H", codec.encode_fields([(11, b"REST"), (54, b"1"), (55, b"ZC")]))
    while (status := await c.receive()).msg_type != b"8":
        pass
    assert (status.get(39), status.get(38), status.get(11)) == (b"0", b"1", b"REST")
    await c.logout()


async def next_of(c: FixClient, msg_type: bytes) -> Any:
    while (msg := await c.receive(timeout=10)).msg_type != msg_type:
        pass
    return msg


async def position_request(c: FixClient, pos_req_id: bytes) -> FixMessage:
    """A RequestForPositions (AN) for today's ClearingBusinessDate (715), and
    its ack (AO).  Today is the gateway's UTC date as it reads the request:
    should midnight pass between the date read here and its, the request is
    refused as one for another day, and asked again for the new day."""
    while True:
        today = time.strftime("%Y%m%d", time.gmtime())
        c.send(
            b"AN",
            codec.encode_fields(
                [
                    (1, b"CLIENT1"),
                    (60, codec.format_utc_timestamp(time.time())),
                    (453, b"1"),
                    (448, b"CLIENT1"),
                    (447, b"D"),
                    (452, b"3"),
                    (581, b"1"),
                    (710, pos_req_id),
                    (715, today.encode()),
                    (724, b"0"),
                ]
            ),
        )
        ack = await next_of(c, b"AO")
        if ack.get(728) == b"0" or time.strftime("%Y%m%d", time.gmtime()) == today:
            return ack


@pytest.mark.asyncio
async def test_collateral_and_positions_over_fix_as_a_strict_client_reads_them(
    tmp_path: Path, daemon_factory: Any
) -> None:
    """BB -> BA, AN -> AO + AP, each whole message valid FIX 4.4 by a
    validator of its own; and, subscribed, a BA unasked at a margin call."""
    path = write_config(tmp_path)
    text = path.read_text()
    d = daemon_factory("--config", str(path)).start()
    c = client("CLIENT1")
    await c.connect("127.0.0.1", d.fix_port)
    assert await trade(c, "SELL-SOY", "2", "1", "ZS") == b"2"
    assert await trade(c, "BUY-CORN", "1", "2", "ZC") == b"2"

    c.send(b"BB", codec.encode_fields([(263, b"1"), (909, b"INQ1")]))
    report = await next_of(c, b"BA")
    assert message_problems(report.raw) == []
    assert report.get(909) == b"INQ1"
    assert report.get(1) == b"CLIENT1"
    assert report.get(901) == b"3000.00"  # collateral
    said = (report.get(58) or b"").decode()
    assert "margin 2700.00 USD" in said
    assert "siloed 2700.00 USD" in said
    assert "params cme-example-1" in said

    ack = await position_request(c, b"POS1")
    assert message_problems(ack.raw) == []
    assert (ack.get(710), ack.get(727), ack.get(728)) == (b"POS1", b"2", b"0")
    positions = {}
    for _ in range(2):
        pos = await next_of(c, b"AP")
        assert message_problems(pos.raw) == []
        assert pos.get(710) == b"POS1"
        positions[pos.get(55)] = (pos.get(704), pos.get(705))
    assert positions == {b"ZC": (b"2", b"0"), b"ZS": (b"0", b"1")}

    # 2,600 of collateral under 2,700 of margin: a call, and the subscription's BA
    await reload_with(
        d.http_port, path, text.replace('collateral_usd = "3000"', 'collateral_usd = "2600"')
    )
    await logged(d, "margin_call", client="CLIENT1")
    called = await next_of(c, b"BA")
    assert message_problems(called.raw) == []
    assert called.get(909) == b"INQ1"
    assert called.get(901) == b"2600.00"
    assert float(called.get(899) or b"0") < 0  # no free margin left
    await c.logout()
