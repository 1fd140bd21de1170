"""The order flow taking back what a journal holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from config import (
    ClientRiskSettings,
    ConfigError,
    RiskSettings,
    default_config_path,
    load_config,
)
from config.schema import MarginSettings
from gateway.cluster import Cluster, CopiedOrders, session_key
from gateway.daemon import build_order_flow, carry_clients
from gateway.fix import codec
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow, next_day_end
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import (
    ClientState,
    DayEnds,
    Entry,
    Expiring,
    Message,
    OrderState,
    Run,
    Sent,
)
from gateway.orderflow.rules import build_rules
from matcher.engine import CancelOrder, NewOrder
from matcher.orders import CxlRejResponseTo, Order, OrdStatus, PendingChange
from router.model import ChildOrder, OrdType, Side, TimeInForce


def an_order(order_id: str, symbol: str, status: OrdStatus = OrdStatus.NEW) -> Order:
    return Order(
        order_id=order_id,
        client="CLIENT1",
        cl_ord_id=f"C-{order_id}",
        orig_cl_ord_id=None,
        symbol=symbol,
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        qty=10,
        price=100_000,
        seq=int(order_id.split("O")[1]),
        status=status,
        leaves_qty=0 if status is OrdStatus.CANCELED else 10,
    )


def journal_with(path: Path, *orders: Order) -> None:
    journal = OrderJournal(path)
    list(journal.replay())
    journal.add(Run(4))
    for order in orders:
        journal.add(OrderState(order))
    journal.close()


def flow(
    path: Path,
    clock: Callable[[], float] = time.time,
    max_open_position: int | None = None,
    retain_finished: int | None = None,
) -> tuple[OrderFlow, OrderJournal]:
    """The default config's flow on the journal in ``path``; with
    ``max_open_position`` (units), under that limit alone, margin left
    out; with ``retain_finished``, keeping that many final orders."""
    config = load_config(str(default_config_path()))
    if retain_finished is not None:
        orders = msgspec.structs.replace(config.orders, retain_finished=retain_finished)
        config = msgspec.structs.replace(config, orders=orders)
    if max_open_position is not None:
        limit = Decimal(max_open_position)
        risk = RiskSettings(default=ClientRiskSettings(max_open_position=limit))
        config = msgspec.structs.replace(config, risk=risk, margin=MarginSettings(), accounts={})
    sessions = {
        s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions if s.TargetCompID
    }
    journal = OrderJournal(path)
    try:
        built = build_order_flow(config, sessions, journal, Outbox(journal.flush), clock)
    except BaseException:
        journal.close()
        raise
    return built, journal


def test_orders_come_back_under_a_new_run(tmp_path: Path) -> None:
    journal_with(
        tmp_path,
        an_order("4O1", "EUR/USD"),
        an_order("4O2", "EUR/USD", OrdStatus.CANCELED),
    )
    recovered, journal = flow(tmp_path)
    try:
        assert journal.run == 5
        (open_order,) = recovered.matcher.open_orders()
        assert open_order.order_id == "4O1"
        status = recovered.matcher.status("CLIENT1", "C-4O2")
        assert status is not None
        assert status.status is OrdStatus.CANCELED
        assert recovered.reports.open_by_client == {"CLIENT1": 1}
    finally:
        journal.close()
    # the checkpoint taken at the start holds the same orders
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    states = [e.order.order_id for e in entries if isinstance(e, OrderState)]
    assert states == ["4O2", "4O1"]


def test_open_orders_in_an_instrument_no_longer_configured_refuse_the_start(
    tmp_path: Path,
) -> None:
    journal_with(tmp_path, an_order("4O1", "DOGE/USD"), an_order("4O2", "EUR/USD"))
    with pytest.raises(ConfigError, match="DOGE/USD is not configured"):
        flow(tmp_path)
    # nothing was changed: the same journal opens again
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    assert len(entries) == 3


def checkpointing_flow(path: Path, fsync: bool = False) -> tuple[OrderFlow, OrderJournal, Session]:
    """The default config's flow on a journal holding one open order, a
    checkpoint due whenever the journal passes 1 MiB; and CLIENT1's session."""
    journal_with(path, an_order("4O1", "EUR/USD"))
    config = load_config(str(default_config_path()))
    config = msgspec.structs.replace(
        config, orders=msgspec.structs.replace(config.orders, journal_checkpoint_mb=1)
    )
    sessions = {s.TargetCompID: Session(s, MemoryStore()) for s in config.sessions}
    journal = OrderJournal(path, fsync=fsync)
    flow = build_order_flow(config, sessions, journal, Outbox(journal.flush), time.time)
    return flow, journal, sessions["CLIENT1"]


async def until_checkpoint_ends(flow: OrderFlow) -> None:
    """Run the loop until the checkpoint under way has ended, one way or the other."""
    deadline = time.monotonic() + 30
    while flow.checkpointing:
        assert time.monotonic() < deadline, "the checkpoint never ended"
        await asyncio.sleep(0.01)  # polling, with a deadline


