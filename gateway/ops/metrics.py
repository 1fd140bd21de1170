"""Prometheus metrics of the order flow, the LPs, margin, reloads and the event loop.

Nothing here runs on the order path: the collector reads the order flow's
plain counters (``gateway.orderflow.stats``), the exposure ledger, the margin
accounts and the rules in force when ``/metrics`` is scraped.  Names follow
Prometheus conventions: ``fixgw_`` prefix, base units (seconds, USD),
``_total`` on counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.cluster import Cluster
from gateway.net.transport import BusyPoll
from gateway.ops.reload import STATUSES, ReloadStats
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.stats import Histogram, LpStats

LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, h.buckets(), h.sum)


def lp_rates(filled: int, rejected: int, ended: int) -> tuple[float, float]:
    """Fill rate and reject rate of an LP's ended child orders (0 before any)."""
    if not ended:
        return 0.0, 0.0
    return filled / ended, rejected / ended


class LoopLag:
    """How late the event loop runs a callback scheduled every ``interval``
    seconds: a direct measure of how long other work holds the loop."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.histogram = Histogram(LAG_BUCKETS)
        self.last = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.last = max(0.0, loop.time() - expected)
            self.histogram.observe(self.last)


class OperationsCollector(Collector):
    """Order flow, LP, policy, margin, reload and event-loop metrics, read at scrape time."""

    def __init__(
        self,
        flow: Callable[[], OrderFlow | None],
        reloads: Callable[[], ReloadStats],
        version: Callable[[], tuple[str, int]],
        lag: LoopLag,
        busy_poll: BusyPoll | None = None,
    ) -> None:
        self._flow = flow
        self._reloads = reloads
        self._version = version
        self._lag = lag
        self._busy_poll = busy_poll

    def collect(self) -> Iterator[Metric]:
        yield from self._config()
        lag = GaugeMetricFamily(
            "fixgw_event_loop_lag_seconds",
            "How late the event loop ran the last 100 ms tick",
        )
        lag.add_metric([], self._lag.last)
        yield lag
        lag_h = _histogram(
            "fixgw_event_loop_lag_distribution_seconds",
            "How late the event loop ran its 100 ms ticks",
            [],
        )
        _add_histogram(lag_h, [], self._lag.histogram)
        yield lag_h
        busy = self._busy_poll
        if busy is not None:
            turns = CounterMetricFamily(
                "fixgw_busy_poll_turns",
                "Event-loop turns spent polling between reads (busy_poll_us)",
            )
            turns.add_metric([], busy.turns)
            yield turns
            polling = GaugeMetricFamily(
                "fixgw_busy_polling", "1 while the event loop polls instead of sleeping"
            )
            polling.add_metric([], 1.0 if busy.spinning else 0.0)
            yield polling
        flow = self._flow()
        if flow is not None:
            yield from self._orders(flow)
            yield from self._lps(flow)
            yield from self._policies(flow)
            yield from self._margin(flow)

    def _config(self) -> Iterator[Metric]:
        version, generation = self._version()
        info = GaugeMetricFamily(
            "fixgw_config_info", "The config version in force (value 1)", labels=["version"]
        )
        info.add_metric([version], 1.0)
        gen = GaugeMetricFamily(
            "fixgw_config_generation", "1 at start, +1 for every reload that changed something"
        )
        gen.add_metric([], float(generation))
        stats = self._reloads()
        reloads = CounterMetricFamily(
            "fixgw_config_reloads", "Config reloads by outcome", labels=["status"]
        )
        for status in STATUSES:
            reloads.add_metric([status], float(stats.by_status[status]))
        last_ok = GaugeMetricFamily(
            "fixgw_config_last_reload_success",
            "1 if the last reload was applied or found nothing to change, 0 if refused",
        )
        last_ok.add_metric(
            [], 1.0 if stats.last is None or stats.last.status in ("applied", "unchanged") else 0.0
        )
        last_at = GaugeMetricFamily(
            "fixgw_config_last_reload_timestamp_seconds", "When the last reload was attempted"
        )
        last_at.add_metric([], stats.last_at)
        success_at = GaugeMetricFamily(
            "fixgw_config_last_reload_success_timestamp_seconds",
            "When a reload last succeeded",
        )
        success_at.add_metric([], stats.last_success_at)
        yield from (info, gen, reloads, last_ok, last_at, success_at)

    def _orders(self, flow: OrderFlow) -> Iterator[Metric]:
        stats = flow.stats
        received = CounterMetricFamily(
            "fixgw_orders_received", "NewOrderSingle received", labels=["client"]
        )
        for client, n in sorted(stats.orders_received.items()):
            received.add_metric([client], float(n))
        final = CounterMetricFamily(
            "fixgw_orders_final",
            "Orders that reached a final state, by client and OrdStatus",
            labels=["client", "status"],
        )
        for (client, status), n in sorted(stats.orders_final.items()):
            final.add_metric([client, status], float(n))
        rejects = CounterMetricFamily(
            "fixgw_order_rejects",
            "Rejected orders by client and reason",
            labels=["client", "reason"],
        )
        shed = 0
        for (client, reason), n in sorted(stats.order_rejects.items()):
            rejects.add_metric([client, reason], float(n))
            if reason == "shed":
                shed += n
        # served from the start (0), so that an alert on it has a series
        shed_total = CounterMetricFamily(
            "fixgw_orders_shed",
            "NewOrderSingles refused because they waited past orders.shed_after_ms",
        )
        shed_total.add_metric([], float(shed))
        latency = _histogram(
            "fixgw_order_latency_seconds",
            "From a NewOrderSingle's arrival to its order's final ExecutionReport",
            [],
        )
        _add_histogram(latency, [], stats.latency)
        open_orders = GaugeMetricFamily("fixgw_open_orders", "Orders open in the matcher")
        open_orders.add_metric([], float(flow.matcher.open_count))
        yield from (received, final, rejects, shed_total, latency, open_orders)

    def _lps(self, flow: OrderFlow) -> Iterator[Metric]:
        stats = flow.stats
        names = [lp.name for lp in flow.rules.config.lps]
        children = CounterMetricFamily("fixgw_lp_child_orders", "Child orders sent", labels=["lp"])
        ended = CounterMetricFamily(
            "fixgw_lp_child_orders_ended",
            "Child orders ended, by outcome (filled: at least one fill)",
            labels=["lp", "outcome"],
        )
        fills = CounterMetricFamily("fixgw_lp_fills", "Fills reported by the LP", labels=["lp"])
        lots = CounterMetricFamily("fixgw_lp_filled_lots", "Lots filled by the LP", labels=["lp"])
        timeouts = CounterMetricFamily(
            "fixgw_lp_child_timeouts",
            "Child orders given up after the LP did not answer",
            labels=["lp"],
        )
        fill_rate = GaugeMetricFamily(
            "fixgw_lp_fill_rate", "Share of ended child orders with a fill", labels=["lp"]
        )
        reject_rate = GaugeMetricFamily(
            "fixgw_lp_reject_rate", "Share of ended child orders rejected", labels=["lp"]
        )
        ack = _histogram(
            "fixgw_lp_ack_latency_seconds",
            "From a child order's send to the LP's first answer",
            ["lp"],
        )
        up = GaugeMetricFamily(
            "fixgw_lp_up",
            "1 while the LP link is up (no sample for an LP disabled: not routed to)",
            labels=["lp"],
        )
        exposure = GaugeMetricFamily(
            "fixgw_lp_exposure_usd",
            "Gross notional with the LP in USD, child orders in flight included",
            labels=["lp"],
        )
        headroom = GaugeMetricFamily(
            "fixgw_lp_headroom_usd", "USD left before the LP's hard limit", labels=["lp"]
        )
        soft = GaugeMetricFamily("fixgw_lp_soft_limit_usd", "The LP's soft limit", labels=["lp"])
        hard = GaugeMetricFamily("fixgw_lp_hard_limit_usd", "The LP's hard limit", labels=["lp"])
        position = GaugeMetricFamily(
            "fixgw_lp_position_lots",
            "Net position against the LP in lots (client side: positive when clients bought)",
            labels=["lp", "symbol"],
        )
        snapshot = flow.exposure(flow.now())
        enabled = flow.rules.limits.enabled_lps
        for name in names:
            # from 0 before the LP's first child order: a series born at its
            # first value hides that value from increase() and rate()
            s = stats.lps.get(name)
            if s is None:
                s = LpStats()
            children.add_metric([name], float(s.children))
            ended.add_metric([name, "filled"], float(s.filled))
            ended.add_metric([name, "rejected"], float(s.rejected))
            ended.add_metric([name, "unfilled"], float(s.unfilled))
            fills.add_metric([name], float(s.fills))
            lots.add_metric([name], float(s.filled_lots))
            timeouts.add_metric([name], float(s.timeouts))
            f, r = lp_rates(s.filled, s.rejected, s.ended)
            fill_rate.add_metric([name], f)
            reject_rate.add_metric([name], r)
            _add_histogram(ack, [name], s.ack_latency)
            adapter = flow.adapters.get(name)
            if adapter is not None and name in enabled:
                # none for an LP disabled (at start: never connected; by a
                # reload: routed to no more), so no alert pages about it
                up.add_metric([name], 1.0 if adapter.up else 0.0)
            limits = flow.rules.limits.lps.get(name)
            gross = snapshot.gross_usd(name)
            if gross is not None:
                exposure.add_metric([name], float(gross))
            if limits is not None:
                soft.add_metric([name], float(limits.soft_limit_usd))
                hard.add_metric([name], float(limits.hard_limit_usd))
                if gross is not None:
                    headroom.add_metric([name], float(limits.hard_limit_usd - gross))
            for symbol, held in sorted(snapshot.lp_positions.get(name, {}).items()):
                position.add_metric([name, symbol], float(held))
        yield from (children, ended, fills, lots, timeouts, fill_rate, reject_rate, ack, up)
        yield from (exposure, headroom, soft, hard, position)

    def _policies(self, flow: OrderFlow) -> Iterator[Metric]:
        stats = flow.stats
        rules = flow.rules
        share = GaugeMetricFamily(
            "fixgw_policy_share_percent",
            "Percentage of new orders each routing policy is given",
            labels=["policy"],
        )
        for name, percent in rules.shares.items():
            share.add_metric([name], float(percent))
        orders = CounterMetricFamily(
            "fixgw_policy_orders", "Orders whose first routing chose the policy", labels=["policy"]
        )
        routings = CounterMetricFamily(
            "fixgw_policy_routings", "Routings (re-routes included) by policy", labels=["policy"]
        )
        routed = CounterMetricFamily(
            "fixgw_policy_routed_lots", "Lots handed to the policy to route", labels=["policy"]
        )
        filled = CounterMetricFamily(
            "fixgw_policy_filled_lots", "Lots filled at LPs under the policy", labels=["policy"]
        )
        latency = _histogram(
            "fixgw_policy_order_latency_seconds",
            "Order arrival to final state, by the policy of its first routing",
            ["policy"],
        )
        for name, p in sorted(stats.policies.items()):
            orders.add_metric([name], float(p.orders))
            routings.add_metric([name], float(p.routings))
            routed.add_metric([name], float(p.routed_lots))
            filled.add_metric([name], float(p.filled_lots))
            _add_histogram(latency, [name], p.latency)
        yield from (share, orders, routings, routed, filled, latency)

    def _margin(self, flow: OrderFlow) -> Iterator[Metric]:
        """Each margined client's account, as the admin API shows it: the
        accounts are marked at the exposure's valuation (as ``/admin/margin``
        marks them), then read once each.  In a cluster, only the accounts
        of the clients this gateway serves: another gateway's client is
        judged there, and its positions here are those last known here."""
        accounts = flow.accounts
        params = accounts.params
        info = GaugeMetricFamily(
            "fixgw_margin_param_info",
            "The margin parameter version in force (value 1)",
            labels=["version"],
        )
        equity = GaugeMetricFamily(
            "fixgw_margin_equity_usd",
            "Collateral plus realized and unrealized P&L",
            labels=["client"],
        )
        margin = GaugeMetricFamily(
            "fixgw_margin_usd",
            "Portfolio margin: scan risk less spread credits",
            labels=["client"],
        )
        siloed = GaugeMetricFamily(
            "fixgw_margin_siloed_usd",
            "Margin with only the spreads within one asset class",
            labels=["client"],
        )
        free = GaugeMetricFamily(
            "fixgw_margin_free_usd", "Equity less initial margin", labels=["client"]
        )
        level = GaugeMetricFamily(
            "fixgw_margin_level",
            "Equity / margin (no sample while the margin is 0)",
            labels=["client"],
        )
        calls = CounterMetricFamily(
            "fixgw_margin_calls",
            "Times the margin level fell below the margin call level",
            labels=["client"],
        )
        stop_outs = CounterMetricFamily(
            "fixgw_margin_stop_outs",
            "Stop-outs started (level below the stop-out level)",
            labels=["client"],
        )
        clients = accounts.clients()
        if params is not None:
            info.add_metric([params.version], 1.0)
        if clients:
            flow.entry.mark_accounts(flow.exposure(flow.now()))
        serves = flow.watch.serves
        for client in clients:
            if serves is not None and not serves(client):
                continue
            view = accounts.view(client)
            if view is None:
                continue
            equity.add_metric([client], view.equity_usd)
            margin.add_metric([client], view.margin_usd)
            siloed.add_metric([client], view.siloed_margin_usd)
            free.add_metric([client], view.free_margin_usd)
            if view.margin_level is not None:
                level.add_metric([client], view.margin_level)
        stats = flow.stats
        # every margined client from zero, and any other one counted before a reload
        counted = sorted({*clients, *stats.margin_calls, *stats.stop_outs})
        for client in counted:
            calls.add_metric([client], float(stats.margin_calls.get(client, 0)))
            stop_outs.add_metric([client], float(stats.stop_outs.get(client, 0)))
        yield from (info, equity, margin, siloed, free, level, calls, stop_outs)


class ClusterCollector(Collector):
    """Session leases of a gateway in a cluster, read at scrape time."""

    def __init__(self, cluster: Callable[[], Cluster | None]) -> None:
        self._cluster = cluster

    def collect(self) -> Iterator[Metric]:
        cluster = self._cluster()
        if cluster is None:
            return
        stats = cluster.stats
        connected = GaugeMetricFamily(
            "fixgw_cluster_connected", "1 while the gateway reaches its NATS cluster"
        )
        connected.add_metric([], 1.0 if cluster.connected else 0.0)
        held = GaugeMetricFamily("fixgw_cluster_sessions_held", "Session leases this gateway holds")
        held.add_metric([], len(cluster.held()))
        leases = CounterMetricFamily(
            "fixgw_cluster_leases",
            "Session lease events: granted (a free key or our own), takeover (another"
            " gateway's lapsed lease), renewed, refused (a Logon turned away: another gateway"
            " serves it), lost (stopped serving: not renewed in time or taken), released,"
            " unattended (taken with no Logon: no gateway had held it for take_unattended_ms),"
            " handover (handed to another gateway on an operator's word)",
            labels=["event"],
        )
        for event, count in (
            ("granted", stats.grants),
            ("takeover", stats.takeovers),
            ("renewed", stats.renewals),
            ("refused", stats.refusals),
            ("lost", stats.losses),
            ("released", stats.releases),
            ("unattended", stats.unattended),
            ("handover", stats.handovers),
        ):
            leases.add_metric([event], count)
        errors = CounterMetricFamily(
            "fixgw_cluster_errors",
            "Bucket operations that failed (unreachable, timed out)",
            labels=["operation"],
        )
        for operation, count in sorted(stats.reasons.items()):
            errors.add_metric([operation], count)
        yield from (connected, held, leases, errors)
        headroom = cluster.headroom
        if headroom is not None:
            slices = GaugeMetricFamily(
                "fixgw_cluster_lp_slice_usd",
                "This gateway's slice of each LP's hard limit (it routes within it)",
                labels=["lp"],
            )
            reduce_only = GaugeMetricFamily(
                "fixgw_cluster_lp_reduce_only",
                "1 while this gateway routes only reducing flow to the LP: its slice is used"
                " and the cluster cannot be reached to grow it",
                labels=["lp"],
            )
            differs = GaugeMetricFamily(
                "fixgw_cluster_lp_limit_differs",
                "1 while the gateways holding a slice of the LP's hard limit have configured"
                " different limits (the smallest is kept)",
                labels=["lp"],
            )
            absent = GaugeMetricFamily(
                "fixgw_cluster_lp_absent_slices_usd",
                "The slices of the LP's hard limit held by gateways not running (reserved"
                " until each starts again or its entry is removed from the LP's key)",
                labels=["lp"],
            )
            for lp, cap in sorted(headroom.caps.items()):
                slices.add_metric([lp], float(cap))
                reduce_only.add_metric([lp], 1.0 if lp in headroom.stats.reduce_only else 0.0)
                differs.add_metric([lp], 1.0 if headroom.limits_differ(lp) else 0.0)
                absent_held = headroom.absent.get(lp, {})
                absent.add_metric([lp], float(sum(absent_held.values(), Decimal(0))))
            yield from (slices, reduce_only, differs, absent)
        log = cluster.log
        if log is None:
            return
        copy = log.stats
        copied = CounterMetricFamily(
            "fixgw_cluster_copy_batches",
            "Batches of the sessions' copy acknowledged by the cluster (one per write"
            " round that changed a session's store)",
        )
        copied.add_metric([], copy.batches)
        failed = CounterMetricFamily(
            "fixgw_cluster_copy_failures",
            "Batches of the sessions' copy given up (not acknowledged in 10 s): their bytes"
            " never left",
        )
        failed.add_metric([], copy.failures)
        retried = CounterMetricFamily(
            "fixgw_cluster_copy_retries",
            "Resends of the sessions' copy (every batch not acknowledged in time, in order)",
        )
        retried.add_metric([], copy.retries)
        lag = GaugeMetricFamily(
            "fixgw_cluster_copy_lag_seconds",
            "How long the last batch of the sessions' copy waited for the cluster's"
            " acknowledgement (its bytes waited as long)",
        )
        lag.add_metric([], copy.lag)
        applied = CounterMetricFamily(
            "fixgw_cluster_copy_applied",
            "Records of other gateways' sessions applied to the stores here (kept warm"
            " for a takeover)",
        )
        applied.add_metric([], copy.applied)
        yield from (copied, failed, retried, lag, applied)


class DropCopyCollector(Collector):
    """The drop-copy process, read at scrape time: ``state`` gives whether
    it runs, how often it was started again, and how many journal batches
    it is behind (None: the config has no drop copy); ``sessions`` its
    sessions as it last reported them."""

    def __init__(
        self,
        state: Callable[[], tuple[bool, int, int] | None],
        sessions: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self._state = state
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        up, restarts, behind = state
        running = GaugeMetricFamily(
            "fixgw_drop_copy_up", "1 while the drop-copy process runs (it is restarted if it ends)"
        )
        running.add_metric([], 1.0 if up else 0.0)
        started = CounterMetricFamily(
            "fixgw_drop_copy_restarts", "Times the drop-copy process was started again"
        )
        started.add_metric([], restarts)
        lag = GaugeMetricFamily(
            "fixgw_drop_copy_lag_batches",
            "Order-journal batches written that the drop copy has not stored copies of yet",
        )
        lag.add_metric([], behind)
        logged_on = GaugeMetricFamily(
            "fixgw_drop_copy_session_logged_on",
            "1 when the drop-copy session is logged on (as its process reported, each second)",
            labels=["session"],
        )
        for session in self._sessions():
            logged_on.add_metric([str(session["session"])], 1.0 if session["logged_on"] else 0.0)
        yield from (running, started, lag, logged_on)
