"""Property: however the LPs behave, the exposure ledger adds up.

An :class:`~gateway.order_flow.OrderFlow` takes client orders while scripted
LPs answer its child orders at random: acks, fills, partial fills, fills
reported twice, cancels of the remainder, rejects, links that drop and come
back, reports for child orders that never existed, and silence, which the
flow times out (a cancel first, then it gives the child up).  A silent LP may
still fill a child it was given up on; that fill counts, booked to the house.

After every step the ledger must hold exactly the distinct fills the LPs
reported (positions per LP, per client, the house for late fills) and the
lots in flight at each LP, and the lots kept open per client and side must
be what the client's open orders may still fill; once nothing is in flight, every client order is
final (or rests, for a DAY or GTC limit) and its ExecutionReports report each
fill the LPs made for it, once.

The LPs follow the adapter contract (:mod:`lp_adapters.base`) except where a
step breaks it on purpose: a fill reported again, a report after the child
was given up on, a report for a child id the flow never sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, cast

import msgspec
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from config import Config, SessionSettings, parse_config
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.recovery import HOUSE
from gateway.orderflow.rules import Rules
from lp_adapters.base import (
    DISCONNECTED_REASON,
    EventSink,
    LpAdapter,
)
from router.model import (
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    EndedChild,
    Instrument,
    Level,
    LpEvent,
    LpStatus,
    OrdType,
    Quote,
    Side,
    TimeInForce,
)

KIND = "test-fault-prop"
SYMBOL = "EUR/USD"
LOT = Decimal(1000)
TICK = Decimal("0.00001")
CLIENTS = ("CLIENT1", "CLIENT2")
# each LP's best bid and best ask, in ticks; it quotes LEVELS levels a side
QUOTES = {
    "LP_A": (109_990, 110_010),
    "LP_B": (109_989, 110_011),
    "LP_C": (109_991, 110_012),
}
LPS = tuple(QUOTES)
BEST_BID = max(bid for bid, _ in QUOTES.values())
BEST_ASK = min(ask for _, ask in QUOTES.values())
LEVELS = 3
LEVEL_LOTS = 4
CHILD_TIMEOUT_MS = 10
# how often a step that waits for the flow's timers looks again
POLL = 0.002
# a wait that lasts this long means the flow's timer is not working (a hang
# guard, far above anything the timer needs, not a timing check)
STUCK_AFTER = 30.0
# client order types: (OrdType, TimeInForce)
ORDER_KINDS = (
    (OrdType.MARKET, TimeInForce.IOC),
    (OrdType.MARKET, TimeInForce.FOK),
    (OrdType.LIMIT, TimeInForce.IOC),
    (OrdType.LIMIT, TimeInForce.FOK),
    (OrdType.LIMIT, TimeInForce.DAY),
    (OrdType.LIMIT, TimeInForce.GTC),
)
FINAL = (b"2", b"4", b"8", b"C")
RESTS = (TimeInForce.DAY, TimeInForce.GTC)


# --- the scripted LP ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """The flow handed ``child`` to its LP; children of one routing share a batch."""

    child: ChildOrder
    batch: int
    lp_up: bool


@dataclass(frozen=True, slots=True)
class CancelAsked:
    """The flow asked an LP to cancel a child."""

    lp: str
    child_id: str


class Recorder:
    """Every call the flow made on the LPs, in order.

    Child orders sent one after the other for the same parent order belong to
    one routing (the flow sends all children of a routing in one go); the
    test cuts the run after each of its own steps, so that children of two
    routings of one order never share a batch.
    """

    def __init__(self) -> None:
        self.calls: list[Sent | CancelAsked] = []
        self._batch = 0
        self._parent: str | None = None

    def cut(self) -> None:
        self._parent = None

    def sent(self, child: ChildOrder, lp_up: bool) -> None:
        if child.parent_id != self._parent:
            self._batch += 1
            self._parent = child.parent_id
        self.calls.append(Sent(child, self._batch, lp_up))

    def cancel_asked(self, lp: str, child_id: str) -> None:
        self._parent = None
        self.calls.append(CancelAsked(lp, child_id))


class ScriptedLp(LpAdapter):
    """An LP that answers only when the test makes it.

    It keeps the LP's side of each child (lots still open) so that what it
    emits respects the contract unless the test asks for a breach; settings
    ``bid`` and ``ask`` are its best prices in ticks.
    """

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: Mapping[str, Any],
    ) -> None:
        super().__init__(name, instruments, sink, settings)
        unknown = sorted(set(settings) - {"bid", "ask"})
        if unknown:
            raise ValueError(f"LP {name}: unknown settings {unknown}")
        self.bid = int(settings.get("bid", 0))
        self.ask = int(settings.get("ask", 0))
        self.recorder: Recorder | None = None
        self.open: dict[str, int] = {}  # child id -> lots still open at the LP
        self._up = False
        self._exec_seq = 0
        self.ended_handed: list[tuple[EndedChild, bool]] = []  # by recover_ended

    @property
    def up(self) -> bool:
        return self._up

    def recover_ended(self, ended: Sequence[tuple[EndedChild, bool]]) -> None:
        self.ended_handed.extend(ended)

    async def connect(self) -> None:
        if not self._up:
            self.come_back()

    async def disconnect(self) -> None:
        if self._up:
            self.drop("disconnected")

    def send(self, child: ChildOrder) -> None:
        if child.child_id in self.open:
            raise ValueError(f"child {child.child_id} is already open at {self.name}")
        assert self.recorder is not None, "the test attaches a recorder before routing"
        self.recorder.sent(child, self._up)
        self.open[child.child_id] = child.qty

    def cancel(self, child_id: str) -> None:
        assert self.recorder is not None
        self.recorder.cancel_asked(self.name, child_id)

    # -- what the test makes the LP do ---------------------------------------------

    def publish(self) -> None:
        bids = tuple(Level(self.bid - i, LEVEL_LOTS) for i in range(LEVELS))
        asks = tuple(Level(self.ask + i, LEVEL_LOTS) for i in range(LEVELS))
        self.sink(Quote(self.name, SYMBOL, bids, asks, time.time()))

    def come_back(self) -> None:
        self._up = True
        self.sink(LpStatus(self.name, True))
        self.publish()

    def drop(self, reason: str) -> None:
        """The link drops: every open child is canceled, in the order sent."""
        self._up = False
        self.sink(LpStatus(self.name, False, reason))
        for child_id in list(self.open):
            self.sink(ChildCanceled(child_id, self.open.pop(child_id), DISCONNECTED_REASON))

    def ack(self, child_id: str) -> None:
        self.sink(ChildAck(child_id, f"{self.name}-{child_id}"))

    def fill(self, child_id: str, qty: int, price: int) -> ChildFill:
        left = self.open[child_id] - qty
        assert qty > 0
        assert left >= 0
        self._exec_seq += 1
        # exec ids are unique per LP only: two LPs may well use the same one
        fill = ChildFill(child_id, f"X{self._exec_seq}", qty, price, left)
        if left:
            self.open[child_id] = left
        else:
            del self.open[child_id]
        self.sink(fill)
        return fill

    def cancel_rest(self, child_id: str) -> None:
        self.sink(ChildCanceled(child_id, self.open.pop(child_id)))

    def reject(self, child_id: str) -> None:
        del self.open[child_id]
        self.sink(ChildReject(child_id, "rejected by the test"))

    def report(self, event: LpEvent) -> None:
        """Emit ``event`` as is, whatever the LP's state (a contract breach)."""
        self.sink(event)

    def silence(self) -> None:
        """Emit nothing more (once a check failed: the flow is stopped as it is)."""
        self.sink = _discard


