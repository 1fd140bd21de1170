"""The drop copy over FIX, on the default config: a back office logged on as
BACKOFFICE receives a copy of every ExecutionReport sent to the clients and a
TradeCaptureReport for every LP fill, each valid FIX 4.4 as a strict client
reads it; one that was away gets everything on its next logon; what it
sends is refused; a drop copy covering one client sees that client only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from strict_fix44 import message_problems
from test_order_flow import client, order, until_final

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.net.client import FixClient

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "default.toml"


def back_office(target: str = "BACKOFFICE") -> FixClient:
    return FixClient(SessionSettings(SenderCompID=target, TargetCompID="GATEWAY"))


async def drain_until(c: FixClient, done: Any, timeout: float = 10) -> list[FixMessage]:
    """Every application message ``c`` receives until ``done(seen)`` holds."""
    seen: list[FixMessage] = []
    while not done(seen):
        msg = await c.receive(timeout=timeout)
        if msg.msg_type in (b"8", b"AE"):
            seen.append(msg)
    return seen


def execution_reports(messages: list[FixMessage]) -> list[FixMessage]:
    return [m for m in messages if m.msg_type == b"8"]


@pytest.mark.asyncio
async def test_copies_and_trade_captures_with_catch_up_after_an_outage(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    bo = back_office()
    await bo.connect("127.0.0.1", d.drop_copy_port)
    trader = client("CLIENT1")
    await trader.connect("127.0.0.1", d.fix_port)

    trader.send(b"D", order("DC1", side="1", qty="1000"))
    told = await until_final(trader, b"DC1")
    # the back office sees every report CLIENT1 was told, and the LP side
    got = await drain_until(
        bo,
        lambda seen: (
            len(execution_reports(seen)) == len(told) and any(m.msg_type == b"AE" for m in seen)
        ),
    )
    copies = execution_reports(got)
    for copy, original in zip(copies, told, strict=True):
        assert message_problems(copy.raw) == []
        assert (copy.get(797), copy.get(1)) == (b"Y", b"CLIENT1")
        for tag in (11, 17, 37, 39, 150, 14, 151, 31, 32):
            assert copy.get(tag) == original.get(tag), tag
        # a fill's copy names the LP that made it (LastMkt)
        expected_market = {b"LP_A", b"LP_B", b"LP_C"} if original.get(150) == b"F" else {None}
        assert copy.get(30) in expected_market
    captures = [m for m in got if m.msg_type == b"AE"]
    fills = [m for m in told if m.get(150) == b"F"]
    assert sum(int(m.get(32) or b"0") for m in captures) == sum(
        int(m.get(32) or b"0") for m in fills
    )
    for capture in captures:
        assert message_problems(capture.raw) == []
        assert capture.get(1) == b"CLIENT1"  # booked to the client
        assert capture.get(448) in (b"LP_A", b"LP_B", b"LP_C")  # the LP, contra firm
        assert capture.get(55) == b"EUR/USD"
        assert (capture.get(570), capture.get(797)) == (b"N", b"Y")
    # each capture names the client's report of the same lots (SecondaryExecID)
    by_exec_id = {m.get(17): m for m in fills}
    assert sorted(m.get(527) for m in captures) == sorted(by_exec_id)
    for capture in captures:
        report = by_exec_id[capture.get(527)]
        assert (capture.get(31), capture.get(32)) == (report.get(31), report.get(32))
        assert capture.get(37, b"").startswith(report.get(37) + b".")  # child of the order

    # what it sends is not taken
    bo.send(b"D", order("NOPE", side="1", qty="1000"))
    while (refused := await bo.receive()).msg_type != b"j":
        pass
    assert refused.get(380) == b"3"  # unsupported message type

    # the back office goes away; trading goes on
    await bo.logout()
    told_away: list[FixMessage] = []
    for i in range(5):
        trader.send(b"D", order(f"AWAY{i}", side="2" if i % 2 else "1", qty="1000"))
        told_away += await until_final(trader, f"AWAY{i}".encode())

    # back again: it asks for what it missed and gets all of it, in order
    again = back_office()
    again.session.store.set_next_target_seq(bo.session.store.next_target_seq)
    again.session.store.set_next_sender_seq(bo.session.store.next_sender_seq)
    await again.connect("127.0.0.1", d.drop_copy_port)
    caught = await drain_until(again, lambda seen: len(execution_reports(seen)) == len(told_away))
    assert [(m.get(11), m.get(17)) for m in execution_reports(caught)] == [
        (m.get(11), m.get(17)) for m in told_away
    ]
    await again.logout()
    await trader.logout()


@pytest.mark.asyncio
async def test_a_drop_copy_for_one_client_sees_that_client_only(
    tmp_path: Path, daemon_factory: Any
) -> None:
    text = DEFAULT.read_text().replace(
        'TargetCompID = "BACKOFFICE"\nResetOnLogon = false\nApplication = "dropcopy"\n',
        'TargetCompID = "BACKOFFICE"\nResetOnLogon = false\nApplication = "dropcopy"\n'
        'DropCopyFor = ["CLIENT2"]\n',
    )
    assert 'DropCopyFor = ["CLIENT2"]' in text
    path = tmp_path / "one-client.toml"
    path.write_text(text.replace('data_dir = "../var/data"', 'data_dir = "data"'))
    d = daemon_factory("--config", str(path)).start()
    bo = back_office()
    await bo.connect("127.0.0.1", d.drop_copy_port)
    one, two = client("CLIENT1"), client("CLIENT2")
    await one.connect("127.0.0.1", d.fix_port)
    await two.connect("127.0.0.1", d.fix_port)
    one.send(b"D", order("MINE1", side="1", qty="1000"))
    await until_final(one, b"MINE1")
    two.send(b"D", order("MINE2", side="2", qty="1000"))
    told = await until_final(two, b"MINE2")
    got = await drain_until(bo, lambda seen: len(execution_reports(seen)) >= len(told))
    # a status request of CLIENT2 marks the end: nothing of CLIENT1 came before it
    two.send(b"H", codec.encode_fields([(11, b"MINE2"), (54, b"2"), (55, b"EUR/USD")]))
    got += await drain_until(
        bo, lambda seen: any(m.get(150) == b"I" for m in execution_reports(seen))
    )
    assert {m.get(1) for m in execution_reports(got)} == {b"CLIENT2"}
    # the LP side too: CLIENT2's fills only
    assert {m.get(1) for m in got if m.msg_type == b"AE"} == {b"CLIENT2"}
    await bo.logout()
    await one.logout()
    await two.logout()
