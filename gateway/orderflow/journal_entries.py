"""The entries of the order journal (see :mod:`gateway.orderflow.journal` for the
file format and what each entry means).

They live apart from the journal's code, which is compiled: msgspec reads the
field types of these Structs to decode them, which it cannot do for a class
compiled by mypyc.
"""

from __future__ import annotations

import msgspec

from matcher.orders import Order
from router.model import ChildOrder, Side

__all__ = [
    "Abandoned",
    "ClientState",
    "DayEndMoved",
    "DayEnds",
    "Dropped",
    "Ended",
    "EndedState",
    "Entry",
    "Expiring",
    "Filled",
    "Grid",
    "Holdings",
    "InFlight",
    "Message",
    "OrderState",
    "Positions",
    "RetainFinished",
    "Run",
    "Sent",
    "Serial",
    "Traded",
]


class Run(msgspec.Struct, tag=1, array_like=True, frozen=True):
    run: int


class OrderState(msgspec.Struct, tag=2, array_like=True, frozen=True):
    order: Order


class Sent(msgspec.Struct, tag=3, array_like=True, frozen=True):
    child: ChildOrder


class Filled(msgspec.Struct, tag=4, array_like=True, frozen=True):
    """Lots of an LP fill booked to ``account`` (a client, or the house):
    what the exposure ledger is kept from, and the drop copy's
    TradeCaptureReport of them (booked at ``time``; ``client_exec_id``, the
    ExecID of the client's ExecutionReport of the same lots, "" for the
    house's).  ``busts``: the LP's ExecID of a fill it canceled (a Trade
    Cancel) or corrected (a Trade Correct), which this booking, the
    house's, reverses; ``corrects``: the ExecID of what a Trade Correct
    corrects, for the house's booking of the corrected fill; both "" for a
    fill.  Neither moves the symbol's last fill price: they restate a
    trade made earlier."""

    child_id: str
    exec_id: str
    lp: str
    account: str
    symbol: str
    side: Side
    qty: int
    price: int
    time: float = 0.0
    client_exec_id: str = ""
    busts: str = ""
    corrects: str = ""


class Ended(msgspec.Struct, tag=5, array_like=True, frozen=True):
    child_id: str


class Abandoned(msgspec.Struct, tag=6, array_like=True, frozen=True):
    child_id: str


class Positions(msgspec.Struct, tag=7, array_like=True, frozen=True):
    lps: dict[str, dict[str, int]]
    clients: dict[str, dict[str, int]]
    last_price: dict[str, int]


class InFlight(msgspec.Struct, tag=8, array_like=True, frozen=True):
    child: ChildOrder
    open: int
    exec_ids: list[str]
    abandoned: bool = False


class Expiring(msgspec.Struct, tag=9, array_like=True, frozen=True):
    order_ids: list[str]


class Message(msgspec.Struct, tag=10, array_like=True, frozen=True):
    session: str
    created: float  # the session store's creation time: which sequence it belongs to
    seq: int
    raw: bytes
    market: str = ""  # an ExecutionReport of a fill: where it was made (LP, or "internal")


class Traded(msgspec.Struct, tag=11, array_like=True, frozen=True):
    """A client's fill as the client saw it (an LP's or an internal cross):
    what margin accounts are kept from."""

    client: str
    symbol: str
    side: Side
    qty: int
    price: int
    internal: bool


class Holdings(msgspec.Struct, tag=12, array_like=True, frozen=True):
    """Every client's holdings at a checkpoint: symbol -> (lots, average
    price, P&L realized in the quote currency)."""

    clients: dict[str, dict[str, tuple[int, float, float]]]


class Serial(msgspec.Struct, tag=13, array_like=True, frozen=True):
    """The first entry of every batch written while trading (none in a
    checkpoint's own batches): one more than the batch before, across runs.
    What reads the journal as it grows (the drop copy) keeps its place by it."""

    serial: int


class ClientState(msgspec.Struct, tag=14, array_like=True, frozen=True):
    """One client's positions (lots by symbol) and margin holdings, whole,
    replacing what came before for that client: the state a gateway of a
    cluster took over with the client's session (docs/cluster.md)."""

    client: str
    positions: dict[str, int]
    holdings: dict[str, tuple[int, float, float]]


class Dropped(msgspec.Struct, tag=15, array_like=True, frozen=True):
    """Open orders this gateway holds no more, without an end of their own:
    their client was taken over here with the open orders its session's
    copy held, and these were not among them (docs/cluster.md)."""

    order_ids: list[str]


class DayEnds(msgspec.Struct, tag=16, array_like=True, frozen=True):
    """When the trading day of the orders that follow ends (epoch seconds):
    journaled when a day ends and at the head of each checkpoint, so that a
    gateway started after that moment knows the day ended while it was
    down (docs/guarantees.md)."""

    at: float


class EndedState(msgspec.Struct, tag=17, array_like=True, frozen=True):
    """In a checkpoint, a child its LP ended (canceled, rejected or filled
    in full) that the routing still watches, so that a fill the LP reports
    for it after a restart is booked to the house, once per ExecID:
    ``open``, its lots not filled (below 0 once filled beyond them), the
    ExecIDs counted, and whether the LP had filled it in full when it ended
    (the two kinds are watched apart).  (A tag of its own: a build that
    does not know it refuses the journal rather than take these for
    children in flight.)"""

    child: ChildOrder
    open: int
    exec_ids: list[str]
    filled_in_full: bool


class Grid(msgspec.Struct, tag=18, array_like=True, frozen=True):
    """Each instrument's tick size and lot size, by symbol, as decimal
    strings: the grid the ticks and lots of the entries that follow are
    counted on (orders, children, fills, positions, last prices).  At the
    head of each checkpoint, so at every start; a start whose config gives
    an instrument other sizes checks what the journal holds in it
    (:meth:`gateway.orderflow.recovery.Recovery.regrid`).  (A tag of its
    own: a build that does not know it would read the ticks and lots on
    whatever grid its config says.)"""

    sizes: dict[str, tuple[str, str]]


class DayEndMoved(msgspec.Struct, tag=19, array_like=True, frozen=True):
    """When the trading day in force ends (epoch seconds), moved by a
    reload of ``orders.trading_day_end``: journaled as the reload is
    applied, so that a restart ends the day when the gateway would have.
    Unlike :class:`DayEnds`, no day ended."""

    at: float


class RetainFinished(msgspec.Struct, tag=20, array_like=True, frozen=True):
    """The bound on the final orders the matcher keeps
    (``orders.retain_finished``) from here on: at the head of each
    checkpoint, and when a reload changes it, so that a restart reads the
    final orders journaled before and after the reload as the matcher kept
    them (:func:`~matcher.engine.keep_shared`), not all under the bound of
    its own config.  (A build that does not know it refuses the journal.)"""

    bound: int


Entry = (
    Run
    | OrderState
    | Sent
    | Filled
    | Ended
    | Abandoned
    | Positions
    | InFlight
    | Expiring
    | Message
    | Traded
    | Holdings
    | Serial
    | ClientState
    | Dropped
    | DayEnds
    | EndedState
    | Grid
    | DayEndMoved
    | RetainFinished
)