@pytest.mark.asyncio
@pytest.mark.parametrize("fsync", [False, True])
async def test_a_journal_grown_past_its_bound_is_checkpointed(tmp_path: Path, fsync: bool) -> None:
    flow, journal, client = checkpointing_flow(tmp_path, fsync)
    try:
        # 1.5 MiB of client messages (their copies go to the journal); the
        # journal is checkpointed once it passes 1 MiB, and grows again after
        started = []
        for _ in range(750):
            flow.reports.send(client, b"j", b"58=" + b"x" * 2000 + b"\x01", 0.0)
            await asyncio.sleep(0)  # pacing: one message a turn
            started.append(flow.checkpointing)
        # taken beside the loop: messages went on being journaled meanwhile
        assert any(started)
        await until_checkpoint_ends(flow)
        assert journal.size < 1 << 20
        assert client.store.next_sender_seq == 751  # every message kept for resend
        (open_order,) = flow.matcher.open_orders()
        assert open_order.order_id == "4O1"
    finally:
        journal.close()
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    assert [e.order.order_id for e in entries if isinstance(e, OrderState)] == ["4O1"]


@pytest.mark.asyncio
async def test_a_checkpoint_that_cannot_be_written_is_given_up_and_tried_again_later(
    tmp_path: Path,
) -> None:
    def failing(run: int) -> Iterator[Entry]:
        yield Run(run)
        raise RuntimeError("the state cannot be read")

    flow, journal, client = checkpointing_flow(tmp_path)
    flow.checkpoint_state = failing
    try:
        sent = 0
        checkpointed = False
        while not checkpointed:
            flow.reports.send(client, b"j", b"58=" + b"x" * 2000 + b"\x01", 0.0)
            sent += 1
            await asyncio.sleep(0)
            checkpointed = flow.checkpointing
        await until_checkpoint_ends(flow)  # given up
        assert not journal.next_path.exists()
        flow.reports.send(client, b"j", b"58=after\x01", 0.0)
        await asyncio.sleep(0)
        assert not flow.checkpointing  # not again before CHECKPOINT_RETRY
    finally:
        journal.close()
    # the journal is whole: the order, and every message copy after it
    again = OrderJournal(tmp_path)
    entries = list(again.replay())
    again.close()
    assert [e.order.order_id for e in entries if isinstance(e, OrderState)] == ["4O1"]
    assert sum(1 for e in entries if isinstance(e, Message)) == sent + 1


@pytest.mark.asyncio
async def test_a_client_state_taken_over_replaces_that_clients_alone_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    """What a gateway of a cluster puts in force when it takes a client's
    session over: that client's positions and holdings replaced, no LP's
    and no other client's moved, and journaled for its own restart."""
    built, journal = flow(tmp_path)
    try:
        built.ledger.apply_fill("LP_A", "CLIENT1", "EUR/USD", Side.BUY, 5, 108_000)
        built.ledger.apply_fill("LP_A", "CLIENT2", "EUR/USD", Side.SELL, 2, 108_000)
        built.accounts.trade("CLIENT1", "EUR/USD", Side.BUY, 5, 108_000)
        here = msgspec.msgpack.decode(built.client_state("CLIENT1"), type=ClientState)
        assert here.client == "CLIENT1"
        assert here.positions == {"EUR/USD": 5}
        assert here.holdings["EUR/USD"][0] == 5

        elsewhere = ClientState(
            "CLIENT1", {"EUR/USD": -3, "GBP/USD": 2}, {"EUR/USD": (-3, 1.08, 12.5)}
        )
        built.adopt_client("CLIENT1", msgspec.msgpack.encode(elsewhere))
        assert built.ledger.positions_of("CLIENT1") == {"EUR/USD": -3, "GBP/USD": 2}
        assert built.accounts.holdings_of("CLIENT1") == {"EUR/USD": (-3, 1.08, 12.5)}
        assert built.accounts.position("CLIENT1", "EUR/USD") == -3
        assert built.ledger.positions_of("CLIENT2") == {"EUR/USD": -2}
        assert built.ledger.lp_position("LP_A", "EUR/USD") == 3
        # a state copied for another client is not put in force
        built.adopt_client("CLIENT2", msgspec.msgpack.encode(elsewhere))
        assert built.ledger.positions_of("CLIENT2") == {"EUR/USD": -2}
    finally:
        journal.close()
    again, journal = flow(tmp_path)
    try:
        assert again.ledger.positions_of("CLIENT1") == {"EUR/USD": -3, "GBP/USD": 2}
        assert again.accounts.holdings_of("CLIENT1") == {"EUR/USD": (-3, 1.08, 12.5)}
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_client_state_that_cannot_be_read_leaves_the_session_served_as_it_was(
    tmp_path: Path,
) -> None:
    from config import ClusterSettings
    from gateway.cluster import Cluster
    from gateway.daemon import carry_clients

    built, journal = flow(tmp_path)
    try:
        built.ledger.apply_fill("LP_A", "CLIENT1", "EUR/USD", Side.BUY, 5, 108_000)
        cluster = Cluster(ClusterSettings(servers=("nats://127.0.0.1:1",)), "a")
        carry_clients(cluster, built, built.sessions)
        assert cluster.on_taken is not None
        assert cluster.client_state is not None
        # the state of a client's session by its key; none for another key
        assert cluster.client_state("FIX=2E4=2E4.GATEWAY.CLIENT1") is not None
        assert cluster.client_state("FIX=2E4=2E4.GATEWAY.NOBODY") is None
        # another version's encoding: not put in force, and nothing raised
        cluster.on_taken(built.sessions["CLIENT1"], b"\xc1 not a client state")
        assert built.ledger.positions_of("CLIENT1") == {"EUR/USD": 5}
        # a readable one is
        state = ClientState("CLIENT1", {"EUR/USD": 2}, {})
        cluster.on_taken(built.sessions["CLIENT1"], msgspec.msgpack.encode(state))
        assert built.ledger.positions_of("CLIENT1") == {"EUR/USD": 2}
    finally:
        journal.close()


