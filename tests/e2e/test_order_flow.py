"""Orders over FIX through ``fixgw run`` (default config: three simulated LPs)
and back."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from typing import Any

import pytest
from netkit import log_events

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient


def client(target: str = "CLIENT1") -> FixClient:
    return FixClient(SessionSettings(SenderCompID=target, TargetCompID="GATEWAY"))


def order(cl_ord_id: str, side: str = "1", qty: str = "1000", **extra: str) -> bytes:
    fields = {
        11: cl_ord_id,
        38: qty,
        40: extra.pop("ord_type", "1"),
        54: side,
        55: extra.pop("symbol", "EUR/USD"),
        59: extra.pop("tif", "3"),
        60: codec.format_utc_timestamp(0.0).decode(),
    }
    if "price" in extra:
        fields[44] = extra.pop("price")
    return codec.encode_fields(sorted((t, v.encode()) for t, v in fields.items()))


async def until_final(c: FixClient, cl_ord_id: bytes) -> list[FixMessage]:
    reports = []
    while True:
        msg = await c.receive(timeout=5)
        if msg.get(11) != cl_ord_id:
            continue
        reports.append(msg)
        if msg.msg_type == b"8" and msg.get(39) in (b"2", b"4", b"8", b"C"):
            return reports
        if msg.msg_type == b"8" and msg.get(39) == b"0" and msg.get(59) in (b"0", b"1"):
            return reports  # a resting limit order


@pytest.mark.asyncio
async def test_market_order_is_filled_by_the_simulated_lps(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"D", order("M1"))
    reports = await until_final(c, b"M1")
    assert reports[0].get(150) == b"0"
    final = reports[-1]
    assert final.get(39) == b"2", [r.get(58) for r in reports]
    assert final.get(14) == b"1000"
    assert final.get(151) == b"0"
    trades = [r for r in reports if r.get(150) == b"F"]
    assert sum(int(r.get(32) or b"0") for r in trades) == 1000
    await c.logout()


@pytest.mark.asyncio
async def test_bad_orders_are_rejected_with_a_clear_text(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client("CLIENT3")
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"D", order("U1", symbol="EURX/USD"))
    (reject,) = await until_final(c, b"U1")
    assert reject.get(150) == b"8"
    assert b"Unknown symbol" in (reject.get(58) or b"")
    c.send(b"D", order("Q1", qty="1500"))
    (reject,) = await until_final(c, b"Q1")
    assert reject.get(39) == b"8"
    c.send(b"D", order("S1", symbol="XAU/USD", qty="1"))
    (reject,) = await until_final(c, b"S1")
    assert reject.get(39) == b"8"
    assert b"XAU/USD" in (reject.get(58) or b"")
    await c.logout()


@pytest.mark.asyncio
async def test_limit_order_rests_and_is_canceled(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client("CLIENT2")
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"D", order("L1", ord_type="2", price="0.50000", tif="1"))
    (new,) = await until_final(c, b"L1")
    assert new.get(39) == b"0"
    cancel = codec.encode_fields(
        [
            (11, b"L1-C"),
            (41, b"L1"),
            (54, b"1"),
            (55, b"EUR/USD"),
            (60, codec.format_utc_timestamp(0.0)),
        ]
    )
    c.send(b"F", cancel)
    while True:
        msg = await c.receive(timeout=5)
        if msg.get(11) == b"L1-C":
            break
    assert msg.msg_type == b"8"
    assert msg.get(39) == b"4"
    assert msg.get(41) == b"L1"
    await c.logout()


REJECTING_LP = """
[gateway]
log_level = "info"
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
[[instruments]]
symbol = "EUR/USD"
asset_class = "fx"
tick_size = "0.00001"
lot_size = "1000"
min_qty = "1000"
max_qty = "10000000"
quote_currency = "USD"
[[lps]]
name = "LP_REJECTS"
adapter = "simulated"
soft_limit_usd = "20000000"
hard_limit_usd = "30000000"
[lps.settings]
seed = 1
spread_ticks = 1
reject_probability = 1.0
[[lps]]
name = "LP_FILLS"
adapter = "simulated"
soft_limit_usd = "20000000"
hard_limit_usd = "30000000"
[lps.settings]
seed = 2
spread_ticks = 8
"""


@pytest.mark.asyncio
async def test_an_lp_reject_reroutes_the_order_to_another_lp(
    daemon_factory: Any, tmp_path: Any
) -> None:
    path = tmp_path / "reject.toml"
    path.write_text(REJECTING_LP)
    d = daemon_factory("--config", str(path)).start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    for i in range(5):
        c.send(b"D", order(f"R{i}", side="12"[i % 2]))
        reports = await until_final(c, f"R{i}".encode())
        assert reports[-1].get(39) == b"2", [r.get(58) for r in reports]
    rejected = [e for e in log_events(d.log_text()) if e["event"] == "child_rejected"]
    assert rejected
    assert {e["lp"] for e in rejected} == {"LP_REJECTS"}
    await c.logout()


@pytest.mark.asyncio
async def test_order_status_of_known_and_unknown_orders(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"D", order("ST1", ord_type="2", price="0.50000", tif="1"))
    await until_final(c, b"ST1")
    for cl_ord_id in (b"ST1", b"NOPE"):
        c.send(b"H", codec.encode_fields([(11, cl_ord_id), (54, b"1"), (55, b"EUR/USD")]))
    known = await c.receive()
    unknown = await c.receive()
    assert (known.get(11), known.get(150), known.get(39)) == (b"ST1", b"I", b"0")
    assert (unknown.get(11), unknown.get(150), unknown.get(39)) == (b"NOPE", b"I", b"8")
    assert unknown.get(58) == b"Unknown order"
    await c.logout()


def md_request(
    md_req_id: bytes, request_type: bytes, *symbols: bytes, depth: bytes = b"5"
) -> bytes:
    fields = [(262, md_req_id), (263, request_type), (264, depth), (265, b"1")]
    fields += [(267, b"2"), (269, b"0"), (269, b"1"), (146, b"%d" % len(symbols))]
    fields += [(55, s) for s in symbols]
    return codec.encode_fields(fields)


@pytest.mark.asyncio
async def test_market_data_snapshot_incremental_and_rejects(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"V", md_request(b"MD1", b"1", b"EUR/USD"))
    snapshot = await c.receive()
    assert snapshot.msg_type == b"W"
    assert (snapshot.get(262), snapshot.get(55)) == (b"MD1", b"EUR/USD")
    entries = [(t, v) for t, v in snapshot.fields if t in (269, 270, 271)]
    bids = [v for t, v in entries if t == 269 and v == b"0"]
    offers = [v for t, v in entries if t == 269 and v == b"1"]
    assert len(bids) == 5
    assert len(offers) == 5
    update = await c.receive(timeout=5)  # the simulated LPs quote every 100 ms
    assert update.msg_type == b"X"
    assert update.get(262) == b"MD1"
    assert {v for t, v in update.fields if t == 279} <= {b"0", b"1", b"2"}

    c.send(b"V", md_request(b"MD2", b"1", b"NOPE/USD"))
    c.send(b"V", md_request(b"MD1", b"1", b"EUR/USD"))
    c.send(b"V", md_request(b"MD1", b"2", b"EUR/USD"))
    rejects = []
    while len(rejects) < 2:
        msg = await c.receive()
        if msg.msg_type == b"Y":
            rejects.append(msg)
    assert (rejects[0].get(262), rejects[0].get(281)) == (b"MD2", b"0")
    assert (rejects[1].get(262), rejects[1].get(281)) == (b"MD1", b"1")
    await c.logout()


@pytest.mark.asyncio
async def test_a_burst_from_one_client_and_an_order_from_another_are_all_answered_once(
    daemon_factory: Any,
) -> None:
    """2,000 orders in one write from CLIENT1, and CLIENT2's order right
    after: every order of both gets exactly one final report.  (That
    CLIENT2's order is not queued behind the burst is shown where the order
    of the gateway's writes to both clients can be read as one stream:
    tests/orderentry/test_turn_taking.py.)"""
    d = daemon_factory().start()
    burst, other = client("CLIENT1"), client("CLIENT2")
    await burst.connect("127.0.0.1", d.fix_port)
    await other.connect("127.0.0.1", d.fix_port)
    count = 2000
    for i in range(count):
        burst.send(b"D", order(f"B{i}", side="1" if i % 2 else "2"))
    other.send(b"D", order("ALONE"))  # written right after the burst
    assert (await until_final(other, b"ALONE"))[-1].get(39) == b"2"
    finished: set[bytes] = set()
    while len(finished) < count:
        msg = await burst.receive(timeout=10)
        if msg.msg_type == b"8" and msg.get(39) in (b"2", b"4", b"8"):
            cl_ord_id = msg.get(11) or b""
            assert cl_ord_id not in finished, f"{cl_ord_id!r} answered twice"
            finished.add(cl_ord_id)
    assert finished == {f"B{i}".encode() for i in range(count)}
    # nothing more for either client: the answer to a status request sent
    # now comes after anything still on its way
    for c in (burst, other):
        c.send(b"H", codec.encode_fields([(11, b"MARK"), (54, b"1"), (55, b"EUR/USD")]))
        while (msg := await c.receive(timeout=10)).get(11) != b"MARK":
            assert not (msg.msg_type == b"8" and msg.get(39) in (b"2", b"4", b"8")), msg
    await burst.logout()
    await other.logout()


@pytest.mark.asyncio
async def test_market_data_unsubscribe_stops_the_updates(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    c.send(b"V", md_request(b"MDU", b"1", b"EUR/USD"))
    assert (await c.receive()).msg_type == b"W"
    assert (await c.receive(timeout=5)).msg_type == b"X"
    c.send(b"V", md_request(b"MDU", b"2", b"EUR/USD"))
    # a status request after the unsubscribe: its answer marks the point after
    # which no update may come (the gateway handles a session's messages in order)
    c.send(b"H", codec.encode_fields([(11, b"MARK"), (54, b"1"), (55, b"EUR/USD")]))
    while (msg := await c.receive()).msg_type != b"8":
        assert msg.msg_type == b"X"
    assert msg.get(11) == b"MARK"
    # a second subscription to the same symbol shows the book moving on:
    # each move it is told about would have gone to MDU as well, in the same
    # turn, had MDU still been subscribed
    c.send(b"V", md_request(b"MDU2", b"1", b"EUR/USD"))
    seen: list[FixMessage] = []
    updates = 0
    while updates < 2:
        msg = await c.receive(timeout=10)
        seen.append(msg)
        updates += msg.msg_type == b"X" and msg.get(262) == b"MDU2"
    # and everything sent before the answer to this status request has arrived
    c.send(b"H", codec.encode_fields([(11, b"MARK2"), (54, b"1"), (55, b"EUR/USD")]))
    while (msg := await c.receive(timeout=10)).get(11) != b"MARK2":
        seen.append(msg)
    assert [m for m in seen if m.get(262) == b"MDU"] == [], "updates after the unsubscribe"
    # subscribing again under the same MDReqID works: the old one is gone
    c.send(b"V", md_request(b"MDU2", b"2", b"EUR/USD"))
    c.send(b"V", md_request(b"MDU", b"1", b"EUR/USD"))
    while (msg := await c.receive()).get(262) == b"MDU2":
        assert msg.msg_type == b"X"
    assert (msg.msg_type, msg.get(262)) == (b"W", b"MDU")
    await c.logout()


def messages_out(http_port: int, session: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    name = f'fixgw_session_messages_total{{direction="out",session="{session}"}}'
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None
    return float(match.group(1))


@pytest.mark.asyncio
async def test_a_resend_request_to_infinity_is_answered_in_full_in_parts(
    daemon_factory: Any,
) -> None:
    """More messages than one part of a resend (RESEND_CHUNK) are all sent
    again as the client reads them: the daemon's count of messages out
    grows by the whole history."""
    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    count = 1500  # 3,000 ExecutionReports: many parts of RESEND_CHUNK
    for i in range(count):
        c.send(b"D", order(f"RR{i}", side="1" if i % 2 else "2"))
    done = 0
    while done < count:
        msg = await c.receive(timeout=10)
        done += msg.msg_type == b"8" and msg.get(39) in (b"2", b"4", b"8")
    session = "FIX.4.4:GATEWAY->CLIENT1"
    before = await asyncio.to_thread(messages_out, d.http_port, session)
    history = c.session.store.next_target_seq - 1
    c.send(b"2", codec.encode_fields([(7, b"1"), (16, b"0")]))
    for _ in range(200):
        grown = await asyncio.to_thread(messages_out, d.http_port, session) - before
        if grown >= history:
            break
        await asyncio.sleep(0.05)  # polling, 10 s at most
    assert grown >= history
    assert c.logged_on
    await c.logout()


@pytest.mark.asyncio
async def test_market_data_subscriptions_per_session_are_capped(daemon_factory: Any) -> None:
    from gateway.orderflow.market_data import MAX_SUBSCRIPTIONS_PER_SESSION

    d = daemon_factory().start()
    c = client()
    await c.connect("127.0.0.1", d.fix_port)
    for i in range(MAX_SUBSCRIPTIONS_PER_SESSION + 1):
        c.send(b"V", md_request(b"CAP%d" % i, b"1", b"EUR/USD", depth=b"1"))
    reject = None
    while reject is None:
        msg = await c.receive(timeout=5)
        if msg.msg_type == b"Y":
            reject = msg
    assert reject.get(262) == b"CAP%d" % MAX_SUBSCRIPTIONS_PER_SESSION
    assert reject.get(281) == b"2"
    assert b"Too many subscriptions" in (reject.get(58) or b"")
    # an unsubscribe makes room again
    c.send(b"V", md_request(b"CAP0", b"2", b"EUR/USD", depth=b"1"))
    c.send(b"V", md_request(b"AGAIN", b"1", b"EUR/USD", depth=b"1"))
    while True:
        msg = await c.receive(timeout=5)
        if msg.get(262) == b"AGAIN":
            break
    assert msg.msg_type == b"W"
    await c.logout()
