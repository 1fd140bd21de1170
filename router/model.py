"""Domain values shared by the matcher, the router and the LP adapters.

Money is exact: a price is an integer number of the instrument's ticks, a
quantity an integer number of its lots.  The gateway converts FIX decimal
strings to ticks and lots once, at the edge (and back when reporting), with
:meth:`Instrument.price_to_ticks` / :meth:`Instrument.qty_to_lots`; nothing
that decides a fill ever sees a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Final

import msgspec


class IdentityEnum(Enum):
    """An Enum hashed by identity.  Its members are singletons compared by
    identity already; Enum's own hash (of the member's name, in Python) costs
    a function call on every dict or set lookup of the order path."""

    __hash__ = object.__hash__


class Side(IdentityEnum):
    BUY = "1"
    SELL = "2"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell (position arithmetic)."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrdType(IdentityEnum):
    MARKET = "1"
    LIMIT = "2"


class TimeInForce(IdentityEnum):
    DAY = "0"
    GTC = "1"
    IOC = "3"
    FOK = "4"


class AssetClass(Enum):
    FX = "fx"
    CRYPTO = "crypto"
    METAL = "metal"
    INDEX = "index"
    COMMODITY = "commodity"


class OffGrid(ValueError):
    """A price not on the tick grid or a quantity not a whole number of lots."""


class OutOfRange(ValueError):
    """A price or quantity past what the journal's integers hold
    (:data:`MAX_UNITS`, :meth:`Instrument.max_ticks`)."""


MAX_UNITS: Final = 10**15
"""The most lots a quantity may be, and the most ticks a price: far above
any market (a million BTC at 0.01 is 10^8 ticks)."""

MAX_NOTIONAL: Final = 1 << 62
"""The most an order's notional (ticks x lots, summed over its fills) may
reach: the journal writes it as a 64-bit integer.  A price is bounded so
that the instrument's largest order at it stays below this."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable symbol and the grid its prices and quantities live on.

    ``usd_conversion`` says how a position is valued in USD:
    ``"quote"``: the quote currency is USD (EUR/USD, XAU/USD): notional =
    quantity x price; ``"base"``: the base currency is USD (USD/JPY):
    notional = quantity; any other value names the symbol whose mid converts
    the quote currency into USD: one quoted in USD (EUR/GBP via
    ``"GBP/USD"``): notional = quantity x price x mid of that symbol; one
    whose base is USD (EUR/JPY via ``"USD/JPY"``): notional = quantity x
    price / mid of that symbol.
    """

    symbol: str
    asset_class: AssetClass
    tick_size: Decimal
    lot_size: Decimal
    min_lots: int
    max_lots: int
    quote_currency: str
    usd_conversion: str = "quote"

    def max_ticks(self) -> int:
        """The most ticks a price may be: :data:`MAX_UNITS`, less where the
        instrument's largest order at it would pass :data:`MAX_NOTIONAL`."""
        return min(MAX_UNITS, MAX_NOTIONAL // max(1, self.max_lots))

    def price_to_ticks(self, price: Decimal) -> int:
        ticks, rest = divmod(price, self.tick_size)
        if rest:
            raise OffGrid(f"price {price} is not a multiple of the tick size {self.tick_size}")
        if abs(ticks) > self.max_ticks():
            raise OutOfRange(
                f"price {price} is beyond {self.max_ticks()} ticks of {self.tick_size}"
            )
        return int(ticks)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return ticks * self.tick_size

    def qty_to_lots(self, qty: Decimal) -> int:
        lots, rest = divmod(qty, self.lot_size)
        if rest:
            raise OffGrid(f"quantity {qty} is not a multiple of the lot size {self.lot_size}")
        if abs(lots) > MAX_UNITS:
            raise OutOfRange(f"quantity {qty} is beyond {MAX_UNITS} lots of {self.lot_size}")
        return int(lots)

    def lots_to_qty(self, lots: int) -> Decimal:
        return lots * self.lot_size


class Level(msgspec.Struct, frozen=True, gc=False):
    """One price level of a book: ``qty`` lots at ``price`` ticks."""

    price: int
    qty: int


class Quote(msgspec.Struct, frozen=True, gc=False):
    """A liquidity provider's book for one symbol: bids best (highest)
    first, asks best (lowest) first.  ``time`` is when it was received."""

    lp: str
    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    time: float


class ChildOrder(msgspec.Struct, frozen=True, gc=False):
    """What the router sends to one LP: ``qty`` lots of ``symbol`` on
    ``side`` at a limit of ``price`` ticks (the worst price accepted),
    immediate-or-cancel."""

    child_id: str
    parent_id: str
    lp: str
    symbol: str
    side: Side
    qty: int
    price: int


RecoveredOrder = tuple[ChildOrder, int, tuple[str, ...]]
"""A child order left open by an earlier run, as handed back to its LP's
adapter: the order, the lots the gateway has not seen filled, and the
ExecIDs of the fills it has."""


# --- what comes back from an LP adapter ---------------------------------------


class ChildAck(msgspec.Struct, frozen=True, gc=False):
    child_id: str
    lp_order_id: str


EXEC_ID_SEP = "\x01"
"""Between the ExecIDs an :class:`EndedChild` keeps."""


class EndedChild(msgspec.Struct, frozen=True, gc=False):
    """A child order its LP has ended (canceled, rejected or filled in full),
    as kept to book a fill the LP reports for it all the same: the order,
    the lots filled, and the ExecIDs of the fills counted, joined by SOH.
    The cyclic collector does not track it: every child filled in full is
    kept for a while, and tracked objects kept would be walked by each of
    its passes."""

    order: ChildOrder
    filled: int
    exec_ids: str = ""

    def counted(self, exec_id: str) -> bool:
        """Whether a fill with ``exec_id`` is counted already."""
        return exec_id in self.exec_ids.split(EXEC_ID_SEP) if self.exec_ids else False

    def with_fill(self, exec_id: str, lots: int) -> EndedChild:
        """This, with one more fill counted."""
        joined = f"{self.exec_ids}{EXEC_ID_SEP}{exec_id}" if self.exec_ids else exec_id
        return EndedChild(self.order, self.filled + lots, joined)


class ChildFill(msgspec.Struct, frozen=True, gc=False):
    """``qty`` lots filled at ``price`` ticks.  ``exec_id`` is unique per LP,
    so a fill reported twice is recognised and applied once."""

    child_id: str
    exec_id: str
    qty: int
    price: int
    leaves: int


class ChildReject(msgspec.Struct, frozen=True, gc=False):
    child_id: str
    reason: str


class ChildCanceled(msgspec.Struct, frozen=True, gc=False):
    """The rest of the child order is dead (IOC remainder, or a cancel)."""

    child_id: str
    canceled_qty: int
    reason: str = ""


class ChildBust(msgspec.Struct, frozen=True, gc=False):
    """An LP's Trade Cancel (ExecType H) of a fill it reported and the house
    booked: ``qty`` lots (the cancel's LastQty) of ``symbol`` on ``side``, at
    ``price`` ticks (the price the fill was booked at), did not happen at
    ``lp``.  ``exec_id`` is the cancel's own ExecID, ``ref_exec_id`` the
    fill's (ExecRefID)."""

    child_id: str
    exec_id: str
    ref_exec_id: str
    lp: str
    symbol: str
    side: Side
    qty: int
    price: int


class ChildCorrection(msgspec.Struct, frozen=True, gc=False):
    """An LP's Trade Correct (ExecType G) of a fill it reported and the house
    booked (or of an earlier correction's booking): the ``reversed_qty`` lots
    of it still standing, booked at ``reversed_price`` ticks, did not
    happen at ``lp``; ``qty`` lots (the correction's LastQty) of ``symbol``
    on ``side`` at ``price`` ticks (its LastPx) did instead.  ``exec_id``
    is the correction's own ExecID, ``ref_exec_id`` the ExecID of what it
    corrects (ExecRefID)."""

    child_id: str
    exec_id: str
    ref_exec_id: str
    lp: str
    symbol: str
    side: Side
    reversed_qty: int
    reversed_price: int
    qty: int
    price: int


REVERSAL_SUFFIX: Final = ".reversal"
"""Added to a Trade Correct's ExecID, the ExecID of the reversal its
booking makes (the corrected fill takes the correction's own ExecID)."""


class LpStatus(msgspec.Struct, frozen=True, gc=False):
    lp: str
    up: bool
    reason: str = ""


LpEvent = (
    Quote
    | ChildAck
    | ChildFill
    | ChildReject
    | ChildCanceled
    | ChildBust
    | ChildCorrection
    | LpStatus
)
