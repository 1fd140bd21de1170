"""The FIX LP adapter against a scripted FIX acceptor in this process (the
project's own acceptor, with a test application playing the LP)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from lp_test_kit import INSTRUMENTS
from structlog.testing import capture_logs

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.server import FixServer
from lp_adapters.base import DISCONNECTED_REASON
from lp_adapters.fix import FixLp, FixLpSettings
from lp_adapters.fix.adapter import _Open
from lp_adapters.registry import adapter_class, create_adapter
from router.model import (
    ChildAck,
    ChildBust,
    ChildCanceled,
    ChildCorrection,
    ChildFill,
    ChildOrder,
    ChildReject,
    EndedChild,
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
            if self.mode == "session_reject":
                # a session-level Reject (3) of the order, by its MsgSeqNum
                fields = [(45, msg.get(34) or b""), (58, b"Value is incorrect")]
                fields += [(371, b"44"), (372, b"D"), (373, b"5")]
                session.send(b"3", codec.encode_fields(fields), now)
                return
            if self.mode == "business_reject":
                fields = [(45, msg.get(34) or b""), (58, b"Unsupported symbol class")]
                fields += [(372, b"D"), (379, msg.get(11) or b""), (380, b"4")]
                session.send(b"j", codec.encode_fields(fields), now)
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


async def eventually(condition: Callable[[], object], what: str, deadline: float = 10.0) -> None:
    """Waits until ``condition()`` holds, failing with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline:g} s: {what}")
        await asyncio.sleep(0.01)  # polling, with the deadline above


def lp_settings(port: int, tmp_path: Path, **extra: Any) -> FixLpSettings:
    """The adapter's settings for the scripted LP on ``port``."""
    raw = {
        "port": port,
        "sender_comp_id": "GW",
        "target_comp_id": "LPT",
        "data_dir": str(tmp_path / "lp-sessions"),
        "symbols": ["EUR/USD"],
        **extra,
    }
    return msgspec.convert(raw, FixLpSettings)


@pytest_asyncio.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[Acceptor, FixLp, Sink]]:
    acceptor = Acceptor()
    await acceptor.start()
    sink = Sink()
    settings = lp_settings(acceptor.port, tmp_path, reconnect_min_ms=50, reconnect_max_ms=200)
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    await adapter.connect()
    yield acceptor, adapter, sink
    await adapter.disconnect()
    await acceptor.stop()


def child(child_id: str, qty: int = 4, price: int = 110_002) -> ChildOrder:
    return ChildOrder(child_id, "P1", "LPT", "EUR/USD", Side.BUY, qty, price)


def test_the_fix_kind_is_registered() -> None:
    assert adapter_class("fix") is FixLp


