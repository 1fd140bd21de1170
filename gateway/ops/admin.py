"""Read-only views of the running daemon for the admin API and the dashboard.

Each function returns plain JSON data.  Money and quantities are decimal
strings (exact, as in FIX); rates and latencies are numbers.  Nothing here
changes state.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from config.redact import REDACTED, url_without_secrets
from gateway.fix.session import Session
from gateway.ops.metrics import lp_rates
from gateway.orderflow.flow import OrderFlow
from matcher import Order
from router.units import avg_px_text, price_text, qty_text

if TYPE_CHECKING:
    from gateway.ops.view import Running

# setting names whose values are never shown
_SECRET_WORDS = ("password", "token", "secret", "key")


def redact(value: Any) -> Any:
    """``value`` with every setting named like a secret replaced, and the
    password of every URL in it."""
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and any(w in k.lower() for w in _SECRET_WORDS) and v
                else redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return url_without_secrets(value)
    return value


def session_info(s: Session) -> dict[str, Any]:
    """One session as ``/admin/sessions`` lists it."""
    return {
        "session": s.session_id,
        "state": s.state.value,
        "logged_on": s.is_logged_on,
        "next_sender_seq": s.store.next_sender_seq,
        "next_target_seq": s.store.next_target_seq,
        "messages_in": s.stats.messages_in,
        "messages_out": s.stats.messages_out,
        "rejects_sent": s.stats.rejects_sent,
    }


def sessions(gateway: Running) -> list[dict[str, Any]]:
    """The gateway's sessions, then the drop copy's as its process reported them."""
    return [session_info(s) for s in gateway.sessions] + gateway.drop_copy_sessions()


def _lots(flow: OrderFlow, symbol: str, lots: int) -> str:
    instrument = flow.instruments.get(symbol)
    return str(lots) if instrument is None else qty_text(instrument, lots)


def lps(flow: OrderFlow) -> list[dict[str, Any]]:
    snapshot = flow.exposure(flow.now())
    out = []
    for lp in flow.rules.config.lps:
        name = lp.name
        limits = flow.rules.limits.lps.get(name)
        adapter = flow.adapters.get(name)
        gross = snapshot.gross_usd(name)
        soft = lp.soft_limit_usd if limits is None else limits.soft_limit_usd
        hard = lp.hard_limit_usd if limits is None else limits.hard_limit_usd
        s = flow.stats.lps.get(name)
        fill_rate, reject_rate = lp_rates(s.filled, s.rejected, s.ended) if s else (0.0, 0.0)
        ack_p50, ack_p99 = s.ack_latency.percentiles(50, 99) if s else (None, None)
        out.append(
            {
                "name": name,
                "adapter": lp.adapter,
                "enabled": limits.enabled if limits is not None else lp.enabled,
                "up": adapter is not None and adapter.up,
                "gross_usd": None if gross is None else str(gross),
                "soft_limit_usd": str(soft),
                "hard_limit_usd": str(hard),
                "headroom_usd": None if gross is None else str(hard - gross),
                "positions": {
                    symbol: _lots(flow, symbol, held)
                    for symbol, held in sorted(snapshot.lp_positions.get(name, {}).items())
                },
                "child_orders": s.children if s else 0,
                "fills": s.fills if s else 0,
                "rejects": s.rejected if s else 0,
                "timeouts": s.timeouts if s else 0,
                "fill_rate": fill_rate,
                "reject_rate": reject_rate,
                "ack_latency_ms": {
                    "p50": None if ack_p50 is None else ack_p50 * 1000,
                    "p99": None if ack_p99 is None else ack_p99 * 1000,
                },
            }
        )
    return out


def exposures(flow: OrderFlow) -> dict[str, Any]:
    def units(positions: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, str]]:
        return {
            owner: {symbol: _lots(flow, symbol, held) for symbol, held in sorted(by.items())}
            for owner, by in sorted(positions.items())
        }

    snapshot = flow.exposure(flow.now())
    out: dict[str, Any] = {
        "lps": units(flow.ledger.lp_positions()),
        "lp_gross_usd": {lp: str(v) for lp, v in sorted(snapshot.lp_gross_usd.items())},
        "unvalued_lps": sorted(snapshot.unvalued_lps),
        "clients": units(flow.ledger.client_positions()),
    }
    serves = flow.watch.serves
    if serves is not None:
        # in a cluster: the clients whose positions here are current (a
        # client served by another gateway is shown as this one last knew it)
        out["served"] = sorted(client for client in flow.sessions if serves(client))
    return out


def _usd(value: float) -> str:
    """A USD figure as a decimal string in cents."""
    return f"{value:.2f}"


def margin_account(flow: OrderFlow, client: str) -> dict[str, Any] | None:
    """One client's margin account (None if the client is not margined):
    the figures, scan risk per group and the spreads formed, under the
    parameter version named; in a cluster, whether this gateway serves the
    client (``served_here``)."""
    flow.entry.mark_accounts(flow.exposure(flow.now()))
    view = flow.accounts.view(client)
    if view is None:
        return None
    portfolio = view.portfolio
    account: dict[str, Any] = {
        "client": client,
        "param_version": view.param_version,
        "collateral_usd": _usd(view.collateral_usd),
        "realized_pnl_usd": _usd(view.realized_pnl_usd),
        "unrealized_pnl_usd": _usd(view.unrealized_pnl_usd),
        "equity_usd": _usd(view.equity_usd),
        "margin_usd": _usd(view.margin_usd),
        "initial_margin_usd": _usd(view.initial_margin_usd),
        "siloed_margin_usd": _usd(view.siloed_margin_usd),
        "freed_by_portfolio_usd": _usd(view.freed_usd),
        "free_margin_usd": _usd(view.free_margin_usd),
        "margin_level": None if view.margin_level is None else round(view.margin_level, 4),
        "margin_call_level": view.margin_call_level,
        "stop_out_level": view.stop_out_level,
        "scan_risk_usd": _usd(portfolio.scan_risk),
        "credit_usd": _usd(portfolio.credit),
        "positions": {
            symbol: {"qty": _lots(flow, symbol, lots), "avg_px": f"{avg:.10g}"}
            for symbol, (lots, avg) in sorted(view.positions.items())
        },
        "groups": [
            {
                "group": g.group,
                "units": f"{g.units:.10g}",
                "scan_risk_usd": _usd(g.scan_risk),
                "worst_scenario": g.worst_scenario,
            }
            for g in portfolio.groups
        ],
        "spreads": [
            {
                "spread": s.name,
                "priority": s.priority,
                "count": f"{s.count:.10g}",
                "credit_usd": _usd(s.credit),
                "legs": {group: f"{units:.10g}" for group, units in s.legs},
            }
            for s in portfolio.spreads
        ],
        "siloed_spreads": [s.name for s in view.siloed.spreads],
        "unpriced": list(view.unpriced),
    }
    serves = flow.watch.serves
    if serves is not None:
        # in a cluster: a client another gateway serves is judged there; its
        # figures here are as this gateway last knew its positions
        account["served_here"] = bool(serves(client))
    return account


def margin(flow: OrderFlow) -> dict[str, Any]:
    """Every margined client's account, and the parameter version."""
    params = flow.accounts.params
    accounts = [margin_account(flow, client) for client in flow.accounts.clients()]
    return {
        "param_version": None if params is None else params.version,
        "accounts": [a for a in accounts if a is not None],
    }


