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
        self.stop_out_orders: set[str] = set()
        self.stop_out_cancels: set[str] = set()
        self.started: dict[str, list[Any]] = {}
        self.open_by_client: dict[str, int] = {}


def watching(accounts: Accounts, routing: _Routing) -> MarginWatch:
    """A watch over ``accounts``, its orders to a real matcher of
    ``routing``'s instruments."""
    return MarginWatch(
        accounts,
        Matcher(routing.instruments, id_prefix="T"),
        _Reports(),  # type: ignore[arg-type]
        routing,  # type: ignore[arg-type]
        FlowStats(),
        lambda exposure: None,
        lambda: 0.0,
        "1",
    )


def watch(collateral: str) -> tuple[MarginWatch, Accounts, _Routing]:
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal(collateral))}, INSTRUMENTS)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    routing = _Routing()
    return watching(accounts, routing), accounts, routing


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


def test_what_a_stop_out_made_is_let_go_of_once_its_orders_are_final() -> None:
    """A stop-out cancels the client's orders and closes its position with
    orders of the house's own; once those orders are final the reports keep
    no more of them: a day of stop-outs does not grow the sets the reports
    look their orders up in."""
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
    # K1 canceled at once (final: let go of); K2 left to the client's own
    # cancel, which waits for its routing
    assert [r for result in routing.published for r in result.cancel_rejects] == []
    assert (reports.stop_out_orders, reports.stop_out_cancels) == (set(), set())
    routing.publish(matcher.on_route_done(out.order_id, 1, "no fill"), 0.0)
    w.look(WATCH_INTERVAL)
    closing_orders(routing)
    (need,) = routing.published[-1].routes
    assert reports.stop_out_orders == {need.order_id}
    # the LPs fill the closing order in full: the account is flat
    routing.publish(matcher.on_fill(need.order_id, need.qty, 45000, "LP_A"), 0.0)
    routing.publish(matcher.on_route_done(need.order_id, 0, ""), 0.0)
    assert (reports.stop_out_orders, reports.stop_out_cancels) == (set(), set())
    w.look(WATCH_INTERVAL * 2)
    assert "C1" not in w.stopping


def resting_buy(w: MarginWatch, cl_ord_id: str) -> Result:
    """A GTC limit buy of C1, far below the market: it rests."""
    order = NewOrder("C1", cl_ord_id, "ZC", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, 100)
    return w.matcher.submit(order, None)


def test_a_client_order_named_as_the_house_names_its_own_is_still_canceled() -> None:
    """The client's ClOrdIDs are its own: one that reads like the house's
    next (SO-<run>-<n>) neither stops the stop-out's cancel of it (which
    left it working, and the stop-out waiting on it for ever, no position
    closed) nor earns the client a reject of a cancel it never sent."""
    w, accounts, routing = watch("3000")
    (ack,) = resting_buy(w, "SO-1-1").executions
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)
    w.look(0.0)
    assert ack.order_id not in {ex.order_id for ex in w.matcher.open_orders("C1")}
    canceled = [ex for r in routing.published for ex in r.executions if ex.order_id == ack.order_id]
    assert [(ex.exec_type, ex.cl_ord_id) for ex in canceled] == [(ExecType.CANCELED, "SO-1-1")]
    assert [r for r in routing.published if r.cancel_rejects] == []
    assert len(closing_orders(routing)) == 1
    assert w.reports.stop_out_cancels == {ack.order_id}