REQUIRED = {"port": 1, "sender_comp_id": "A", "target_comp_id": "B"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {},
            "port: required field missing; sender_comp_id: required field missing; "
            "target_comp_id: required field missing",
        ),
        ({**REQUIRED, "symbols": ["EUR/USD", "NOPE"]}, "symbols[1]: no such instrument NOPE"),
        ({**REQUIRED, "colour": 1}, "colour: unknown field"),
        ({**REQUIRED, "port": 0}, "port: must be >= 1"),
        (
            {**REQUIRED, "reconnect_min_ms": 500, "reconnect_max_ms": 100},
            "reconnect_max_ms: must be >= reconnect_min_ms (500)",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_lp(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^LP 'LPX': invalid settings: ") as info:
        create_adapter("fix", "LPX", INSTRUMENTS, lambda e: None, settings)
    assert str(info.value).removeprefix("LP 'LPX': invalid settings: ") == message


def test_the_registry_builds_it_with_typed_settings(tmp_path: Path) -> None:
    adapter = create_adapter("fix", "LPX", INSTRUMENTS, lambda e: None, REQUIRED, tmp_path)
    assert isinstance(adapter, FixLp)
    assert adapter.cfg == FixLpSettings(port=1, sender_comp_id="A", target_comp_id="B")
    assert adapter.symbols == tuple(INSTRUMENTS)
    assert adapter.data_dir == tmp_path
    assert not adapter.up


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


class OneReportIocLp(ScriptedLp):
    """Fills half of each order and ends it in the same report (OrdStatus
    canceled, LeavesQty 0), as some LPs answer an IOC; no cancel follows."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type != b"D":
            super().on_message(session, msg, now)
            return
        self.orders.append(msg)
        qty = msg.get(38) or b"0"
        half = b"%d" % (int(qty) // 2)
        self._report(session, msg, b"F", b"4", half, b"0", now, px=msg.get(44))


@pytest.mark.asyncio
async def test_a_fill_that_ends_the_order_cancels_the_rest_at_once(tmp_path: Path) -> None:
    async with scripted(tmp_path, OneReportIocLp()) as (_, adapter, sink):
        adapter.send(child("C20", qty=4))
        (canceled,) = await sink.until(ChildCanceled)
        fills = [e for e in sink.events if isinstance(e, ChildFill)]
        assert [(f.qty, f.leaves) for f in fills] == [(2, 2)]
        assert (canceled.child_id, canceled.canceled_qty) == ("C20", 2)
        assert sink.events.index(fills[0]) < sink.events.index(canceled)


@pytest.mark.asyncio
async def test_a_drop_cancels_open_children_and_the_adapter_comes_back(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    adapter.send(child("C4"))
    await eventually(lambda: acceptor.lp.orders, "the LP has the child C4")
    adapter.cancel("C4")
    await eventually(lambda: acceptor.lp.cancels, "the LP has the cancel of C4")
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


class StatusLp(ScriptedLp):
    """Answers OrderStatusRequest from ``statuses`` (ClOrdID -> OrdStatus;
    absent: unknown order) and cancel requests with a cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[bytes, bytes] = {}
        self.status_requests: list[FixMessage] = []

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type == b"H":
            self.status_requests.append(msg)
            status = self.statuses.get(msg.get(11) or b"")
            if status is None:
                self._answer(session, msg.get(11), b"I", b"8", now, text=b"Unknown order")
            else:
                self._answer(session, msg.get(11), b"I", status, now, cum=b"1000")
        elif msg.msg_type == b"F":
            self.cancels.append(msg)
            self._answer(session, msg.get(41), b"4", b"4", now, cum=b"1000")
        else:
            super().on_message(session, msg, now)

    def _answer(
        self,
        session: Session,
        cl_ord_id: bytes | None,
        exec_type: bytes,
        status: bytes,
        now: float,
        cum: bytes = b"0",
        text: bytes = b"",
    ) -> None:
        fields = [(6, b"0"), (11, cl_ord_id or b""), (14, cum), (17, b"S%d" % len(self.cancels))]
        fields += [(37, b"LPO1"), (38, b"4000"), (39, status), (54, b"1"), (55, b"EUR/USD")]
        if text:
            fields.append((58, text))
        fields += [(150, exec_type), (151, b"0")]
        session.send(b"8", codec.encode_fields(fields), now)


@pytest.mark.asyncio
async def test_children_from_before_a_restart_are_asked_about_and_resolved(
    tmp_path: Path,
) -> None:
    acceptor = Acceptor()
    lp = StatusLp()
    acceptor.lp = lp
    lp.statuses[b"OLD-WORKING"] = b"1"  # partially filled, still working at the LP
    await acceptor.start()
    sink = Sink()
    settings = lp_settings(acceptor.port, tmp_path)
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    # 1 of 4 lots filled before the restart; the other child unknown to the LP
    adapter.recover([(child("OLD-WORKING", qty=4), 3, ("E0",)), (child("OLD-GONE", qty=4), 4, ())])
    await adapter.connect()
    try:
        ends = await sink.until(ChildCanceled, 2)
        by_id = {e.child_id: e for e in ends}
        assert by_id["OLD-GONE"] == ChildCanceled(
            "OLD-GONE", 4, "not known to the LP after a gateway restart"
        )
        # the one still working was canceled at the LP, for its 3 open lots
        assert [m.get(41) for m in lp.cancels] == [b"OLD-WORKING"]
        assert by_id["OLD-WORKING"].canceled_qty == 3
        assert sorted(m.get(11) for m in lp.status_requests) == [b"OLD-GONE", b"OLD-WORKING"]
    finally:
        await adapter.disconnect()
        await acceptor.stop()


@pytest.mark.asyncio
async def test_an_lp_that_stops_reading_is_dropped_once_its_queue_passes_the_bound(
    tmp_path: Path,
) -> None:
    # an LP that completes the Logon and then never reads another byte
    lp_session = Session(
        SessionSettings(SenderCompID="LPT", TargetCompID="GW", HeartBtInt=30), MemoryStore()
    )
    stalled = asyncio.Event()
    finished = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        transport = writer.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lp_session.connection_made(time.time())
        while not lp_session.is_logged_on:
            data = await reader.read(4096)
            if not data:
                return
            lp_session.receive_data(data)
            while lp_session.next_event(time.time()) is not None or lp_session.yielded:
                pass
            writer.write(lp_session.data_to_send())
        transport.pause_reading()
        stalled.set()
        await finished.wait()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = Sink()
    settings = lp_settings(
        port,
        tmp_path,
        max_outbound_buffer=256 * 1024,
        reconnect_min_ms=5000,
        reconnect_max_ms=5000,
    )
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    await adapter.connect()
    try:
        assert adapter.up
        await asyncio.wait_for(stalled.wait(), 5)
        sent = 0
        while adapter.up and sent < 200_000:
            for _ in range(500):
                adapter.send(child(f"B{sent}"))
                sent += 1
            await asyncio.sleep(0)  # pacing: one loop turn, in which the adapter writes
        assert not adapter.up, "the link was dropped"
        statuses = await sink.until(LpStatus, 2)
        assert [s.up for s in statuses] == [True, False]
        # every child sent is answered: the ones that made it to the wire
        # are canceled with the link
        canceled = await sink.until(ChildCanceled, 1)
        assert all(c.reason == DISCONNECTED_REASON for c in canceled)
    finally:
        await adapter.disconnect()
        finished.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_fill_the_lp_reports_after_a_drop_is_still_passed_on(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    adapter.send(child("C6"))
    # it reaches the LP, which keeps it
    await eventually(lambda: acceptor.lp.orders, "the LP has the child C6")
    port = acceptor.port
    await acceptor.stop()
    (canceled,) = await sink.until(ChildCanceled)
    assert canceled == ChildCanceled("C6", 4, DISCONNECTED_REASON)
    # the LP had filled it before it saw the drop; its report waits in the
    # LP's store and comes with the resend after the next logon
    (nos,) = acceptor.lp.orders
    acceptor.lp._report(
        acceptor.session, nos, b"F", b"2", b"4000", b"0", time.time(), px=b"1.10002"
    )
    await acceptor.start(port)
    (fill,) = await sink.until(ChildFill)
    assert (fill.child_id, fill.qty, fill.price, fill.leaves) == ("C6", 4, 110_002, 0)


@pytest.mark.asyncio
async def test_a_fill_beyond_a_child_the_lp_filled_after_a_drop_is_still_passed_on(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    adapter.send(child("C14"))
    await eventually(lambda: acceptor.lp.orders, "the LP has the child C14")
    port = acceptor.port
    await acceptor.stop()
    await sink.until(ChildCanceled)
    # the LP filled it in full before it saw the drop, and then 1 lot more
    (nos,) = acceptor.lp.orders
    now = time.time()
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"4000", b"0", now, px=b"1.10002")
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    await acceptor.start(port)
    fills = await sink.until(ChildFill, 2)
    assert [(f.child_id, f.qty, f.leaves) for f in fills] == [("C14", 4, 0), ("C14", 1, 0)]


@pytest.mark.asyncio
async def test_a_fill_after_the_lp_canceled_a_child_the_drop_ended_is_still_passed_on(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    """The link drops; once it is back, the LP reports it canceled the
    child, then a fill for it all the same: the fill is passed on."""
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    adapter.send(child("C15"))
    await eventually(lambda: acceptor.lp.orders, "the LP has the child C15")
    port = acceptor.port
    await acceptor.stop()
    await sink.until(ChildCanceled)
    (nos,) = acceptor.lp.orders
    now = time.time()
    acceptor.lp._report(acceptor.session, nos, b"4", b"4", b"0", b"0", now)
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    await acceptor.start(port)
    (fill,) = await sink.until(ChildFill)
    assert (fill.child_id, fill.qty) == ("C15", 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["partial", "reject"])
async def test_a_fill_the_lp_reports_after_it_ended_the_child_is_still_passed_on(
    linked: tuple[Acceptor, FixLp, Sink], mode: str
) -> None:
    """The LP cancels the rest of a child (or rejects it), then reports a
    fill for it: passed on (the gateway books it to the house), once."""
    acceptor, adapter, sink = linked
    acceptor.lp.mode = mode
    adapter.send(child("C12", qty=4))
    if mode == "partial":
        (canceled,) = await sink.until(ChildCanceled)
        assert canceled.canceled_qty == 2
    else:
        await sink.until(ChildReject)
    fills_before = len(await sink.until(ChildFill, 0))
    (nos,) = acceptor.lp.orders
    now = time.time()
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"2000", b"0", now, px=b"1.10002")
    acceptor.lp.exec_seq -= 1  # the same report again
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"2000", b"0", now, px=b"1.10002")
    # and one more fill behind them, to know when both have been read
    acceptor.lp._report(acceptor.session, nos, b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    assert acceptor.server is not None
    acceptor.server.outbox.wake(acceptor.session)
    fills = (await sink.until(ChildFill, fills_before + 2))[fills_before:]
    assert [(f.child_id, f.exec_id, f.qty, f.price) for f in fills] == [
        ("C12", f"E{acceptor.lp.exec_seq - 1}", 2, 110_002),
        ("C12", f"E{acceptor.lp.exec_seq}", 1, 110_002),
    ]


@pytest.mark.asyncio
async def test_a_fill_the_lp_reports_for_a_child_it_filled_in_full_is_still_passed_on(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    """The LP fills a child in full, then reports more fills for it under
    new ExecIDs (it executed more than it was asked): each is passed on
    (the gateway books it to the house), once; the fill that completed
    the child, reported again, is not."""
    acceptor, adapter, sink = linked
    adapter.send(child("C13", qty=4))
    (filled,) = await sink.until(ChildFill)
    assert (filled.child_id, filled.qty, filled.leaves) == ("C13", 4, 0)
    (nos,) = acceptor.lp.orders
    now = time.time()
    lp = acceptor.lp
    lp._report(acceptor.session, nos, b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    over = f"E{lp.exec_seq}"
    lp.exec_seq -= 1  # the same report again
    lp._report(acceptor.session, nos, b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    after = lp.exec_seq
    lp.exec_seq = int(filled.exec_id[1:]) - 1  # the fill that completed it, again
    lp._report(acceptor.session, nos, b"F", b"2", b"4000", b"0", now, px=b"1.10002")
    lp.exec_seq = after
    # and one more fill behind them, to know when all have been read
    lp._report(acceptor.session, nos, b"F", b"2", b"2000", b"0", now, px=b"1.10002")
    assert acceptor.server is not None
    acceptor.server.outbox.wake(acceptor.session)
    fills = await sink.until(ChildFill, 3)
    assert [(f.child_id, f.exec_id, f.qty, f.leaves) for f in fills] == [
        ("C13", filled.exec_id, 4, 0),
        ("C13", over, 1, 0),
        ("C13", f"E{lp.exec_seq}", 2, 0),
    ]


@pytest.mark.asyncio
async def test_children_ended_before_a_restart_are_handed_back_and_watched(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    """After a restart the gateway hands the adapter the children LPs
    ended before it (``recover_ended``): a Trade report the LP sends for one
    under a new ExecID is passed on, one under an ExecID counted before the
    restart is not, and one for a child it was not handed stays unknown."""
    acceptor, adapter, sink = linked
    adapter.recover_ended(
        [
            (EndedChild(child("C20", qty=4), 4, "E900"), True),
            (EndedChild(child("C21", qty=4), 1, "E901"), False),
        ]
    )
    lp = acceptor.lp
    now = time.time()

    def order(child_id: bytes) -> FixMessage:
        # the order as the LP had it before the restart
        fields = [(11, child_id), (38, b"4000"), (54, b"1"), (55, b"EUR/USD")]
        return codec.parse_frame(
            codec.encode_message(
                b"FIX.4.4",
                b"D",
                [(34, b"1"), (49, b"GW"), (52, b"20261206-10:00:00.000"), (56, b"LPT")],
                codec.encode_fields(fields),
            )
        )

    lp.exec_seq = 899  # E900 again, for C20: counted before
    lp._report(acceptor.session, order(b"C20"), b"F", b"2", b"4000", b"0", now, px=b"1.10002")
    lp._report(acceptor.session, order(b"C20"), b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    lp._report(acceptor.session, order(b"C22"), b"F", b"2", b"1000", b"0", now, px=b"1.10002")
    lp._report(acceptor.session, order(b"C21"), b"F", b"2", b"2000", b"0", now, px=b"1.10002")
    assert acceptor.server is not None
    acceptor.server.outbox.wake(acceptor.session)
    fills = await sink.until(ChildFill, 2)
    assert [(f.child_id, f.exec_id, f.qty) for f in fills] == [
        ("C20", "E901", 1),
        ("C21", "E903", 2),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("session_reject", "session Reject by LPT: Value is incorrect"),
        ("business_reject", "BusinessMessageReject by LPT: Unsupported symbol class"),
    ],
)
async def test_an_order_the_lp_refuses_outright_ends_at_once(
    linked: tuple[Acceptor, FixLp, Sink], mode: str, reason: str
) -> None:
    """Not at the child's timeout: the router gets a reject and re-routes."""
    acceptor, adapter, sink = linked
    acceptor.lp.mode = mode
    adapter.send(child("C9"))
    (reject,) = await sink.until(ChildReject)
    assert reject == ChildReject("C9", reason)
    acceptor.lp.mode = "fill"
    adapter.send(child("C10"))  # the link goes on
    (fill,) = await sink.until(ChildFill)
    assert fill.child_id == "C10"


@pytest.mark.asyncio
async def test_stopping_while_the_logon_goes_unanswered_drops_the_connection(
    tmp_path: Path,
) -> None:
    # an LP that takes the connection and never answers the Logon
    ended = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        ended.set()  # the adapter closed its end
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    adapter = FixLp("LPT", INSTRUMENTS, Sink(), lp_settings(port, tmp_path, connect_timeout_ms=50))
    try:
        await adapter.connect()
        assert not adapter.up
        await adapter.disconnect()
        await asyncio.wait_for(ended.wait(), 5)
        await asyncio.sleep(0)  # one loop turn: what the connection's end scheduled runs
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_after_a_session_that_was_up_the_reconnect_waits_the_shortest_delay(
    tmp_path: Path,
) -> None:
    """The backoff starts over once a logon succeeded: an LP whose link drops
    now and then is reconnected after reconnect_min_ms each time, not after
    a delay that doubles with every drop of the day."""
    acceptor = Acceptor()
    await acceptor.start()
    sink = Sink()
    settings = lp_settings(acceptor.port, tmp_path, reconnect_min_ms=50, reconnect_max_ms=5000)
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    await adapter.connect()
    try:
        assert adapter.up
        assert acceptor.server is not None
        with capture_logs() as logs:
            for drop in range(1, 7):
                assert acceptor.server.abort(acceptor.session)
                await eventually(lambda: not adapter.up, f"drop {drop} seen")
                await eventually(lambda: adapter.up, f"logged on again after drop {drop}")
        waits = [e["seconds"] for e in logs if e["event"] == "lp_reconnect_in"]
        assert waits == [0.05] * 6
    finally:
        await adapter.disconnect()
        await acceptor.stop()


class RepeatingLp(ScriptedLp):
    """Fills half of each order, reports that fill a second time (same
    ExecID, PossResend), then fills the rest."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type != b"D":
            super().on_message(session, msg, now)
            return
        self.orders.append(msg)
        qty = msg.get(38) or b"0"
        half = b"%d" % (int(qty) // 2)
        px = msg.get(44)
        self._report(session, msg, b"0", b"0", b"0", qty, now)
        self._report(session, msg, b"F", b"1", half, half, now, px=px)
        self.exec_seq -= 1  # the same report again
        self._report(session, msg, b"F", b"1", half, half, now, px=px)
        self._report(session, msg, b"F", b"2", half, b"0", now, px=px)


@pytest.mark.asyncio
async def test_a_fill_reported_twice_counts_once_and_the_rest_is_still_filled(
    tmp_path: Path,
) -> None:
    acceptor = Acceptor()
    acceptor.lp = RepeatingLp()
    await acceptor.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(acceptor.port, tmp_path))
    await adapter.connect()
    try:
        adapter.send(child("C11", qty=4))
        await eventually(
            lambda: any(isinstance(e, ChildFill) and e.leaves == 0 for e in sink.events),
            "C11 filled in full",
        )
        # the LP answers C12 after all it sent about C11: once C12 is filled
        # in full, everything sent about C11 has been read
        adapter.send(child("C12", qty=4))
        await eventually(
            lambda: any(
                isinstance(e, ChildFill) and e.child_id == "C12" and e.leaves == 0
                for e in sink.events
            ),
            "C12 filled in full",
        )
        fills = [
            (e.child_id, e.exec_id, e.qty, e.leaves)
            for e in sink.events
            if isinstance(e, ChildFill)
        ]
        assert fills == [
            ("C11", "E2", 2, 2),
            ("C11", "E3", 2, 0),
            ("C12", "E5", 2, 2),
            ("C12", "E6", 2, 0),
        ]
        assert not [e for e in sink.events if isinstance(e, ChildCanceled)]
    finally:
        await adapter.disconnect()
        await acceptor.stop()


class ZeroPriceLp(ScriptedLp):
    """Quotes an offer at 0 and a bid below 0 beside its real levels."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type != b"V":
            super().on_message(session, msg, now)
            return
        snapshot = [(55, b"EUR/USD"), (262, msg.get(262) or b""), (268, b"4")]
        snapshot += [(269, b"0"), (270, b"1.1"), (271, b"2000000")]
        snapshot += [(269, b"0"), (270, b"-0.5"), (271, b"1000000")]
        snapshot += [(269, b"1"), (270, b"0"), (271, b"1000000")]
        snapshot += [(269, b"1"), (270, b"1.10002"), (271, b"3000000")]
        session.send(b"W", codec.encode_fields(snapshot), now)


@pytest.mark.asyncio
async def test_levels_quoted_at_a_price_of_zero_or_less_are_left_out(tmp_path: Path) -> None:
    acceptor = Acceptor()
    acceptor.lp = ZeroPriceLp()
    await acceptor.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(acceptor.port, tmp_path))
    await adapter.connect()
    try:
        (quote,) = await sink.until(Quote)
        assert [(lv.price, lv.qty) for lv in quote.bids] == [(110_000, 2000)]
        assert [(lv.price, lv.qty) for lv in quote.asks] == [(110_002, 3000)]
    finally:
        await adapter.disconnect()
        await acceptor.stop()


class HandWrittenLp:
    """An LP's FIX acceptor written message by message, for what the
    project's own session never sends: it answers the Logon and a Logout,
    records everything the adapter sends, and sends what the test says
    with the MsgSeqNum it says."""

    def __init__(self) -> None:
        self.received: list[FixMessage] = []
        self.next_seq = 1
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connections += 1
        decoder = codec.FrameDecoder()
        while data := await reader.read(65536):
            decoder.feed(data)
            while (frame := decoder.next_frame()) is not None:
                msg = codec.parse_frame(frame)
                self.received.append(msg)
                self._arrived.set()
                self.answer(msg)
        writer.close()

    def answer(self, msg: FixMessage) -> None:
        """What the LP sends back to ``msg``: the first Logon is answered,
        and a Logout."""
        if msg.msg_type == b"A" and len(self.received) == 1:
            self.send(b"A", (98, b"0"), (108, b"30"))
        elif msg.msg_type == b"5":
            self.send(b"5")

    def send(self, msg_type: bytes, *fields: tuple[int, bytes], resent_from: float = 0.0) -> None:
        """Send a message; ``resent_from`` (its first sending time) sends it
        as a resend does, with PossDupFlag=Y and that OrigSendingTime."""
        assert self._writer is not None
        header = [(34, b"%d" % self.next_seq)]
        if resent_from:
            header.append((43, b"Y"))
        header += [(49, b"LPT"), (52, codec.format_utc_timestamp(time.time())), (56, b"GW")]
        if resent_from:
            header.append((122, codec.format_utc_timestamp(resent_from)))
        self.next_seq += 1
        self._writer.write(
            codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(fields))
        )

    async def until(self, what: str, found: Callable[[FixMessage], bool]) -> FixMessage:
        """The first message from the adapter ``found`` holds for, waited
        for five seconds at most (then the test fails naming ``what``)."""
        try:
            async with asyncio.timeout(5):
                while (hit := next((m for m in self.received if found(m)), None)) is None:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            pytest.fail(f"not within 5 s: {what}")
        return hit

    def sent_of(self, msg_type: bytes) -> list[FixMessage]:
        return [m for m in self.received if m.msg_type == msg_type]


@pytest.mark.asyncio
async def test_a_sequence_reset_by_logon_mid_session_does_not_subscribe_again(
    tmp_path: Path,
) -> None:
    """The LP resets both sequence numbers with a Logon (ResetSeqNumFlag=Y)
    while logged on: the session goes on, and so do its market data
    subscriptions.  A second MarketDataRequest per symbol would have the LP
    stream everything twice and count twice against its limits."""
    lp = HandWrittenLp()
    port = await lp.start()
    adapter = FixLp("LPT", INSTRUMENTS, Sink(), lp_settings(port, tmp_path))
    try:
        await adapter.connect()
        assert adapter.up
        await lp.until("the subscription", lambda m: m.msg_type == b"V")
        lp.next_seq = 1
        lp.send(b"A", (98, b"0"), (108, b"30"), (141, b"Y"))
        answer = await lp.until("the Logon answered", lambda m: m.get(141) == b"Y")
        assert answer.get(34) == b"1"
        lp.send(b"1", (112, b"AFTER-RESET"))
        # what the adapter does on the Logon comes before this answer
        await lp.until("the TestRequest answered", lambda m: m.get(112) == b"AFTER-RESET")
        assert [m.get(55) for m in lp.sent_of(b"V")] == [b"EUR/USD"]
        assert adapter.up
    finally:
        await adapter.disconnect()
        await lp.stop()


def bid_update(action: bytes, price: bytes, size: bytes = b"1000000") -> list[tuple[int, bytes]]:
    """One entry of an incremental refresh (X) of EUR/USD's bids."""
    entry = [(279, action), (269, b"0"), (55, b"EUR/USD"), (270, price)]
    return entry if action == b"2" else [*entry, (271, size)]


async def heard(lp: HandWrittenLp, name: bytes) -> None:
    """Everything the LP sent before now has been taken by the adapter: it
    answers a TestRequest only after what came before it."""
    lp.send(b"1", (112, name))
    await lp.until(f"the TestRequest {name!r} answered", lambda m: m.get(112) == name)


@pytest.mark.asyncio
async def test_market_data_the_lp_resends_never_reaches_the_book_as_fresh(
    tmp_path: Path,
) -> None:
    """A refresh sent again with PossDupFlag=Y (the answer to a
    ResendRequest) is as old as its OrigSendingTime.  It is applied in
    sequence, so the refreshes after it build on it, but no quote is made
    of it: the book takes the LP's levels only from fresh data, stamped
    when it arrives."""
    lp = HandWrittenLp()
    port = await lp.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(port, tmp_path))
    try:
        await adapter.connect()
        await lp.until("the subscription", lambda m: m.msg_type == b"V")
        snapshot = [(55, b"EUR/USD"), (262, b"R1"), (268, b"2")]
        snapshot += [(269, b"0"), (270, b"1.1"), (271, b"2000000")]
        snapshot += [(269, b"1"), (270, b"1.10002"), (271, b"3000000")]
        lp.send(b"W", *snapshot)
        (fresh,) = await sink.until(Quote)
        # a minute old, resent: the best bid it gives is long gone
        moved = [(262, b"R1"), (268, b"2"), *bid_update(b"2", b"1.1")]
        moved += bid_update(b"0", b"1.09")
        lp.send(b"X", *moved, resent_from=time.time() - 60)
        await heard(lp, b"AFTER-RESEND")
        assert [e for e in sink.events if isinstance(e, Quote)] == [fresh]
        # fresh data: the book it gives has the resent change applied under it
        lp.send(b"X", (262, b"R1"), (268, b"1"), *bid_update(b"0", b"1.09001"))
        (_, latest) = await sink.until(Quote, 2)
        assert [(lv.price, lv.qty) for lv in latest.bids] == [(109_001, 1000), (109_000, 1000)]
        assert latest.time >= fresh.time
    finally:
        await adapter.disconnect()
        await lp.stop()


@pytest.mark.asyncio
async def test_a_resent_incremental_refresh_with_no_book_under_it_is_skipped(
    tmp_path: Path,
) -> None:
    """After a drop of the link the adapter holds no book for the LP until
    a snapshot: what the LP resends for the gap changed a book that is not
    there, and the levels it names would be made up of that alone."""
    lp = HandWrittenLp()
    port = await lp.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(port, tmp_path))
    try:
        await adapter.connect()
        await lp.until("the subscription", lambda m: m.msg_type == b"V")
        resent = [(262, b"R1"), (268, b"1"), *bid_update(b"0", b"1.08")]
        lp.send(b"X", *resent, resent_from=time.time() - 1)
        lp.send(b"X", (262, b"R1"), (268, b"1"), *bid_update(b"0", b"1.1"))
        (quote,) = await sink.until(Quote)
        assert [(lv.price, lv.qty) for lv in quote.bids] == [(110_000, 1000)]
    finally:
        await adapter.disconnect()
        await lp.stop()


@contextlib.asynccontextmanager
async def scripted(tmp_path: Path, lp: ScriptedLp) -> AsyncIterator[tuple[Acceptor, FixLp, Sink]]:
    """``lp`` behind an acceptor, and an adapter logged on to it."""
    acceptor = Acceptor()
    acceptor.lp = lp
    await acceptor.start()
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(acceptor.port, tmp_path))
    await adapter.connect()
    try:
        yield acceptor, adapter, sink
    finally:
        await adapter.disconnect()
        await acceptor.stop()


class FillAsToldLp(ScriptedLp):
    """Fills each child at once with the LastQty and LastPx it is told
    (``None``: the field left out), CumQty the child's, under OrdStatus
    ``status``."""

    def __init__(self, qty: bytes | None, px: bytes | None, status: bytes = b"2") -> None:
        super().__init__()
        self.fill_qty = qty
        self.fill_px = px
        self.status = status

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type != b"D":
            super().on_message(session, msg, now)
            return
        self.orders.append(msg)
        self.exec_seq += 1
        fields = [(6, self.fill_px or b"0"), (11, msg.get(11) or b""), (14, msg.get(38) or b"")]
        fields += [(17, b"E%d" % self.exec_seq)]
        if self.fill_px is not None:
            fields.append((31, self.fill_px))
        if self.fill_qty is not None:
            fields.append((32, self.fill_qty))
        fields += [(37, b"LPO1"), (38, msg.get(38) or b""), (39, self.status)]
        fields += [(54, msg.get(54) or b""), (55, b"EUR/USD"), (150, b"F"), (151, b"0")]
        session.send(b"8", codec.encode_fields(fields), now)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("qty", "px", "lots", "ticks", "event"),
    [
        # through the buy child's limit of 1.10002: booked at the limit
        (b"4000", b"1.10100", 4, 110_002, "lp_fill_price_refused"),
        (b"4000", None, 4, 110_002, "lp_fill_price_refused"),
        (b"4000", b"0", 4, 110_002, "lp_fill_price_refused"),
        (b"4000", b"-0.5", 4, 110_002, "lp_fill_price_refused"),
        # a sub-tick improvement: the tick on the client's side
        (b"4000", b"1.100015", 4, 110_001, "lp_fill_price_off_grid"),
        # between two ticks and through the limit by less than one: refused
        # (an error, as for any price past the limit), not a sub-tick gain
        (b"4000", b"1.100025", 4, 110_002, "lp_fill_price_refused"),
        # part of a lot: the whole lots booked, the rest named
        (b"4500", b"1.1", 4, 110_000, "lp_fill_quantity_off_lots"),
        (b"3999", b"1.1", 3, 110_000, "lp_fill_quantity_off_lots"),
    ],
)
async def test_a_fill_the_gateway_cannot_book_as_the_lp_wrote_it_is_booked_safely_and_named(
    tmp_path: Path,
    qty: bytes,
    px: bytes | None,
    lots: int,
    ticks: int,
    event: str,
) -> None:
    """An execution is never dropped, and the client is never filled past
    its limit: what cannot be booked as written is booked at the nearest
    safe terms and named in the log for the desk (the LP's statement will
    show the difference as a break)."""
    async with scripted(tmp_path, FillAsToldLp(qty, px)) as (_, adapter, sink):
        with capture_logs() as logs:
            adapter.send(child("C21", qty=4, price=110_002))
            (fill,) = await sink.until(ChildFill)
    assert (fill.qty, fill.price) == (lots, ticks)
    named = [e for e in logs if e["event"] == event]
    assert len(named) == 1, logs
    assert named[0]["exec_id"] == fill.exec_id


@pytest.mark.asyncio
async def test_a_fill_saying_partially_filled_with_the_whole_child_done_ends_it_at_once(
    tmp_path: Path,
) -> None:
    """The LP fills the child whole (CumQty its quantity, LeavesQty 0) in one
    report that says OrdStatus 1, with a LastQty off the lot grid: the whole
    lots are booked, and the child ends at once, the lot not booked
    canceled and named, as under OrdStatus 2."""
    async with scripted(tmp_path, FillAsToldLp(b"3999", b"1.1", b"1")) as (_, adapter, sink):
        with capture_logs() as logs:
            adapter.send(child("C23", qty=4))
            (canceled,) = await sink.until(ChildCanceled)
    fills = [e for e in sink.events if isinstance(e, ChildFill)]
    assert [(f.qty, f.leaves) for f in fills] == [(3, 1)]
    assert (canceled.child_id, canceled.canceled_qty) == ("C23", 1)
    assert "C23" not in adapter._open
    named = [e for e in logs if e["event"] == "lp_reports_filled_beyond_fills_seen"]
    assert [(e["child_id"], e["cum_qty"], e["lots_seen_filled"]) for e in named] == [
        ("C23", "4000", 3)
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("qty", [b"0", b"-4000", None, b"40500500"])
async def test_a_fill_of_no_quantity_books_nothing_and_is_named(
    tmp_path: Path, qty: bytes | None
) -> None:
    async with scripted(tmp_path, FillAsToldLp(qty, b"1.1")) as (acceptor, adapter, sink):
        with capture_logs() as logs:
            adapter.send(child("C22", qty=4))
            await eventually(lambda: acceptor.lp.orders, "the child reached the LP")
            await eventually(
                lambda: any(e["event"] == "lp_fill_unreadable" for e in logs),
                "the fill named",
            )
        assert not [e for e in sink.events if isinstance(e, ChildFill)]


@pytest.mark.asyncio
async def test_an_order_ended_by_a_drop_is_not_sent_again_when_the_lp_asks_for_it(
    linked: tuple[Acceptor, FixLp, Sink],
) -> None:
    """The link drops with a child unanswered: the adapter ends it (its
    client is told it was canceled).  An LP that lost it and asks for
    everything again at the next logon gets a gap fill over it, never the
    order, which it would otherwise execute."""
    acceptor, adapter, sink = linked
    acceptor.lp.mode = "silent"
    missed_from = acceptor.session.store.next_target_seq
    adapter.send(child("C30"))
    await eventually(lambda: acceptor.lp.orders, "the LP has C30")
    port = acceptor.port
    await acceptor.stop()
    (canceled,) = await sink.until(ChildCanceled)
    assert (canceled.child_id, canceled.reason) == ("C30", DISCONNECTED_REASON)
    # the LP comes back without what it received since: it asks for it
    acceptor.session.store.set_next_target_seq(missed_from)
    acceptor.lp.orders.clear()
    await acceptor.start(port)
    await eventually(
        lambda: (
            adapter.up
            and acceptor.session.store.next_target_seq == adapter.session.store.next_sender_seq
        ),
        "the LP caught up with the adapter",
    )
    await sink.until(Quote, 4)  # subscribed again, after the gap fill
    assert acceptor.lp.orders == []
    assert not [e for e in sink.events if isinstance(e, ChildFill)]


class BustingLp(ScriptedLp):
    """Fills each child, then busts (H) or corrects (G) the fill at once."""

    def __init__(self, exec_type: bytes) -> None:
        super().__init__()
        self.exec_type = exec_type

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        super().on_message(session, msg, now)
        if msg.msg_type != b"D":
            return
        filled = b"E%d" % self.exec_seq
        fields = [(6, b"0"), (11, msg.get(11) or b""), (14, b"0"), (17, b"X9"), (19, filled)]
        fields += [(31, b"1.10001"), (32, b"4000"), (37, b"LPO1"), (38, b"4000"), (39, b"2")]
        fields += [(54, b"1"), (55, b"EUR/USD"), (58, b"busted by the LP")]
        fields += [(150, self.exec_type), (151, b"0")]
        session.send(b"8", codec.encode_fields(fields), now)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exec_type", "event"), [(b"H", "lp_trade_bust"), (b"G", "lp_trade_correction")]
)
async def test_a_trade_bust_or_correction_is_named_for_the_desk(
    tmp_path: Path, exec_type: bytes, event: str
) -> None:
    async with scripted(tmp_path, BustingLp(exec_type)) as (_, adapter, sink):
        with capture_logs() as logs:
            adapter.send(child("C31"))
            (fill,) = await sink.until(ChildFill)
            await eventually(lambda: any(e["event"] == event for e in logs), "the bust named")
        (named,) = [e for e in logs if e["event"] == event]
        assert (named["lp"], named["cl_ord_id"], named["exec_ref_id"]) == (
            "LPT",
            "C31",
            fill.exec_id,
        )
        assert named["log_level"] == "error"
        assert [e for e in sink.events if isinstance(e, ChildFill)] == [fill]
        assert named["applied"] is True
        passed = [e for e in sink.events if isinstance(e, ChildBust | ChildCorrection)]
        if exec_type == b"H":  # the fill it names, passed on to be reversed
            assert passed == [
                ChildBust("C31", "X9", fill.exec_id, "LPT", "EUR/USD", Side.BUY, 4, fill.price)
            ]
        else:  # reversed, and booked again at the correction's terms
            assert passed == [
                ChildCorrection(
                    "C31", "X9", fill.exec_id, "LPT", "EUR/USD", Side.BUY, 4, fill.price, 4, 110_001
                )
            ]


def report(
    exec_type: bytes, exec_id: bytes, last: bytes, ref: bytes = b"", px: bytes | None = b"1.10001"
) -> FixMessage:
    """An ExecutionReport of child C1 (8 lots): a Trade (F) of ``last``, or
    a Trade Cancel (H) or Correct (G) of the fill ``ref``."""
    fields = [(6, b"1.10001"), (11, b"C1"), (14, last), (17, exec_id)]
    if ref:
        fields.append((19, ref))
    if px is not None:
        fields.append((31, px))
    fields += [(32, last), (37, b"LPO1"), (38, b"8000"), (39, b"1")]
    fields += [(54, b"1"), (55, b"EUR/USD"), (150, exec_type), (151, b"4000")]
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    return codec.parse_frame(
        codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
    )


def test_a_trade_cancel_is_passed_on_only_for_a_fill_booked_and_once() -> None:
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 8, ())])
    adapter._on_execution(report(b"F", b"E1", b"3000"))
    adapter._on_execution(report(b"F", b"E2", b"1000"))
    cancels = [
        (b"X1", b"3000", b"E0", "names no fill booked"),
        (b"X2", b"4000", b"E1", "not 1 to 3 lots, the fill's not reversed yet"),
        (b"E2", b"1000", b"E1", "its ExecID is that of a fill booked"),
        (b"X3", b"2000", b"E1", ""),
        (b"X3", b"1000", b"E1", "applied already"),
        (b"X4", b"2000", b"E1", "not 1 to 1 lots"),  # 1 of E1's 3 left
        (b"X4", b"1000", b"E1", ""),
        (b"X5", b"1000", b"E1", "reversed already"),
    ]
    with capture_logs() as logs:
        for exec_id, last, ref, _ in cancels:
            adapter._on_execution(report(b"H", exec_id, last, ref=ref))
    named = [e for e in logs if e["event"] == "lp_trade_bust"]
    assert len(named) == len(cancels)
    for (exec_id, _, _, why), e in zip(cancels, named, strict=True):
        assert e["exec_id"] == exec_id.decode()
        assert e["applied"] is (not why)
        assert why in e["hint"]
        repeat = why in ("applied already", "reversed already")  # nothing for the desk
        assert e["log_level"] == ("warning" if repeat else "error")
    # a fill from before a restart (handed back with its child): its lots
    # and price are not known here, and the gateway may have reversed it
    again = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    again.recover([(child("C1", qty=8), 4, ("E1", "E2"))])
    with capture_logs() as logs:
        again._on_execution(report(b"H", b"X6", b"1000", ref=b"E2"))
    (refused,) = [e for e in logs if e["event"] == "lp_trade_bust"]
    assert "booked before a restart" in refused["hint"]
    # each reversal at the price the fill was booked at, for its lots
    busts = [e for e in sink.events if isinstance(e, ChildBust)]
    assert busts == [
        ChildBust("C1", "X3", "E1", "LPT", "EUR/USD", Side.BUY, 2, 110_001),
        ChildBust("C1", "X4", "E1", "LPT", "EUR/USD", Side.BUY, 1, 110_001),
    ]