def routed_market(order_id: str, routed: int) -> Order:
    """An IOC market order with ``routed`` lots out at an LP (its child
    unknown here)."""
    return Order(
        order_id=order_id,
        client="CLIENT1",
        cl_ord_id=f"C-{order_id}",
        orig_cl_ord_id=None,
        symbol="EUR/USD",
        side=Side.BUY,
        ord_type=OrdType.MARKET,
        tif=TimeInForce.IOC,
        qty=routed,
        price=None,
        seq=int(order_id.split("O")[1]),
        leaves_qty=routed,
        routing_qty=routed,
    )


def sent_texts(built: OrderFlow) -> list[bytes]:
    store = built.sessions["CLIENT1"].store
    return [raw for _seq, raw in store.get_sent(1, 10**6)]


@pytest.mark.asyncio
async def test_parked_orders_are_worked_no_more_and_unparked_as_they_were(
    tmp_path: Path,
) -> None:
    """A gateway of a cluster parks its clients' orders at start; a client
    the cluster's copy knows nothing of gets its own back."""
    journal_with(tmp_path, an_order("4O1", "EUR/USD"), routed_market("4O2", 3))
    built, journal = flow(tmp_path)
    try:
        built.park_all()
        assert built.matcher.open_count == 0
        assert [o.order_id for o in built.parked["CLIENT1"]] == ["4O1", "4O2"]
        assert built.reports.open_by_client == {"CLIENT1": 0}
        assert built.accounts._open == {}
        assert built.matcher.status("CLIENT1", "C-4O1") is None
        # a checkpoint keeps them
        built._take_checkpoint(journal)
        assert built.unpark_client("CLIENT1") == 2
        assert built.parked == {}
        (resting,) = built.matcher.open_orders("CLIENT1")
        assert resting.order_id == "4O1"
        assert built.reports.open_by_client == {"CLIENT1": 1}
        assert set(built.accounts._open) == {"4O1"}
        # the market order's lots out through the gateway before are not filled
        canceled = built.matcher.status("CLIENT1", "C-4O2")
        assert canceled is not None
        assert canceled.status is OrdStatus.CANCELED
        assert any(b"58=its gateway failed" in raw for raw in sent_texts(built))
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_unparked_orders_cross_another_clients_order_that_came_in_meanwhile(
    tmp_path: Path,
) -> None:
    journal_with(tmp_path, an_order("4O1", "EUR/USD"))
    built, journal = flow(tmp_path)
    try:
        built.park_all()
        sell = NewOrder(
            "CLIENT2", "S1", "EUR/USD", Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 4, 99_990
        )
        built.routing.publish(built.matcher.submit(sell, None), time.time())
        assert built.unpark_client("CLIENT1") == 1
        buy = built.matcher.status("CLIENT1", "C-4O1")
        assert buy is not None
        assert (buy.status, buy.cum_qty, buy.leaves_qty) == (OrdStatus.PARTIALLY_FILLED, 4, 6)
        assert buy.avg_px == 99_990
        sold = built.matcher.status("CLIENT2", "S1")
        assert sold is not None
        assert sold.status is OrdStatus.FILLED
        assert any(b"150=F" in raw for raw in sent_texts(built))
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_clients_orders_taken_over_replace_those_held_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    journal_with(tmp_path, an_order("4O1", "EUR/USD"), an_order("4O2", "EUR/USD"))
    built, journal = flow(tmp_path)
    copied = [
        msgspec.structs.replace(an_order("4O2", "EUR/USD"), cum_qty=4, leaves_qty=6),
        msgspec.structs.replace(an_order("4O9", "EUR/USD"), price=99_000),
        routed_market("4O10", 2),
    ]
    try:
        built.park_all()
        taken = built.adopt_orders("CLIENT1", [(built.order_state(o), 0.0, False) for o in copied])
        assert taken == 3
        assert built.parked == {}
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O2", "4O9"]
        held = built.matcher.order_of("CLIENT1", "C-4O2")
        assert held is not None
        assert (held.cum_qty, held.leaves_qty) == (4, 6)
        assert built.matcher.status("CLIENT1", "C-4O1") is None  # not in the copy: dropped
        assert built.reports.open_by_client == {"CLIENT1": 2}
        assert set(built.accounts._open) == {"4O2", "4O9"}
        assert built.accounts.open_lots("CLIENT1", "EUR/USD", Side.BUY) == 6 + 10
        ended = built.matcher.status("CLIENT1", "C-4O10")
        assert ended is not None
        assert (ended.status, ended.text) == (OrdStatus.CANCELED, "")
        assert any(b"58=its gateway failed" in raw for raw in sent_texts(built))
        # a cancel of a taken order is accepted
        done = built.matcher.cancel(CancelOrder("CLIENT1", "X1", "C-4O9"))
        assert done.executions
        assert done.executions[0].status is OrdStatus.CANCELED
    finally:
        journal.close()
    again, journal = flow(tmp_path)
    try:
        open_ids = [ex.order_id for ex in again.matcher.open_orders("CLIENT1")]
        assert open_ids == ["4O2", "4O9"]  # the cancel above was never journaled
        assert again.matcher.status("CLIENT1", "C-4O1") is None
    finally:
        journal.close()


