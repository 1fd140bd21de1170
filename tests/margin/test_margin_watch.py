"""The margin watch driven look by look: stop-outs and the closing orders
they send, against a real matcher and real accounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.net.transport import Outbox
from gateway.orderflow.margin_watch import CLOSE_RETRY, WATCH_INTERVAL, MarginWatch
from gateway.orderflow.publish import Reports
from gateway.orderflow.stats import FlowStats
from matcher.engine import CancelOrder, Matcher, NewOrder, Result
from matcher.orders import ExecType
from risk.accounts import Accounts, AccountTerms, Marks
from risk.margin import MarginGroup, MarginParams
from router.book import BookSnapshot
from router.exposure import ExposureLedger
from router.model import AssetClass, Instrument, Level, OrdType, Quote, Side, TimeInForce

ZC = Instrument("ZC", AssetClass.COMMODITY, Decimal("0.01"), Decimal(1), 1, 1000, "USD")
INSTRUMENTS = {"ZC": ZC}
PARAMS = MarginParams("p-1", (MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),), ())


class _Book:
    def __init__(self) -> None:
        self.snapshots: dict[str, BookSnapshot] = {}

    def snapshot(self, symbol: str) -> BookSnapshot | None:
        return self.snapshots.get(symbol)


class _Routing:
    guard = None

    def __init__(self) -> None:
        self.instruments = INSTRUMENTS
        self.book = _Book()
        self.published: list[Result] = []

    def exposure(self, now: float) -> Any:
        return None

    def snapshot(self, symbol: str, now: float) -> Any:
        return self.book.snapshot(symbol)

    def publish(self, result: Result, now: float) -> None:
        self.published.append(result)


class _Reports:
    def __init__(self) -> None:
        self.stop_out_ids: set[str] = set()
        self.started: dict[str, list[Any]] = {}
        self.open_by_client: dict[str, int] = {}


def watch(collateral: str) -> tuple[MarginWatch, Accounts, _Routing]:
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal(collateral))}, INSTRUMENTS)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    routing = _Routing()
    w = MarginWatch(
        accounts,
        Matcher(INSTRUMENTS, id_prefix="T"),
        _Reports(),  # type: ignore[arg-type]
        routing,  # type: ignore[arg-type]
        FlowStats(),
        lambda exposure: None,
        lambda: 0.0,
        "1",
    )
    return w, accounts, routing


def closing_orders(routing: _Routing) -> list[str]:
    return [
        ex.cl_ord_id
        for result in routing.published
        for ex in result.executions
        if ex.exec_type is ExecType.NEW and ex.cl_ord_id.startswith("SO-")
    ]


def unfilled(w: MarginWatch, routing: _Routing) -> None:
    """The LPs answer every routed order: nothing filled."""
    answered = len(routing.published)
    for result in routing.published[:answered]:
        for need in result.routes:
            routing.published.append(w.matcher.on_route_done(need.order_id, need.qty, "no fill"))
        result.routes.clear()


def test_a_closing_order_that_finds_nothing_to_fill_is_not_followed_at_once() -> None:
    w, accounts, routing = watch("3000")
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)  # 7,000 USD of margin: level 0.43
    w.look(0.0)
    assert "C1" in w.stopping
    assert len(closing_orders(routing)) == 1
    unfilled(w, routing)
    w.look(WATCH_INTERVAL)  # done, nothing filled: the next one a second later
    for tick in range(2, 11):
        unfilled(w, routing)
        w.look(WATCH_INTERVAL * tick)
    assert len(closing_orders(routing)) == 1
    w.look(WATCH_INTERVAL + CLOSE_RETRY)
    assert len(closing_orders(routing)) == 2


class _PublishingRouting(_Routing):
    """Publishes through the real Reports, as the order flow's routing does."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: Reports | None = None

    def publish(self, result: Result, now: float) -> None:
        super().publish(result, now)
        assert self.reports is not None
        self.reports.publish(result, now)


def test_a_stop_outs_clordids_are_let_go_of_once_its_orders_are_final() -> None:
    """A stop-out cancels the client's orders and closes its position under
    ClOrdIDs of the house's own; once those orders are final (or the
    stop-out is over) the ids are kept no more: a day of stop-outs does
    not grow the set the reports look their ClOrdIDs up in."""
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal("3000"))}, INSTRUMENTS)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    matcher = Matcher(INSTRUMENTS, id_prefix="T")
    routing = _PublishingRouting()
    stats = FlowStats()
    reports = Reports(
        {},
        INSTRUMENTS,
        matcher,
        stats,
        Outbox(),
        None,
        lambda: 0.0,
        accounts,
        ExposureLedger(INSTRUMENTS),
    )
    routing.reports = reports
    w = MarginWatch(
        accounts,
        matcher,
        reports,
        routing,  # type: ignore[arg-type]
        stats,
        lambda exposure: None,
        lambda: 0.0,
        "1",
    )
    # two resting orders of the client, far from the market; the second is
    # then out at an LP, a cancel of the client's own waiting for it
    for cl_ord_id, price in (("K1", 90), ("K2", 100)):
        order = NewOrder("C1", cl_ord_id, "ZC", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, price)
        reports.publish(matcher.submit(order, None), 0.0)
    quotes = [Quote("LP_A", "ZC", (), (Level(100, 1),), 0.0)]
    (out,) = matcher.on_market("ZC", BookSnapshot.from_quotes("ZC", quotes)).routes
    reports.publish(matcher.cancel(CancelOrder("C1", "K2-X", "K2")), 0.0)
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)  # 7,000 USD of margin: level 0.43
    w.look(0.0)
    assert "C1" in w.stopping
    # K1 canceled at once; the cancel of K2 refused (the client's waits)
    assert [r.cl_ord_id for result in routing.published for r in result.cancel_rejects] == [
        "SO-1-2"
    ]
    assert reports.stop_out_ids == {"SO-1-2"}
    routing.publish(matcher.on_route_done(out.order_id, 1, "no fill"), 0.0)
    w.look(WATCH_INTERVAL)
    (closing,) = closing_orders(routing)
    assert reports.stop_out_ids == {"SO-1-2", closing}
    # the LPs fill the closing order in full: the account is flat
    (need,) = routing.published[-1].routes
    routing.publish(matcher.on_fill(need.order_id, need.qty, 45000, "LP_A"), 0.0)
    routing.publish(matcher.on_route_done(need.order_id, 0, ""), 0.0)
    assert reports.stop_out_ids == {"SO-1-2"}
    w.look(WATCH_INTERVAL * 2)
    assert "C1" not in w.stopping
    assert reports.stop_out_ids == set()