def _discard(event: LpEvent) -> None:
    return None


def make_config() -> Config:
    # the trading day ends about 23 hours from now: no DAY order expires mid-test
    day_end = time.strftime("%H:%M", time.gmtime(time.time() - 3600))
    sessions = "".join(
        f'[[sessions]]\nSenderCompID = "GATEWAY"\nTargetCompID = "{client}"\n' for client in CLIENTS
    )
    lps = "".join(
        f"""
[[lps]]
name = "{name}"
adapter = "{KIND}"
soft_limit_usd = "1000000000"
hard_limit_usd = "2000000000"
[lps.settings]
bid = {bid}
ask = {ask}
"""
        for name, (bid, ask) in QUOTES.items()
    )
    return parse_config(
        sessions
        + f"""
[[instruments]]
symbol = "{SYMBOL}"
asset_class = "fx"
tick_size = "{TICK}"
lot_size = "{LOT}"
min_qty = "{LOT}"
max_qty = "100000000"
quote_currency = "USD"
"""
        + lps
        + f"""
[routing]
internal_crossing = false
child_timeout_ms = {CHILD_TIMEOUT_MS}
quote_max_age_ms = 3600000
max_reroutes = 2

[orders]
trading_day_end = "{day_end}"
"""
    )


# --- steps ------------------------------------------------------------------------


