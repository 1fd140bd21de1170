"""Random command sequences against the matcher, checked execution by
execution: quantities add up, the notional is the sum of the fills, nothing
is overfilled, and a final order never changes again."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from matching_helpers import SYMBOL, book, matcher

from matcher.engine import CancelOrder, NewOrder, ReplaceOrder, Result
from matcher.execution import Execution
from matcher.orders import FINAL_STATUSES, ExecType, OrdStatus
from router.book import BookSnapshot
from router.model import OrdType, Side, TimeInForce

CLIENTS = ("c1", "c2", "c3")
prices = st.integers(95, 105)


@st.composite
def lp_books(draw: st.DrawFn) -> BookSnapshot | None:
    if draw(st.booleans()):
        return None
    bid = draw(prices)
    ask = bid + draw(st.integers(0, 3))
    return book(bids=((bid, draw(st.integers(1, 30))),), asks=((ask, draw(st.integers(1, 30))),))


@dataclass
class Seen:
    """What the executions told about one order so far."""

    fills: int = 0
    notional: int = 0
    final: Execution | None = None
    trades: list[int] = field(default_factory=list)


class MatcherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.matcher = matcher(internal_crossing=True)
        self.seen: dict[str, Seen] = {}
        self.routed: dict[str, int] = {}
        self.cl_ord_ids: dict[str, list[str]] = {c: [] for c in CLIENTS}
        self.next_id = 0

    def fresh_id(self) -> str:
        self.next_id += 1
        return f"id{self.next_id}"

    def check(self, result: Result) -> None:
        for e in result.executions:
            seen = self.seen.setdefault(e.order_id, Seen())
            if e.exec_type is not ExecType.REJECTED:
                ids = self.cl_ord_ids[e.client]
                if e.cl_ord_id not in ids:
                    ids.append(e.cl_ord_id)
            if seen.final is not None:
                assert e.exec_type is ExecType.ORDER_STATUS, e
                assert (e.status, e.cum_qty, e.leaves_qty, e.notional) == (
                    seen.final.status,
                    seen.final.cum_qty,
                    seen.final.leaves_qty,
                    seen.final.notional,
                )
            if e.exec_type is ExecType.TRADE:
                assert e.last_qty > 0
                assert e.last_px is not None
                seen.fills += e.last_qty
                seen.notional += e.last_qty * e.last_px
            assert 0 <= e.cum_qty <= e.qty
            assert e.cum_qty == seen.fills
            assert e.notional == seen.notional
            if e.status in FINAL_STATUSES:
                assert e.leaves_qty == 0
                seen.final = e
            else:
                assert e.cum_qty + e.leaves_qty == e.qty
        for route in result.routes:
            assert route.qty > 0
            assert route.order_id not in self.routed
            self.routed[route.order_id] = route.qty
        for reject in result.cancel_rejects:
            assert reject.client in CLIENTS

    @rule(
        client=st.sampled_from(CLIENTS),
        side=st.sampled_from(Side),
        ord_type=st.sampled_from(OrdType),
        tif=st.sampled_from(TimeInForce),
        qty=st.integers(0, 25),
        price=prices,
        reuse=st.booleans(),
        lp=lp_books(),
    )
    def submit(
        self,
        client: str,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        qty: int,
        price: int,
        reuse: bool,
        lp: BookSnapshot | None,
    ) -> None:
        ids = self.cl_ord_ids[client]
        cl_ord_id = ids[0] if reuse and ids else self.fresh_id()
        result = self.matcher.submit(
            NewOrder(client, cl_ord_id, SYMBOL, side, ord_type, tif, qty, price), lp
        )
        if reuse and ids:
            assert [e.exec_type for e in result.executions] == [ExecType.REJECTED]
        self.check(result)

    @rule(client=st.sampled_from(CLIENTS), pick=st.integers(0, 50))
    def cancel(self, client: str, pick: int) -> None:
        ids = self.cl_ord_ids[client] or ["none"]
        self.check(self.matcher.cancel(CancelOrder(client, self.fresh_id(), ids[pick % len(ids)])))

    @rule(
        client=st.sampled_from(CLIENTS),
        pick=st.integers(0, 50),
        qty=st.integers(1, 25),
        price=st.none() | prices,
        lp=lp_books(),
    )
    def replace(
        self, client: str, pick: int, qty: int, price: int | None, lp: BookSnapshot | None
    ) -> None:
        ids = self.cl_ord_ids[client] or ["none"]
        cmd = ReplaceOrder(client, self.fresh_id(), ids[pick % len(ids)], qty, price)
        self.check(self.matcher.replace(cmd, lp))

    @precondition(lambda self: any(self.routed.values()))
    @rule(data=st.data(), price=prices)
    def fill(self, data: st.DataObject, price: int) -> None:
        # in the order routed: OrderIDs come from a counter the whole process
        # shares, so sorting them would order them differently on a replay
        order_id = data.draw(st.sampled_from([k for k, v in self.routed.items() if v]))
        qty = data.draw(st.integers(1, self.routed[order_id]))
        self.routed[order_id] -= qty
        self.check(self.matcher.on_fill(order_id, qty, price, "lp1"))

    @precondition(lambda self: bool(self.routed))
    @rule(data=st.data(), lp=lp_books())
    def route_done(self, data: st.DataObject, lp: BookSnapshot | None) -> None:
        order_id = data.draw(st.sampled_from(list(self.routed)))
        unfilled = self.routed.pop(order_id)
        self.check(self.matcher.on_route_done(order_id, unfilled, "done", lp))

    @rule(lp=lp_books())
    def market_moves(self, lp: BookSnapshot | None) -> None:
        if lp is not None:
            self.check(self.matcher.on_market(SYMBOL, lp))

    @rule(client=st.sampled_from(CLIENTS), pick=st.integers(0, 50))
    def status(self, client: str, pick: int) -> None:
        ids = self.cl_ord_ids[client]
        if ids:
            e = self.matcher.status(client, ids[pick % len(ids)])
            assert e is not None
            assert e.client == client
            self.check_status(e)

    def check_status(self, e: Execution) -> None:
        seen = self.seen[e.order_id]
        assert e.cum_qty == seen.fills
        assert e.notional == seen.notional
        if seen.final is not None:
            assert e.status is seen.final.status

    @invariant()
    def open_orders_agree(self) -> None:
        for e in self.matcher.open_orders():
            assert e.status not in FINAL_STATUSES
            assert e.cum_qty + e.leaves_qty == e.qty
            self.check_status(e)
            if e.status in (OrdStatus.PENDING_CANCEL, OrdStatus.PENDING_REPLACE):
                assert e.order_id in self.routed


MatcherMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_matcher_state_machine = MatcherMachine.TestCase
