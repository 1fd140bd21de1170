"""What the journal gives back to the clients' stores at a start.

An order refused before the matcher (shed, throttled, over a limit)
leaves no order behind, only its reject.  When the process dies after the
journal took the reject and before the client's store did, the restart puts
the reject in the store, and the client, which never received it, sends
the order again with PossDupFlag: it is not worked then, or the client
would be told Rejected, then New, for one ClOrdID."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import msgspec
import pytest

from config import default_config_path, load_config
from config.schema import MarginSettings, RiskSettings
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.session import Session
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.journal import OrderJournal
from gateway.storage.session_store import FileStore

# no margin, no notional limit: the LPs are not started, and no price
# would let an order through them
CONFIG = msgspec.structs.replace(
    load_config(str(default_config_path())),
    margin=MarginSettings(),
    accounts={},
    risk=RiskSettings(),
)


def started(data_dir: Path) -> tuple[OrderFlow, OrderJournal, dict[str, Session]]:
    sessions = {
        s.TargetCompID: Session(s, FileStore(data_dir / "sessions", s.session_id))
        for s in CONFIG.sessions
        if s.Application != "dropcopy"
    }
    journal = OrderJournal(data_dir / "orders")
    flow = build_order_flow(CONFIG, sessions, journal, Outbox(journal.flush), time.time)
    return flow, journal, sessions


def request(
    msg_type: bytes, body: list[tuple[int, bytes]], seq: int, poss_dup: bool = False
) -> codec.FixMessage:
    now = time.time()
    header = [(34, b"%d" % seq), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(now))]
    header.append((56, b"GATEWAY"))
    if poss_dup:
        header += [(43, b"Y"), (122, codec.format_utc_timestamp(now - 5))]
    raw = codec.encode_message(b"FIX.4.4", msg_type, sorted(header), codec.encode_fields(body))
    return codec.parse_frame(raw)


def order(cl_ord_id: bytes, seq: int, poss_dup: bool) -> codec.FixMessage:
    """A buy limit order far from any price: it rests, no LP asked."""
    body = [(11, cl_ord_id), (38, b"1000"), (40, b"2"), (44, b"0.5"), (54, b"1")]
    body += [(55, b"EUR/USD"), (59, b"1"), (60, codec.format_utc_timestamp(time.time()))]
    return request(b"D", body, seq, poss_dup)


@pytest.mark.asyncio
async def test_an_order_refused_just_before_a_crash_is_not_worked_when_resent(
    tmp_path: Path,
) -> None:
    flow, journal, sessions = started(tmp_path)
    session = sessions["CLIENT1"]
    session.waited = 1.0  # behind the load: shed
    flow.on_message(session, order(b"X1", 2, poss_dup=False), time.time())
    journal.flush()  # the journal first, as the outbox writes
    # the crash: the stores never get what they held
    for s in sessions.values():
        s.store._pend_seqs.clear()  # type: ignore[attr-defined]
        s.store._pend_msgs.clear()  # type: ignore[attr-defined]
        s.store._dirty = False  # type: ignore[attr-defined]
        s.store.close()
    journal.close()

    flow, journal, sessions = started(tmp_path)
    try:
        session = sessions["CLIENT1"]
        stored = [codec.parse_frame(raw) for _, raw in session.store.get_sent(1, 2**31)]
        assert [(m.get(11), m.get(150)) for m in stored] == [(b"X1", b"8")]
        before = session.store.next_sender_seq
        # the client never got the reject: it resends the order
        flow.on_message(session, order(b"X1", 2, poss_dup=True), time.time())
        assert session.store.next_sender_seq == before
        assert flow.matcher.open_orders("CLIENT1") == []
        # one it never sent before is worked as usual
        flow.on_message(session, order(b"X2", 3, poss_dup=True), time.time())
        assert [o.cl_ord_id for o in flow.matcher.open_orders("CLIENT1")] == ["X2"]
        # the day ended, its ClOrdIDs are free again: the refused one too
        flow.end_trading_day(time.time())
        flow.on_message(session, order(b"X1", 4, poss_dup=True), time.time())
        assert [o.cl_ord_id for o in flow.matcher.open_orders("CLIENT1")] == ["X2", "X1"]
    finally:
        journal.close()
        for s in sessions.values():
            s.store.close()


@pytest.mark.asyncio
async def test_a_store_restored_from_a_copy_of_the_morning_is_completed_whole(
    tmp_path: Path,
) -> None:
    """More messages than a crash window holds (10,000): the client's store
    restored from a copy taken before them, the journal puts back every
    one, not the latest only."""
    flow, journal, sessions = started(tmp_path)
    session = sessions["CLIENT1"]
    session.store.flush()
    store_dir = tmp_path / "sessions"
    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)  # the morning's copy
    seq = 2
    for n in range(5_100):  # an order and its cancel: 10,200 reports
        flow.on_message(session, order(b"K%d" % n, seq, poss_dup=False), time.time())
        cancel = [(11, b"K%d-X" % n), (41, b"K%d" % n), (54, b"1"), (55, b"EUR/USD")]
        cancel.append((60, codec.format_utc_timestamp(time.time())))
        flow.on_message(session, request(b"F", cancel, seq + 1), time.time())
        seq += 2
    told = session.store.next_sender_seq - 1
    assert told == 10_200  # an ack and a cancel each
    journal.flush()
    for s in sessions.values():
        s.store.close()
    journal.close()
    shutil.rmtree(store_dir)
    shutil.copytree(copy, store_dir)  # the store restored from it

    flow, journal, sessions = started(tmp_path)
    try:
        store = sessions["CLIENT1"].store
        sent = store.get_sent(1, 2**31)
        assert [s for s, _ in sent] == list(range(1, told + 1))
    finally:
        journal.close()
        for s in sessions.values():
            s.store.close()