def test_the_ids_the_house_used_stay_free_for_the_client() -> None:
    """A stop-out's cancel reports the client's order under its own
    ClOrdID, and its closing order's ClOrdID is the house's: neither takes
    a ClOrdID from the client, who may use any of them next."""
    w, accounts, routing = watch("3000")
    (ack,) = resting_buy(w, "B1").executions
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)
    w.look(0.0)
    canceled = [ex for r in routing.published for ex in r.executions if ex.order_id == ack.order_id]
    assert [(ex.cl_ord_id, ex.orig_cl_ord_id) for ex in canceled] == [("B1", None)]
    (closing,) = closing_orders(routing)
    assert closing == "SO-1-1"
    assert w.matcher.order_of("C1", closing) is None  # the house's, not the client's
    for cl_ord_id in (closing, "SO-1-2"):  # the one it took, and the one it takes next
        (ex,) = resting_buy(w, cl_ord_id).executions
        assert (ex.exec_type, ex.cl_ord_id) == (ExecType.NEW, cl_ord_id)
    # the watch still finds its closing order by the house's id, and its
    # next one is not refused for the client's SO-1-2
    stop_out = w.stopping["C1"]
    assert w.matcher.find(stop_out.closing or "", "C1", closing) is not None
    unfilled(w, routing)
    w.look(WATCH_INTERVAL)
    w.look(WATCH_INTERVAL + CLOSE_RETRY)
    assert closing_orders(routing) == ["SO-1-1", "SO-1-2"]
    assert w.matcher.order_of("C1", "SO-1-2") is not None  # the client's own, still


def test_a_stop_out_of_a_client_served_elsewhere_now_is_let_go_here() -> None:
    """In a cluster, the client's session moved to another gateway in the
    middle of its stop-out: that gateway closes what is left; this one
    shows no stop-out of it any more, nor holds it suspended."""
    w, accounts, routing = watch("3000")
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)  # level 0.43: stopped out
    here = {"C1"}
    w.serves = here.__contains__
    w.look(0.0)
    assert "C1" in w.stopping
    assert "C1" in w.called
    assert "C1" in accounts.suspended
    here.clear()  # handed over
    sent = len(closing_orders(routing))
    w.look(CLOSE_RETRY * 2)
    assert "C1" not in w.stopping
    assert "C1" not in w.called
    assert "C1" not in accounts.suspended
    assert len(closing_orders(routing)) == sent
    # served here again, still stopped out: a stop-out begins again
    here.add("C1")
    unfilled(w, routing)
    w.look(CLOSE_RETRY * 4)
    assert "C1" in w.stopping


