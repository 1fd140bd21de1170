"""BusinessMessageRejects (35=j) from an LP as a FIX engine writes them on
its own (QuickFIX's, for one, when the application refuses a message or a
conditionally required field is missing): RefSeqNum (45) and RefMsgType
(372), no BusinessRejectRefID (379)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lp_test_kit import INSTRUMENTS
from structlog.testing import capture_logs
from test_fix_adapter import ScriptedLp, Sink, child, lp_settings, scripted

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from lp_adapters.fix import FixLp
from router.model import ChildFill, ChildReject


class EngineRejectLp(ScriptedLp):
    """Refuses the first NewOrderSingle with a BusinessMessageReject naming
    it by its MsgSeqNum only; fills the others."""

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        if msg.msg_type == b"D" and not self.orders:
            self.orders.append(msg)
            fields = [(45, msg.get(34) or b""), (58, b"Conditionally Required Field Missing")]
            fields += [(372, b"D"), (380, b"5")]
            session.send(b"j", codec.encode_fields(fields), now)
            return
        super().on_message(session, msg, now)


@pytest.mark.asyncio
async def test_an_order_refused_by_a_business_reject_naming_its_msg_seq_num_ends_at_once(
    tmp_path: Path,
) -> None:
    async with scripted(tmp_path, EngineRejectLp()) as (_, adapter, sink):
        adapter.send(child("C1"))
        (reject,) = await sink.until(ChildReject)
        assert reject == ChildReject(
            "C1", "BusinessMessageReject by LPT: Conditionally Required Field Missing"
        )
        assert "C1" not in adapter._open
        adapter.send(child("C2"))  # the link goes on
        (fill,) = await sink.until(ChildFill)
        assert fill.child_id == "C2"


def business_reject(ref_type: bytes, ref_seq: bytes, text: bytes) -> FixMessage:
    fields = [(45, ref_seq), (58, text), (372, ref_type), (380, b"3")]
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    return codec.parse_frame(
        codec.encode_message(b"FIX.4.4", b"j", header, codec.encode_fields(fields))
    )


def test_a_business_reject_of_anything_else_is_named() -> None:
    """A MarketDataRequest the LP refuses this way leaves the gateway with
    none of its quotes; a cancel or status request refused, with a child
    it cannot ask about: each is said, in one line naming what it refers to."""
    adapter = FixLp("LPT", INSTRUMENTS, Sink(), lp_settings(1, Path("/nonexistent")))
    with capture_logs() as logs:
        adapter._on_message(business_reject(b"V", b"3", b"Unsupported Message Type"), 1.0)
        adapter._on_message(business_reject(b"H", b"7", b"Unsupported Message Type"), 1.0)
    named = [(e["event"], e["log_level"], e["ref_msg_type"], e["ref_seq_num"]) for e in logs]
    assert named == [
        ("lp_business_reject", "error", "V", "3"),
        ("lp_business_reject", "error", "H", "7"),
    ]
    assert all(e["text"] == "Unsupported Message Type" for e in logs)
