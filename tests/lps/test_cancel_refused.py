"""An LP refusing a cancel because the child is over at its end (or it
does not know it): the report that ended the child never came, so its
status is asked for, once, and the answer ends it, instead of the child
waiting for the router to give it up and staying open in the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_fix_adapter import ScriptedLp, child, eventually, scripted

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from router.model import ChildCanceled


class ForgetfulLp(ScriptedLp):
    """Acknowledges each child, then refuses its cancel as ``refusal``
    says; a status request is answered with ``status`` and CumQty 0."""

    def __init__(self, refusal: list[tuple[int, bytes]], status: bytes) -> None:
        super().__init__()
        self.mode = "silent"
        self.refusal = refusal
        self.status = status
        self.asked: list[FixMessage] = []

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        super().on_message(session, msg, now)
        if msg.msg_type == b"D":
            self._report(session, msg, b"0", b"0", b"0", msg.get(38) or b"0", now)
        elif msg.msg_type == b"F":
            fields = [(11, msg.get(11) or b""), (37, b"NONE"), (41, msg.get(41) or b"")]
            fields += [*self.refusal, (434, b"1")]
            session.send(b"9", codec.encode_fields(sorted(fields)), now)
        elif msg.msg_type == b"H":
            self.asked.append(msg)
            fields = [(6, b"0"), (11, msg.get(11) or b""), (14, b"0"), (17, b"S1"), (37, b"NONE")]
            fields += [(38, b"4000"), (39, self.status), (54, msg.get(54) or b"")]
            fields += [(55, msg.get(55) or b""), (58, b"as it stands"), (150, b"I"), (151, b"0")]
            session.send(b"8", codec.encode_fields(fields), now)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("refusal", "status", "reason"),
    [
        ([(39, b"8"), (102, b"1")], b"8", "not known to the LP"),  # unknown order
        ([(39, b"4"), (102, b"0")], b"4", "as it stands"),  # canceled already
    ],
)
async def test_a_cancel_refused_as_the_child_is_over_asks_and_ends_it(
    tmp_path: Path, refusal: list[tuple[int, bytes]], status: bytes, reason: str
) -> None:
    lp = ForgetfulLp(refusal, status)
    async with scripted(tmp_path, lp) as (_, adapter, sink):
        adapter.send(child("C1", qty=4))
        await eventually(lambda: lp.orders, "the child at the LP")
        adapter.cancel("C1")
        (ended,) = await sink.until(ChildCanceled)
        assert (ended.child_id, ended.canceled_qty, ended.reason) == ("C1", 4, reason)
        assert [m.get(11) for m in lp.asked] == [b"C1"]
        assert "C1" not in adapter._open


@pytest.mark.asyncio
async def test_a_cancel_refused_while_the_child_works_asks_nothing(tmp_path: Path) -> None:
    """A cancel refused with the child still working (a cancel the LP does
    not take now): the child stays open, its status not asked for."""
    lp = ForgetfulLp([(39, b"0"), (102, b"0")], b"0")
    async with scripted(tmp_path, lp) as (_, adapter, sink):
        adapter.send(child("C1", qty=4))
        await eventually(lambda: lp.orders, "the child at the LP")
        adapter.cancel("C1")
        await eventually(lambda: lp.cancels, "the cancel at the LP")
        # a status request for another child, answered after the refusal:
        # by then a request for C1 would have been sent
        adapter.send(child("C2", qty=4))
        await eventually(lambda: len(lp.orders) == 2, "the second child at the LP")
        adapter.cancel("C2")
        await eventually(lambda: len(lp.cancels) == 2, "the second cancel at the LP")
        assert lp.asked == []
        assert "C1" in adapter._open
        assert not [e for e in sink.events if isinstance(e, ChildCanceled)]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [b"7", b"9"])  # stopped, suspended
async def test_a_cancel_refused_with_the_child_stopped_or_suspended_asks_nothing(
    tmp_path: Path, status: bytes
) -> None:
    """Stopped or suspended, the child is not over at the LP (it may still
    fill): its status is not asked for, and it is not ended here."""
    lp = ForgetfulLp([(39, status), (102, b"0")], status)
    async with scripted(tmp_path, lp) as (_, adapter, sink):
        adapter.send(child("C1", qty=4))
        await eventually(lambda: lp.orders, "the child at the LP")
        adapter.cancel("C1")
        await eventually(lambda: lp.cancels, "the cancel at the LP")
        # a second child's cancel, refused after the first: by then a status
        # request for C1 would have been sent
        adapter.send(child("C2", qty=4))
        await eventually(lambda: len(lp.orders) == 2, "the second child at the LP")
        adapter.cancel("C2")
        await eventually(lambda: len(lp.cancels) == 2, "the second cancel at the LP")
        assert lp.asked == []
        assert "C1" in adapter._open
        assert not [e for e in sink.events if isinstance(e, ChildCanceled)]