def test_a_flat_account_below_zero_is_called_but_not_stopped_out() -> None:
    """Flat below zero there is nothing to close: C1 bought 1 and 9 lots of
    BTC/USD (0.001 BTC a lot) and sold the 10 at a loss larger than its
    collateral, a bid resting.  The watch calls it, and leaves its bid and
    its next orders alone (0.001 + 0.009 - 0.010 BTC added as floats left
    the account a position of 1.7e-18 BTC, a margin, a level far below
    zero, and a stop-out stuck with nothing to close)."""
    btc = Instrument(
        "BTC/USD", AssetClass.CRYPTO, Decimal("0.01"), Decimal("0.001"), 1, 1000, "USD"
    )
    instruments = {"BTC/USD": btc}
    params = MarginParams("p-1", (MarginGroup("BTC", "crypto", ("BTC/USD",), scan_pct=0.5),), ())
    accounts = Accounts(params, {"C1": AccountTerms(Decimal("100"))}, instruments)
    accounts.mark(Marks({"BTC/USD": 90000.0}, {"BTC/USD": 90000.0}))
    w = MarginWatch(
        accounts,
        Matcher(instruments, id_prefix="T"),
        _Reports(),  # type: ignore[arg-type]
        _Routing(),  # type: ignore[arg-type]
        FlowStats(),
        lambda exposure: None,
        lambda: 0.0,
        "1",
    )
    w.look(0.0)  # the account is scanned at the marks
    bid = NewOrder("C1", "B1", "BTC/USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, 100)
    (ack,) = w.matcher.submit(bid, None).executions
    accounts.trade("C1", "BTC/USD", Side.BUY, 1, 9000000)
    accounts.trade("C1", "BTC/USD", Side.BUY, 9, 9000000)
    accounts.trade("C1", "BTC/USD", Side.SELL, 10, 7900000)  # 110 USD lost on 100
    assert accounts.position("C1", "BTC/USD") == 0
    w.look(WATCH_INTERVAL)
    assert "C1" in w.called
    assert "C1" not in w.stopping
    assert "C1" not in accounts.suspended
    assert ack.order_id in {ex.order_id for ex in w.matcher.open_orders("C1")}


def test_a_position_with_no_liquidity_does_not_keep_the_others_open() -> None:
    """ZC, the largest loss, finds nothing to fill (its market closed, its
    LP away): the stop-out goes on with ZS at the next look, and comes back
    to ZC when its retry is due."""
    zs = Instrument("ZS", AssetClass.COMMODITY, Decimal("0.01"), Decimal(1), 1, 1000, "USD")
    instruments = {"ZC": ZC, "ZS": zs}
    params = MarginParams(
        "p-1",
        (
            MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),
            MarginGroup("soy", "commodity", ("ZS",), scan_usd=2500),
        ),
        (),
    )
    accounts = Accounts(params, {"C1": AccountTerms(Decimal("6000"))}, instruments)
    routing = _Routing()
    routing.instruments = instruments
    w = watching(accounts, routing)
    accounts.trade("C1", "ZC", Side.BUY, 1, 450000)
    accounts.trade("C1", "ZS", Side.BUY, 1, 120000)
    # ZC 4,000 USD lost, ZS 1,000: equity 1,000 against 4,250 of margin
    accounts.mark(Marks({"ZC": 500.0, "ZS": 200.0}, {"ZC": 500.0, "ZS": 200.0}))

    def symbols() -> list[str]:
        return [
            ex.symbol
            for result in routing.published
            for ex in result.executions
            if ex.exec_type is ExecType.NEW and ex.cl_ord_id.startswith("SO-")
        ]

    w.look(0.0)
    assert symbols() == ["ZC"]
    unfilled(w, routing)
    w.look(WATCH_INTERVAL)  # ZC filled nothing: ZS now, not a second later
    assert symbols() == ["ZC", "ZS"]
    unfilled(w, routing)
    tick = 2
    while WATCH_INTERVAL * tick < WATCH_INTERVAL + CLOSE_RETRY:
        w.look(WATCH_INTERVAL * tick)  # both found nothing: neither tried at once
        unfilled(w, routing)
        tick += 1
    assert symbols() == ["ZC", "ZS"]
    w.look(WATCH_INTERVAL + CLOSE_RETRY)  # ZC's retry is due first
    assert symbols() == ["ZC", "ZS", "ZC"]
    assert "C1" in w.stopping


def test_a_stop_out_ends_when_a_reload_turns_margin_off() -> None:
    """[margin] groups and [accounts] removed by a reload (margin off: the
    order flow calls ``accounts.configure(None, {})``) leave no client
    margined.  A client in stop-out then must trade again, as one whose own
    account alone was removed does; it stayed suspended, every new order
    refused 'account in stop-out', until a restart."""
    w, accounts, routing = watch("3000")
    accounts.trade("C1", "ZC", Side.BUY, 4, 45000)  # level 0.43: stop-out
    w.look(0.0)
    assert "C1" in w.stopping
    assert len(closing_orders(routing)) == 1
    unfilled(w, routing)  # the closing order found nothing
    accounts.configure(None, {})  # the reload: margin off
    for tick in range(1, 5):
        unfilled(w, routing)
        w.look(WATCH_INTERVAL * tick)
    assert "C1" not in w.stopping
    assert accounts.check("C1", "ZC", Side.BUY, 1) is None