class PlaceOrder(NamedTuple):
    """A client sends a NewOrderSingle; a limit is ``offset`` ticks through
    the best LP price (-1: one tick short of it, not marketable)."""

    client: int
    side: Side
    lots: int
    kind: int
    offset: int


class Act(NamedTuple):
    """An LP answers one of the children the flow is waiting for, by the
    book.  ``action`` picks among what the child allows (see
    :meth:`Harness.answer`), or names it; ``amount`` sizes a partial fill."""

    pick: int
    action: int | str
    amount: int


class Wait(NamedTuple):
    """Every routing but one is answered (filled or canceled), then the LPs
    stay silent until the flow's timer acts on the remaining one: once (it
    asks for cancels, or gives up if it had asked already), or, with
    ``until_given_up``, until it has given the children up."""

    pick: int
    by_fill: bool
    until_given_up: bool


class Late(NamedTuple):
    """An LP answers a child the flow gave up on (as :class:`Act` does)."""

    pick: int
    action: int | str
    amount: int


class Resend(NamedTuple):
    """An LP reports a fill it reported before (same exec id)."""

    pick: int


class Ghost(NamedTuple):
    """An LP reports on a child id the flow never sent."""

    lp: str
    kind: int


class Flap(NamedTuple):
    """An LP's link drops (its open children are canceled), or comes back
    (and quotes again) if it was down."""

    lp: str


class ClientCancel(NamedTuple):
    """A client asks to cancel one of its orders, open or not."""

    pick: int


Step = PlaceOrder | Act | Wait | Late | Resend | Ghost | Flap | ClientCancel

_orders = st.builds(
    PlaceOrder,
    client=st.integers(0, len(CLIENTS) - 1),
    side=st.sampled_from(Side),
    lots=st.integers(1, 20),
    kind=st.integers(0, len(ORDER_KINDS) - 1),
    offset=st.integers(-1, 3),
)
_acts = st.builds(Act, st.integers(0, 15), st.integers(0, 5), st.integers(0, 15))
_waits = st.builds(Wait, st.integers(0, 7), st.booleans(), st.booleans())
_lates = st.builds(Late, st.integers(0, 7), st.integers(0, 5), st.integers(0, 15))
# what each step may pick from depends on the state the steps before led to,
# which depends on when the flow's timers fired: steps are drawn up front,
# independently of it, so that every run draws the same, and a step that
# cannot apply stands in for one that can (see Harness.run)
_steps = st.one_of(
    _orders,
    _orders,
    _acts,
    _acts,
    _acts,
    _waits,
    _waits,
    _lates,
    _lates,
    st.builds(Resend, st.integers(0, 31)),
    st.builds(Ghost, st.sampled_from(LPS), st.integers(0, 3)),
    st.builds(Flap, st.sampled_from(LPS)),
    st.builds(ClientCancel, st.integers(0, 15)),
)

# --- the model the ledger is checked against -------------------------------------------


@dataclass(slots=True)
class Placed:
    client: str
    cl_ord_id: str
    side: Side
    lots: int
    ord_type: OrdType
    tif: TimeInForce
    order_id: str = ""


@dataclass(slots=True)
class Kid:
    """A child order as the test sees it.  ``live``: the flow still waits for
    it; ``abandoned``: the flow gave up on it while the LP held it open."""

    child: ChildOrder
    batch: int
    order: Placed
    live: bool = True
    abandoned: bool = False
    acked: bool = False
    cancel_asked: bool = False
    fills: list[ChildFill] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Applied:
    """A distinct fill an LP reported, and whose position it must move."""

    lp: str
    exec_id: str
    lots: int
    price: int
    signed: int
    owner: str  # the client, or HOUSE for a fill after the child was given up
    order_id: str  # "" for a fill booked to the house