def send_new_order(built: OrderFlow, cl_ord_id: str, lots: int) -> codec.FixMessage:
    """CLIENT1 sends a GTC limit buy of ``lots`` EUR/USD lots; the answer."""
    session = built.sessions["CLIENT1"]
    deliver_new_order(built, cl_ord_id, lots)
    seq = session.store.next_sender_seq - 1
    ((_, answer),) = session.store.get_sent(seq, seq)
    return codec.parse_frame(answer)


def deliver_new_order(built: OrderFlow, cl_ord_id: str, lots: int) -> None:
    """CLIENT1's GTC limit buy of ``lots`` EUR/USD lots handed to the flow."""
    session = built.sessions["CLIENT1"]
    body = [
        (11, cl_ord_id.encode()),
        (38, str(lots * 1000).encode()),
        (40, b"2"),
        (44, b"1.00000"),
        (54, b"1"),
        (55, b"EUR/USD"),
        (59, b"1"),
        (60, codec.format_utc_timestamp(time.time())),
    ]
    header = [(34, b"1"), (49, b"CLIENT1"), (52, b"20240101-00:00:00"), (56, b"GATEWAY")]
    raw = codec.encode_message(b"FIX.4.4", b"D", header, codec.encode_fields(body))
    built.on_message(session, codec.parse_frame(raw), time.time())


@pytest.mark.asyncio
async def test_open_orders_count_against_the_position_limit_after_a_restart_and_unparked(
    tmp_path: Path,
) -> None:
    """The open lots the position limit counts come back with the orders
    of a journal (a replace waiting for an order's routing at its new
    quantity), leave with them when they are parked and come back when
    they are unparked."""
    waiting = msgspec.structs.replace(
        routed_market("4O2", 10),
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        price=100_000,
        status=OrdStatus.PENDING_REPLACE,
        pending=PendingChange(CxlRejResponseTo.REPLACE, "C-4O2-R", 15),
        aliases=("C-4O2-R",),
    )
    journal_with(tmp_path, an_order("4O1", "EUR/USD"), waiting)
    built, journal = flow(tmp_path, max_open_position=30_000)  # 30 lots
    try:
        assert built.accounts.open_lots("CLIENT1", "EUR/USD", Side.BUY) == 25
        refused = send_new_order(built, "N1", 6)
        assert (refused.get(150), refused.get(103)) == (b"8", b"3")
        assert refused.get(58) == (
            b"max open position exceeded: EUR/USD position would be 31000 with the open buys "
            b"(25000) filled too, |31000| > 30000 (limit max_open_position)"
        )
        assert send_new_order(built, "N2", 5).get(150) == b"0"
        built.park_all()
        assert built.accounts.open_lots("CLIENT1", "EUR/USD", Side.BUY) == 0
        assert built.unpark_client("CLIENT1") == 3
        # the routed lots came back unfilled and the replace was applied
        replaced = built.matcher.order_of("CLIENT1", "C-4O2-R")
        assert replaced is not None
        assert (replaced.leaves_qty, replaced.routing_qty) == (15, 0)
        assert built.accounts.open_lots("CLIENT1", "EUR/USD", Side.BUY) == 30
        assert send_new_order(built, "N3", 1).get(150) == b"8"
    finally:
        journal.close()


class FakeCluster:
    """What :func:`carry_clients` hooks into, without NATS."""

    writer = "gw-b/2"

    def __init__(self) -> None:
        self.copied: list[tuple[str, str, bool]] = []
        self.client_state: object = None
        self.open_orders: Any = None
        self.on_taken: object = None
        self.on_claimed: Any = None

        self.whole: list[str] = []
        self.serving_keys: set[str] = set()
        self.attended: list[str] = []

    def copy_order(
        self, key: str, order_id: str, final: bool, data: bytes, day_over: bool = False
    ) -> None:
        self.copied.append((key, order_id, final))

    def copy_all(self, key: str) -> None:
        self.whole.append(key)

    def fence_if_late(self) -> None:
        pass

    def serving(self, key: str) -> bool:
        return key in self.serving_keys

    def attend(self, session: Session) -> None:
        self.attended.append(session.session_id)


