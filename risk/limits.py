"""Pre-trade risk: the limits a client order is checked against before it is
accepted.

:func:`check` is pure: it sees the order, the client's current position in
the symbol, the lots its open orders on the order's side may still fill,
and the client's limits, and answers with the first limit the order would
break, or None.  The gateway turns a :class:`RiskBreach` into a reject
carrying its ``text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from router.members import BUY
from router.model import Side
from router.units import format_decimal

__all__ = ["ClientLimits", "RiskBreach", "RiskOrder", "check"]


def _no_limits() -> Mapping[str, int]:
    return MappingProxyType({})


def _no_lot_sizes() -> Mapping[str, Decimal]:
    return MappingProxyType({})


def _shown(lots: int, per_lot: Decimal | None) -> str:
    """``lots`` as written in a breach: in units when ``per_lot`` is given."""
    if per_lot is None:
        return str(lots)
    return format_decimal(lots * per_lot).decode("ascii")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """One client's pre-trade limits; None (or no entry) means no limit.

    ``max_order_qty``: lots per order, any symbol, unless
    ``max_order_qty_by_symbol`` has an entry for the symbol, which then
    applies instead.  ``max_notional_usd``: USD value of one order.
    ``max_open_position_lots``: the absolute net position the order may
    leave once it and the client's other open orders on its side in the
    symbol are filled (the worst case), any symbol, overridden per symbol
    by ``max_open_position_lots_by_symbol``.  ``allowed_symbols``: the symbols
    the client may trade (None: all).  ``max_open_orders`` and
    ``max_messages_per_second`` are enforced by the gateway, not by
    :func:`check`.

    ``units_per_lot``: the lot size of each symbol whose per-symbol limits
    stand for a limit stated in units (the config's ``max_order_qty`` and
    ``max_open_position``): a breach in such a symbol shows its quantities
    in units and names the limit as configured.
    """

    max_order_qty: int | None = None
    max_order_qty_by_symbol: Mapping[str, int] = field(default_factory=_no_limits)
    max_notional_usd: Decimal | None = None
    max_open_position_lots: int | None = None
    max_open_position_lots_by_symbol: Mapping[str, int] = field(default_factory=_no_limits)
    allowed_symbols: frozenset[str] | None = None
    max_open_orders: int | None = None
    max_messages_per_second: int | None = None
    units_per_lot: Mapping[str, Decimal] = field(default_factory=_no_lot_sizes)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "max_order_qty_by_symbol", MappingProxyType(dict(self.max_order_qty_by_symbol))
        )
        object.__setattr__(
            self,
            "max_open_position_lots_by_symbol",
            MappingProxyType(dict(self.max_open_position_lots_by_symbol)),
        )
        object.__setattr__(self, "units_per_lot", MappingProxyType(dict(self.units_per_lot)))


@dataclass(frozen=True, slots=True)
class RiskBreach:
    """The limit an order breaks: ``limit`` names it, ``text`` explains it
    with the numbers, ready to be sent to the client."""

    limit: str
    text: str


class RiskOrder(Protocol):
    """What risk needs to know of an order (a route request is one)."""

    @property
    def symbol(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def qty(self) -> int: ...


def check(
    order: RiskOrder,
    position: int,
    limits: ClientLimits,
    usd_per_lot: Decimal | None = None,
    open_lots: int = 0,
) -> RiskBreach | None:
    """The first of ``limits`` that ``order`` breaks, or None.

    ``position`` is the client's net position in the symbol in lots (long
    positive) before the order.  ``usd_per_lot`` is the USD value of one lot
    of the symbol (from the exposure snapshot); when a notional limit is set
    and the value is unknown, the order is refused, since the limit cannot be
    shown to hold.  ``open_lots`` is what the client's other open orders in
    the symbol on the order's side may still fill, in lots.

    The open-position limit applies to the worst case: the position the
    order would leave if it and those open orders filled in full (a buy
    with the open buys, against the long side; a sell with the open sells,
    against the short side; orders on the other side only bring it back).
    It never refuses an order that brings that position back towards flat,
    however far past the limit it is (a limit lowered since); the lots of
    an order past flat open a position on the other side, held to the limit
    as any new one is.
    """
    symbol = order.symbol
    allowed = limits.allowed_symbols
    if allowed is not None and symbol not in allowed:
        return RiskBreach(
            "allowed_symbols", f"symbol not allowed: {symbol} (limit allowed_symbols)"
        )

    qty = order.qty
    per_lot = limits.units_per_lot.get(symbol)
    max_qty = limits.max_order_qty_by_symbol.get(symbol)
    name = f"max_order_qty_by_symbol[{symbol}]" if per_lot is None else "max_order_qty"
    if max_qty is None:
        max_qty = limits.max_order_qty
        name = "max_order_qty"
    if max_qty is not None and qty > max_qty:
        return RiskBreach(
            name,
            f"max order quantity exceeded: {_shown(qty, per_lot)} > {_shown(max_qty, per_lot)} "
            f"(limit {name})",
        )

    max_notional = limits.max_notional_usd
    if max_notional is not None:
        if usd_per_lot is None:
            return RiskBreach(
                "max_notional_usd",
                f"order notional unknown: no USD price for {symbol} (limit max_notional_usd)",
            )
        notional = qty * usd_per_lot
        if notional > max_notional:
            return RiskBreach(
                "max_notional_usd",
                f"max order notional exceeded: {notional} USD > {max_notional} USD "
                "(limit max_notional_usd)",
            )

    max_position = limits.max_open_position_lots_by_symbol.get(symbol)
    name = f"max_open_position_lots_by_symbol[{symbol}]" if per_lot is None else "max_open_position"
    if max_position is None:
        max_position = limits.max_open_position_lots
        name = "max_open_position_lots"
    if max_position is not None:
        buy = order.side is BUY
        # the position with every open order on the order's side filled
        worst = position + open_lots if buy else position - open_lots
        after = worst + qty if buy else worst - qty
        # a breach leaves the worst case past the limit on the order's own
        # side (further out, or through flat to the other side); one that
        # stays on the side it was, nearer flat, only reduces it
        if abs(after) > max_position and (after > 0 if buy else after < 0):
            shown = _shown(after, per_lot)
            counted = ""
            if open_lots:
                counted = (
                    f" with the open {'buys' if buy else 'sells'} "
                    f"({_shown(open_lots, per_lot)}) filled too"
                )
            return RiskBreach(
                name,
                f"max open position exceeded: {symbol} position would be {shown}{counted}, "
                f"|{shown}| > {_shown(max_position, per_lot)} (limit {name})",
            )
    return None
