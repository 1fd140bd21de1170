"""A hostile client against the daemon's default limits, over loopback: an
oversized ClOrdID, OrigClOrdID or MDReqID is refused with the answer FIX
asks for, echoed cut and logged cut; orders beyond max_open_orders are
refused; a client trading beside it is answered throughout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from netkit import log_events

from config import SessionSettings, default_config_path
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

HUGE_ID = b"H" * 30_000
CUT_ID = b"H" * 64  # the default max_id_length
MAX_OPEN = 3
FINAL = (b"2", b"4", b"8", b"C")
STAMP = (60, codec.format_utc_timestamp(0.0))


@pytest.fixture
def hostile_config(tmp_path: Path) -> Path:
    """The default config, with a small open-order limit for CLIENT1 only
    (a client table replaces the default, so it restates the rate)."""
    text = default_config_path().read_text()
    text += f"\n[risk.clients.CLIENT1]\nmax_open_orders = {MAX_OPEN}\n"
    text += "max_messages_per_second = 50000\n"
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    return path


def market(cl_ord_id: bytes, side: bytes = b"1") -> bytes:
    fields = [(11, cl_ord_id), (38, b"1000"), (40, b"1"), (54, side), (55, b"EUR/USD")]
    return codec.encode_fields([*fields, (59, b"3"), STAMP])


def resting(cl_ord_id: bytes) -> bytes:
    fields = [(11, cl_ord_id), (38, b"1000"), (40, b"2"), (44, b"0.50000"), (54, b"1")]
    return codec.encode_fields([*fields, (55, b"EUR/USD"), (59, b"1"), STAMP])


def cancel(cl_ord_id: bytes, orig_cl_ord_id: bytes) -> bytes:
    fields = [(11, cl_ord_id), (38, b"1000"), (41, orig_cl_ord_id), (54, b"1")]
    return codec.encode_fields([*fields, (55, b"EUR/USD"), STAMP])


async def answer_to(client: FixClient, cl_ord_id: bytes, *statuses: bytes) -> FixMessage:
    """The first message about ``cl_ord_id``: an ExecutionReport with one of
    ``statuses`` (any, when none is given) or an OrderCancelReject."""
    while True:
        msg = await client.receive(timeout=5)
        if msg.get(11) != cl_ord_id:
            continue
        if msg.msg_type == b"9" or not statuses or msg.get(39) in statuses:
            return msg


async def victim_trades(victim: FixClient, cl_ord_id: bytes) -> None:
    """One order of the victim, answered in full."""
    victim.send(b"D", market(cl_ord_id, b"2"))
    report = await answer_to(victim, cl_ord_id, *FINAL)
    assert report.get(39) == b"2", report


@pytest.mark.asyncio
async def test_a_hostile_client_is_refused_and_its_neighbour_is_served(
    daemon_factory: Any, hostile_config: Path
) -> None:
    d = daemon_factory("--config", str(hostile_config)).start()
    attacker = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    victim = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    await attacker.connect("127.0.0.1", d.fix_port)
    await victim.connect("127.0.0.1", d.fix_port)
    await victim_trades(victim, b"V1")

    # a 30,000-character ClOrdID: ExecutionReport Rejected, the id echoed cut
    attacker.send(b"D", market(HUGE_ID))
    reject = await answer_to(attacker, CUT_ID)
    assert reject.msg_type == b"8"
    assert (reject.get(39), reject.get(150), reject.get(103)) == (b"8", b"8", b"99")
    text = reject.get(58) or b""
    assert text == b"ClOrdID (11) too long: 30000 bytes, at most 64 (limit max_id_length)"
    await victim_trades(victim, b"V2")

    # resting orders up to max_open_orders are accepted, the next is refused
    for i in range(MAX_OPEN):
        attacker.send(b"D", resting(b"A%d" % i))
        assert (await answer_to(attacker, b"A%d" % i)).get(39) == b"0"
    attacker.send(b"D", resting(b"A-OVER"))
    over = await answer_to(attacker, b"A-OVER")
    assert (over.get(39), over.get(103)) == (b"8", b"3")
    assert b"max_open_orders" in (over.get(58) or b"")
    await victim_trades(victim, b"V3")

    # a cancel naming an oversized OrigClOrdID: OrderCancelReject, nothing canceled
    attacker.send(b"F", cancel(b"A0-X", HUGE_ID))
    cxl = await answer_to(attacker, b"A0-X")
    assert cxl.msg_type == b"9"
    assert (cxl.get(41), cxl.get(102), cxl.get(434), cxl.get(39)) == (CUT_ID, b"99", b"1", b"8")
    assert b"OrigClOrdID (41) too long" in (cxl.get(58) or b"")
    attacker.send(b"H", codec.encode_fields([(11, b"A0"), (54, b"1"), (55, b"EUR/USD")]))
    assert (await answer_to(attacker, b"A0")).get(39) == b"0"  # still open

    # an oversized MDReqID: MarketDataRequestReject, the id echoed cut
    request = [(146, b"1"), (55, b"EUR/USD"), (262, HUGE_ID), (263, b"1"), (264, b"1")]
    attacker.send(b"V", codec.encode_fields([*request, (267, b"1"), (269, b"0")]))
    while (md := await attacker.receive(timeout=5)).msg_type != b"Y":
        pass
    assert md.get(262) == CUT_ID
    assert b"MDReqID (262) too long" in (md.get(58) or b"")

    await victim_trades(victim, b"V4")
    await attacker.logout()
    await victim.logout()
    assert d.stop() == 0

    log = d.log_text()
    assert HUGE_ID[:65].decode() not in log  # never more than a cut of it
    rejected = [e for e in log_events(log) if e["event"] == "order_rejected"]
    assert any(e.get("cl_ord_id") == f"{'H' * 64}...[30000 chars]" for e in rejected)
    for path in d.data_dir.rglob("*"):
        if path.is_file():
            assert HUGE_ID[:65] not in path.read_bytes(), path
