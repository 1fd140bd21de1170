"""Portfolio margin, SPAN-style: scan risk per risk group, less credits for
spreads between groups.

Everything here is pure: positions, marks and parameters in, figures out.

**Risk groups.**  Each instrument belongs to at most one group; positions in
one group net unit for unit (put in one group only instruments on the same
underlying).  A group's *scan range* is the price move it is margined for,
in USD per unit of the instrument: ``scan_usd`` as given, or ``scan_pct``
times the USD value of one unit at the mark.  Its *scan risk* is its worst
loss over the scenarios "price up / down 1/3, 2/3 and 3/3 of the scan
range", all of its instruments moving together; for the linear instruments
traded here the full move decides.

**Spreads.**  A spread names two or more legs, each a group with a ratio and
a side letter: legs of opposite letters must hold positions of opposite
signs, legs of the same letter the same sign.  Spreads are formed in
priority order from the units not yet used by an earlier spread; the number
formed is the smallest ``|units left| / ratio`` over the legs (fractions
allowed), and each earns ``rate x ratio x (the leg group's scan risk per
unit)`` summed over its legs.  Margin = total scan risk - total credits.

**Siloed margin** is the same method with only the spreads whose legs all
lie in one asset class: what separate engines per asset class would ask.
Spreads within an asset class come first in priority (:class:`MarginParams`
refuses a table where they do not), so the portfolio figure forms every
spread the siloed one forms, and then more: it is never above the siloed
figure.

Figures are computed in binary floating point (margin is an estimate of
risk, not an amount booked) and reported in USD rounded to cents.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, final

__all__ = [
    "SCENARIOS",
    "FormedSpread",
    "GroupRisk",
    "MarginGroup",
    "MarginParams",
    "MarginResult",
    "MissingMark",
    "Portfolio",
    "SpreadDef",
    "SpreadLeg",
    "margin",
]

# Price moves tried, as fractions of the scan range, with their names.
SCENARIOS: Final[tuple[tuple[str, float], ...]] = (
    ("up 1/3", 1 / 3),
    ("up 2/3", 2 / 3),
    ("up 3/3", 1.0),
    ("down 1/3", -1 / 3),
    ("down 2/3", -2 / 3),
    ("down 3/3", -1.0),
)

MAX_STATE_COMBINATIONS: Final = 27
"""Combinations of open orders' states margined in full by
:meth:`Portfolio.worst_open`: the product, over the symbols with open
orders, of their states (two with orders on one side, three with both;
three symbols with both sides make 27); past it, a bound without credit."""

Side = Literal["A", "B"]


class MissingMark(Exception):
    """A group margined as a fraction of price holds a position in a symbol
    that has no USD value yet (no quote seen)."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"no mark for {symbol}: its scan range is a fraction of price")
        self.symbol = symbol


@dataclass(frozen=True, slots=True)
class MarginGroup:
    """A risk group: instruments whose positions net, one scan range.

    Exactly one of ``scan_pct`` (a fraction of the USD value of one unit,
    0.05 for 5%) and ``scan_usd`` (USD per unit) is set.  ``asset_class``
    is that of its instruments (the config checks they share one)."""

    name: str
    asset_class: str
    symbols: tuple[str, ...]
    scan_pct: float | None = None
    scan_usd: float | None = None

    def __post_init__(self) -> None:
        if (self.scan_pct is None) == (self.scan_usd is None):
            raise ValueError(f"group {self.name}: give exactly one of scan_pct and scan_usd")
        if not self.symbols:
            raise ValueError(f"group {self.name}: no symbols")

    def scan_range(self, symbol: str, unit_usd: Mapping[str, float]) -> float:
        """USD per unit of ``symbol`` that this group's scan moves."""
        if self.scan_usd is not None:
            return self.scan_usd
        value = unit_usd.get(symbol)
        if value is None:
            raise MissingMark(symbol)
        assert self.scan_pct is not None
        return self.scan_pct * value


@dataclass(frozen=True, slots=True)
class SpreadLeg:
    group: str
    ratio: float
    side: Side


@dataclass(frozen=True, slots=True)
class SpreadDef:
    """An inter-group spread: formed in ``priority`` order (lower first),
    crediting ``rate`` (0 < rate <= 1) of its legs' scan risk."""

    name: str
    priority: int
    rate: float
    legs: tuple[SpreadLeg, ...]


