"""Routing policies: how a client order is split into child orders to LPs.

A policy is a pure function of its arguments (:class:`RoutingPolicy`): the
order (:class:`RouteRequest`), a snapshot of the aggregated LP book, a
snapshot of the exposure ledger and the routing limits in force.  It keeps no
state between calls and the same arguments always give the same
:class:`RoutePlan`, so a plan can be replayed and two policies can share
traffic by configuration alone.

Adding a policy: write a class with a ``name`` and a ``route`` method as in
:class:`RoutingPolicy`, decorate it with :func:`register_policy`, and name it
in the configuration; :func:`build_policy` turns the name into an instance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar, Final, Protocol, TypeVar

from router.book import BookSnapshot
from router.exposure import ExposureSnapshot
from router.members import BUY
from router.model import Instrument, Side
from router.values import Value

__all__ = [
    "ALL_AT_HARD_LIMIT",
    "HARD_LIMIT_REACHED",
    "INSUFFICIENT_LIQUIDITY",
    "LIMIT_PRICE_REACHED",
    "MAX_CHILD_ORDERS_REACHED",
    "NO_LIQUIDITY",
    "NO_USD_VALUATION",
    "POLICIES",
    "BestPrice",
    "BestPriceExposureAware",
    "ChildAllocation",
    "LpLimits",
    "PolicyConfigError",
    "RoutePlan",
    "RouteRequest",
    "RoutingLimits",
    "RoutingPolicy",
    "build_policy",
    "register_policy",
]

# Why a plan left part of the order unallocated (RoutePlan.reason joins the
# ones that applied with "; ").
NO_LIQUIDITY = "no liquidity"
ALL_AT_HARD_LIMIT = "all LPs at hard limit"
HARD_LIMIT_REACHED = "LP hard limit reached"
LIMIT_PRICE_REACHED = "limit price reached"
MAX_CHILD_ORDERS_REACHED = "max child orders reached"
NO_USD_VALUATION = "no USD valuation"
INSUFFICIENT_LIQUIDITY = "insufficient liquidity"

_NO_LPS: frozenset[str] = frozenset()
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LpLimits:
    """Exposure limits of one LP, on its gross notional in USD.

    Below ``soft_limit_usd`` the LP's prices are taken as quoted.  Between the
    soft and the hard limit they are made worse, for ranking only, by a
    penalty growing linearly from 0 ticks at the soft limit to
    ``soft_penalty_ticks`` at the hard limit (rounded up to a whole tick).  No
    child may take the gross notional past ``hard_limit_usd``.
    """

    soft_limit_usd: Decimal
    hard_limit_usd: Decimal
    soft_penalty_ticks: int = 0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.soft_limit_usd < 0:
            raise ValueError(f"soft_limit_usd must not be negative, got {self.soft_limit_usd}")
        if self.hard_limit_usd < self.soft_limit_usd:
            raise ValueError(
                f"hard_limit_usd {self.hard_limit_usd} is below soft_limit_usd "
                f"{self.soft_limit_usd}"
            )
        if self.soft_penalty_ticks < 0:
            raise ValueError(
                f"soft_penalty_ticks must not be negative, got {self.soft_penalty_ticks}"
            )

    def penalty_ticks(self, gross_usd: Decimal) -> int:
        """Ticks by which this LP's prices rank worse at ``gross_usd``."""
        soft = self.soft_limit_usd
        if gross_usd <= soft or not self.soft_penalty_ticks:
            return 0
        hard = self.hard_limit_usd
        if gross_usd >= hard:
            return self.soft_penalty_ticks
        whole, rest = divmod(self.soft_penalty_ticks * (gross_usd - soft), hard - soft)
        return int(whole) + (1 if rest else 0)


