"""A checkpoint written in slices never takes the journal's place ahead
of what the journal holds.

Its slices are read from the live state, which may already hold a change
whose entries are not written yet: a write that failed (a full disk),
tried again every 0.1 s, and nothing of that turn left the process.  The
new file must not replace the journal before those entries are in it;
otherwise a crash brings back, from the checkpoint, a change the journal
never held and no client was told of, without the reports and bookings
that go with it."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest
from test_refused_before_a_crash import started

from gateway.fix import codec
from gateway.fix.session import Session
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.journal import OrderJournal
from matcher.orders import OrdStatus


def request(msg_type: bytes, body: list[tuple[int, bytes]], seq: int) -> codec.FixMessage:
    now = time.time()
    header = [(34, b"%d" % seq), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(now))]
    header.append((56, b"GATEWAY"))
    raw = codec.encode_message(b"FIX.4.4", msg_type, sorted(header), codec.encode_fields(body))
    return codec.parse_frame(raw)


def resting_order(cl_ord_id: bytes, seq: int) -> codec.FixMessage:
    """A buy limit order far from any price: it rests, no LP asked."""
    body = [(11, cl_ord_id), (38, b"1000"), (40, b"2"), (44, b"0.5"), (54, b"1")]
    body += [(55, b"EUR/USD"), (59, b"1"), (60, codec.format_utc_timestamp(time.time()))]
    return request(b"D", body, seq)


def cancel(cl_ord_id: bytes, orig: bytes, seq: int) -> codec.FixMessage:
    body = [(11, cl_ord_id), (41, orig), (54, b"1"), (55, b"EUR/USD")]
    body.append((60, codec.format_utc_timestamp(time.time())))
    return request(b"F", body, seq)


async def until_checkpoint_ends(flow: OrderFlow) -> None:
    deadline = time.monotonic() + 30
    while flow.checkpointing:
        assert time.monotonic() < deadline, "the checkpoint never ended"
        await asyncio.sleep(0.01)  # polling, with a deadline


def crash(journal: OrderJournal, sessions: dict[str, Session]) -> None:
    """kill -9: what was not written stays unwritten."""
    for s in sessions.values():
        store = s.store
        store._pend_seqs.clear()  # type: ignore[attr-defined]
        store._pend_msgs.clear()  # type: ignore[attr-defined]
        store._dirty = False  # type: ignore[attr-defined]
        store.close()
    journal._file.close()  # nothing pending written


@pytest.mark.asyncio
async def test_a_change_not_yet_written_is_not_brought_back_by_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, journal, sessions = started(tmp_path)
    session = sessions["CLIENT1"]
    flow.on_message(session, resting_order(b"R1", 2), time.time())
    flow.reports.outbox.write_pending()  # acknowledged: journal, store, socket
    (acked,) = flow.matcher.open_orders("CLIENT1")

    # a checkpoint starts (its state is read as its slices are written)
    flow._start_checkpoint(journal)
    assert flow.checkpointing

    # the disk fills up: the cancel's batch cannot be written, nor anything
    # after it, and nothing of the turn leaves
    live = journal.fileno()
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if fd == live:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    flow.on_message(session, cancel(b"R1-X", b"R1", 3), time.time())
    flow.reports.outbox.write_pending()  # tried again every 0.1 s
    assert journal._unwritten is not None
    assert flow.matcher.open_orders("CLIENT1") == []  # canceled in memory only

    # the checkpoint goes on meanwhile: its slices (small writes that still
    # fit), the sync, the step that puts the new file in the journal's place
    await until_checkpoint_ends(flow)
    crash(journal, sessions)
    monkeypatch.undo()  # the disk has room again at the restart

    flow, journal, sessions = started(tmp_path)
    try:
        store = sessions["CLIENT1"].store
        told = [codec.parse_frame(raw) for _, raw in store.get_sent(1, 2**31)]
        # the client was told its order is New, and nothing more
        assert [m.get(150) for m in told] == [b"0"]
        (order,) = flow.matcher.open_orders("CLIENT1")
        assert order.order_id == acked.order_id
        assert order.status is OrdStatus.NEW
    finally:
        journal.close()
        for s in sessions.values():
            s.store.close()
