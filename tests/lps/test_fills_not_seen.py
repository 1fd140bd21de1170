"""Fills an LP made that the gateway must not lose sight of: one whose
report carries the LP's own (user-defined) tags, and those an LP's status
or cancel reports say it made while the gateway saw fewer (sent before a
sequence reset that never resends them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lp_test_kit import INSTRUMENTS
from structlog.testing import capture_logs
from test_fix_adapter import (
    HandWrittenLp,
    ScriptedLp,
    Sink,
    child,
    eventually,
    lp_settings,
    scripted,
)

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from lp_adapters.fix import FixLp
from router.model import ChildCanceled, ChildFill


class OwnTagsLp(ScriptedLp):
    """Fills each child in full with a report that carries tags of the
    LP's own (5000 and up), as many LPs add to their ExecutionReports."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type != b"D":
            super().on_message(session, msg, now)
            return
        self.orders.append(msg)
        qty = msg.get(38) or b"0"
        px = msg.get(44) or b"0"
        fields = [(6, px), (11, msg.get(11) or b""), (14, qty), (17, b"E1"), (31, px)]
        fields += [(32, qty), (37, b"LPO1"), (38, qty), (39, b"2"), (54, msg.get(54) or b"")]
        fields += [(55, msg.get(55) or b""), (150, b"F"), (151, b"0")]
        fields += [(5001, b"LD4"), (9010, b"maker")]
        session.send(b"8", codec.encode_fields(fields), now)


@pytest.mark.asyncio
async def test_a_fill_whose_report_carries_the_lps_own_tags_is_booked(tmp_path: Path) -> None:
    """Refused by the session (a Reject for an undefined tag), the fill
    would never be booked: the child would time out and its client be told
    nothing filled while the LP holds the trade."""
    async with scripted(tmp_path, OwnTagsLp()) as (_, adapter, sink):
        adapter.send(child("C1", qty=4))
        (fill,) = await sink.until(ChildFill)
    assert (fill.child_id, fill.exec_id, fill.qty, fill.price, fill.leaves) == (
        "C1",
        "E1",
        4,
        110_002,
        0,
    )


class ResettingLp(HandWrittenLp):
    """Answers every Logon; from the second connection on, with a Logon
    that resets the sequence numbers (ResetSeqNumFlag=Y, MsgSeqNum 1), as
    an LP whose engine starts afresh does: what it sent before is never
    sent again."""

    def answer(self, msg: FixMessage) -> None:
        if msg.msg_type == b"A" and self.connections > 1:
            self.next_seq = 1
            self.send(b"A", (98, b"0"), (108, b"30"), (141, b"Y"))
        elif msg.msg_type == b"A":
            self.send(b"A", (98, b"0"), (108, b"30"))
        elif msg.msg_type == b"5":
            self.send(b"5")


def named(logs: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [
        (e["child_id"], e["cum_qty"], e["lots_seen_filled"])
        for e in logs
        if e["event"] == "lp_reports_filled_beyond_fills_seen"
    ]


@pytest.mark.asyncio
async def test_a_status_saying_the_lp_filled_more_than_was_seen_names_the_lots(
    tmp_path: Path,
) -> None:
    """The link drops with a child open; the LP filled 3 of its 4 lots
    before it saw the drop, and comes back with its sequence numbers reset,
    so that fill is never resent.  Its answer to the OrderStatusRequest
    says the rest was canceled, 3 lots filled: the 3 lots the gateway never
    booked are named for the desk, not passed over in silence."""
    lp = ResettingLp()
    port = await lp.start()
    sink = Sink()
    settings = lp_settings(port, tmp_path, reconnect_min_ms=50, reconnect_max_ms=50)
    adapter = FixLp("LPT", INSTRUMENTS, sink, settings)
    try:
        await adapter.connect()
        adapter.send(child("C1", qty=4))
        await lp.until("the child", lambda m: m.msg_type == b"D")
        assert lp._writer is not None
        lp._writer.close()  # the drop
        await sink.until(ChildCanceled)
        asked = await lp.until("the status request", lambda m: m.msg_type == b"H")
        assert asked.get(11) == b"C1"
        with capture_logs() as logs:
            status = [(6, b"1.10002"), (11, b"C1"), (14, b"3000"), (17, b"S1"), (37, b"LPO1")]
            status += [(38, b"4000"), (39, b"4"), (54, b"1"), (55, b"EUR/USD"), (150, b"I")]
            lp.send(b"8", *status, (151, b"0"))
            await eventually(lambda: "C1" not in adapter._dropped, "the status answer read")
        assert named(logs) == [("C1", "3000", 0)]
    finally:
        await adapter.disconnect()
        await lp.stop()


def report(exec_type: bytes, status: bytes, cum: bytes) -> FixMessage:
    """A report of child C1 (8 lots) ending it, with CumQty ``cum``."""
    fields = [(6, b"1.10001"), (11, b"C1"), (14, cum), (17, b"S1"), (37, b"LPO1")]
    fields += [(38, b"8000"), (39, status), (54, b"1"), (55, b"EUR/USD"), (150, exec_type)]
    fields.append((151, b"0"))
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    return codec.parse_frame(
        codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
    )


@pytest.mark.parametrize(
    ("exec_type", "status"),
    [(b"I", b"4"), (b"I", b"C"), (b"4", b"4"), (b"C", b"C"), (b"3", b"3")],
)
def test_a_report_ending_a_child_with_more_filled_than_was_seen_names_the_lots(
    exec_type: bytes, status: bytes
) -> None:
    """A child from before a restart, 2 of its 8 lots seen filled: the
    LP's status answer (or its cancel) says it ended with 5 filled.  The 3
    lots the gateway never booked are named; the rest is canceled all the
    same (the child's totals add up)."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 6, ("E1",))])
    with capture_logs() as logs:
        adapter._on_execution(report(exec_type, status, b"5000"))
    assert [(e.child_id, e.canceled_qty) for e in sink.events if isinstance(e, ChildCanceled)] == [
        ("C1", 6)
    ]
    assert named(logs) == [("C1", "5000", 2)]


@pytest.mark.parametrize("cum", [b"2000", b"0", None])
def test_a_report_ending_a_child_with_what_was_seen_names_nothing(cum: bytes | None) -> None:
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    adapter.recover([(child("C1", qty=8), 6, ("E1",))])
    fields = [(6, b"1.10001"), (11, b"C1")]
    if cum is not None:
        fields.append((14, cum))
    fields += [(17, b"S1"), (37, b"LPO1"), (38, b"8000"), (39, b"4"), (54, b"1")]
    fields += [(55, b"EUR/USD"), (150, b"4"), (151, b"0")]
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    msg = codec.parse_frame(
        codec.encode_message(b"FIX.4.4", b"8", header, codec.encode_fields(fields))
    )
    with capture_logs() as logs:
        adapter._on_execution(msg)
    assert named(logs) == []
    assert [e for e in sink.events if isinstance(e, ChildCanceled)]