@pytest.mark.asyncio
async def test_a_claimed_session_takes_the_copys_orders_or_its_own_back(tmp_path: Path) -> None:
    journal_with(tmp_path, an_order("4O1", "EUR/USD"))
    built, journal = flow(tmp_path)
    cluster = FakeCluster()
    try:
        carry_clients(cast(Cluster, cluster), built, built.sessions)
        session = built.sessions["CLIENT1"]
        key = session_key(session)
        # an order changed is copied with its client's session
        built.reports.publish(
            built.matcher.cancel(CancelOrder("CLIENT1", "X1", "C-4O1")), time.time()
        )
        assert cluster.copied == [(key, "4O1", True)]
        journal.close()
        journal_with(tmp_path, an_order("4O2", "EUR/USD"))
        built, journal = flow(tmp_path)
        carry_clients(cast(Cluster, cluster), built, built.sessions)
        built.park_all()
        # a cluster just formed: the copy knows nothing of the client
        cluster.on_claimed(session, None)
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        assert cluster.open_orders(key) == [
            ("4O2", built.order_state(built.matcher.open_of("CLIENT1")[0]), False)
        ]
        # written last by this process, nothing parked: the client logs on
        # again where it is served, nothing changes
        cluster.on_claimed(session, CopiedOrders(cluster.writer, {}))
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        # parked when its lease was lost, claimed back with no other writer
        # since: its own come back
        built.park_client("CLIENT1")
        assert built.matcher.open_orders("CLIENT1") == []
        cluster.on_claimed(session, CopiedOrders(cluster.writer, {}))
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        # written by another, but not whole (a gateway of an earlier
        # version, one that ran alone): its own are kept
        copied = built.order_state(an_order("4O7", "EUR/USD"))
        built.park_client("CLIENT1")
        cluster.on_claimed(session, CopiedOrders("gw-a/1", {"4O7": copied}))
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        # written by another, whole: the copy's orders take the place of these
        cluster.on_claimed(session, CopiedOrders("gw-a/1", {"4O7": copied}, complete=True))
        assert [ex.order_id for ex in built.matcher.open_orders("CLIENT1")] == ["4O7"]
        # after each claim the copy is made whole under the new lease
        assert cluster.whole == [key] * 5
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_in_a_cluster_only_the_gateway_serving_a_client_judges_its_margin(
    tmp_path: Path,
) -> None:
    """A client served elsewhere may look stopped out here (its positions
    here are stale): this gateway neither calls nor stops it out."""
    from config import ClusterSettings
    from gateway.cluster import Cluster
    from gateway.daemon import carry_clients
    from risk.accounts import Standing

    built, journal = flow(tmp_path)
    try:
        cluster = Cluster(ClusterSettings(servers=("nats://127.0.0.1:1",)), "a")
        carry_clients(cluster, built, built.sessions)
        watch = built.watch
        assert watch.serves is not None
        assert not watch.serves("CLIENT1")  # no lease held here
        judged: list[str] = []
        sunk = Standing("CLIENT1", -100.0, 1000.0, -0.1, 1.0, 0.5)
        assert sunk.stopped_out

        class Sunk:
            """Accounts (compiled: not patched) as the watch reads them."""

            params = object()

            def sweep(self, budget: int, exact: object = ()) -> list[Standing]:
                return [sunk]

        watch.accounts = Sunk()  # type: ignore[assignment]
        watch._judge = lambda standing, now: judged.append(standing.client)  # type: ignore[method-assign]
        watch.look(time.time())
        assert judged == []
        watch.serves = lambda client: True
        watch.look(time.time())
        assert judged == ["CLIENT1"]
    finally:
        journal.close()


def a_day_order(order_id: str) -> Order:
    return msgspec.structs.replace(an_order(order_id, "EUR/USD"), tif=TimeInForce.DAY)


def expired_reports(built: OrderFlow) -> list[bytes]:
    return [raw for raw in sent_texts(built) if b"\x01150=C\x01" in raw]


@pytest.mark.asyncio
async def test_a_day_that_ended_while_the_gateway_was_down_is_ended_at_its_start(
    tmp_path: Path,
) -> None:
    # one moment for the whole test: a second reading of the clock could
    # fall past the next day end (one that ends the day again)
    now = time.time()
    ended = now - 3600  # the day of the orders journaled ended an hour ago
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(ended))
    journal.add(OrderState(a_day_order("4O1")))
    journal.add(OrderState(an_order("4O2", "EUR/USD")))
    journal.close()
    built, journal = flow(tmp_path, lambda: now)
    try:
        assert built.day_ends_at == ended
        assert built.end_day_missed(now)
        assert [o.order_id for o in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        expired = built.matcher.status("CLIENT1", "C-4O1")
        assert expired is not None
        assert expired.status is OrdStatus.EXPIRED
        assert len(expired_reports(built)) == 1  # stored for the client's logon
        assert built.day_ends_at > now
        next_end = built.day_ends_at
        await until_checkpoint_ends(built)  # the day end's checkpoint
    finally:
        journal.close()
    # the next start knows the day ended: nothing ends again
    again, journal = flow(tmp_path, lambda: now)
    try:
        assert again.day_ends_at == next_end
        assert not again.end_day_missed(now)
        assert [o.order_id for o in again.matcher.open_orders("CLIENT1")] == ["4O2"]
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_day_end_moved_by_a_reload_holds_after_a_crash(tmp_path: Path) -> None:
    old_end = next_day_end(time.time(), "21:00")
    now = [old_end - 2 * 3600]  # 19:00 UTC, by the flow's clock
    journal_with(tmp_path, a_day_order("4O1"))
    built, journal = flow(tmp_path, lambda: now[0])
    try:
        built._arm_day_end(now[0])  # as the start does
        assert built.day_ends_at == old_end
        # the operator moves the day's end to 23:00 and reloads
        config = built.rules.config
        later = msgspec.structs.replace(
            config, orders=msgspec.structs.replace(config.orders, trading_day_end="23:00")
        )
        built.apply_rules(build_rules(later, built.instruments, list(built.sessions), 2))
        assert built.day_ends_at == old_end + 2 * 3600
        journal.flush()
    finally:
        if built._day_timer is not None:
            built._day_timer.cancel()
        journal.close()  # as a kill -9 leaves it
    now[0] = old_end + 1800  # 21:30: the day in force ends at 23:00
    again, journal = flow(tmp_path, lambda: now[0])
    try:
        assert again.day_ends_at == old_end + 2 * 3600
        assert not again.end_day_missed(now[0])
        assert [o.order_id for o in again.matcher.open_orders("CLIENT1")] == ["4O1"]
    finally:
        journal.close()


def rest_and_cancel(built: OrderFlow, client: str, cl_ord_id: str) -> Order:
    """``client``'s limit buy far from any price, which rests, then its
    cancel (ClOrdID ``x`` and the order's): the order's final state."""
    session = built.sessions[client]
    sent = codec.format_utc_timestamp(time.time())
    header = [(34, b"1"), (49, client.encode()), (52, sent), (56, b"GATEWAY")]
    new = [(11, cl_ord_id.encode()), (38, b"1000"), (40, b"2"), (44, b"0.50000"), (54, b"1")]
    new += [(55, b"EUR/USD"), (59, b"1"), (60, sent)]
    cancel = [(11, f"x{cl_ord_id}".encode()), (41, cl_ord_id.encode()), (54, b"1")]
    cancel += [(55, b"EUR/USD"), (60, sent)]
    for msg_type, body in ((b"D", new), (b"F", cancel)):
        raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(body))
        built.on_message(session, codec.parse_frame(raw), time.time())
    order = built.matcher.order_of(client, f"x{cl_ord_id}")
    assert order is not None
    assert order.status is OrdStatus.CANCELED
    return order


