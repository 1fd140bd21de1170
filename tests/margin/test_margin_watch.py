"""The margin watch driven look by look: stop-outs and the closing orders
they send, against a real matcher and real accounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.orderflow.margin_watch import CLOSE_RETRY, WATCH_INTERVAL, MarginWatch
from gateway.orderflow.stats import FlowStats
from matcher.engine import Matcher, Result
from matcher.orders import ExecType
from risk.accounts import Accounts, AccountTerms, Marks
from risk.margin import MarginGroup, MarginParams
from router.book import BookSnapshot
from router.model import AssetClass, Instrument, Side

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
