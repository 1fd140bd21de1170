"""The margin watch: margin calls and stop-outs.

Every ``WATCH_INTERVAL`` seconds the watch marks the margin accounts at the
exposure's latest valuation and reads the standing of at most
``ACCOUNTS_PER_TICK`` accounts, taken in turn (so 1,000 accounts are all
read within half a second, and no tick holds the loop for long).

* **Margin call**: an account whose margin level (equity / margin) falls
  below its ``margin_call_level`` is called once: a ``margin_call`` event
  is logged, counted, and handed to ``on_call`` (which sends a
  CollateralReport to a client that subscribed).  ``margin_call_cleared``
  is logged when the level is back at or above it.
* **Stop-out**: below ``stop_out_level`` the client's new orders are
  refused, its open orders are canceled, and then its positions are closed
  one at a time, the largest loss first, by market orders the house sends
  in the client's name and routes like any other.  After each closing order
  is done the level is read again; the stop-out ends when the level is back
  at or above the stop-out level or the account is flat.  The client sees
  every step as ExecutionReports, each with Text "stop out": the cancels of
  its orders, unsolicited (under the orders' own ClOrdIDs), and the closing
  orders, under ClOrdIDs of the house's (``SO-<run>-<n>``), kept apart from
  the client's own: the house takes none of the client's ids, and the
  client can neither cancel nor ask about a closing order by its id.

Nothing of a stop-out in progress is journaled: after a restart the watch
finds the account below its stop-out level again and carries on from the
positions as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

from gateway.orderflow.publish import Reports
from gateway.orderflow.routing import ChildRouting
from gateway.orderflow.stats import FlowStats
from matcher.engine import Matcher, NewOrder
from risk.accounts import Accounts, Standing
from router.exposure import ExposureSnapshot
from router.model import OrdType, Side, TimeInForce

_log = structlog.get_logger("gateway.orderflow.margin_watch")

WATCH_INTERVAL: Final = 0.1
"""Seconds between two looks at the accounts."""

ACCOUNTS_PER_TICK: Final = 250
"""Accounts read at each look, at most."""

CLOSE_RETRY: Final = 1.0
"""Seconds before another closing order after one that filled nothing."""


@dataclass(slots=True)
class _StopOut:
    closing: str | None = None  # order id of the closing order being worked
    closing_cl_ord_id: str = ""  # its ClOrdID: locates it once final
    closing_symbol: str = ""
    dry: dict[str, float] = field(default_factory=dict)
    # symbols whose last closing order filled nothing (no liquidity: an LP
    # away, a market closed), each with when to try it again: the others
    # are closed meanwhile
    closed: int = 0
    retry_at: float = 0.0  # after a closing order that found nothing to fill
    stuck: bool = False  # nothing left that an order can close
    canceled: set[str] = field(default_factory=set)


class MarginWatch:
    """Margin calls and stop-outs (see the module documentation)."""

    def __init__(
        self,
        accounts: Accounts,
        matcher: Matcher,
        reports: Reports,
        routing: ChildRouting,
        stats: FlowStats,
        mark: Callable[[ExposureSnapshot], None],
        clock: Callable[[], float],
        id_prefix: str,
    ) -> None:
        self.accounts = accounts
        self.matcher = matcher
        self.reports = reports
        self.routing = routing
        self.stats = stats
        self._mark = mark
        self._clock = clock
        self._prefix = id_prefix
        self._ids = 0
        self.called: set[str] = set()
        self.stopping: dict[str, _StopOut] = {}
        self.on_call: Callable[[Standing, float], None] | None = None
        self.serves: Callable[[str], bool] | None = None
        """Set in a cluster: whether this gateway serves the client now.  A
        client served elsewhere (or by no one yet) is neither called nor
        stopped out here: its positions here may be stale, and its orders
        are the serving gateway's to close."""
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._tick)

    def _tick(self) -> None:
        try:
            self.look(self._clock())
        finally:
            self._arm()

    def look(self, now: float) -> None:
        """One look: mark, read a slice of the accounts, move stop-outs on."""
        if self.accounts.params is None:
            # margin off (a reload took it away): nobody is margined, and a
            # stop-out under way ends once its orders are done, as one of
            # a client whose account alone was taken away does
            self.called.clear()
            for client in list(self.stopping):
                self._advance(client, now)
            return
        self._mark(self.routing.exposure(now))
        guard = self.routing.guard
        if guard is not None:
            guard()
        if self.called:
            # a call goes with the account a reload took away, as every call
            # goes when margin is turned off: given back, it is judged anew
            margined = self.accounts.is_margined
            for client in [c for c in self.called if not margined(c)]:
                self.called.discard(client)
        exact = self.called | self.stopping.keys()
        serves = self.serves
        for standing in self.accounts.sweep(ACCOUNTS_PER_TICK, exact):
            if serves is None or serves(standing.client):
                self._judge(standing, now)
        for client in list(self.stopping):
            if serves is None or serves(client):
                self._advance(client, now)
            else:
                self._leave(client)
        if serves is not None and self.called:
            for client in [c for c in self.called if not serves(c)]:
                self.called.discard(client)  # the serving gateway's to call

    # -- margin calls ---------------------------------------------------------------

    def _judge(self, standing: Standing, now: float) -> None:
        client = standing.client
        if not standing.complete:
            # partial figures say nothing of the level: a call stands (not
            # cleared, to be raised, counted and reported again later)
            return
        if standing.called and client not in self.called:
            self.called.add(client)
            self.stats.margin_calls[client] = self.stats.margin_calls.get(client, 0) + 1
            _log.warning("margin_call", client=client, **_figures(standing))
            if self.on_call is not None:
                self.on_call(standing, now)
        elif not standing.called and client in self.called:
            self.called.discard(client)
            _log.info("margin_call_cleared", client=client, **_figures(standing))
        if standing.stopped_out and client not in self.stopping:
            self._begin(standing, now)

    # -- stop-outs ------------------------------------------------------------------

    def _next_id(self) -> str:
        self._ids += 1
        return f"SO-{self._prefix}-{self._ids}"

    def _begin(self, standing: Standing, now: float) -> None:
        client = standing.client
        stop_out = self.stopping[client] = _StopOut()
        self.accounts.suspended.add(client)
        self.stats.stop_outs[client] = self.stats.stop_outs.get(client, 0) + 1
        _log.warning("stop_out_started", client=client, **_figures(standing))
        for report in self.matcher.open_orders(client):
            stop_out.canceled.add(report.order_id)
            result = self.matcher.cancel_unsolicited(report.order_id)
            if result.executions:  # not when the client's own cancel waits already
                self.reports.stop_out_cancels.add(report.order_id)
            self.routing.publish(result, now)
        self._advance(client, now)

    def _advance(self, client: str, now: float) -> None:
        stop_out = self.stopping[client]
        if stop_out.closing is not None:
            working = self.matcher.find(stop_out.closing, client, stop_out.closing_cl_ord_id)
            if working is not None and not working.is_final:
                return
            stop_out.closing = None
            if working is not None and not working.cum_qty:
                # no liquidity there: tried again later, not every tick
                stop_out.dry[stop_out.closing_symbol] = now + CLOSE_RETRY
        if now < stop_out.retry_at:
            return
        if any(r.order_id in stop_out.canceled for r in self.matcher.open_orders(client)):
            return  # a cancel waits for the LPs' answers
        standing = self.accounts.standing(client)
        if standing is not None and not standing.complete:
            return  # a symbol held has no mark yet: judged again once it has
        if standing is None or not standing.stopped_out:
            self._end(client, standing)  # restored, or flat (no margin)
            return
        instruments = self.routing.instruments
        positions = {
            symbol: pnl
            for symbol, pnl in self.accounts.pnl_by_symbol(client).items()
            if symbol in instruments
            and abs(self.accounts.position(client, symbol)) >= instruments[symbol].min_lots
        }
        if not positions:
            # what is left cannot be closed by an order (below an
            # instrument's minimum, or not valued): said once, tried again
            if not stop_out.stuck:
                stop_out.stuck = True
                _log.error("stop_out_stuck", client=client, **_figures(standing))
            stop_out.retry_at = now + CLOSE_RETRY
            return
        dry = stop_out.dry
        ready = {s: pnl for s, pnl in positions.items() if dry.get(s, 0.0) <= now}
        if not ready:
            # every position left found no liquidity lately
            stop_out.retry_at = min(dry[s] for s in positions)
            return
        symbol = min(ready, key=ready.__getitem__)  # the largest loss that can be tried
        lots = self.accounts.position(client, symbol)
        instrument = instruments[symbol]
        qty = min(abs(lots), instrument.max_lots)
        short = instrument.min_lots - (abs(lots) - qty)
        if 0 < short < instrument.min_lots and qty - short >= instrument.min_lots:
            # past the largest order, what is left is at least the smallest
            # one: below it, no order could close it
            qty -= short
        cl_ord_id = self._next_id()
        order = NewOrder(
            client=client,
            cl_ord_id=cl_ord_id,
            symbol=symbol,
            side=Side.SELL if lots > 0 else Side.BUY,
            ord_type=OrdType.MARKET,
            tif=TimeInForce.IOC,
            qty=qty,
            house=True,
        )
        result = self.matcher.submit(order, self.routing.snapshot(symbol, now))
        if result.executions:
            order_id = result.executions[0].order_id
            self.reports.stop_out_orders.add(order_id)
            stop_out.closing = order_id
            stop_out.closing_cl_ord_id = cl_ord_id
            stop_out.closing_symbol = symbol
            stop_out.closed += 1
            self.reports.started[order_id] = [now, ""]
            self.reports.open_by_client[client] = self.reports.open_by_client.get(client, 0) + 1
        _log.warning(
            "stop_out_closing",
            client=client,
            symbol=symbol,
            qty=qty,
            side=order.side.name.lower(),
            unrealized_pnl_usd=round(positions[symbol], 2),
            cl_ord_id=cl_ord_id,
        )
        self.routing.publish(result, now)

    def _leave(self, client: str) -> None:
        """The client is served elsewhere now (its session moved to another
        gateway of the cluster): what is left of its stop-out is that
        gateway's to close, by its own look at the client's margin."""
        stop_out = self.stopping.pop(client)
        self.accounts.suspended.discard(client)
        _log.warning(
            "stop_out_left_to_the_serving_gateway", client=client, closing_orders=stop_out.closed
        )

    def _end(self, client: str, standing: Standing | None) -> None:
        stop_out = self.stopping.pop(client)
        self.accounts.suspended.discard(client)
        figures = {} if standing is None else _figures(standing)
        _log.warning("stop_out_done", client=client, closing_orders=stop_out.closed, **figures)


def _figures(standing: Standing) -> dict[str, object]:
    return {
        "equity_usd": round(standing.equity_usd, 2),
        "margin_usd": round(standing.margin_usd, 2),
        "margin_level": None if standing.level is None else round(standing.level, 4),
        "margin_call_level": standing.margin_call_level,
        "stop_out_level": standing.stop_out_level,
    }