@pytest.mark.asyncio
async def test_final_orders_kept_across_a_reload_lowering_their_bound_are_known_after_a_crash(
    tmp_path: Path,
) -> None:
    """``orders.retain_finished`` lowered by a reload: the orders that ended
    before it were kept under the bound then, those after under the new
    one; a restart (its config saying the new one) knows the same
    ClOrdIDs as the gateway did."""
    unlimited = 10**9  # no client limit a price is needed for
    built, journal = flow(tmp_path, max_open_position=unlimited, retain_finished=7)
    try:
        for client, cl_ord_id in (
            ("CLIENT2", "B0"),
            *(("CLIENT1", f"A{i}") for i in range(1, 5)),
            ("CLIENT3", "C5"),
        ):
            rest_and_cancel(built, client, cl_ord_id)
        config = built.rules.config
        lowered = msgspec.structs.replace(
            config, orders=msgspec.structs.replace(config.orders, retain_finished=4)
        )
        built.apply_rules(build_rules(lowered, built.instruments, list(built.sessions), 2))
        rest_and_cancel(built, "CLIENT3", "C6")
        # the orders past the new bound forgotten at the next end: CLIENT2's
        # and CLIENT1's oldest two (a restart reading them all under either
        # bound alone keeps CLIENT2's, as within its share, not CLIENT1's third)
        known = {(o.client, o.cl_ord_id) for o in built.matcher.finished_view()}
        assert known == {
            ("CLIENT1", "xA3"),
            ("CLIENT1", "xA4"),
            ("CLIENT3", "xC5"),
            ("CLIENT3", "xC6"),
        }
        journal.flush()
    finally:
        journal.close()  # as a kill -9 leaves it
    for _ in range(2):  # and again, from the checkpoint the first start took
        again, journal = flow(tmp_path, max_open_position=unlimited, retain_finished=4)
        try:
            assert {(o.client, o.cl_ord_id) for o in again.matcher.finished_view()} == known
            assert again.matcher.status("CLIENT2", "xB0") is None
        finally:
            journal.close()