@dataclass(frozen=True, slots=True)
class RoutingLimits:
    """Limits every routing decision honours.

    ``lps`` has one entry per LP the router may use; an LP missing from it,
    or with ``enabled=False``, gets no child order.  ``max_child_orders``
    caps the number of LPs one order is split across.
    """

    lps: Mapping[str, LpLimits]
    max_child_orders: int = 4

    def __post_init__(self) -> None:
        if self.max_child_orders < 1:
            raise ValueError(f"max_child_orders must be at least 1, got {self.max_child_orders}")
        object.__setattr__(self, "lps", MappingProxyType(dict(self.lps)))

    @property
    def enabled_lps(self) -> frozenset[str]:
        return frozenset(lp for lp, limits in self.lps.items() if limits.enabled)


class RouteRequest(Value):
    """What is left of a client order to route: ``qty`` lots of ``symbol``
    on the client's ``side``, at ``limit_price`` ticks or better (None: a
    market order).  Immutable."""

    __slots__ = ("client", "instrument", "limit_price", "parent_id", "qty", "side", "symbol")

    def __init__(
        self,
        parent_id: str,
        client: str,
        symbol: str,
        side: Side,
        qty: int,
        limit_price: int | None,
        instrument: Instrument,
    ) -> None:
        if qty <= 0:
            raise ValueError(f"route quantity must be positive, got {qty}")
        if instrument.symbol != symbol:
            raise ValueError(f"instrument {instrument.symbol} given for {symbol}")
        self.parent_id: Final = parent_id
        self.client: Final = client
        self.symbol: Final = symbol
        self.side: Final = side
        self.qty: Final = qty
        self.limit_price: Final = limit_price
        self.instrument: Final = instrument

    def fields(self) -> tuple[object, ...]:
        return (
            self.parent_id,
            self.client,
            self.symbol,
            self.side,
            self.qty,
            self.limit_price,
            self.instrument,
        )


class ChildAllocation(Value):
    """``qty`` lots for ``lp`` with a limit of ``price`` ticks: the worst
    level taken at that LP, so the LP can fill the whole child at or better.
    Immutable; unpacks as ``lp, qty, price``."""

    __slots__ = ("lp", "price", "qty")

    def __init__(self, lp: str, qty: int, price: int) -> None:
        self.lp: Final = lp
        self.qty: Final = qty
        self.price: Final = price

    def fields(self) -> tuple[object, ...]:
        return (self.lp, self.qty, self.price)

    def __iter__(self) -> Iterator[object]:
        return iter(self.fields())


class RoutePlan(Value):
    """The children of one routing decision and what could not be placed.

    ``remainder`` is the part of the request no child covers; ``reason`` says
    why when it is not zero (empty otherwise).  Immutable.
    """

    __slots__ = ("children", "reason", "remainder")

    def __init__(
        self, children: tuple[ChildAllocation, ...], remainder: int, reason: str = ""
    ) -> None:
        self.children: Final = children
        self.remainder: Final = remainder
        self.reason: Final = reason

    @property
    def allocated(self) -> int:
        return sum(child.qty for child in self.children)

    def fields(self) -> tuple[object, ...]:
        return (self.children, self.remainder, self.reason)


class RoutingPolicy(Protocol):
    """The contract of a routing policy.

    Required:

    * ``name``: the name configuration uses for it;
    * ``route(request, book, exposure, limits, excluded_lps)``: the plan for
      ``request``.  It must be a pure, deterministic function of its
      arguments: no state kept between calls, no I/O, no clock, no
      randomness.  ``excluded_lps`` are LPs not to use for this request (one
      rejected a child or dropped, and the rest is being re-routed).

    Every plan must respect ``limits`` (no child to an LP that is disabled,
    excluded or not configured; no child taking an LP past its hard limit;
    at most ``max_child_orders`` children, one per LP) and the request's limit
    price; children's quantities plus ``remainder`` equal ``request.qty``.
    """

    name: ClassVar[str]

    def route(
        self,
        request: RouteRequest,
        book: BookSnapshot,
        exposure: ExposureSnapshot,
        limits: RoutingLimits,
        excluded_lps: frozenset[str] = _NO_LPS,
    ) -> RoutePlan: ...


