"""Counters of the order flow, kept as plain numbers on the hot path.

Incrementing a Python int in a dict costs a fraction of what a labelled
prometheus-client metric does, so the order flow counts here and the
Prometheus collector (``gateway.ops.metrics``) turns the numbers into metric
families at scrape time.  Everything is touched by the event loop only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

# seconds; sub-millisecond resolution where the order path lives
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

_RECENT: Final = 8192


class Histogram:
    """Bucket counts, sum and count, as Prometheus wants them, and the most
    recent observations for exact percentiles over the latest traffic."""

    __slots__ = ("_recent", "_recent_at", "bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0
        self._recent: list[float] = []  # a list: compiled, its operations are direct
        self._recent_at = 0

    def observe(self, value: float) -> None:
        # the first bucket whose bound is not below the value, as bisect_left
        # finds it; a scan from the start, since latencies sit in the first few
        bounds = self.bounds
        n = len(bounds)
        i = 0
        while i < n and bounds[i] < value:
            i += 1
        self.counts[i] += 1
        self.sum += value
        self.count += 1
        recent = self._recent
        if len(recent) < _RECENT:
            recent.append(value)
        else:
            recent[self._recent_at] = value
            self._recent_at = (self._recent_at + 1) % _RECENT

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``."""
        out = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out

    def percentiles(self, *ps: float) -> list[float | None]:
        """Exact percentiles (0-100) of the latest observations; None before any."""
        values = sorted(self._recent)
        if not values:
            return [None for _ in ps]
        last = len(values) - 1
        return [values[min(last, int(p / 100 * len(values)))] for p in ps]


@dataclass(slots=True)
class LpStats:
    children: int = 0
    """Child orders sent."""
    filled: int = 0
    """Children that ended with at least one fill."""
    rejected: int = 0
    """Children the LP rejected."""
    unfilled: int = 0
    """Children that ended with nothing filled, not rejected (IOC misses,
    cancels, drops, timeouts)."""
    fills: int = 0
    """Fill events (a partial fill counts once)."""
    filled_lots: int = 0
    timeouts: int = 0
    ack_latency: Histogram = field(default_factory=Histogram)
    """Child sent to the LP's first answer."""

    @property
    def ended(self) -> int:
        return self.filled + self.rejected + self.unfilled


@dataclass(slots=True)
class PolicyStats:
    routings: int = 0
    """Routings begun under the policy (re-routes included)."""
    orders: int = 0
    """Orders whose first routing chose the policy."""
    routed_lots: int = 0
    filled_lots: int = 0
    latency: Histogram = field(default_factory=Histogram)
    """Order arrival to final state, for the orders the policy routed."""


class FlowStats:
    """Everything the order flow counts."""

    __slots__ = (
        "latency",
        "lps",
        "margin_calls",
        "order_rejects",
        "orders_final",
        "orders_received",
        "policies",
        "route_decisions",
        "stop_outs",
    )

    def __init__(self) -> None:
        self.orders_received: dict[str, int] = {}
        self.order_rejects: dict[tuple[str, str], int] = {}  # (client, reason)
        self.orders_final: dict[tuple[str, str], int] = {}  # (client, status)
        self.lps: dict[str, LpStats] = {}
        self.policies: dict[str, PolicyStats] = {}
        self.latency = Histogram()
        """Order arrival to final state, every order."""
        self.route_decisions = 0
        self.margin_calls: dict[str, int] = {}  # per client
        self.stop_outs: dict[str, int] = {}  # per client

    def lp(self, name: str) -> LpStats:
        stats = self.lps.get(name)
        if stats is None:
            stats = self.lps[name] = LpStats()
        return stats

    def policy(self, name: str) -> PolicyStats:
        stats = self.policies.get(name)
        if stats is None:
            stats = self.policies[name] = PolicyStats()
        return stats

    def received(self, client: str) -> None:
        self.orders_received[client] = self.orders_received.get(client, 0) + 1

    def rejected(self, client: str, reason: str) -> None:
        key = (client, reason)
        self.order_rejects[key] = self.order_rejects.get(key, 0) + 1

    def final(self, client: str, status: str) -> None:
        key = (client, status)
        self.orders_final[key] = self.orders_final.get(key, 0) + 1