def test_a_journal_that_does_not_say_when_its_day_ends_ends_nothing(tmp_path: Path) -> None:
    journal_with(tmp_path, a_day_order("4O1"))  # written by an earlier version
    now = time.time()
    built, journal = flow(tmp_path, lambda: now)  # the day end it counts from now
    try:
        assert built.day_ends_at == next_day_end(now, "21:00")
        assert not built.end_day_missed(now)
        assert [o.order_id for o in built.matcher.open_orders("CLIENT1")] == ["4O1"]
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_day_orders_parked_or_copied_across_a_day_end_expire_when_taken(
    tmp_path: Path,
) -> None:
    journal_with(tmp_path, a_day_order("4O1"), an_order("4O2", "EUR/USD"))
    now = [time.time()]
    built, journal = flow(tmp_path, lambda: now[0])
    try:
        day_end = built.day_ends_at
        # parked and taken back the same day: all of them come back
        built.park_all()
        assert built.unpark_client("CLIENT1") == 2
        assert len(built.matcher.open_orders("CLIENT1")) == 2
        # parked, taken back after the day they were parked in ended (no
        # gateway worked them at its end): the DAY order expires
        built.park_all()
        now[0] = day_end + 5
        assert built.unpark_client("CLIENT1") == 2
        assert [o.order_id for o in built.matcher.open_orders("CLIENT1")] == ["4O2"]
        assert len(expired_reports(built)) == 1
        # copied before a day end that has passed since: expired when taken;
        # copied since, or when not known: taken open
        copied = [
            (built.order_state(a_day_order("4O7")), now[0] - 86_400, False),
            (built.order_state(a_day_order("4O8")), now[0] - 1, False),
            (built.order_state(a_day_order("4O9")), 0.0, False),
            (built.order_state(an_order("4O10", "EUR/USD")), now[0] - 86_400, False),
        ]
        assert built.adopt_orders("CLIENT1", copied) == 4
        open_ids = [o.order_id for o in built.matcher.open_orders("CLIENT1")]
        assert open_ids == ["4O8", "4O9", "4O10"]
        gone = built.matcher.status("CLIENT1", "C-4O7")
        assert gone is not None
        assert gone.status is OrdStatus.EXPIRED
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_late_day_order_expires_before_its_lots_back_from_an_lp_can_cross(
    tmp_path: Path,
) -> None:
    """A DAY buy copied a day ago with lots out at an LP through its dead
    gateway, another client's sell resting at its price here: the lots
    coming back expire the order, they do not cross; so does one whose day
    had ended where it was copied (out at an LP then), however recent."""
    seller = msgspec.structs.replace(
        an_order("4O1", "EUR/USD"), client="CLIENT2", side=Side.SELL, price=100_000
    )
    journal_with(tmp_path, seller)
    now = [time.time()]
    built, journal = flow(tmp_path, lambda: now[0])

    def routed_day_buy(order_id: str) -> Order:
        return msgspec.structs.replace(
            a_day_order(order_id), price=100_000, routing_qty=10, cl_ord_id=f"C-{order_id}"
        )

    try:
        copied = [
            (built.order_state(routed_day_buy("4O7")), now[0] - 86_400, False),
            (built.order_state(routed_day_buy("4O8")), now[0] - 1, True),
        ]
        assert built.adopt_orders("CLIENT1", copied) == 2
        for cl_ord_id in ("C-4O7", "C-4O8"):
            ended = built.matcher.status("CLIENT1", cl_ord_id)
            assert ended is not None
            assert (ended.status, ended.cum_qty) == (OrdStatus.EXPIRED, 0)
        (resting,) = built.matcher.open_orders("CLIENT2")
        assert resting.leaves_qty == 10  # nothing crossed
        assert built.accounts.holdings_of("CLIENT1") == {}
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_a_day_order_parked_while_out_at_an_lp_after_its_day_ended_expires_when_unparked(
    tmp_path: Path,
) -> None:
    order = msgspec.structs.replace(a_day_order("4O1"), routing_qty=10)
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(OrderState(order))
    journal.add(Expiring(["4O1"]))  # out at an LP when its day ended
    journal.close()
    built, journal = flow(tmp_path)
    try:
        assert built.matcher.is_expiring("4O1")
        built.park_all()
        built._take_checkpoint(journal)  # kept as expiring while parked
    finally:
        journal.close()
    built, journal = flow(tmp_path)
    try:
        built.park_all()
        assert built.unpark_client("CLIENT1") == 1  # the same day as far as the clock says
        ended = built.matcher.status("CLIENT1", "C-4O1")
        assert ended is not None
        assert ended.status is OrdStatus.EXPIRED
        assert len(expired_reports(built)) == 1
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_the_next_day_end_is_armed_a_whole_day_after_this_one(tmp_path: Path) -> None:
    """The day-end timer fired a hair early: the same day is not ended
    twice, and the next one is due a day later, not a second earlier."""
    journal_with(tmp_path, a_day_order("4O1"))
    end = next_day_end(time.time(), "21:00")
    now = [end - 0.0005]
    built, journal = flow(tmp_path, lambda: now[0])
    loop = asyncio.get_running_loop()
    try:
        # the timer is armed between these two readings of the loop's clock,
        # however long the day end takes on a loaded machine
        before = loop.time()
        built._on_day_end()
        after = loop.time()
        assert built.day_ends_at == end + 86_400
        timer = built._day_timer
        assert timer is not None
        assert timer.when() - before >= 86_400 - 0.01  # not a second earlier
        assert timer.when() - after <= 86_400 + 0.01
        timer.cancel()
        await until_checkpoint_ends(built)
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_execids_of_rejects_and_unknown_order_answers_never_repeat_across_runs(
    tmp_path: Path,
) -> None:
    """An order refused before the matcher, and a status request naming no
    order, get ExecIDs of their own: a restart's never repeat the last
    run's."""
    unknown_symbol = [
        (11, b"U1"),
        (38, b"1000"),
        (40, b"1"),
        (54, b"1"),
        (55, b"NOPE/USD"),
        (59, b"3"),
        (60, codec.format_utc_timestamp(0.0)),
    ]
    status = [(11, b"NONE1"), (54, b"1"), (55, b"EUR/USD")]
    exec_ids: list[bytes] = []
    for _ in range(2):
        built, journal = flow(tmp_path)
        try:
            session = built.sessions["CLIENT1"]
            for msg_type, body in ((b"D", unknown_symbol), (b"H", status)):
                header = [
                    (34, b"1"),
                    (49, b"CLIENT1"),
                    (52, b"20240101-00:00:00"),
                    (56, b"GATEWAY"),
                ]
                raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(body))
                built.on_message(session, codec.parse_frame(raw), time.time())
                seq = session.store.next_sender_seq - 1
                ((_, answer),) = session.store.get_sent(seq, seq)
                exec_id = codec.parse_frame(answer).get(17)
                assert exec_id
                exec_ids.append(exec_id)
        finally:
            journal.close()
    assert len(set(exec_ids)) == 4, exec_ids