def non_flat(totals: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (owner, symbol), lots in totals.items():
        if lots:
            out.setdefault(owner, {})[symbol] = lots
    return out


def lots_of(msg: FixMessage, tag: int) -> int:
    units = Decimal((msg.get(tag) or b"0").decode())
    lots, rest = divmod(units, LOT)
    assert not rest, f"tag {tag} = {units} is not whole lots"
    return int(lots)


class Harness:
    """One OrderFlow, its scripted LPs and client sessions, and what the test
    expects of them."""

    def __init__(
        self, flow: OrderFlow, sessions: Mapping[str, Session], log: Callable[[str], None]
    ) -> None:
        self.flow = flow
        self.sessions = sessions
        self.log = log
        self.recorder = Recorder()
        self.lps = {name: cast(ScriptedLp, flow.adapters[name]) for name in LPS}
        for lp in self.lps.values():
            lp.recorder = self.recorder
            lp.sink = self._logged(lp.name, lp.sink)
        self.kids: dict[str, Kid] = {}
        self.placed: list[Placed] = []
        self.refused: list[Placed] = []  # refused before the matcher
        self.by_order_id: dict[str, Placed] = {}
        self.reports: dict[str, list[FixMessage]] = {}
        self.applied: list[Applied] = []
        self.reported: list[tuple[str, ChildFill]] = []  # every distinct fill, to resend
        self.cancels_asked = 0
        self.given_up = 0
        self._calls_seen = 0
        self._next_seq = dict.fromkeys(CLIENTS, 1)
        self._cl_seq = 0
        self._ghosts = 0

    def _logged(self, lp: str, sink: EventSink) -> EventSink:
        def emit(event: LpEvent) -> None:
            self.log(f"{lp} reports {event!r}")
            sink(event)

        return emit

    # -- observing the flow ----------------------------------------------------------

    def sync(self) -> None:
        """Take in what the flow sent to clients and asked of the LPs."""
        for client, session in self.sessions.items():
            for seq, raw in session.store.get_sent(self._next_seq[client], 2**31 - 1):
                self._next_seq[client] = seq + 1
                msg = codec.parse_frame(raw)
                if msg.msg_type == b"8":
                    self._report(client, msg)
        calls = self.recorder.calls
        for call in calls[self._calls_seen :]:
            self.log(f"flow: {call!r}")
            if isinstance(call, Sent):
                self._sent(call)
            else:
                kid = self.kids.get(call.child_id)
                assert kid is not None, f"cancel asked for {call.child_id}, never sent"
                assert kid.child.lp == call.lp
                assert kid.live, f"cancel asked for {call.child_id}, which has ended"
                kid.cancel_asked = True
                self.cancels_asked += 1
        self._calls_seen = len(calls)
        self.recorder.cut()

    def _report(self, client: str, msg: FixMessage) -> None:
        order_id = (msg.get(37) or b"").decode()
        if order_id not in self.by_order_id or order_id == "NONE":
            cl_ord_id = (msg.get(11) or b"").decode()
            placed = next(
                (
                    p
                    for p in self.placed
                    if p.client == client and p.cl_ord_id == cl_ord_id and not p.order_id
                ),
                None,
            )
            assert placed is not None, f"report for an order no client placed: {msg!r}"
            if order_id == "NONE":
                # refused before it reached the matcher (a client limit): no order
                self.placed.remove(placed)
                self.refused.append(placed)
                return
            placed.order_id = order_id
            self.by_order_id[order_id] = placed
        assert self.by_order_id[order_id].client == client
        self.reports.setdefault(order_id, []).append(msg)

    def _sent(self, call: Sent) -> None:
        child = call.child
        assert call.lp_up, f"{child.child_id} was routed to {child.lp}, which is down"
        assert child.child_id not in self.kids, f"child id {child.child_id} used twice"
        order = self.by_order_id.get(child.parent_id)
        assert order is not None, f"{child.child_id} is for an order no client has"
        assert child.symbol == SYMBOL
        assert child.side is order.side
        assert child.qty > 0
        # a routing starts only once every child of the previous one has ended:
        # those the LPs did not end, the flow gave up on
        for kid in self.kids.values():
            if kid.live and kid.child.parent_id == child.parent_id and kid.batch != call.batch:
                self._give_up(kid)
        self.kids[child.child_id] = Kid(child, call.batch, order)

    def _give_up(self, kid: Kid) -> None:
        kid.live = False
        kid.abandoned = True
        self.given_up += 1

    def live(self) -> list[Kid]:
        return [kid for kid in self.kids.values() if kid.live]

    def in_flight(self, lp: str) -> int:
        return sum(self.lps[lp].open[k.child.child_id] for k in self.live() if k.child.lp == lp)

    # -- the checks -----------------------------------------------------------------

    def check_ledger(self) -> None:
        ledger = self.flow.ledger
        by_lp: dict[tuple[str, str], int] = {}
        by_owner: dict[tuple[str, str], int] = {}
        for a in self.applied:
            by_lp[a.lp, SYMBOL] = by_lp.get((a.lp, SYMBOL), 0) + a.signed
            by_owner[a.owner, SYMBOL] = by_owner.get((a.owner, SYMBOL), 0) + a.signed
        assert ledger.lp_positions() == non_flat(by_lp)
        assert ledger.client_positions() == non_flat(by_owner)
        for lp in LPS:
            assert ledger.reserved(lp, SYMBOL) == self.in_flight(lp), lp

    def check_open_lots(self) -> None:
        """The lots kept open per client and side (what the margin check and
        the position limit count) are what the matcher's open orders may
        still fill."""
        accounts = self.flow.accounts
        for client in CLIENTS:
            orders = self.flow.matcher.open_of(client)
            for side in Side:
                held = sum(o.open_qty for o in orders if o.side is side)
                assert accounts.open_lots(client, SYMBOL, side) == held, (client, side)

    def check_orders(self) -> None:
        """With nothing in flight: every order final or resting, and its
        reports tell each of its fills once, as the LPs made them."""
        assert not self.live()
        for lp in LPS:
            assert self.flow.ledger.reserved(lp, SYMBOL) == 0
        for order in self.placed:
            assert order.order_id, f"{order.cl_ord_id} got no ExecutionReport"
            reports = self.reports[order.order_id]
            fills = [a for a in self.applied if a.order_id == order.order_id]
            trades = [r for r in reports if r.get(150) == b"F"]
            assert [(lots_of(r, 32), Decimal((r.get(31) or b"").decode())) for r in trades] == [
                (a.lots, a.price * TICK) for a in fills
            ], order.cl_ord_id
            last = reports[-1]
            cum = lots_of(last, 14)
            assert cum == sum(a.lots for a in fills), order.cl_ord_id
            status = last.get(39)
            if status in FINAL:
                assert lots_of(last, 151) == 0
            else:
                assert order.ord_type is OrdType.LIMIT, (order, status)
                assert order.tif in RESTS, (order, status)
                assert status in (b"0", b"1"), (order, status)
                assert lots_of(last, 151) == order.lots - cum

    # -- acting as clients and LPs -------------------------------------------------------

    def place(self, step: PlaceOrder) -> None:
        client = CLIENTS[step.client]
        ord_type, tif = ORDER_KINDS[step.kind]
        self._cl_seq += 1
        placed = Placed(client, f"O{self._cl_seq}", step.side, step.lots, ord_type, tif)
        self.placed.append(placed)
        body: list[tuple[int, bytes]] = [
            (11, placed.cl_ord_id.encode()),
            (38, str(step.lots * LOT).encode()),
            (40, ord_type.value.encode()),
            (54, step.side.value.encode()),
            (55, SYMBOL.encode()),
            (59, tif.value.encode()),
            (60, codec.format_utc_timestamp(time.time())),
        ]
        if ord_type is OrdType.LIMIT:
            price = BEST_ASK + step.offset if step.side is Side.BUY else BEST_BID - step.offset
            body.append((44, str(price * TICK).encode()))
        self._client_message(client, b"D", sorted(body))

    def client_cancel(self, step: ClientCancel) -> None:
        known = [p for p in self.placed if p.order_id]
        if not known:
            return
        order = known[step.pick % len(known)]
        self._cl_seq += 1
        body = [
            (11, f"X{self._cl_seq}".encode()),
            (41, order.cl_ord_id.encode()),
            (54, order.side.value.encode()),
            (55, SYMBOL.encode()),
            (60, codec.format_utc_timestamp(time.time())),
        ]
        self._client_message(order.client, b"F", body)

    def _client_message(self, client: str, msg_type: bytes, body: list[tuple[int, bytes]]) -> None:
        now = time.time()
        header = [
            (34, b"1"),
            (49, client.encode()),
            (52, codec.format_utc_timestamp(now)),
            (56, b"GATEWAY"),
        ]
        raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(body))
        self.log(f"{client} sends {msg_type.decode()}: {body!r}")
        self.flow.on_message(self.sessions[client], codec.parse_frame(raw), now)
        self.sync()

    def fill(self, kid: Kid, lots: int) -> None:
        child = kid.child
        fill = self.lps[child.lp].fill(child.child_id, lots, child.price)
        if kid.live:
            owner, order_id = kid.order.client, kid.order.order_id
        else:
            assert kid.abandoned
            owner, order_id = HOUSE, ""
        signed = lots if kid.order.side is Side.BUY else -lots
        self.applied.append(
            Applied(child.lp, fill.exec_id, lots, fill.price, signed, owner, order_id)
        )
        self.reported.append((child.lp, fill))
        kid.fills.append(fill)
        if not fill.leaves:
            kid.live = False
        self.sync()

    def end(self, kid: Kid, how: str) -> None:
        """The LP ends the child: cancels its remainder or rejects it."""
        lp = self.lps[kid.child.lp]
        if how == "reject":
            lp.reject(kid.child.child_id)
        else:
            lp.cancel_rest(kid.child.child_id)
        kid.live = False
        self.sync()

    def finish(self, kid: Kid, by_fill: bool) -> None:
        if by_fill:
            self.fill(kid, self.lps[kid.child.lp].open[kid.child.child_id])
        else:
            self.end(kid, "cancel")

    def answer(self, kid: Kid, action: int | str, amount: int) -> None:
        """One contract-abiding answer for ``kid`` (or a fill reported again):
        an ack before anything else, a partial or full fill, a cancel of the
        remainder, a reject while nothing is filled."""
        lp = self.lps[kid.child.lp]
        left = lp.open[kid.child.child_id]
        options = []
        if not kid.acked and not kid.fills:
            options.append("ack")
        if left > 1:
            options.append("partial")
        options += ["fill", "cancel"]
        if not kid.fills:
            options.append("reject")
        if kid.fills:
            options.append("resend")
        if isinstance(action, str):
            assert action in options, (action, options)
            choice = action
        else:
            choice = options[action % len(options)]
        if choice == "ack":
            kid.acked = True
            lp.ack(kid.child.child_id)
            self.sync()
        elif choice == "partial":
            self.fill(kid, 1 + amount % (left - 1))
        elif choice == "fill":
            self.fill(kid, left)
        elif choice == "resend":
            lp.report(kid.fills[amount % len(kid.fills)])
            self.sync()
        else:
            self.end(kid, choice)

    def held(self) -> list[Kid]:
        """Children the flow gave up on that their LP still holds open."""
        return [
            kid
            for kid in self.kids.values()
            if kid.abandoned and kid.child.child_id in self.lps[kid.child.lp].open
        ]

    def resend(self, step: Resend) -> None:
        if self.reported:
            lp, fill = self.reported[step.pick % len(self.reported)]
            self.lps[lp].report(fill)
            self.sync()

    def ghost(self, step: Ghost) -> None:
        self._ghosts += 1
        child_id = f"ghost.{self._ghosts}"
        events: tuple[LpEvent, ...] = (
            ChildFill(child_id, f"G{self._ghosts}", 1, BEST_ASK, 0),
            ChildAck(child_id, "G"),
            ChildCanceled(child_id, 1),
            ChildReject(child_id, "unknown"),
        )
        self.lps[step.lp].report(events[step.kind % len(events)])
        self.sync()

    def flap(self, step: Flap) -> None:
        lp = self.lps[step.lp]
        if lp.up:
            # the children the drop cancels end before the flow routes anything again
            for kid in self.kids.values():
                if kid.child.lp == step.lp and kid.child.child_id in lp.open:
                    kid.live = False
            lp.drop("dropped by the test")
        else:
            lp.come_back()
        self.sync()

    def settle_all_but(self, parent: str | None, by_fill: bool) -> None:
        """Answer every child in flight except those of ``parent``, and the
        children their re-routes send, until none is left."""
        for _ in range(100):
            others = [kid for kid in self.live() if kid.child.parent_id != parent]
            if not others:
                return
            for kid in others:
                if kid.live:
                    self.finish(kid, by_fill)
        raise AssertionError("the flow kept routing")

    def parents_in_flight(self) -> list[str]:
        return list(dict.fromkeys(kid.child.parent_id for kid in self.live()))

    async def wait(self, step: Wait) -> None:
        """The LPs go silent on one routing (the others are answered first,
        so that what the flow's timer does can only concern that one)."""
        parents = self.parents_in_flight()
        if not parents:
            return
        target = parents[step.pick % len(parents)]
        self.settle_all_but(target, step.by_fill)
        # one routing in flight: the flow's timer either asks its LPs to
        # cancel the children, or gives them up
        before = (self.cancels_asked, self.given_up)
        started = time.monotonic()
        while (self.cancels_asked, self.given_up) == before or (
            step.until_given_up and self.given_up == before[1]
        ):
            assert time.monotonic() - started < STUCK_AFTER, "the flow never timed out"
            await asyncio.sleep(POLL)  # polling, with the bound above
            self.sync()
            live = self.live()
            reserved = sum(self.flow.ledger.reserved(lp, SYMBOL) for lp in LPS)
            if reserved != sum(self.in_flight(lp) for lp in LPS):
                # given up with nothing routed again: the lots are no longer in flight
                for kid in live:
                    assert kid.child.parent_id == target
                    self._give_up(kid)

    async def run(self, step: Step) -> None:
        """Take ``step``; one that has nothing to act on stands in for one
        that has: an answer for a child in flight for an answer for a child
        given up on, and the other way round."""
        if isinstance(step, Act | Late):
            live, held = self.live(), self.held()
            chosen = (live or held) if isinstance(step, Act) else (held or live)
            if chosen:
                self.answer(chosen[step.pick % len(chosen)], step.action, step.amount)
        elif isinstance(step, PlaceOrder):
            self.place(step)
        elif isinstance(step, Wait):
            await self.wait(step)
        elif isinstance(step, Resend):
            self.resend(step)
        elif isinstance(step, Ghost):
            self.ghost(step)
        elif isinstance(step, Flap):
            self.flap(step)
        else:
            self.client_cancel(step)