def test_a_trade_correct_is_passed_on_only_for_a_fill_booked_and_once() -> None:
    """A correction reverses the lots of the fill it names still standing
    (after a partial bust, what is left) at the price they were booked at,
    and books its own LastQty at its LastPx, known by its ExecID from then
    on; it is refused for a fill not booked here, under a fill's ExecID,
    for terms that cannot be booked, for a fill reversed or corrected
    already, and applied once."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 8, ())])  # a buy, limit 1.10002
    adapter._on_execution(report(b"F", b"E1", b"3000"))
    adapter._on_execution(report(b"F", b"E2", b"1000"))
    adapter._on_execution(report(b"H", b"X1", b"1000", ref=b"E1"))  # 2 of E1's 3 left
    adapter._on_execution(report(b"H", b"X2", b"1000", ref=b"E2"))  # E2 reversed whole
    corrections: list[tuple[bytes, bytes, bytes | None, bytes, str]] = [
        (b"Y1", b"2000", b"1.1", b"E0", "names no fill booked"),
        (b"E2", b"2000", b"1.1", b"E1", "its ExecID is that of a fill booked"),
        (b"Y1", b"0", b"1.1", b"E1", "its LastQty is not 1 to 100000 lots"),
        (b"Y1", b"-2000", b"1.1", b"E1", "its LastQty is not 1 to 100000 lots"),
        (b"Y1", b"1500", b"1.1", b"E1", "its LastQty is not a whole number of lots"),
        (b"Y1", b"2000", None, b"E1", "no LastPx"),
        (b"Y1", b"2000", b"1.100005", b"E1", "its LastPx is not a price on the instrument's"),
        (b"Y1", b"2000", b"0", b"E1", "its LastPx is not positive"),
        (b"Y1", b"2000", b"1.10003", b"E1", "its LastPx is past the child's limit"),
        (b"Y1", b"2000", b"1.1", b"E2", "the fill it names was reversed already"),
        (b"Y1", b"2000", b"1.1", b"E1", ""),
        (b"Y1", b"2000", b"1.1", b"E1", "applied already"),  # sent again
        (b"Y2", b"1000", b"1.1", b"E1", "corrected already, by ExecID Y1"),
        (b"Y3", b"5000", b"1.09999", b"Y1", ""),  # a correction of the correction
        (b"Y4", b"1000", b"1.1", b"Y1", "corrected already, by ExecID Y3"),
    ]
    with capture_logs() as logs:
        for exec_id, last, px, ref, _ in corrections:
            adapter._on_execution(report(b"G", exec_id, last, ref=ref, px=px))
    named = [e for e in logs if e["event"] == "lp_trade_correction"]
    assert len(named) == len(corrections)
    for (exec_id, _, _, _, why), e in zip(corrections, named, strict=True):
        assert e["exec_id"] == exec_id.decode()
        assert e["applied"] is (not why)
        assert why in e["hint"]
        repeat = why == "applied already"  # nothing for the desk
        assert e["log_level"] == ("warning" if repeat else "error")
    assert [e for e in sink.events if isinstance(e, ChildCorrection)] == [
        ChildCorrection("C1", "Y1", "E1", "LPT", "EUR/USD", Side.BUY, 2, 110_001, 2, 110_000),
        ChildCorrection("C1", "Y3", "Y1", "LPT", "EUR/USD", Side.BUY, 2, 110_000, 5, 109_999),
    ]
    # the fill as it now stands is the latest correction's: a cancel names it
    with capture_logs() as logs:
        adapter._on_execution(report(b"H", b"X3", b"1000", ref=b"Y3"))
        adapter._on_execution(report(b"H", b"Y3", b"1000", ref=b"E1"))  # a correction's ExecID
    assert [e["applied"] for e in logs if e["event"] == "lp_trade_bust"] == [True, False]
    assert [e for e in sink.events if isinstance(e, ChildBust)][-1] == ChildBust(
        "C1", "X3", "Y3", "LPT", "EUR/USD", Side.BUY, 1, 109_999
    )
    # a Trade report under a correction's ExecID is not a fill more
    with capture_logs() as logs:
        adapter._on_execution(report(b"F", b"Y3", b"1000"))
    assert [e["event"] for e in logs] == ["lp_fill_exec_id_of_a_restatement"]
    assert not [e for e in sink.events if isinstance(e, ChildFill) and e.exec_id == "Y3"]
    # after a restart: neither a fill nor a correction of before is known
    again = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    again.recover([(child("C1", qty=8), 4, ("E1", "E2"))])
    with capture_logs() as logs:
        again._on_execution(report(b"G", b"Y5", b"1000", ref=b"E1"))
        again._on_execution(report(b"G", b"Y6", b"1000", ref=b"Y3"))
    first, second = [e for e in logs if e["event"] == "lp_trade_correction"]
    assert "booked before a restart" in first["hint"]
    assert "names no fill booked for the order (nor a correction of one)" in second["hint"]
    assert [first["applied"], second["applied"]] == [False, False]
    assert len([e for e in sink.events if isinstance(e, ChildCorrection)]) == 2


def test_a_fill_counted_before_a_restart_and_resent_by_the_lp_is_not_counted_again(
    tmp_path: Path,
) -> None:
    """The child's ExecIDs come back with it: the LP resending a fill the
    gateway had booked does not end the child as filled, and the LP's cancel
    of the rest is understood."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, tmp_path))
    adapter.recover([(child("OLD", qty=8), 4, ("E1",))])

    def report(exec_type: bytes, exec_id: bytes, last: bytes, cum: bytes) -> FixMessage:
        fields = [(6, b"1.10002"), (11, b"OLD"), (14, cum), (17, exec_id)]
        if exec_type == b"F":
            fields += [(31, b"1.10002"), (32, last)]
        fields += [(37, b"LPO1"), (38, b"8000"), (39, b"4" if exec_type == b"4" else b"1")]
        fields += [(54, b"1"), (55, b"EUR/USD"), (150, exec_type), (151, b"0")]
        header = [(34, b"9"), (43, b"Y"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
        header.append((122, b"20261206-09:00:00"))
        return codec.parse_frame(
            codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
        )

    adapter._on_execution(report(b"F", b"E1", b"4000", b"4000"))
    assert not [e for e in sink.events if isinstance(e, ChildFill)]
    adapter._on_execution(report(b"4", b"E2", b"0", b"4000"))
    assert [e for e in sink.events if isinstance(e, ChildCanceled)] == [
        ChildCanceled("OLD", 4, "canceled by LP")
    ]


def _final_fill(last: bytes, cum: bytes, status: bytes = b"2") -> FixMessage:
    """A Trade of child C1 (8 lots) by which the LP says the order is done:
    OrdStatus 2 (filled), or ``status``, LeavesQty 0."""
    fields = [(6, b"1.10001"), (11, b"C1"), (14, cum), (17, b"E9"), (31, b"1.10001")]
    fields += [(32, last), (37, b"LPO1"), (38, b"8000"), (39, status)]
    fields += [(54, b"1"), (55, b"EUR/USD"), (150, b"F"), (151, b"0")]
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    return codec.parse_frame(
        codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
    )


@pytest.mark.parametrize("status", [b"2", b"1"])
@pytest.mark.parametrize("last", [b"7999", b"0"])
def test_a_report_that_says_the_order_is_filled_ends_the_child_whatever_was_booked(
    last: bytes, status: bytes
) -> None:
    """The LP's last report of the child says it is done (OrdStatus 2, or
    OrdStatus 1 with a CumQty of the whole child: the quantities say it is
    filled), but the lots the gateway could book of it fall short (a
    LastQty off the lot grid, or none): nothing more will come from the LP,
    so the child ends now, the lots not booked canceled and named, as for
    a fill whose report says the order is canceled, not at the child's
    timeout and after a cancel the LP can only refuse."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 8, ())])
    with capture_logs() as logs:
        adapter._on_execution(_final_fill(last, b"8000", status))
    booked = sum(e.qty for e in sink.events if isinstance(e, ChildFill))
    ends = [e for e in sink.events if isinstance(e, ChildCanceled | ChildReject)]
    assert [(e.child_id, e.canceled_qty) for e in ends if isinstance(e, ChildCanceled)] == [
        ("C1", 8 - booked)
    ]
    assert "C1" not in adapter._open
    named = [e for e in logs if e["event"] == "lp_reports_filled_beyond_fills_seen"]
    assert [(e["child_id"], e["lots_seen_filled"]) for e in named] == [("C1", booked)]
    # the LP's report of it again books nothing more, nor ends it twice
    adapter._on_execution(_final_fill(last, b"8000", status))
    assert sum(e.qty for e in sink.events if isinstance(e, ChildFill)) == booked
    assert len([e for e in sink.events if isinstance(e, ChildCanceled | ChildReject)]) == 1


def test_a_partial_fill_report_short_of_the_child_leaves_it_open() -> None:
    """OrdStatus 1 and LeavesQty 0 with a CumQty short of the child: the
    LP's cancel of the rest follows (an IOC, as some LPs report it), and
    ends the child with the LP's own words."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 8, ())])
    adapter._on_execution(_final_fill(b"3000", b"3000", b"1"))
    assert [(e.qty, e.leaves) for e in sink.events if isinstance(e, ChildFill)] == [(3, 5)]
    assert "C1" in adapter._open


def test_a_status_saying_working_with_the_whole_child_filled_ends_it() -> None:
    """The answer to the OrderStatusRequest for a child from before a
    restart says OrdStatus 1 (partially filled) with a CumQty of the whole
    child: it is filled at the LP, so it ends now (the lots not seen filled
    named), not after a cancel the LP can only refuse and the child's
    timeouts; a child the drop of the link ended is settled the same way."""

    def status(child_id: bytes) -> FixMessage:
        fields = [(6, b"1.10001"), (11, child_id), (14, b"8000"), (17, b"S1"), (37, b"LPO1")]
        fields += [(38, b"8000"), (39, b"1"), (54, b"1"), (55, b"EUR/USD"), (150, b"I")]
        fields.append((151, b"0"))
        header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
        return codec.parse_frame(
            codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
        )

    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 8, ())])
    with capture_logs() as logs:
        adapter._on_execution(status(b"C1"))
    assert [e for e in sink.events if isinstance(e, ChildCanceled)] == [
        ChildCanceled("C1", 8, "ended at the LP")
    ]
    assert "C1" not in adapter._open
    # the child the drop ended
    adapter._up = True  # logged on, C2 sent
    adapter._open["C2"] = _Open(child("C2", qty=8))
    adapter._go_down(DISCONNECTED_REASON)
    with capture_logs() as more:
        adapter._on_execution(status(b"C2"))
    assert "C2" not in adapter._dropped
    named = [e for e in logs + more if e["event"] == "lp_reports_filled_beyond_fills_seen"]
    assert [(e["child_id"], e["lots_seen_filled"]) for e in named] == [("C1", 0), ("C2", 0)]