@pytest.mark.asyncio
async def test_a_day_order_out_at_an_lp_at_the_day_end_expires_after_a_crash_before_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The day ends while a DAY order is out at an LP; the gateway dies
    before the day end's checkpoint takes the journal's place: the next
    start still expires the order when its lots come back."""
    order = msgspec.structs.replace(a_day_order("4O1"), routing_qty=10)
    child = ChildOrder("4O1.4C1", "4O1", "LP_A", "EUR/USD", Side.BUY, 10, 100_000)
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(time.time() + 3600))
    journal.add(OrderState(order))
    journal.add(Sent(child))
    journal.close()
    built, journal = flow(tmp_path)
    try:
        assert "4O1" in built.routing.routings
        built.end_trading_day(time.time())
        assert built.matcher.is_expiring("4O1")
        assert built.checkpointing
    finally:
        journal.close()  # the process dies: the checkpoint never replaces the journal
    again, journal = flow(tmp_path)
    try:
        assert not again.end_day_missed(time.time())  # the day end is journaled
        assert again.matcher.is_expiring("4O1")
    finally:
        journal.close()


@pytest.mark.asyncio
async def test_the_final_orders_of_an_ended_day_stay_forgotten_after_a_crash_before_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The day's final orders are forgotten at its end (their ClOrdIDs may be
    used again); the gateway dies before the day end's checkpoint takes the
    journal's place: the next start forgets them too."""
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(DayEnds(time.time() + 3600))
    journal.add(OrderState(an_order("4O1", "EUR/USD")))
    journal.add(OrderState(an_order("4O2", "EUR/USD", OrdStatus.CANCELED)))
    journal.add(OrderState(a_day_order("4O3")))
    journal.close()
    built, journal = flow(tmp_path)
    try:
        built.end_trading_day(time.time())
        assert built.matcher.status("CLIENT1", "C-4O2") is None
        expired = built.matcher.status("CLIENT1", "C-4O3")
        assert expired is not None
        assert expired.status is OrdStatus.EXPIRED
    finally:
        journal.close()  # the process dies: the checkpoint never replaces the journal
    again, journal = flow(tmp_path)
    try:
        assert again.matcher.status("CLIENT1", "C-4O2") is None
        # the ones its end expired are known as they were
        expired = again.matcher.status("CLIENT1", "C-4O3")
        assert expired is not None
        assert expired.status is OrdStatus.EXPIRED
        assert [o.order_id for o in again.matcher.open_orders("CLIENT1")] == ["4O1"]
    finally:
        journal.close()


def test_two_starts_without_a_journal_within_a_second_hand_out_other_ids() -> None:
    from gateway.daemon import run_name

    first = run_name(None, lambda: 1_800_000_000.2)
    second = run_name(None, lambda: 1_800_000_000.7)  # the same second
    assert first != second


def test_a_gateway_given_an_id_prefix_starts_its_ids_with_it(tmp_path: Path) -> None:
    from config import ConfigError, default_config_path, parse_config
    from gateway.daemon import build_order_flow
    from gateway.net.transport import Outbox
    from matcher.engine import NewOrder
    from router.model import OrdType, TimeInForce

    text = default_config_path().read_text()
    with_prefix = text.replace("[gateway]\n", '[gateway]\nid_prefix = "gw2"\n', 1)
    config = parse_config(with_prefix)
    flow = build_order_flow(config, {}, None, Outbox(), lambda: 1_800_000_000.0)
    order = NewOrder("CLIENT1", "A", "EUR/USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, 1)
    (report,) = flow.matcher.submit(order, None).executions
    assert report.order_id.startswith("gw2.")
    assert report.exec_id.startswith("gw2.")
    for bad in ("gw-2", "toolongprefix", "gw 2"):
        with pytest.raises(ConfigError, match=r"gateway.id_prefix: up to 8 letters and digits"):
            parse_config(text.replace("[gateway]\n", f'[gateway]\nid_prefix = "{bad}"\n', 1))
    clustered = with_prefix + '\n[cluster]\nservers = ["nats://127.0.0.1:4222"]\n'
    with pytest.raises(ConfigError, match=r"gateway.id_prefix: a cluster's gateways take theirs"):
        parse_config(clustered)


@pytest.mark.asyncio
async def test_a_message_of_a_session_lost_by_the_stall_check_is_not_worked(
    tmp_path: Path,
) -> None:
    """A gateway stalled past its lease (SIGSTOP, a long pause) wakes up on
    a NewOrderSingle of that very session: the check before the order flow
    acts lets the session go and parks its client's orders; the order it
    woke up on must not be worked here either (another gateway may serve
    the client now, and this one's bytes can never reach it)."""
    from types import SimpleNamespace

    from config import ClusterSettings
    from gateway.cluster.leases import _Held
    from gateway.daemon import Gateway

    journal_with(tmp_path, an_order("4O1", "EUR/USD"))
    built, journal = flow(tmp_path, max_open_position=1_000_000)
    try:
        now = [1000.0]
        aborted: list[str] = []
        server = SimpleNamespace(abort=lambda s: aborted.append(s.session_id))
        gateway = SimpleNamespace(fix_server=server, order_flow=built)
        cluster = Cluster(
            ClusterSettings(servers=("nats://127.0.0.1:1",)),
            "a",
            on_lost=lambda s, text: Gateway._lost_session(gateway, s, text),  # type: ignore[arg-type]
            clock=lambda: now[0],
        )
        carry_clients(cluster, built, built.sessions)
        session = built.sessions["CLIENT1"]
        key = session_key(session)
        # served here, its lease renewed last at 1000.0
        cluster._held[key] = _Held(session, 7, now[0], 7)
        cluster._fenced_at = now[0]
        assert cluster.serving(key)
        # the process is stopped for 10 s: its lease lapsed meanwhile
        now[0] += 10.0
        deliver_new_order(built, "AFTER-STALL", 1)
        assert aborted == ["FIX.4.4:GATEWAY->CLIENT1"]
        assert key not in cluster.held()
        assert [o.order_id for o in built.parked["CLIENT1"]] == ["4O1"]
        # nothing of CLIENT1's is worked here any more: not even the order
        # that woke the gateway up
        assert built.matcher.open_orders("CLIENT1") == []
        assert built.matcher.status("CLIENT1", "AFTER-STALL") is None
    finally:
        journal.close()