def _quiet(line: str) -> None:
    return None


def new_harness(log: Callable[[str], None] = _quiet) -> Harness:
    """A fresh flow (not started) with its scripted LPs and client sessions."""
    sessions = {
        client: Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID=client), MemoryStore())
        for client in CLIENTS
    }
    flow = build_order_flow(make_config(), sessions, None, Outbox(), time.time)
    return Harness(flow, sessions, log)


async def play(
    steps: list[Step], drain_by_fill: bool, log: Callable[[str], None] = _quiet
) -> Harness:
    """Take ``steps`` against a fresh flow, checking the ledger after each,
    then answer whatever is still in flight and check the orders; ``log``
    is told each step and what it made the LPs, the clients and the flow do."""
    harness = new_harness(log)
    flow = harness.flow
    await flow.start()
    try:
        harness.sync()
        harness.check_ledger()
        for step in steps:
            log(f"step: {step!r}")
            await harness.run(step)
            harness.check_ledger()
            harness.check_open_lots()
        log("drain")
        harness.settle_all_but(None, drain_by_fill)
        harness.check_ledger()
        harness.check_open_lots()
        harness.check_orders()
    except BaseException:
        for lp in harness.lps.values():
            lp.silence()
        raise
    finally:
        await flow.stop()
    return harness