@dataclass(frozen=True)
class MarginParams:
    """One version of the margin parameters, checked as a whole.

    ``version`` names it; every figure computed under it carries the name.
    Raises ValueError naming the first inconsistency."""

    version: str
    groups: tuple[MarginGroup, ...]
    spreads: tuple[SpreadDef, ...] = ()
    group_of: Mapping[str, str] = field(init=False, repr=False)
    by_name: Mapping[str, MarginGroup] = field(init=False, repr=False)
    ordered: tuple[SpreadDef, ...] = field(init=False, repr=False)
    siloed: tuple[SpreadDef, ...] = field(init=False, repr=False)
    spreads_of: Mapping[str, tuple[SpreadDef, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name: dict[str, MarginGroup] = {}
        group_of: dict[str, str] = {}
        for group in self.groups:
            if group.name in by_name:
                raise ValueError(f"group {group.name} declared twice")
            by_name[group.name] = group
            for symbol in group.symbols:
                if symbol in group_of:
                    raise ValueError(
                        f"{symbol} is in two groups: {group_of[symbol]} and {group.name}"
                    )
                group_of[symbol] = group.name
        names: set[str] = set()
        for spread in self.spreads:
            _check_spread(spread, by_name)
            if spread.name in names:
                raise ValueError(f"spread {spread.name} declared twice")
            names.add(spread.name)
        ordered = tuple(sorted(self.spreads, key=lambda s: (s.priority, s.name)))
        crossing = [s for s in ordered if _is_cross_asset(s, by_name)]
        if crossing:
            first_cross = crossing[0]
            for s in ordered:
                if s.priority > first_cross.priority and not _is_cross_asset(s, by_name):
                    raise ValueError(
                        f"spread {s.name} (priority {s.priority}, within one asset class) comes "
                        f"after the cross-asset spread {first_cross.name} (priority "
                        f"{first_cross.priority}): spreads within an asset class come first"
                    )
        spreads_of: dict[str, list[SpreadDef]] = {}
        for s in ordered:
            for leg in s.legs:
                spreads_of.setdefault(leg.group, []).append(s)
        set_ = object.__setattr__
        set_(self, "by_name", by_name)
        set_(self, "group_of", group_of)
        set_(self, "ordered", ordered)
        set_(self, "siloed", tuple(s for s in ordered if not _is_cross_asset(s, by_name)))
        set_(self, "spreads_of", {g: tuple(v) for g, v in spreads_of.items()})


def _check_spread(spread: SpreadDef, groups: Mapping[str, MarginGroup]) -> None:
    if not 0 < spread.rate <= 1:
        raise ValueError(f"spread {spread.name}: rate {spread.rate} is not in (0, 1]")
    if len(spread.legs) < 2:
        raise ValueError(f"spread {spread.name}: a spread has at least two legs")
    seen: set[str] = set()
    for leg in spread.legs:
        if leg.group not in groups:
            raise ValueError(f"spread {spread.name}: no group {leg.group}")
        if leg.group in seen:
            raise ValueError(f"spread {spread.name}: group {leg.group} is in two legs")
        seen.add(leg.group)
        if not leg.ratio > 0:
            raise ValueError(f"spread {spread.name}: leg {leg.group} ratio must be > 0")
        if leg.side not in ("A", "B"):
            raise ValueError(f"spread {spread.name}: leg {leg.group} side must be A or B")


def _is_cross_asset(spread: SpreadDef, groups: Mapping[str, MarginGroup]) -> bool:
    return len({groups[leg.group].asset_class for leg in spread.legs}) > 1


@final
class GroupRisk:
    """One group's scan: its net ``units`` (signed), ``scan_risk`` (USD,
    >= 0), the scenario that gave it, ``direction`` (+1 long, -1 short, 0
    flat or with no single direction, which takes no part in spreads) and
    ``delta``, the USD the group gains on the full scan move up (signed).

    Not changed once made; compared by identity.  A plain class, not a
    frozen dataclass: one is made per group on every trade and mark, and
    compiled, a frozen dataclass's generated ``__init__``
    (``object.__setattr__`` per field) costs five times the whole
    construction of this one."""

    __slots__ = ("delta", "direction", "group", "scan_risk", "units", "worst_scenario")

    def __init__(
        self,
        group: str,
        units: float,
        scan_risk: float,
        worst_scenario: str,
        direction: int,
        delta: float = 0.0,
    ) -> None:
        self.group = group
        self.units = units
        self.scan_risk = scan_risk
        self.worst_scenario = worst_scenario
        self.direction = direction
        self.delta = delta

    @property
    def per_unit(self) -> float:
        return self.scan_risk / abs(self.units) if self.direction else 0.0

    def __repr__(self) -> str:
        return (
            f"GroupRisk(group={self.group!r}, units={self.units!r}, "
            f"scan_risk={self.scan_risk!r}, worst_scenario={self.worst_scenario!r}, "
            f"direction={self.direction!r}, delta={self.delta!r})"
        )


@dataclass(frozen=True, slots=True)
class FormedSpread:
    """``count`` spreads of ``name`` formed, crediting ``credit`` USD."""

    name: str
    priority: int
    count: float
    credit: float
    legs: tuple[tuple[str, float], ...]  # (group, units used)


@dataclass(frozen=True, slots=True)
class MarginResult:
    param_version: str
    groups: tuple[GroupRisk, ...]
    spreads: tuple[FormedSpread, ...]
    scan_risk: float
    credit: float

    @property
    def margin(self) -> float:
        return max(0.0, self.scan_risk - self.credit)


def scan_group(
    group: MarginGroup, positions: Mapping[str, float], unit_usd: Mapping[str, float]
) -> GroupRisk:
    """The group's worst loss over :data:`SCENARIOS`; ``positions`` are in
    units of each instrument, long positive."""
    units = 0.0
    delta = 0.0  # USD gained per unit of scan move up
    for symbol in group.symbols:
        q = positions.get(symbol)
        if q:
            units += q
            delta += q * group.scan_range(symbol, unit_usd)
    worst, worst_name = 0.0, "none"
    for name, move in SCENARIOS:
        loss = -delta * move
        if loss > worst:
            worst, worst_name = loss, name
    direction = 0
    if delta > 0 and units > 0:
        direction = 1
    elif delta < 0 and units < 0:
        direction = -1
    return GroupRisk(group.name, units, worst, worst_name, direction, delta)


def form_spreads(
    spreads: Iterable[SpreadDef], scans: Mapping[str, GroupRisk]
) -> tuple[FormedSpread, ...]:
    """Spreads formed in the order given from the units of ``scans``."""
    formed: list[FormedSpread] = []
    _spreads(spreads, scans, formed)
    return tuple(formed)


def _spreads(
    spreads: Iterable[SpreadDef],
    scans: Mapping[str, GroupRisk],
    formed: list[FormedSpread] | None,
) -> float:
    """The credit of the spreads formed in the order given from the units of
    ``scans``; each spread formed is added to ``formed`` when one is given
    (a search that wants the margin alone builds none)."""
    left = {name: abs(g.units) if g.direction else 0.0 for name, g in scans.items()}
    total = 0.0
    for spread in spreads:
        legs = spread.legs
        first = scans.get(legs[0].group)
        if first is None or not first.direction:
            continue
        a_sign = first.direction if legs[0].side == "A" else -first.direction
        count = float("inf")
        for leg in legs:
            g = scans.get(leg.group)
            if g is None or g.direction != (a_sign if leg.side == "A" else -a_sign):
                count = 0.0
                break
            count = min(count, left[leg.group] / leg.ratio)
        if not count > 0:
            continue
        credit = 0.0
        used: list[tuple[str, float]] = []
        for leg in legs:
            units = count * leg.ratio
            left[leg.group] = max(0.0, left[leg.group] - units)
            credit += units * scans[leg.group].per_unit
            if formed is not None:
                used.append((leg.group, units))
        total += spread.rate * credit
        if formed is not None:
            formed.append(
                FormedSpread(spread.name, spread.priority, count, spread.rate * credit, tuple(used))
            )
    return total


def margin(
    params: MarginParams,
    positions: Mapping[str, float],
    unit_usd: Mapping[str, float],
    *,
    siloed: bool = False,
) -> MarginResult:
    """Margin of ``positions`` (units per symbol, long positive) at marks
    ``unit_usd`` (USD value of one unit per symbol), portfolio or siloed.

    Symbols in no group carry no margin.  Raises :class:`MissingMark` when
    a position needs a mark that is not there."""
    scans = {g.name: scan_group(g, positions, unit_usd) for g in params.groups}
    return _result(params, scans, siloed)


def _result(params: MarginParams, scans: Mapping[str, GroupRisk], siloed: bool) -> MarginResult:
    spreads = form_spreads(params.siloed if siloed else params.ordered, scans)
    return MarginResult(
        params.version,
        tuple(s for s in scans.values() if s.units or s.scan_risk),
        spreads,
        _scan_sum(scans),
        _credit_sum(spreads),
    )


def _scan_sum(scans: Mapping[str, GroupRisk]) -> float:
    """The groups' scan risks summed in the order of ``scans`` (the
    parameters' order of groups): every total of scan risks is taken so,
    never kept as a running sum nor as one less a group plus another, so
    that two figures for the same positions are equal to the last bit."""
    total = 0.0
    for scan in scans.values():
        total += scan.scan_risk
    return total


def _credit_sum(spreads: Iterable[FormedSpread]) -> float:
    """The spreads' credits summed in order, as :func:`_spreads` sums them
    (a plain loop: ``sum`` of floats is compensated from Python 3.12 on)."""
    total = 0.0
    for spread in spreads:
        total += spread.credit
    return total


class Portfolio:
    """One account's positions with each group's scan kept, so that the
    margin after a trade costs one group's scan and the spread table, not a
    scan of every group.

    ``revalue`` rescans every group at new marks (the caller decides when:
    marks move on every quote, and it bounds the work it does per tick)."""

    __slots__ = ("_result", "_scans", "_unit_usd", "params", "positions", "scan_total")

    def __init__(
        self,
        params: MarginParams,
        unit_usd: Mapping[str, float],
        positions: Mapping[str, float] | None = None,
    ) -> None:
        self.params = params
        self.positions: dict[str, float] = {s: q for s, q in (positions or {}).items() if q}
        self._unit_usd: Mapping[str, float] = {}
        self._scans: dict[str, GroupRisk] = {}
        self._result: MarginResult | None = None
        self.scan_total = 0.0
        """Sum of the groups' scan risks: margin is never above it.  Summed
        afresh on each change (one addition a group), not kept as a running
        sum, which drifts from the fresh sum in the last bit."""
        self.revalue(unit_usd)

    def revalue(self, unit_usd: Mapping[str, float], params: MarginParams | None = None) -> None:
        if params is not None:
            self.params = params
        self._unit_usd = unit_usd
        self._result = None
        old = self._scans
        scans: dict[str, GroupRisk] = {}
        for group in self.params.groups:
            try:
                scans[group.name] = scan_group(group, self.positions, unit_usd)
            except MissingMark:
                # a position without a mark: the group as last scanned (or,
                # never scanned, nothing), the other groups at the new marks
                kept = old.get(group.name)
                scans[group.name] = kept or GroupRisk(group.name, 0.0, 0.0, "no mark", 0)
        self._scans = scans
        self.scan_total = _scan_sum(scans)

    def result(self, *, siloed: bool = False) -> MarginResult:
        if siloed:
            return _result(self.params, self._scans, True)
        result = self._result
        if result is None:
            result = self._result = _result(self.params, self._scans, False)
        return result

    def hold(self, symbol: str, units: float) -> None:
        """The position in ``symbol`` is now ``units`` (signed; 0: flat).

        The caller keeps positions exact (in lots) and hands in each as it
        stands after a trade, not the trade: float units added trade by
        trade leave a residue where the lots come to none (0.001 + 0.009 -
        0.010 BTC is 1.7e-18), a position with a margin."""
        if units:
            self.positions[symbol] = units
        else:
            self.positions.pop(symbol, None)
        name = self.params.group_of.get(symbol)
        if name is not None:
            self._result = None
            group = self.params.by_name[name]
            self._scans[name] = scan_group(group, self.positions, self._unit_usd)
            self.scan_total = _scan_sum(self._scans)

    def scan_bound(self, symbol: str, *moves: float) -> float:
        """An upper bound of the margin after the worst of ``moves`` (signed
        units of ``symbol``): every group's scan risk, the symbol's group's
        taken after the move, no credit counted.  One group's arithmetic,
        no spread formed."""
        name = self.params.group_of.get(symbol)
        if name is None:
            return self.scan_total
        group = self.params.by_name[name]
        scan = self._scans[name]
        per_unit = group.scan_range(symbol, self._unit_usd)
        worst = max(abs(scan.delta + units * per_unit) for units in moves)
        return self.scan_total - scan.scan_risk + worst

    def open_bound(self, opens: Mapping[str, tuple[float, float]]) -> float:
        """An upper bound of the margin with open orders filled at their
        worst: ``opens`` gives, per symbol, the units its buys and its
        sells may still fill (both >= 0).  Every group's scan risk, each
        group with open orders taken at the larger of its two ends (all its
        buys filled, or all its sells), no credit counted.  Raises
        :class:`MissingMark` for an open order in a symbol with no mark."""
        moved: dict[str, list[float]] = {}
        by_name = self.params.by_name
        group_of = self.params.group_of
        for symbol, (buys, sells) in opens.items():
            name = group_of.get(symbol)
            if name is None or not (buys or sells):
                continue
            per_unit = by_name[name].scan_range(symbol, self._unit_usd)
            ends = moved.get(name)
            if ends is None:
                ends = moved[name] = [0.0, 0.0]
            ends[0] += buys * per_unit
            ends[1] -= sells * per_unit
        total = self.scan_total
        for name, (up, down) in moved.items():
            scan = self._scans[name]
            total += max(abs(scan.delta + up), abs(scan.delta + down)) - scan.scan_risk
        return total

    def searchable(self, opens: Mapping[str, tuple[float, float]]) -> bool:
        """Whether :meth:`worst_open` margins ``opens`` in full: at most
        :data:`MAX_STATE_COMBINATIONS` combinations of their states."""
        group_of = self.params.group_of
        combinations = 1
        for symbol, (buys, sells) in opens.items():
            if symbol in group_of and (buys or sells):
                combinations *= 1 + (1 if buys else 0) + (1 if sells else 0)
        return combinations <= MAX_STATE_COMBINATIONS

    def worst_open(self, opens: Mapping[str, tuple[float, float]], search: bool = True) -> float:
        """The margin with open orders filled at their worst (``opens`` as
        for :meth:`open_bound`), searched over each symbol's three states:
        none of its open orders filled, all its buys, all its sells.

        Every combination of the symbols' states is margined with spreads
        formed, and the one that asks most is taken: a symbol's fills can
        move its group's direction (and so its spreads) either way, and
        spread credit can make the margin largest with nothing filled, so
        no one state can stand for the others.  Past
        :data:`MAX_STATE_COMBINATIONS` combinations (:meth:`searchable`),
        or with ``search`` false (figures to compare with one taken so),
        the bound without credit (:meth:`open_bound`) stands in: it asks at
        least what any fill would, never less.  The partial fill of a
        symbol that takes its group flat is searched too (flat, the group
        forms no spread, in neither direction); other partial fills are
        not: where spreads are formed in priority order, one can ask a
        little more than every state searched."""
        if not search or not self.searchable(opens):
            return max(self.result().margin, self.open_bound(opens))
        params = self.params
        group_of = params.group_of
        by_group: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
        for symbol, (buys, sells) in opens.items():
            name = group_of.get(symbol)
            if name is None or not (buys or sells):
                continue
            moves = (0.0, *((buys,) if buys else ()), *((-sells,) if sells else ()))
            by_group.setdefault(name, []).append((symbol, moves))
        if not by_group:
            return self.result().margin
        # each group's scan in each state of its own symbols, taken once
        options: list[tuple[str, list[GroupRisk]]] = []
        for name, states in by_group.items():
            group = params.by_name[name]
            scanned: list[GroupRisk] = []
            for moves in itertools.product(*(m for _, m in states)):
                after = dict(self.positions)
                for (symbol, _), units in zip(states, moves, strict=True):
                    if units:
                        after[symbol] = after.get(symbol, 0.0) + units
                scanned.append(scan_group(group, after, self._unit_usd))
                # a symbol left unfilled here whose orders, filled in part,
                # take the group flat: no direction, so no spread, which
                # neither end of its orders may show (a group that offsets
                # one group held long and another held short)
                net = 0.0
                for symbol in group.symbols:
                    net += after.get(symbol, 0.0)
                for (symbol, own), moved in zip(states, moves, strict=True):
                    if net and not moved and min(own) < -net < max(own):
                        flat = dict(after)
                        flat[symbol] = flat.get(symbol, 0.0) - net
                        scanned.append(scan_group(group, flat, self._unit_usd))
            options.append((name, scanned))
        # each total summed afresh, as :meth:`result` sums it: the state with
        # nothing filled then asks, to the last bit, what the margin without
        # open orders does, so that an order that lowers the margin is never
        # found to raise it by a rounding (the running total less one group
        # plus another parts from a fresh sum in the last bit)
        worst = 0.0
        scans = dict(self._scans)
        for combination in itertools.product(*(scanned for _, scanned in options)):
            for (name, _), scan in zip(options, combination, strict=True):
                scans[name] = scan
            worst = max(worst, _scan_sum(scans) - _spreads(params.ordered, scans, None))
        return worst
