"""A final order the matcher forgets (past ``orders.retain_finished``) in the
same call that made it final still has its final state journaled."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from test_flow_recovery import a_day_order

from config import default_config_path, load_config
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import DayEnds, OrderState, Run
from router.model import Level, Quote


def flow_keeping(path: Path, retain: int) -> tuple[OrderFlow, OrderJournal]:
    config = load_config(str(default_config_path()))
    orders = msgspec.structs.replace(config.orders, retain_finished=retain)
    config = msgspec.structs.replace(config, orders=orders)
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    built = build_order_flow(config, sessions, journal, Outbox(journal.flush), time.time)
    return built, journal


@pytest.mark.asyncio
async def test_day_orders_expired_past_retain_finished_stay_expired_after_a_crash(
    tmp_path: Path,
) -> None:
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(time.time() + 3600))
    for n in (1, 2, 3):
        journal.add(OrderState(a_day_order(f"4O{n}")))
    journal.close()
    built, journal = flow_keeping(tmp_path, retain=2)
    try:
        assert len(built.matcher.open_orders("CLIENT1")) == 3
        built.end_trading_day(time.time())  # all three expire, the client is told
        assert built.matcher.open_orders("CLIENT1") == []
    finally:
        journal.close()  # the process dies before the day end's checkpoint replaces the journal
    again, journal = flow_keeping(tmp_path, retain=2)
    try:
        assert not again.end_day_missed(time.time())  # the day end is journaled
        # the client was told all three expired: none may be live again
        assert [o.order_id for o in again.matcher.open_orders("CLIENT1")] == []
    finally:
        journal.close()


def send(
    built: OrderFlow, client: str, cl_ord_id: str, side: bytes, tif: bytes, qty: bytes = b"1000"
) -> None:
    """A EUR/USD limit at 1.00000 (far from any LP quote: nothing is routed)."""
    body = [
        (11, cl_ord_id.encode()),
        (38, qty),
        (40, b"2"),
        (44, b"1.00000"),
        (54, side),
        (55, b"EUR/USD"),
        (59, tif),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    header = [(34, b"1"), (49, client.encode()), (52, b"20240101-00:00:00"), (56, b"GATEWAY")]
    raw = codec.encode_message(b"FIX.4.4", b"D", header, codec.encode_fields(body))
    built.on_message(built.sessions[client], codec.parse_frame(raw), time.time())


@pytest.mark.asyncio
async def test_makers_filled_past_retain_finished_stay_filled_after_a_restart(
    tmp_path: Path,
) -> None:
    built, journal = flow_keeping(tmp_path, retain=2)
    try:
        # an LP quote far from the orders: a USD price, nothing routed
        quote = Quote("LP_A", "EUR/USD", (Level(90_000, 100),), (Level(110_000, 100),), time.time())
        built.routing.on_lp_event(quote)
        for n in (1, 2, 3):
            send(built, "CLIENT2", f"S{n}", b"2", b"1")  # GTC sells rest
        send(built, "CLIENT1", "B1", b"1", b"3", b"2000")  # an IOC buy crosses S1 and S2
        assert [o.cl_ord_id for o in built.matcher.open_orders("CLIENT2")] == ["S3"]
        journal.flush()
    finally:
        journal.close()  # a restart (crash or clean stop) before the next checkpoint
    again, journal = flow_keeping(tmp_path, retain=2)
    try:
        # CLIENT2 was told S1 and S2 filled: they must not rest (and fill) again
        assert [o.cl_ord_id for o in again.matcher.open_orders("CLIENT2")] == ["S3"]
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_quiet_clients_final_orders_outlast_a_busy_clients_across_a_restart(
    tmp_path: Path,
) -> None:
    """The final orders kept are shared between clients in the matcher and
    in the journal's reading alike: a quiet client's ClOrdIDs are still
    known after a busy client ended many more orders, and a restart."""
    built, journal = flow_keeping(tmp_path, retain=20)
    try:
        quote = Quote("LP_A", "EUR/USD", (Level(90_000, 100),), (Level(110_000, 100),), time.time())
        built.routing.on_lp_event(quote)
        for n in range(3):
            send(built, "CLIENT2", f"Q{n}", b"2", b"3")  # an IOC far from any price: ends
        for n in range(60):
            send(built, "CLIENT1", f"B{n}", b"1", b"3")
        assert built.matcher.status("CLIENT2", "Q0") is not None
        journal.flush()
    finally:
        journal.close()
    again, journal = flow_keeping(tmp_path, retain=20)
    try:
        assert [again.matcher.status("CLIENT2", f"Q{n}") is not None for n in range(3)] == [
            True
        ] * 3
        assert again.matcher.status("CLIENT1", "B59") is not None
        assert again.matcher.status("CLIENT1", "B0") is None
    finally:
        journal.close()