@pytest.mark.asyncio
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    opening=st.lists(_orders, min_size=1, max_size=3),
    steps=st.lists(_steps, min_size=10, max_size=50),
    drain_by_fill=st.booleans(),
)
async def test_the_ledger_holds_what_the_lps_reported(
    opening: list[PlaceOrder], steps: list[Step], drain_by_fill: bool
) -> None:
    await play([*opening, *steps], drain_by_fill, note)


@pytest.mark.asyncio
async def test_a_silent_lp_is_given_up_on_and_its_late_fill_goes_to_the_house() -> None:
    """The path the property relies on, spelled out: a child nobody answers
    is canceled, then given up; what the LP fills afterwards is the house's."""
    harness = await play(
        [
            # a market buy of 2 lots: one child at LP_A, the best ask
            PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0),
            Wait(pick=0, by_fill=True, until_given_up=True),
            Late(pick=0, action="partial", amount=0),  # 1 lot
            Resend(pick=0),
        ],
        drain_by_fill=True,
    )
    (abandoned,) = (kid for kid in harness.kids.values() if kid.abandoned)
    assert abandoned.cancel_asked
    assert abandoned.child.lp == "LP_A"
    ledger = harness.flow.ledger
    # LP_A filled 1 lot late, once; the client got its 2 lots elsewhere
    assert ledger.client_position(HOUSE, SYMBOL) == 1
    assert ledger.client_position("CLIENT1", SYMBOL) == 2
    assert ledger.lp_position("LP_A", SYMBOL) == 1