ALL_ORDERS_LIMIT = 1000
"""How many orders ``orders(..., finished=True)`` lists when no limit is given."""
MAX_ORDERS_LIMIT = 10_000
"""The most orders one admin request lists."""
SLICE = 500
"""Orders a listing looks at, or describes, per loop turn: a long listing
takes more turns, never a long turn (the loop serves every session meanwhile)."""


def _order(flow: OrderFlow, o: Order) -> dict[str, Any]:
    instrument = flow.instruments.get(o.symbol)
    if instrument is None:  # refused for its symbol: nothing to scale by
        price = None if o.price is None else str(o.price)
        avg_px = "0"
    else:
        price = None if o.price is None else price_text(instrument, o.price)
        avg_px = avg_px_text(instrument, o.notional, o.cum_qty)
    return {
        "order_id": o.order_id,
        "client": o.client,
        "cl_ord_id": o.cl_ord_id,
        "symbol": o.symbol,
        "side": o.side.name.lower(),
        "ord_type": o.ord_type.name.lower(),
        "time_in_force": o.tif.name.lower(),
        "qty": _lots(flow, o.symbol, o.qty),
        "price": price,
        "cum_qty": _lots(flow, o.symbol, o.cum_qty),
        "leaves_qty": _lots(flow, o.symbol, o.leaves_qty),
        "avg_px": avg_px,
        "status": o.status.name.lower(),
    }


