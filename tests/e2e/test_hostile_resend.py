"""A client floods its own long session with ResendRequests through
``fixgw run``: it gets every message back, and a client trading beside it is
served all along."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.states import SessionState
from gateway.net.client import FixClient
from gateway.storage.session_store import FileStore

STORED = 30_000
"""ExecutionReports the gateway holds for the attacker's session."""

REQUESTS = 10

RECEIVE_TIMEOUT = 10.0
"""Seconds without a message after which the resend counts as stalled."""


def filled_report(n: int, transact_time: bytes) -> bytes:
    """The body of the ExecutionReport filling a market order ``O{n}``."""
    return (
        b"6=1.08512\x0111=O%d\x0114=1000\x0117=E%d\x0131=1.08512\x0132=1000\x0137=G%d\x01"
        b"38=1000\x0139=2\x0140=1\x0154=1\x0155=EUR/USD\x0159=3\x0160=%b\x01150=F\x01151=0\x01"
        % (n, n, n, transact_time)
    )


def store_reports(data_dir: Path) -> None:
    """Leave ``STORED`` ExecutionReports in the gateway's store of CLIENT1,
    sent while it was away (what the gateway does after fills)."""
    settings = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")
    now = time.time()
    stamp = codec.format_utc_timestamp(now)
    with FileStore(data_dir / "sessions", settings.session_id) as store:
        session = Session(settings, store)
        for n in range(STORED):
            session.send(b"8", filled_report(n, stamp), now)
        store.flush()


def market_order(cl_ord_id: str) -> bytes:
    """A NewOrderSingle body: buy 1,000 EUR/USD at market, IOC."""
    fields = [(11, cl_ord_id.encode()), (38, b"1000"), (40, b"1"), (54, b"1")]
    fields += [(55, b"EUR/USD"), (59, b"3"), (60, codec.format_utc_timestamp(time.time()))]
    return codec.encode_fields(fields)


async def trade_until(victim: FixClient, done: asyncio.Event) -> int:
    """Send market orders one after the other, each answered with its fill,
    until ``done``; returns how many were filled."""
    filled = 0
    while not done.is_set() or filled == 0:
        cl_ord_id = f"V{filled}".encode()
        victim.send(b"D", market_order(cl_ord_id.decode()))
        while True:
            msg = await victim.receive(timeout=RECEIVE_TIMEOUT)
            if msg.get(11) != cl_ord_id or msg.msg_type != b"8":
                continue
            assert msg.get(39) in (b"0", b"1", b"2"), msg.get(58)
            if msg.get(39) == b"2":
                break
        filled += 1
    return filled


async def wait_until_active(client: FixClient, timeout: float) -> None:
    """Poll until ``client``'s session has no gap left to fill."""
    deadline = time.monotonic() + timeout
    while client.session.state is not SessionState.ACTIVE:
        assert time.monotonic() < deadline, client.session.state
        await asyncio.sleep(0.01)  # polling, with the deadline above


@pytest.mark.asyncio
async def test_repeated_resend_requests_deliver_every_message(
    daemon_factory: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store_reports(data_dir)
    d = daemon_factory(data_dir=data_dir).start()

    victim = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    await victim.connect("127.0.0.1", d.fix_port)
    done = asyncio.Event()
    trading = asyncio.ensure_future(trade_until(victim, done))

    # a client that lost its state: it expects MsgSeqNum 1 and asks for
    # everything on its Logon, then ten times more, back to back
    attacker = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await attacker.connect("127.0.0.1", d.fix_port)
    for _ in range(REQUESTS):
        attacker.send(b"2", b"7=1\x0116=0\x01")

    received: list[FixMessage] = []
    try:
        while len(received) < STORED:
            received.append(await attacker.receive(timeout=RECEIVE_TIMEOUT))
    except TimeoutError:
        highest = int(received[-1].get(34) or b"0") if received else 0
        pytest.fail(f"resend stalled: {len(received)} of {STORED}, highest MsgSeqNum {highest}")
    finally:
        done.set()
        filled = await trading

    # in order, each once (duplicates were PossDup and dropped as such)
    assert [m.get(17) for m in received] == [b"E%d" % n for n in range(STORED)]
    assert [int(m.get(34) or b"0") for m in received] == list(range(1, STORED + 1))
    assert all(m.get(43) == b"Y" for m in received)
    # past the Logon (STORED + 1), filled in: nothing is missing any more
    await wait_until_active(attacker, RECEIVE_TIMEOUT)
    assert attacker.session.store.next_target_seq > STORED + 1
    assert filled > 0

    await attacker.logout()
    await victim.logout()
    assert "slow_consumer" not in d.log_text()