def test_a_call_is_not_cleared_while_the_figures_are_incomplete() -> None:
    """C1 is called (1,000 of equity on 1,750 of margin); its holdings here
    are then replaced by those it had at another gateway of the cluster,
    with a position in a symbol not quoted here yet (ZS): its figures are
    incomplete, its level no better.  The call stands: it is neither cleared
    nor raised (and counted, and reported) a second time."""
    zs = Instrument("ZS", AssetClass.COMMODITY, Decimal("0.01"), Decimal(1), 1, 1000, "USD")
    instruments = {"ZC": ZC, "ZS": zs}
    params = MarginParams(
        "p-1",
        (
            MarginGroup("corn", "commodity", ("ZC",), scan_usd=1750),
            MarginGroup("soy", "commodity", ("ZS",), scan_usd=2500),
        ),
        (),
    )
    accounts = Accounts(params, {"C1": AccountTerms(Decimal(1000))}, instruments)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    routing = _Routing()
    routing.instruments = instruments
    w = watching(accounts, routing)
    accounts.trade("C1", "ZC", Side.BUY, 1, 45000)
    w.look(0.0)
    assert w.called == {"C1"}
    accounts.set_client("C1", {"ZC": (1, 450.0, 0.0), "ZS": (1, 1200.0, 0.0)})
    w.look(WATCH_INTERVAL)
    assert w.called == {"C1"}  # not cleared: nothing says the level is back
    accounts.mark(Marks({"ZS": 1200.0}, {"ZS": 1200.0}))
    w.look(2 * WATCH_INTERVAL)
    assert w.called == {"C1"}
    assert w.stats.margin_calls == {"C1": 1}  # one call, not two


def test_a_call_on_an_account_a_reload_took_away_is_forgotten() -> None:
    """C1 is called (3,000 of equity on 3,500 of margin); a reload takes its
    account away, margin staying on for others: the call goes with it, as
    all calls go when margin is turned off.  Given back below its call
    level, the account is called anew: logged, counted and reported."""
    w, accounts, _ = watch("3000")
    accounts.trade("C1", "ZC", Side.BUY, 2, 45000)  # level 0.86: called only
    w.look(0.0)
    assert w.called == {"C1"}
    assert "C1" not in w.stopping
    accounts.configure(PARAMS, {})  # the reload: C1 no longer margined
    w.look(WATCH_INTERVAL)
    assert w.called == set()
    accounts.configure(PARAMS, {"C1": AccountTerms(Decimal("3000"))})  # back
    w.look(2 * WATCH_INTERVAL)
    assert w.called == {"C1"}
    assert w.stats.margin_calls == {"C1": 2}


def test_a_position_past_the_largest_order_is_closed_to_none_left() -> None:
    """13 lots of an instrument traded 5 to 10 lots an order: a first
    closing order of 10 would leave 3, which no order can close, and the
    account suspended with them for ever; the stop-out closes 8, then 5."""
    zc = Instrument("ZC", AssetClass.COMMODITY, Decimal("0.01"), Decimal(1), 5, 10, "USD")
    instruments = {"ZC": zc}
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal("1000"))}, instruments)
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    routing = _Routing()
    routing.instruments = instruments
    quotes = [Quote("LP_A", "ZC", (Level(45000, 100),), (Level(45000, 100),), 0.0)]
    routing.book.snapshots["ZC"] = BookSnapshot.from_quotes("ZC", quotes)
    w = watching(accounts, routing)
    accounts.trade("C1", "ZC", Side.BUY, 13, 45000)  # 22,750 USD of margin: level 0.04
    sizes = []
    for tick in range(6):
        w.look(WATCH_INTERVAL * tick)
        for result in list(routing.published):
            for need in result.routes:
                sizes.append(need.qty)
                filled = w.matcher.on_fill(need.order_id, need.qty, 45000, "LP_A")
                for ex in filled.executions:
                    if ex.exec_type is ExecType.TRADE and ex.last_px is not None:
                        accounts.trade(ex.client, ex.symbol, ex.side, ex.last_qty, ex.last_px)
                routing.published.append(filled)
                routing.published.append(w.matcher.on_route_done(need.order_id, 0, ""))
            result.routes.clear()
        if "C1" not in w.stopping:
            break
    assert sizes == [8, 5]
    assert accounts.position("C1", "ZC") == 0
    assert "C1" not in w.stopping
    assert "C1" not in accounts.suspended