@pytest.mark.asyncio
async def test_a_fill_made_before_the_child_was_given_up_is_not_booked_again() -> None:
    """An LP that reports again, after the child was given up on, a fill the
    flow applied while it was still waiting: the fill stays the client's and
    counts once; only what the LP fills afterwards is the house's."""
    harness = await play(
        [
            # a market sell of 3 lots: one child at LP_C, the best bid
            PlaceOrder(client=1, side=Side.SELL, lots=3, kind=0, offset=0),
            Act(pick=0, action="partial", amount=0),  # 1 lot
            Wait(pick=0, by_fill=True, until_given_up=True),
            Resend(pick=0),  # the fill from before, reported again
            Late(pick=0, action="resend", amount=0),
            Late(pick=0, action="fill", amount=0),  # the 2 lots left
            Resend(pick=1),
        ],
        drain_by_fill=True,
    )
    (abandoned,) = (kid for kid in harness.kids.values() if kid.abandoned)
    assert abandoned.child.lp == "LP_C"
    ledger = harness.flow.ledger
    # the client sold 1 lot at LP_C and 2 at the LP the rest was routed to;
    # the house holds the 2 lots LP_C filled after being given up on
    assert ledger.client_position("CLIENT2", SYMBOL) == -3
    assert ledger.client_position(HOUSE, SYMBOL) == -2
    assert ledger.lp_position("LP_C", SYMBOL) == -3