class PolicyConfigError(ValueError):
    """A policy name or parameter the configuration gave is not valid."""


POLICIES: dict[str, type[RoutingPolicy]] = {}
"""Routing policies by name; fill it with :func:`register_policy`."""

_P = TypeVar("_P", bound=type[RoutingPolicy])


def register_policy(cls: _P) -> _P:
    """Class decorator: make a policy available under its ``name``."""
    name = cls.name
    if name in POLICIES:
        raise PolicyConfigError(f"routing policy {name!r} is already registered")
    POLICIES[name] = cls
    return cls


def build_policy(name: str, **params: Any) -> RoutingPolicy:
    """An instance of the policy registered as ``name``, built with ``params``."""
    cls = POLICIES.get(name)
    if cls is None:
        known = ", ".join(sorted(POLICIES)) or "none"
        raise PolicyConfigError(f"unknown routing policy {name!r} (known: {known})")
    try:
        return cls(**params)
    except TypeError as exc:
        raise PolicyConfigError(f"routing policy {name!r}: {exc}") from None


_V = TypeVar("_V")


def _get(mapping: Mapping[str, _V], key: str) -> _V | None:
    """``mapping.get(key)``, for the read-only views of the exposure
    snapshot and the limits (``MappingProxyType``): their ``get`` calls the
    underlying dict's ``get`` in turn, two method look-ups and calls from
    compiled code, where a membership test and a subscript are two C slots
    (``bench/RESULTS.md``, 2026-12-06)."""
    if key in mapping:
        return mapping[key]
    return None


def _lots(mapping: Mapping[str, int], key: str) -> int:
    """``mapping.get(key, 0)``, read as :func:`_get` reads."""
    if key in mapping:
        return mapping[key]
    return 0


