"""The FIX LP adapter against a scripted FIX acceptor in this process (the
project's own acceptor, with a test application playing the LP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lp_test_kit import INSTRUMENTS

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.server import FixServer
from lp_adapters.base import DISCONNECTED_REASON, adapter_class
from lp_adapters.fix import FixLp
from router.model import (
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    LpEvent,
    LpStatus,
    Quote,
    Side,
)


class ScriptedLp:
    """Answers MarketDataRequest with a snapshot and an update, and child
    orders as ``mode`` says: fill, partial (half, then the rest canceled),
    reject, or silent."""

    def __init__(self) -> None:
        self.mode = "fill"
        self.orders: list[FixMessage] = []
        self.cancels: list[FixMessage] = []
        self.exec_seq = 0

    def on_logon(self, session: Session, now: float) -> None:
        pass

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type == b"V":
            req = msg.get(262) or b""
            snapshot = [(55, b"EUR/USD"), (262, req), (268, b"2")]
            snapshot += [(269, b"0"), (270, b"1.1"), (271, b"2000000")]
            snapshot += [(269, b"1"), (270, b"1.10002"), (271, b"3000000")]
            session.send(b"W", codec.encode_fields(snapshot), now)
            update = [(262, req), (268, b"2")]
            update += [(279, b"2"), (269, b"0"), (55, b"EUR/USD"), (270, b"1.1")]
            update += [(279, b"0"), (269, b"0"), (55, b"EUR/USD"), (270, b"1.09999")]
            update += [(271, b"1000000")]
            session.send(b"X", codec.encode_fields(update), now)
        elif msg.msg_type == b"D":
            self.orders.append(msg)
            if self.mode == "silent":
                return
            if self.mode == "reject":
                self._report(session, msg, b"8", b"8", b"0", b"0", now, text=b"price moved")
                return
            qty = msg.get(38) or b"0"
            self._report(session, msg, b"0", b"0", b"0", qty, now)
            if self.mode == "partial":
                half = b"%d" % (int(qty) // 2)
                self._report(session, msg, b"F", b"1", half, half, now, px=msg.get(44))
                self._report(session, msg, b"4", b"4", half, b"0", now)
            else:
                self._report(session, msg, b"F", b"2", qty, b"0", now, px=msg.get(44))
        elif msg.msg_type == b"F":
            self.cancels.append(msg)

    def _report(
        self,
        session: Session,
        msg: FixMessage,
        exec_type: bytes,
        status: bytes,
        cum: bytes,
        leaves: bytes,
        now: float,
        px: bytes | None = None,
        text: bytes = b"",
    ) -> None:
        self.exec_seq += 1
        fields = [
            (6, px or b"0"),
            (11, msg.get(11) or b""),
            (14, cum),
            (17, b"E%d" % self.exec_seq),
        ]
        if px is not None:
            fields += [(31, px), (32, cum)]
        fields += [(37, b"LPO1"), (38, msg.get(38) or b""), (39, status), (54, msg.get(54) or b"")]
        fields += [(55, msg.get(55) or b"")]
        if text:
            fields.append((58, text))
        fields += [(150, exec_type), (151, leaves)]
        session.send(b"8", codec.encode_fields(fields), now)


class Acceptor:
    def __init__(self) -> None:
        self.lp = ScriptedLp()
        self.session = Session(
            SessionSettings(SenderCompID="LPT", TargetCompID="GW", HeartBtInt=30), MemoryStore()
        )
        self.server: FixServer | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self.server = FixServer(SessionRegistry([self.session]), {self.session.session_id: self.lp})
        self.port = await self.server.start("127.0.0.1", port)

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop(grace=0.5)


class Sink:
    def __init__(self) -> None:
        self.events: list[LpEvent] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: LpEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def until(self, kind: type, count: int = 1) -> list[Any]:
        async with asyncio.timeout(5):
            while len(found := [e for e in self.events if isinstance(e, kind)]) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return found


@pytest_asyncio.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Acceptor, FixLp, Sink]]:
    acceptor = Acceptor()
    await acceptor.start()
    sink = Sink()
    settings = {
        "port": acceptor.port,
        "sender_comp_id": "GW",
        "target_comp_id": "LPT",
        "data_dir": str(tmp_path / "lp-sessions"),
        "symbols": ["EUR/USD"],
        "reconnect_min_ms": 50,
        "reconnect_max_ms": 200,
    }
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    await adapter.connect()
    yield acceptor, adapter, sink
    await adapter.disconnect()
    await acceptor.stop()


def child(child_id: str, qty: int = 4, price: int = 110_002) -> ChildOrder:
    return ChildOrder(child_id, "P1", "LPT", "EUR/USD", Side.BUY, qty, price)


def test_the_fix_kind_is_registered() -> None:
    assert adapter_class("fix") is FixLp


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "port"),
        ({"port": 1, "sender_comp_id": "A", "target_comp_id": "B", "symbols": ["NOPE"]}, "NOPE"),
        ({"port": 1, "sender_comp_id": "A", "target_comp_id": "B", "colour": 1}, "colour"),
    ],
)
def test_bad_settings_are_refused_naming_the_lp(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        FixLp("LPX", INSTRUMENTS, lambda e: None, settings)
    assert "LPX" in str(info.value)


@pytest.mark.asyncio
async def test_logon_market_data_and_a_filled_child(linked: tuple[Acceptor, FixLp, Sink]) -> None:
    acceptor, adapter, sink = linked
    assert adapter.up
    assert (await sink.until(LpStatus))[0] == LpStatus("LPT", True, "logged on")
    quotes = await sink.until(Quote, 2)
    first, second = quotes[:2]
    assert [(lv.price, lv.qty) for lv in first.bids] == [(110_000, 2000)]
    assert [(lv.price, lv.qty) for lv in first.asks] == [(110_002, 3000)]
    assert [(lv.price, lv.qty) for lv in second.bids] == [(109_999, 1000)]
    adapter.send(child("C1"))
    (fill,) = await sink.until(ChildFill)
    (ack,) = await sink.until(ChildAck)
    assert ack == ChildAck("C1", "LPO1")
    assert (fill.child_id, fill.qty, fill.price, fill.leaves) == ("C1", 4, 110_002, 0)
    (nos,) = acceptor.lp.orders
    assert (nos.get(38), nos.get(40), nos.get(44), nos.get(59)) == (b"4000", b"2", b"1.10002", b"3")


@pytest.mark.asyncio
async def test_partial_fill_then_remainder_canceled_and_a_reject(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "partial"
    adapter.send(child("C2", qty=4))
    (canceled,) = await sink.until(ChildCanceled)
    (fill,) = await sink.until(ChildFill)
    assert (fill.qty, fill.leaves) == (2, 2)
    assert canceled.canceled_qty == 2
    acceptor.lp.mode = "reject"
    adapter.send(child("C3"))
    (reject,) = await sink.until(ChildReject)
    assert reject == ChildReject("C3", "price moved")


@pytest.mark.asyncio
async def test_a_drop_cancels_open_children_and_the_adapter_comes_back(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    adapter.send(child("C4"))
    await asyncio.sleep(0.1)
    adapter.cancel("C4")
    await asyncio.sleep(0.1)
    assert [m.get(41) for m in acceptor.lp.cancels] == [b"C4"]
    sent_before = adapter.session.store.next_sender_seq
    port = acceptor.port
    await acceptor.stop()
    (canceled,) = await sink.until(ChildCanceled)
    assert canceled == ChildCanceled("C4", 4, DISCONNECTED_REASON)
    assert not adapter.up
    # a child sent while down is rejected, after send() returned
    events_before = len(sink.events)
    adapter.send(child("C5"))
    assert len(sink.events) == events_before
    (reject,) = await sink.until(ChildReject)
    assert reject.child_id == "C5"
    # the LP comes back on the same port: the adapter logs on again and
    # carries on with its sequence numbers
    await acceptor.start(port)
    ups = await sink.until(LpStatus, 3)
    assert [s.up for s in ups] == [True, False, True]
    await sink.until(Quote, 4)  # subscribed again: the LP has seen everything sent
    assert adapter.session.store.next_sender_seq > sent_before
    assert acceptor.session.store.next_target_seq == adapter.session.store.next_sender_seq