async def orders(
    flow: OrderFlow, client: str | None, *, finished: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """The open orders (of ``client`` if given), oldest first.

    With ``finished``, the final orders the matcher still retains (for
    status requests and duplicate checks) are listed too, every order in
    time priority (arrival, or its last replace that lost priority), and
    only the latest ``limit`` (:data:`ALL_ORDERS_LIMIT`
    when not given): the matcher may retain a hundred thousand.  ``limit``
    applies to open orders alone too when given.

    The orders are those known when the listing starts; it goes through
    them :data:`SLICE` a loop turn, so each is shown as it was when its
    turn came.
    """
    matcher = flow.matcher
    open_orders = matcher.open_snapshot()
    # the final orders are read through a view taken now (no copy of the
    # hundred thousand a matcher may keep), the open ones from a copy
    candidates: Iterator[Order] = (
        itertools.chain(matcher.finished_view(), open_orders) if finished else iter(open_orders)
    )
    n = limit if limit is not None else ALL_ORDERS_LIMIT if finished else len(open_orders)
    # the latest n by time priority, without sorting them all
    # (seq, position, order): the position keeps two orders from ever being
    # compared, in the heap or in the sort
    latest: list[tuple[int, int, Order]] = []
    start = 0
    while n > 0:
        chunk = list(itertools.islice(candidates, SLICE))
        if not chunk:
            break
        for i, order in enumerate(chunk, start):
            if client is not None and order.client != client:
                continue
            if len(latest) < n:
                heapq.heappush(latest, (order.seq, i, order))
            elif order.seq > latest[0][0]:
                heapq.heapreplace(latest, (order.seq, i, order))
        start += len(chunk)
        await asyncio.sleep(0)
    # taken from the heap oldest first, a slice a turn: sorting them all at
    # once (a hundred thousand open orders) would be one long turn
    listed: list[dict[str, Any]] = []
    while latest:
        chosen = [heapq.heappop(latest)[2] for _ in range(min(SLICE, len(latest)))]
        listed.extend(_order(flow, order) for order in chosen)
        await asyncio.sleep(0)
    return listed


def config(gateway: Running) -> dict[str, Any]:
    version, generation = gateway.config_version()
    return {
        "version": version,
        "generation": generation,
        "path": None if gateway.reloader.path is None else str(gateway.reloader.path),
        "config": redact(msgspec.to_builtins(gateway.config)),
    }


def summary(gateway: Running, started_at: float | None = None) -> dict[str, Any]:
    """Everything the dashboard and ``fixgw status`` show, in one read;
    ``started_at`` (epoch seconds) is when the daemon started serving."""
    version, generation = gateway.config_version()
    reloads = gateway.reloader.stats
    last = reloads.last
    data: dict[str, Any] = {
        "time": time.time(),
        "started_at": started_at,
        "version": version,
        "generation": generation,
        "last_reload": None
        if last is None
        else {"status": last.status, "at": reloads.last_at, "details": list(last.details)},
        "reloads": dict(reloads.by_status),
        "sessions": sessions(gateway),
        "loop_lag_ms": gateway.loop_lag.last * 1000,
    }
    flow = gateway.order_flow
    if flow is not None:
        stats = flow.stats
        p50, p95, p99 = stats.latency.percentiles(50, 95, 99)
        data.update(
            {
                "shares": {name: str(p) for name, p in flow.rules.shares.items()},
                "latency_ms": {
                    "p50": None if p50 is None else p50 * 1000,
                    "p95": None if p95 is None else p95 * 1000,
                    "p99": None if p99 is None else p99 * 1000,
                    "count": stats.latency.count,
                },
                "orders_received": sum(stats.orders_received.values()),
                "orders_final": sum(stats.orders_final.values()),
                "open_orders": flow.matcher.open_count,
                "lps": lps(flow),
            }
        )
    return data