def _lots_within(amount: Decimal, lot_usd: Decimal) -> int:
    """How many whole lots worth ``lot_usd`` each fit in ``amount`` (> 0)."""
    return int(amount // lot_usd)


@register_policy
class BestPriceExposureAware:
    """Best price first, steering flow away from LPs close to their limits.

    The merged levels of the side the order takes from are walked best
    first and taken greedily until the order is covered, subject to:

    * the request's limit price: no level worse than it is taken;
    * the hard limit: each LP gets at most the lots that keep its gross
      notional (after the child) at or below ``hard_limit_usd``; an LP already
      at its hard limit gets nothing that would add to its exposure;
    * the soft limit: between the soft and the hard limit an LP's levels are
      ranked as if ``penalty_ticks`` worse (a BUY sees its asks higher, a SELL
      its bids lower), so flow moves to other LPs before the hard limit
      stops it.  The penalty changes the ranking only; the child's limit is
      the LP's real price;
    * direction: the part of a child that reduces the gateway's net position
      with the LP in the symbol (up to that position, no further) is never
      penalised, and is allowed even at or past the hard limit, since it
      lowers the exposure (less the lots of children in flight at the LP
      in the symbol, which may lower it first: orders routed at once do
      not each take the same reducing lots past the limit).  Only what goes
      beyond it, opening or extending a position, is penalised and capped.
      The penalty itself comes from the gross notional in the snapshot,
      before the order;
    * LPs in ``excluded_lps``, disabled or without limits get nothing; at
      most ``max_child_orders`` LPs get a child (the first ones reached).

    Each LP gets one child for everything taken from it, with the worst
    level taken as the child's limit.  Children are listed in the order
    their LP was first reached, i.e. best price first; ties in price follow
    the book's order (larger quantity, then LP name), so plans are
    deterministic.

    An LP whose gross notional, or the routed symbol, cannot be valued in
    USD gets only the reducing part described above.
    """

    name: ClassVar[str] = "best_price_exposure_aware"
    steers: ClassVar[bool] = True
    """Whether prices of LPs past their soft limit are penalised."""

    __slots__ = ()

    def route(
        self,
        request: RouteRequest,
        book: BookSnapshot,
        exposure: ExposureSnapshot,
        limits: RoutingLimits,
        excluded_lps: frozenset[str] = _NO_LPS,
    ) -> RoutePlan:
        symbol = request.symbol
        if book.symbol != symbol:
            raise ValueError(f"book of {book.symbol} given to route {symbol}")
        buy = request.side is BUY
        qty = request.qty
        levels = book.asks if buy else book.bids
        if not levels:
            return RoutePlan((), qty, NO_LIQUIDITY)

        # Per LP: lots it may still take (caps), the penalty of its
        # non-reducing part and the reducing lots left (penalised LPs only).
        caps: dict[str, int] = {}
        penalties: dict[str, int] = {}
        reducible_left: dict[str, int] = {}
        any_headroom = False
        not_valued: set[str] = set()
        lot_usd = _get(exposure.usd_per_lot, symbol)
        positions = exposure.lp_positions
        in_flight = exposure.lp_reserved
        gross_by_lp = exposure.lp_gross_usd
        unvalued_lps = exposure.unvalued_lps
        configured = limits.lps
        steers = self.steers
        for lp in book.ask_lps if buy else book.bid_lps:
            if lp in excluded_lps:
                continue
            lp_limits = _get(configured, lp)
            if lp_limits is None or not lp_limits.enabled:
                continue
            by_symbol = _get(positions, lp)
            position = 0 if by_symbol is None else _lots(by_symbol, symbol)
            # lots that bring the position back towards flat, not past it
            reducible = -position if buy else position
            if reducible < 0:
                reducible = 0
            # lots that reduce it whatever the children in flight do (they
            # may reduce it first): the most a child may take past the hard
            # limit, once for all the orders routed meanwhile
            reserved = _get(in_flight, lp)
            sure = reducible - (0 if reserved is None else _lots(reserved, symbol))
            if sure < 0:
                sure = 0
            if lot_usd is None or lp in unvalued_lps:
                cap = sure
                not_valued.add(lp)
            else:
                gross = _get(gross_by_lp, lp)
                if gross is None:
                    gross = _ZERO
                hard = lp_limits.hard_limit_usd
                if not lot_usd or gross + qty * lot_usd <= hard:
                    cap = qty
                else:
                    # gross after q lots: gross + (|position + q| - |position|) * lot_usd
                    # -> up to `reducible` lots lower it, the rest raise it
                    room = hard - gross + reducible * lot_usd
                    cap = reducible + (_lots_within(room, lot_usd) if room > 0 else 0)
                    if room <= 0:
                        # only what reduces the position even once every
                        # child in flight has (gross counts them as adding)
                        cap = sure
                if cap > reducible and steers:
                    penalty = lp_limits.penalty_ticks(gross)
                    if penalty:
                        penalties[lp] = penalty
                        reducible_left[lp] = reducible
            caps[lp] = cap
            if cap:
                any_headroom = True

        if not caps:
            return RoutePlan((), qty, NO_LIQUIDITY)
        if not any_headroom:
            if not_valued:
                return RoutePlan((), qty, _cap_reasons(set(caps), not_valued))
            return RoutePlan((), qty, ALL_AT_HARD_LIMIT)

        limit = request.limit_price
        max_children = limits.max_child_orders
        remaining = qty
        allocated: dict[str, int] = {}
        worst: dict[str, int] = {}
        limit_hit = children_hit = False
        capped: set[str] = set()
        candidates: Sequence[tuple[int, int, str]] = (
            _ranked(levels, buy, qty, caps, penalties, reducible_left) if penalties else levels
        )
        for price, level_qty, lp in candidates:
            if lp not in caps:
                continue
            if limit is not None and (price > limit if buy else price < limit):
                limit_hit = True
                # without penalties the ranking is by real price: nothing
                # further is within the limit
                if not penalties:
                    break
                continue
            cap = caps[lp]
            if not cap:
                capped.add(lp)
                continue
            taken = allocated.get(lp)
            if taken is None:
                if len(allocated) >= max_children:
                    children_hit = True
                    continue
                taken = 0
            take = level_qty if level_qty < remaining else remaining
            if cap < take:
                take = cap
                capped.add(lp)
            allocated[lp] = taken + take
            caps[lp] = cap - take
            worst[lp] = price
            remaining -= take
            if not remaining:
                break

        children = tuple(ChildAllocation(lp, lots, worst[lp]) for lp, lots in allocated.items())
        if not remaining:
            return RoutePlan(children, 0)
        reasons: list[str] = []
        if limit_hit:
            reasons.append(LIMIT_PRICE_REACHED)
        if capped:
            reasons.append(_cap_reasons(capped, not_valued))
        if children_hit:
            reasons.append(MAX_CHILD_ORDERS_REACHED)
        if not reasons:
            reasons.append(INSUFFICIENT_LIQUIDITY)
        return RoutePlan(children, remaining, "; ".join(reasons))


@register_policy
class BestPrice(BestPriceExposureAware):
    """Best price only: as :class:`BestPriceExposureAware` but without the
    soft-limit penalty, so flow stays with the cheapest LP until its hard
    limit stops it.  Hard limits, limit prices and the child-order cap hold
    as there.  The baseline an exposure-aware policy is shifted from or
    compared with."""

    name: ClassVar[str] = "best_price"
    steers: ClassVar[bool] = False

    __slots__ = ()


def _cap_reasons(capped: set[str], not_valued: set[str]) -> str:
    reasons = []
    if capped - not_valued:
        reasons.append(HARD_LIMIT_REACHED)
    if capped & not_valued:
        reasons.append(NO_USD_VALUATION)
    return "; ".join(reasons)


def _ranked(
    levels: tuple[tuple[int, int, str], ...],
    buy: bool,
    qty: int,
    caps: dict[str, int],
    penalties: dict[str, int],
    reducible_left: dict[str, int],
) -> list[tuple[int, int, str]]:
    """Eligible levels as ``(price, qty, lp)``, sorted by the penalised
    price (best first), then larger quantity, then LP name.

    A penalised LP's levels are split: its first reducible lots keep their
    price, the rest are penalised.  Each LP's own levels stay in price
    order, so the last level taken at an LP is its worst.  An LP's levels
    beyond the first ones that together hold ``qty`` lots (or its cap) are
    left out: the walk never gets to them, since it takes an LP's levels in
    order and stops at ``qty`` lots in all.
    """
    ranked: list[tuple[int, int, str, int, int]] = []
    append = ranked.append
    listed: dict[str, int] = {}
    complete = 0  # LPs with every level the walk can reach listed
    for price, size, lp in levels:
        cap = caps.get(lp)
        if cap is None:
            continue
        have = listed.get(lp)
        if have is None:
            # an LP's first level is listed even at a cap of 0: the walk
            # names it as held back by its hard limit, as it does unranked
            have = 0
        elif have >= qty or have >= cap:
            continue
        listed[lp] = have + size
        if have + size >= qty or have + size >= cap:
            complete += 1
        penalty = penalties.get(lp)
        if penalty:
            reducible = reducible_left[lp]
            if reducible:
                part = size if size < reducible else reducible
                reducible_left[lp] = reducible - part
                append((price if buy else -price, -part, lp, price, part))
                size -= part
            if size:
                append((price + penalty if buy else penalty - price, -size, lp, price, size))
        else:
            append((price if buy else -price, -size, lp, price, size))
        if complete == len(caps):
            break
    ranked.sort()
    return [(price, size, lp) for _rank, _neg_size, lp, price, size in ranked]