@pytest.mark.asyncio
async def test_a_fill_an_lp_reports_after_its_link_dropped_goes_to_the_house(
    flow_harness: Harness,
) -> None:
    """A child canceled by the drop of its LP's link may have been filled
    before the LP saw the drop; reported once the link is back, that fill
    is booked to the house (the client was told the lots did not fill),
    once."""
    harness = flow_harness
    flow = harness.flow
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    (kid,) = harness.kids.values()
    lp = flow.adapters[kid.child.lp]
    assert isinstance(lp, ScriptedLp)
    lp.drop("link lost")
    lp.come_back()
    late = ChildFill(kid.child.child_id, "LATE-1", 2, kid.child.price, 0)
    lp.report(late)
    lp.report(late)  # and again
    ledger = flow.ledger
    assert ledger.client_position(HOUSE, SYMBOL) == 2
    assert ledger.lp_position(kid.child.lp, SYMBOL) == 2
    # the client's lots were routed again; nothing has filled them yet
    assert ledger.client_position("CLIENT1", SYMBOL) == 0


@pytest.mark.asyncio
async def test_a_routing_under_a_shorter_timeout_is_not_held_behind_older_longer_ones(
    flow_harness: Harness,
) -> None:
    """A reload that shortens the child timeout: a routing begun after it is
    acted on at its own deadline, not after those of the routings begun
    before it under the longer timeout."""
    harness = flow_harness
    flow = harness.flow

    def with_timeout(ms: int) -> Rules:
        config = flow.rules.config
        routing = msgspec.structs.replace(config.routing, child_timeout_ms=ms)
        return dataclasses.replace(
            flow.rules, config=msgspec.structs.replace(config, routing=routing)
        )

    flow.apply_rules(with_timeout(3_600_000))
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    (older,) = harness.parents_in_flight()
    flow.apply_rules(with_timeout(CHILD_TIMEOUT_MS))
    await harness.run(PlaceOrder(client=1, side=Side.SELL, lots=3, kind=0, offset=0))
    (newer,) = set(harness.parents_in_flight()) - {older}
    started = time.monotonic()
    while not harness.cancels_asked:
        assert time.monotonic() - started < STUCK_AFTER, "the shorter timeout never acted"
        await asyncio.sleep(POLL)  # polling, with the bound above
        harness.sync()
    asked = {kid.child.parent_id for kid in harness.kids.values() if kid.cancel_asked}
    assert asked == {newer}


def deadline_timers(flow: OrderFlow) -> int:
    """Live timers of the flow's child deadlines on this loop (asyncio's
    own list of scheduled callbacks)."""
    loop = asyncio.get_running_loop()
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    ours = flow.routing._on_deadlines
    return sum(1 for h in scheduled if not h.cancelled() and h._callback == ours)


@pytest.mark.asyncio
async def test_timeouts_acted_on_leave_one_deadline_timer(flow_harness: Harness) -> None:
    """A pass of the deadline timer that times routings out (each asking
    its LP to cancel, and watched again) leaves one timer armed, not one
    more per pass."""
    harness = flow_harness
    for client in (0, 1):
        await harness.run(PlaceOrder(client=client, side=Side.BUY, lots=2, kind=0, offset=0))
    started = time.monotonic()
    while harness.cancels_asked < 2:
        assert time.monotonic() - started < STUCK_AFTER, "the routings never timed out"
        await asyncio.sleep(POLL)  # polling, with the bound above
        harness.sync()
        assert deadline_timers(harness.flow) <= 1
    assert deadline_timers(harness.flow) == 1  # the cancels' own deadlines


@pytest.mark.asyncio
async def test_a_queue_of_deadlines_left_empty_does_not_stop_the_timer(
    flow_harness: Harness,
) -> None:
    """A timeout length whose deadlines have all passed (its queue emptied
    during a pass, a routing begun meanwhile under another length): new
    routings are still watched and acted on."""
    harness = flow_harness
    harness.flow.routing._deadlines[3600.0] = deque()
    await harness.run(PlaceOrder(client=0, side=Side.BUY, lots=2, kind=0, offset=0))
    started = time.monotonic()
    while not harness.cancels_asked:
        assert time.monotonic() - started < STUCK_AFTER, "the routing never timed out"
        await asyncio.sleep(POLL)  # polling, with the bound above
        harness.sync()
