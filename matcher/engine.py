"""The matcher: client books, internal crossing and every order's state.

One writer (the event loop) calls a :class:`Matcher`; it does no I/O, keeps no
locks and never logs per order.  Each call returns a :class:`Result`: the
executions to report, the cancel/replace rejects to report, and the routing
needs (:class:`RouteNeed`) the router must turn into child orders.  The
router answers with :meth:`Matcher.on_fill` per LP fill and one
:meth:`Matcher.on_route_done` per routing need.

Rules the gateway relies on:

* A client sees and touches only its own orders: every lookup is keyed by
  ``(client, ClOrdID)``.  A ClOrdID used by a client (new order, cancel or
  replace that was accepted, or a new order that was rejected for a reason
  other than duplication) cannot be used again by that client while the
  order is known: while it is open, and once final until the trading day
  ends (:meth:`Matcher.expire_day`) or more than ``retain_finished`` final
  orders are kept (the oldest are forgotten first).  A forgotten order is
  unknown to status requests.
* The house may act in a client's name (a stop-out): an order it enters
  (``NewOrder.house``) has a ClOrdID of the house's, kept apart from the
  client's own, which it neither takes nor can be reached by; a cancel of
  the house's (:meth:`Matcher.cancel_unsolicited`) takes no ClOrdID at all
  and is reported under the order's own.
* A new order is accepted (ExecType NEW), crossed against the other clients'
  resting orders on the opposite side (price-time priority, at the resting
  order's price, both sides get a TRADE with counterparty ``"internal"``;
  orders of the same client never cross; only at prices at least as good
  for it as the LP book's best, so a better LP price is taken at the LP),
  and what is left is routed if it is marketable: a market order always, a
  limit order when the LP book's best opposite price is at or better than
  its limit.  The whole remainder
  is routed with the order's limit; the router caps it by liquidity.
* Market orders must be IOC or FOK; a DAY market order is treated as IOC;
  GTC market orders are rejected.  A market order's price is ignored.
* IOC and FOK orders never rest: what routing does not fill is canceled
  (ExecType CANCELED, the router's reason as text).  A FOK is accepted only
  if the client book and the LPs together hold its whole quantity (the
  LPs' part as the caller counts it, by default the whole LP book within
  its limit), otherwise it expires (ExecType EXPIRED) with no fill.  The LP leg is
  best effort: if the LPs fill less than their book showed, or the client
  orders behind their best price (crossed when the routing is done) are
  gone by then, the rest is canceled like an IOC's.
* DAY and GTC limit orders rest in the client book.  While an order is out
  at LPs it cannot cross, and a cancel or replace waits (PENDING_CANCEL /
  PENDING_REPLACE) until the routing is done.  A second change waiting is
  refused, but for a cancel coming over a pending replace: the replace is
  then refused (OrderCancelReject, CxlRejResponseTo 2) and the cancel
  waits in its place.  A refused cancel or replace names the order by its
  last accepted ClOrdID (OrigClOrdID), whichever of its ids the request
  gave, and with its OrdStatus after every execution of the same call
  (which reach the client before the reject).  When routing gives back an
  unfilled remainder, it is crossed against the client book again (it may
  have become crossable while it was away) before it rests or is canceled.
* A replace may change the quantity (never below the filled quantity) and
  the price.  Raising the quantity or changing the price loses time
  priority and the order is matched again as if new; lowering the
  quantity keeps it.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

from matcher.execution import Execution
from matcher.ids import IdIndex
from matcher.members import (
    EXEC_CANCELED,
    EXEC_EXPIRED,
    EXEC_NEW,
    EXEC_ORDER_STATUS,
    EXEC_PENDING_CANCEL,
    EXEC_PENDING_REPLACE,
    EXEC_REJECTED,
    EXEC_REPLACED,
    EXEC_TRADE,
    STATUS_CANCELED,
    STATUS_EXPIRED,
    STATUS_FILLED,
    STATUS_NEW,
    STATUS_PARTIALLY_FILLED,
    STATUS_PENDING_CANCEL,
    STATUS_PENDING_REPLACE,
    STATUS_REJECTED,
)
from matcher.orders import (
    INTERNAL,
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    ExecType,
    Order,
    OrdRejReason,
    OrdStatus,
    PendingChange,
)
from router.book import BookSnapshot
from router.members import BUY, DAY, FOK, GTC, IOC, LIMIT, MARKET, SELL
from router.model import Instrument, OrdType, Side, TimeInForce
from router.values import Value

__all__ = [
    "DUPLICATE_CL_ORD_ID",
    "CancelOrder",
    "Matcher",
    "MatcherError",
    "NewOrder",
    "ReplaceOrder",
    "Result",
    "Retained",
    "RouteNeed",
    "keep_shared",
]

DUPLICATE_CL_ORD_ID = "Duplicate ClOrdID"
NOT_MARKETABLE = "not marketable"
FOK_NOT_FILLABLE = "fill or kill: not enough liquidity"
SUPERSEDED_BY_CANCEL = "a cancel of the order came after it and takes its place"
DAY_ENDED = "end of the trading day"


class _Counter:
    """The last number handed out (by the event loop's thread only: the
    increment is not atomic across threads)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0


# shared by every matcher in the process (see ExecIdSource)
_ID_COUNTER: Final = _Counter()


class ExecIdSource:
    """Hands out ExecIDs (17) and OrderIDs (37) unique for the process run.

    The counter is shared by every matcher in the process; ``prefix`` should
    differ between runs (the gateway passes its start time) so that IDs stay
    unique across restarts too.
    """

    __slots__ = ("_counter", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._counter = _ID_COUNTER

    def next(self) -> str:
        counter = self._counter
        counter.last += 1
        return f"{self.prefix}{counter.last}"


MAX_ALIASES: Final = 64
"""The ClOrdIDs an order is known by besides its own, at most: past them,
the oldest (but the first it had) is forgotten, so that an order replaced
all day costs no more to keep, and to journal at each change, than one
replaced 64 times."""

_CHUNK: Final = 1024
"""Final orders a chunk of :class:`Retained` holds."""

_NONE_GONE: Final[tuple[Order, ...]] = ()
"""What :func:`keep_shared` returns when it forgets nothing."""

_SPARED: Final = 1024
"""Final orders one call of :func:`keep_shared` may keep again past the
bound, a quiet client's."""

_FORGOTTEN: Final = 64
"""Final orders one call of :func:`keep_shared` may forget: a bound lowered
much (a reload) is reached over the next calls, never in one."""


class Retained:
    """The final orders a matcher keeps, oldest first, in chunks that are
    only ever appended to: forgetting the oldest moves a start past them,
    and a chunk is let go of whole once all of it is forgotten.  So a view
    of them all (:meth:`view`) costs a copy of the chunk list, not of the
    orders, and stays what it was while orders are added and forgotten."""

    __slots__ = ("_chunks", "_count", "_head")

    def __init__(self) -> None:
        self._chunks: list[list[Order]] = []
        self._head = 0  # where the first chunk's orders not forgotten begin
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Order]:
        return self.view()

    def append(self, order: Order) -> None:
        chunks = self._chunks
        if chunks and len(chunks[-1]) < _CHUNK:
            chunks[-1].append(order)
        else:
            chunks.append([order])
        self._count += 1

    def popleft(self) -> Order:
        """Forget the oldest and return it."""
        if not self._count:
            raise IndexError("no final order is kept")
        first = self._chunks[0]
        order = first[self._head]
        self._head += 1
        self._count -= 1
        if self._head == len(first):
            del self._chunks[0]
            self._head = 0
        return order

    def view(self) -> Iterator[Order]:
        """The orders kept now, oldest first, read lazily: orders added or
        forgotten after the call do not change what it yields."""
        chunks = list(self._chunks)
        end = len(chunks[-1]) if chunks else 0
        return _walk(chunks, self._head, end)

    def release(self, limit: int) -> int:
        """Let go of whole chunks, from the newest, until ``limit`` orders or
        more are let go of (at least one chunk, when any is left; a view
        taken earlier keeps its own); how many were let go."""
        released = 0
        chunks = self._chunks
        while chunks and released < limit:
            chunk = chunks.pop()
            released += len(chunk) - (self._head if not chunks else 0)
        if not chunks:
            self._head = 0
        self._count -= released
        return released


def keep_shared(
    finished: Retained, kept: dict[str, int], order: Order, bound: int
) -> Sequence[Order]:
    """Keep the final ``order`` in ``finished`` (``kept``: client -> how many
    of them are its own) and forget the oldest beyond ``bound``; the orders
    forgotten, oldest first.

    The bound is shared, not first come first served: the oldest order of
    a client keeping no more than its share (half the bound split between
    the clients keeping any) is kept again at the newest end, and a busier
    client's goes instead.  So one client sending orders fast cannot push
    out a quieter one's, and a ClOrdID resent by it later is still found a
    duplicate.  A call passes over at most ``_SPARED`` orders so, and
    forgets at most ``_FORGOTTEN`` (the loop is never held long, a bound
    lowered by a reload included): the bound, left over by such a call, is
    kept again over the next ones.  The matcher keeps its final orders so,
    and the journal's reading at a restart keeps the same ones so."""
    finished.append(order)
    client = order.client
    kept[client] = kept.get(client, 0) + 1
    if len(finished) <= bound:
        return _NONE_GONE
    gone: list[Order] = []
    share = bound // (2 * len(kept))
    spared = 0
    while len(finished) > bound and len(gone) < _FORGOTTEN:
        oldest = finished.popleft()
        client = oldest.client
        left = kept[client]
        if left <= share:
            finished.append(oldest)
            spared += 1
            if spared == _SPARED:
                break
            continue
        if left == 1:
            del kept[client]
        else:
            kept[client] = left - 1
        gone.append(oldest)
    return gone


def _walk(chunks: list[list[Order]], head: int, end: int) -> Iterator[Order]:
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        stop = end if i == last else len(chunk)
        for k in range(head if i == 0 else 0, stop):
            yield chunk[k]


class MatcherError(Exception):
    """The caller broke the matcher's contract (unknown order id in a fill,
    a fill larger than the order's routed quantity, ...)."""


class NewOrder(Value):
    """A client's new order (NewOrderSingle, 35=D), already in ticks and lots.
    ``house``: entered by the house in the client's name, under a ClOrdID
    of the house's (see the module documentation).  Immutable.

    This and the other requests and results of the matcher are plain
    classes compiled with it (``docs/compiled.md``): compiled code reads
    a msgspec Struct's fields through the type's descriptors."""

    __slots__ = (
        "cl_ord_id",
        "client",
        "house",
        "ord_type",
        "price",
        "qty",
        "side",
        "symbol",
        "tif",
    )

    def __init__(
        self,
        client: str,
        cl_ord_id: str,
        symbol: str,
        side: Side,
        ord_type: OrdType,
        tif: TimeInForce,
        qty: int,
        price: int | None = None,
        house: bool = False,
    ) -> None:
        self.client: Final = client
        self.cl_ord_id: Final = cl_ord_id
        self.symbol: Final = symbol
        self.side: Final = side
        self.ord_type: Final = ord_type
        self.tif: Final = tif
        self.qty: Final = qty
        self.price: Final = price
        self.house: Final = house

    def fields(self) -> tuple[object, ...]:
        return (
            self.client,
            self.cl_ord_id,
            self.symbol,
            self.side,
            self.ord_type,
            self.tif,
            self.qty,
            self.price,
            self.house,
        )


class CancelOrder(Value):
    """OrderCancelRequest (35=F) for the client's order ``orig_cl_ord_id``.
    Immutable."""

    __slots__ = ("cl_ord_id", "client", "orig_cl_ord_id")

    def __init__(self, client: str, cl_ord_id: str, orig_cl_ord_id: str) -> None:
        self.client: Final = client
        self.cl_ord_id: Final = cl_ord_id
        self.orig_cl_ord_id: Final = orig_cl_ord_id

    def fields(self) -> tuple[object, ...]:
        return (self.client, self.cl_ord_id, self.orig_cl_ord_id)


class ReplaceOrder(Value):
    """OrderCancelReplaceRequest (35=G): new total ``qty`` and, if given, new
    limit ``price`` (None keeps the current one).  Immutable."""

    __slots__ = ("cl_ord_id", "client", "orig_cl_ord_id", "price", "qty")

    def __init__(
        self, client: str, cl_ord_id: str, orig_cl_ord_id: str, qty: int, price: int | None = None
    ) -> None:
        self.client: Final = client
        self.cl_ord_id: Final = cl_ord_id
        self.orig_cl_ord_id: Final = orig_cl_ord_id
        self.qty: Final = qty
        self.price: Final = price

    def fields(self) -> tuple[object, ...]:
        return (self.client, self.cl_ord_id, self.orig_cl_ord_id, self.qty, self.price)


class RouteNeed(Value):
    """Lots of a client order the router must work at LPs: ``qty`` lots at a
    limit of ``price`` ticks (None: market).  Immutable; a plain class, not
    a NamedTuple, whose ``__new__`` runs interpreted for every order.

    ``cl_ord_id`` is the order's ClOrdID when it was handed to the router;
    ``entry_cl_ord_id`` the one it was entered with, which a replace does
    not change: the router chooses the order's policy by it ("": the
    ``cl_ord_id``)."""

    __slots__ = (
        "cl_ord_id",
        "client",
        "entry_cl_ord_id",
        "order_id",
        "price",
        "qty",
        "side",
        "symbol",
        "tif",
    )

    def __init__(
        self,
        order_id: str,
        client: str,
        symbol: str,
        side: Side,
        qty: int,
        price: int | None,
        tif: TimeInForce,
        cl_ord_id: str = "",
        entry_cl_ord_id: str = "",
    ) -> None:
        self.order_id: Final = order_id
        self.client: Final = client
        self.symbol: Final = symbol
        self.side: Final = side
        self.qty: Final = qty
        self.price: Final = price
        self.tif: Final = tif
        self.cl_ord_id: Final = cl_ord_id
        self.entry_cl_ord_id: Final = entry_cl_ord_id

    def fields(self) -> tuple[object, ...]:
        return (
            self.order_id,
            self.client,
            self.symbol,
            self.side,
            self.qty,
            self.price,
            self.tif,
            self.cl_ord_id,
            self.entry_cl_ord_id,
        )

    def with_qty(self, qty: int) -> RouteNeed:
        """The same need for ``qty`` lots."""
        return RouteNeed(
            self.order_id,
            self.client,
            self.symbol,
            self.side,
            qty,
            self.price,
            self.tif,
            self.cl_ord_id,
            self.entry_cl_ord_id,
        )


class Result:
    """What one matcher call produced, in the order it happened."""

    __slots__ = ("cancel_rejects", "executions", "routes")

    def __init__(self) -> None:
        self.executions: list[Execution] = []
        self.cancel_rejects: list[CancelReject] = []
        self.routes: list[RouteNeed] = []

    def __repr__(self) -> str:
        return f"Result({self.executions!r}, {self.cancel_rejects!r}, {self.routes!r})"


class _SideBook:
    """Resting orders on one side of one symbol's client book.

    ``keys`` is sorted ascending with the best price first: a bid's key is its
    negated price.  Each level maps order id to order in time priority
    (insertion order).
    """

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, side: Side) -> None:
        self.sign = -1 if side is BUY else 1
        self.keys: list[int] = []
        self.levels: dict[int, dict[str, Order]] = {}

    def add(self, order: Order) -> None:
        assert order.price is not None
        key = order.price * self.sign
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = {order.order_id: order}
            insort(self.keys, key)
        else:
            level[order.order_id] = order

    def remove(self, order: Order) -> None:
        assert order.price is not None
        key = order.price * self.sign
        level = self.levels.get(key)
        if level is None or level.pop(order.order_id, None) is None:
            return
        if not level:
            del self.levels[key]
            self.keys.remove(key)

    def orders(self) -> Iterator[Order]:
        """Every resting order, best price first, then time priority."""
        for key in self.keys:
            yield from self.levels[key].values()


class Matcher:
    """Client books and order state for a set of instruments.

    ``id_prefix`` starts every OrderID and ExecID; pass something that differs
    between runs.  ``internal_crossing=False`` routes everything to LPs.
    """

    __slots__ = (
        "_books",
        "_by_cl_ord_id",
        "_evicted",
        "_exec_ids",
        "_expiring",
        "_finished",
        "_forgotten",
        "_forgotten_ids",
        "_house_ids",
        "_instruments",
        "_kept",
        "_last_seq",
        "_open",
        "_order_ids",
        "internal_crossing",
        "retain_finished",
    )

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        internal_crossing: bool = True,
        id_prefix: str = "",
        retain_finished: int = 100_000,
    ) -> None:
        self._instruments = dict(instruments)
        self.internal_crossing = internal_crossing
        self.retain_finished = retain_finished
        self._exec_ids = ExecIdSource(f"{id_prefix}E")
        self._order_ids = ExecIdSource(f"{id_prefix}O")
        self._last_seq = 0  # the time priority given last
        self._books: dict[str, tuple[_SideBook, _SideBook]] = {
            symbol: (_SideBook(BUY), _SideBook(SELL)) for symbol in self._instruments
        }
        self._open: dict[str, Order] = {}
        # client -> ClOrdID -> order.  Two levels of str keys, not one of
        # (client, ClOrdID) tuples: holding only untracked objects, the inner
        # maps stay out of the cyclic collector's young generations, which
        # would otherwise walk all retained orders again after each full pass;
        # a client's many ids are spread over shards (matcher/ids.py)
        self._by_cl_ord_id: dict[str, IdIndex] = {}
        # client -> ClOrdID -> order, for the orders the house entered in
        # the client's name: their ids are not the client's
        self._house_ids: dict[str, IdIndex] = {}
        # what day ends let go of, freed a slice at a time (release_forgotten)
        self._forgotten: list[Retained] = []
        self._forgotten_ids: list[dict[str, Order]] = []
        # final orders, oldest first, still answering status requests and
        # duplicate-ClOrdID checks until more than retain_finished are kept
        self._finished = Retained()
        # client -> how many of the final orders kept are its own
        self._kept: dict[str, int] = {}
        # DAY orders out at LPs at the end of the day: expire on return
        self._expiring: set[str] = set()
        # final orders the last call forgot past retain_finished (find)
        self._evicted: dict[str, Order] = {}

    # --- client requests -------------------------------------------------------

    def submit(
        self, cmd: NewOrder, book: BookSnapshot | None, lp_lots: int | None = None
    ) -> Result:
        """A new order; ``book`` is the LP book of its symbol (None if
        unquoted).  ``lp_lots``, for a fill-or-kill order, is how many of
        its lots the LPs can take within its limit as the router would
        place them (None: as many as ``book`` holds)."""
        result = self._begin()
        order = Order(
            order_id=self._order_ids.next(),
            client=cmd.client,
            cl_ord_id=cmd.cl_ord_id,
            orig_cl_ord_id=None,
            symbol=cmd.symbol,
            side=cmd.side,
            ord_type=cmd.ord_type,
            tif=cmd.tif,
            qty=cmd.qty,
            price=cmd.price if cmd.ord_type is LIMIT else None,
            seq=self._next_seq(),
            leaves_qty=cmd.qty,
            house=cmd.house,
        )
        index = self._index_of(order)
        if not index.add(cmd.cl_ord_id, order):
            self._reject(order, OrdRejReason.DUPLICATE_ORDER, DUPLICATE_CL_ORD_ID, result)
            return result
        problem = self._invalid(cmd)
        if problem is not None:
            self._reject(order, problem[0], problem[1], result)
            self._retire(order)
            return result
        if order.ord_type is MARKET and order.tif is DAY:
            order.tif = IOC
        self._open[order.order_id] = order
        result.executions.append(self._report(order, EXEC_NEW))
        if order.tif is FOK and not self._fok_fillable(order, book, lp_lots):
            self._finish(order, STATUS_EXPIRED, EXEC_EXPIRED, FOK_NOT_FILLABLE, result)
            return result
        self._work(order, book, result)
        return result

    def cancel(self, cmd: CancelOrder) -> Result:
        """Cancel the client's order known by ``cmd.orig_cl_ord_id``."""
        result = self._begin()
        order = self._target(
            cmd.client, cmd.cl_ord_id, cmd.orig_cl_ord_id, CxlRejResponseTo.CANCEL, result
        )
        if order is None:
            return result
        self._index(order, cmd.cl_ord_id)
        superseded = order.pending  # a replace waiting for the routing: never applied now
        if order.routing_qty:
            order.pending = PendingChange(CxlRejResponseTo.CANCEL, cmd.cl_ord_id)
            order.status = STATUS_PENDING_CANCEL
            if superseded is not None:
                result.cancel_rejects.append(self._superseded(order, superseded))
            result.executions.append(
                self._report(
                    order,
                    EXEC_PENDING_CANCEL,
                    cl_ord_id=cmd.cl_ord_id,
                    orig_cl_ord_id=order.cl_ord_id,
                )
            )
            return result
        if superseded is not None:  # not out at LPs: nothing can be pending
            order.pending = None
            result.cancel_rejects.append(self._superseded(order, superseded))
        self._rename(order, cmd.cl_ord_id)
        self._finish(order, STATUS_CANCELED, EXEC_CANCELED, "", result)
        return result

    def cancel_unsolicited(self, order_id: str) -> Result:
        """The house cancels the open order ``order_id`` (a stop-out).  No
        request of the client's: no ClOrdID is taken, and every report
        carries the order's own.  An order out at LPs is PENDING_CANCEL
        until its routing is done, as for a client's cancel, and a replace
        waiting there is refused (superseded); should it fill meanwhile,
        nothing is refused to the client, who asked for nothing.  An order
        that is not open, or whose cancel is already waiting, is left as it
        is."""
        result = self._begin()
        order = self._open.get(order_id)
        if order is None:
            return result
        superseded = order.pending
        if superseded is not None and superseded.kind is CxlRejResponseTo.CANCEL:
            return result
        if order.routing_qty:
            # waits under the order's own ClOrdID: nothing to rename it to
            order.pending = PendingChange(CxlRejResponseTo.CANCEL, order.cl_ord_id)
            order.status = STATUS_PENDING_CANCEL
            if superseded is not None:
                result.cancel_rejects.append(self._superseded(order, superseded))
            result.executions.append(self._report(order, EXEC_PENDING_CANCEL))
            return result
        if superseded is not None:
            order.pending = None
            result.cancel_rejects.append(self._superseded(order, superseded))
        self._finish(order, STATUS_CANCELED, EXEC_CANCELED, "", result)
        return result

    def replace(self, cmd: ReplaceOrder, book: BookSnapshot | None = None) -> Result:
        """Change the quantity and/or price of the client's order; ``book`` is
        the LP book of its symbol, to route it if it became marketable."""
        result = self._begin()
        order = self._target(
            cmd.client, cmd.cl_ord_id, cmd.orig_cl_ord_id, CxlRejResponseTo.REPLACE, result
        )
        if order is None:
            return result
        problem = self._invalid_replace(order, cmd.qty, cmd.price)
        if problem:
            result.cancel_rejects.append(
                self._cancel_reject(
                    order,
                    cmd.cl_ord_id,
                    CxlRejReason.OTHER,
                    CxlRejResponseTo.REPLACE,
                    problem,
                )
            )
            return result
        self._index(order, cmd.cl_ord_id)
        if order.routing_qty:
            order.pending = PendingChange(
                CxlRejResponseTo.REPLACE, cmd.cl_ord_id, cmd.qty, cmd.price
            )
            order.status = STATUS_PENDING_REPLACE
            result.executions.append(
                self._report(
                    order,
                    EXEC_PENDING_REPLACE,
                    cl_ord_id=cmd.cl_ord_id,
                    orig_cl_ord_id=order.cl_ord_id,
                )
            )
            return result
        self._apply_replace(order, cmd.cl_ord_id, cmd.qty, cmd.price, book, result)
        return result

    def status(self, client: str, cl_ord_id: str) -> Execution | None:
        """ORDER_STATUS of the client's order known by ``cl_ord_id`` (any
        ClOrdID it had); None if the client has no such order."""
        order = self._lookup(client, cl_ord_id)
        if order is None:
            return None
        return self._report(order, EXEC_ORDER_STATUS)

    @property
    def open_count(self) -> int:
        """How many orders are open."""
        return len(self._open)

    def open_orders(self, client: str | None = None) -> list[Execution]:
        """ORDER_STATUS of every open order (of ``client`` if given), oldest first."""
        return [
            self._report(order, EXEC_ORDER_STATUS)
            for order in sorted(self._open.values(), key=_by_seq)
            if client is None or order.client == client
        ]

    def order_of(self, client: str, cl_ord_id: str) -> Order | None:
        """The client's order known by ``cl_ord_id`` (any ClOrdID it had),
        without a report made (no ExecID used); None if there is none.  The
        matcher's own object: read it, never change it."""
        return self._lookup(client, cl_ord_id)

    def find(self, order_id: str, client: str, cl_ord_id: str) -> Order | None:
        """The order ``order_id`` (an execution's client and ClOrdID locate
        a final one); None once forgotten, or for a new order refused as a
        duplicate, which the matcher never kept.  The order is the
        matcher's own object: read it, never change it."""
        order = self._open.get(order_id)
        if order is None:
            order = self._lookup(client, cl_ord_id)
            if order is None or order.order_id != order_id:
                house = self._house_ids.get(client)
                order = None if house is None else house.get(cl_ord_id)
                if order is None or order.order_id != order_id:
                    # ended and forgotten past retain_finished in the last call
                    return self._evicted.get(order_id)
        return order

    def routes_no_more(self, order_id: str) -> bool:
        """Whether what the LPs leave of the open order is to come back to
        it rather than be routed again: a cancel of it, or a replace that
        will be applied to it, waits for its routing to end (an IOC's or
        FOK's replace is refused anyway), or the trading day ended while it
        was out (a DAY order: it expires on return)."""
        if order_id in self._expiring:
            return True
        order = self._open.get(order_id)
        pending = None if order is None else order.pending
        if order is None or pending is None:
            return False
        return pending.kind is CxlRejResponseTo.CANCEL or not (order.tif is IOC or order.tif is FOK)

    def open_snapshot(self) -> list[Order]:
        """The open orders (in no order), copied at once: for a reader that
        goes through them over several loop turns while the matcher works
        on (the final ones: :meth:`finished_view`)."""
        return list(self._open.values())

    def finished_view(self) -> Iterator[Order]:
        """The final orders kept now, oldest first, read lazily: what is
        added or forgotten after the call does not change what it yields
        (at the cost of a copy of about one reference per thousand)."""
        return self._finished.view()

    def orders(self) -> Iterator[Order]:
        """Every order known: the final ones kept, oldest first, then the
        open ones in time priority (the order :meth:`restore` takes)."""
        yield from self._finished
        yield from sorted(self._open.values(), key=_by_seq)

    def is_expiring(self, order_id: str) -> bool:
        """Whether the order is a DAY order out at LPs when the day ended."""
        return order_id in self._expiring

    @property
    def expiring(self) -> frozenset[str]:
        """DAY orders out at LPs when the day ended: they expire on return."""
        return frozenset(self._expiring)

    def restore(self, orders: Iterable[Order], expiring: Iterable[str] = ()) -> None:
        """Take back orders kept from an earlier run (their last states, the
        final ones in the order they ended, the open ones in time priority),
        into a matcher that has none yet.  Open limit orders that rest go
        back into the client book; final ones answer status requests and
        duplicate checks as before, up to ``retain_finished``."""
        if any(not index.is_empty() for index in self._by_cl_ord_id.values()) or any(
            not index.is_empty() for index in self._house_ids.values()
        ):
            raise MatcherError("restore into a matcher that already holds orders")
        top = 0
        for order in orders:
            top = max(top, order.seq)
            self._index_all(order)
            if order.is_final:
                self._retire(order)
                continue
            self._open[order.order_id] = order
            rests = order.ord_type is LIMIT and (order.tif is DAY or order.tif is GTC)
            if rests:
                self._side_book(order).add(order)
        self._expiring = {order_id for order_id in expiring if order_id in self._open}
        self._last_seq = top
        self._evicted = {}  # nothing restored is journaled again: let go at once

    def open_of(self, client: str) -> list[Order]:
        """The client's open orders, oldest first (the matcher's own
        objects: read them, never change them)."""
        return sorted((o for o in self._open.values() if o.client == client), key=_by_seq)

    def park(self, client: str) -> list[Order]:
        """Take every open order of ``client`` out of the matcher, without a
        report: out of the client book and of the ClOrdID index, worked no
        more (another gateway of a cluster serves the client).  Returns
        them, oldest first, as they were (``routing_qty`` included: what
        was out at LPs is the caller's to settle)."""
        parked = self.open_of(client)
        for order in parked:
            del self._open[order.order_id]
            self._expiring.discard(order.order_id)
            if order.price is not None:
                self._side_book(order).remove(order)
            self._forget(order)
        return parked

    def adopt(self, orders: Iterable[Order]) -> list[Order]:
        """Take open orders worked until now elsewhere (parked here earlier,
        or another gateway's of a cluster, as it copied them): indexed by
        every ClOrdID they have, as :meth:`restore` does; resting limit DAY
        and GTC ones go back into the client book behind what rests there,
        with this matcher's time priority, in their relative order.  An
        open order of the same id held here is replaced; a final one given
        is passed over.  ``routing_qty`` is kept: lots still out at LPs
        for them are the caller's to bring back (:meth:`on_route_done`), and
        crossing them with what rests here is :meth:`cross_taken`'s.
        Returns the orders taken, in their new time priority."""
        taken = sorted((o for o in orders if not o.is_final), key=_by_seq)
        for order in taken:
            held = self._open.pop(order.order_id, None)
            if held is not None and held.price is not None:
                self._side_book(held).remove(held)
            order.seq = self._next_seq()
            self._index_all(order)
            self._open[order.order_id] = order
            rests = order.ord_type is LIMIT and (order.tif is DAY or order.tif is GTC)
            if rests:
                self._side_book(order).add(order)
        return taken

    def cross_taken(self, orders: Iterable[Order]) -> Result:
        """Cross orders :meth:`adopt` took, in their time priority, against
        the other clients' orders that rest here: one that came in while
        they were worked elsewhere may cross them.  At the resting orders'
        prices, as a remainder back from routing is."""
        result = self._begin()
        if not self.internal_crossing:
            return result
        for order in orders:
            if self._open.get(order.order_id) is order and not order.routing_qty:
                self._cross(order, result)
        return result

    # --- events from the router ------------------------------------------------

    def on_fill(self, order_id: str, qty: int, price: int, counterparty: str) -> Result:
        """An LP filled ``qty`` lots of the order's routed part at ``price``."""
        order = self._open.get(order_id)
        if order is None:
            raise MatcherError(f"fill for {order_id}, which is not open")
        if qty <= 0 or qty > order.routing_qty:
            raise MatcherError(
                f"fill of {qty} lots for {order_id} with {order.routing_qty} lots routed"
            )
        result = self._begin()
        order.routing_qty -= qty
        self._fill(order, qty, price, counterparty, result)
        if order.leaves_qty == 0 and order.pending is not None:
            pending = order.pending
            order.pending = None
            self._too_late(order, pending, "order filled", result)
        return result

    def on_route_done(
        self, order_id: str, unfilled_qty: int, reason: str, book: BookSnapshot | None = None
    ) -> Result:
        """Routing of the order is over and ``unfilled_qty`` routed lots were
        not filled (``reason`` says why).  ``book`` is the LP book of the
        symbol, used only if a pending replace makes the order marketable."""
        result = self._begin()
        order = self._open.get(order_id)
        if order is None:
            if unfilled_qty:
                raise MatcherError(f"{unfilled_qty} lots came back for {order_id}, not open")
            # filled at the LPs in full: nothing left to expire on its return
            self._expiring.discard(order_id)
            return result
        if unfilled_qty != order.routing_qty:
            raise MatcherError(
                f"{unfilled_qty} lots came back for {order_id} with {order.routing_qty} routed"
            )
        order.routing_qty = 0
        pending = order.pending
        order.pending = None
        if order_id in self._expiring:
            self._expiring.discard(order_id)
            self._expire_back_from_routing(order, pending, result)
            return result
        refused = ""  # why a replace that waited is refused
        if pending is not None:
            order.status = _working_status(order)
            if pending.kind is CxlRejResponseTo.CANCEL:
                if not _unsolicited(order, pending):
                    self._rename(order, pending.cl_ord_id)
                self._finish(order, STATUS_CANCELED, EXEC_CANCELED, "", result)
                return result
            if order.tif is IOC or order.tif is FOK:
                refused = "order done"
            elif order.cum_qty > pending.qty:
                refused = "filled beyond the new quantity"
            else:
                self._apply_replace(
                    order, pending.cl_ord_id, pending.qty, pending.price, book, result
                )
                return result
        if order.leaves_qty and self.internal_crossing:
            self._cross(order, result)
        if order.leaves_qty and (order.tif is IOC or order.tif is FOK):
            self._finish(order, STATUS_CANCELED, EXEC_CANCELED, reason, result)
        if pending is not None and refused:
            # made last: it names the order as the executions above leave it
            # (the client reads the reject after them)
            self._too_late(order, pending, refused, result)
        return result

    def expire_day(self) -> Result:
        """The end of the trading day.  Final orders of the day are forgotten
        (their ClOrdIDs may be used again), then every open DAY order expires
        (ExecType EXPIRED); one that is out at LPs expires when its routing
        is done, keeping what the LPs filled meanwhile."""
        # Forgotten at once: the index starts again from the open orders.
        # What it let go of is freed by release_forgotten, a slice at a time
        # (a hundred thousand orders freed in one go would hold the loop).
        self._forgotten.append(self._finished)
        for index in (*self._by_cl_ord_id.values(), *self._house_ids.values()):
            self._forgotten_ids.extend(index.dicts())
        self._finished = Retained()
        self._kept = {}
        self._by_cl_ord_id = {}
        self._house_ids = {}
        for order in self._open.values():
            self._index_all(order)
        result = self._begin()
        for order in sorted(self._open.values(), key=_by_seq):
            self._expire(order, result)
        return result

    def expire_late(self, order_ids: Iterable[str]) -> Result:
        """Expire those of these open orders that are DAY orders, as the end
        of the trading day does (without forgetting anything): a day ended
        while they were worked nowhere (their gateway was down, or their
        client's session held by none)."""
        result = self._begin()
        for order_id in order_ids:
            order = self._open.get(order_id)
            if order is not None:
                self._expire(order, result)
        return result

    def _expire(self, order: Order, result: Result) -> None:
        if order.tif is not DAY:
            return
        if order.routing_qty:
            self._expiring.add(order.order_id)
        else:
            self._finish(order, STATUS_EXPIRED, EXEC_EXPIRED, DAY_ENDED, result)

    def release_forgotten(self, limit: int) -> bool:
        """Free about ``limit`` of the entries the day ends let go of (the
        final orders a whole chunk at a time, their ClOrdIDs one by one);
        True while some are left."""
        orders, ids = self._forgotten, self._forgotten_ids
        while limit > 0 and (orders or ids):
            if orders:
                box = orders[-1]
                if box:
                    limit -= box.release(limit)
                    continue
                orders.pop()
            else:
                index = ids[-1]
                if index:
                    index.popitem()
                else:
                    ids.pop()
            limit -= 1
        return bool(orders or ids)

    def _too_late(self, order: Order, pending: PendingChange, text: str, result: Result) -> None:
        """The reject of a cancel or replace that waited for routing and
        came too late: the order ended or moved on meanwhile (none for a
        cancel of the house's, which no request of the client's asked for)."""
        if _unsolicited(order, pending):
            return
        result.cancel_rejects.append(
            self._cancel_reject(
                order,
                pending.cl_ord_id,
                CxlRejReason.TOO_LATE_TO_CANCEL,
                pending.kind,
                text,
            )
        )

    def _expire_back_from_routing(
        self, order: Order, pending: PendingChange | None, result: Result
    ) -> None:
        if order.leaves_qty:
            self._finish(order, STATUS_EXPIRED, EXEC_EXPIRED, DAY_ENDED, result)
        if pending is not None:
            self._too_late(order, pending, f"order expired: {DAY_ENDED}", result)

    def rests(self, symbol: str) -> bool:
        """Whether any order of ``symbol`` rests in the client book: only
        then can a change of the LPs' book make one marketable
        (:meth:`on_market`)."""
        books = self._books.get(symbol)
        return books is not None and bool(books[0].keys or books[1].keys)

    def on_market(
        self,
        symbol: str,
        book: BookSnapshot,
        paused: dict[str, tuple[float, int]] | None = None,
        now: float = 0.0,
    ) -> Result:
        """Route resting orders of ``symbol`` that ``book`` made marketable:
        buys then sells, each best price first, then time priority.  An
        order in ``paused`` (order id -> until when, and the LPs' best price
        it was last routed at) is left resting until ``now`` is past that
        time, unless the LPs' best price is better than that one."""
        result = self._begin()
        books = self._books.get(symbol)
        if books is None:
            return result
        best_ask = book.best_ask
        if best_ask is not None:
            self._route_marketable(books[0], best_ask.price, result, paused, now)
        best_bid = book.best_bid
        if best_bid is not None:
            self._route_marketable(books[1], best_bid.price, result, paused, now)
        return result

    # --- internals -------------------------------------------------------------

    def _route_marketable(
        self,
        side_book: _SideBook,
        lp_price: int,
        result: Result,
        paused: dict[str, tuple[float, int]] | None,
        now: float,
    ) -> None:
        # Keys are best first: stop at the first level the LP price does not reach.
        limit_key = lp_price * side_book.sign
        for key in side_book.keys:
            if key > limit_key:
                break
            for order in side_book.levels[key].values():
                if not order.routing_qty and order.pending is None:
                    if paused:
                        wait = paused.get(order.order_id)
                        if (
                            wait is not None
                            and wait[0] > now
                            and wait[1] * side_book.sign >= limit_key
                        ):
                            continue  # no better price than its last routing's, yet
                    self._route(order, result)

    def _invalid(self, cmd: NewOrder) -> tuple[OrdRejReason, str] | None:
        instrument = self._instruments.get(cmd.symbol)
        if instrument is None:
            return OrdRejReason.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol}"
        if cmd.qty < instrument.min_lots or cmd.qty > instrument.max_lots or cmd.qty <= 0:
            return (
                OrdRejReason.INCORRECT_QUANTITY,
                f"quantity {cmd.qty} lots outside {instrument.min_lots}..{instrument.max_lots}",
            )
        if cmd.ord_type is LIMIT:
            if cmd.price is None or cmd.price <= 0:
                return OrdRejReason.OTHER, "limit order needs a positive price"
        elif cmd.tif is GTC:
            return OrdRejReason.OTHER, "market order must be IOC, FOK or DAY"
        return None

    def _invalid_replace(self, order: Order, qty: int, price: int | None) -> str:
        instrument = self._instruments[order.symbol]
        if qty < instrument.min_lots or qty > instrument.max_lots or qty <= 0:
            return f"quantity {qty} lots outside {instrument.min_lots}..{instrument.max_lots}"
        if qty < order.cum_qty:
            return f"quantity {qty} lots below the filled {order.cum_qty}"
        if price is not None and (order.ord_type is MARKET or price <= 0):
            return "price must be positive, on a limit order"
        return ""

    def _target(
        self,
        client: str,
        cl_ord_id: str,
        orig_cl_ord_id: str,
        kind: CxlRejResponseTo,
        result: Result,
    ) -> Order | None:
        """The order a cancel/replace aims at, or None after adding its reject."""
        order = self._lookup(client, orig_cl_ord_id)
        if order is None:
            result.cancel_rejects.append(
                CancelReject(
                    client,
                    cl_ord_id,
                    orig_cl_ord_id,
                    None,
                    STATUS_REJECTED,
                    CxlRejReason.UNKNOWN_ORDER,
                    kind,
                    "unknown order",
                )
            )
            return None
        if self._lookup(client, cl_ord_id) is not None:
            reason, text = CxlRejReason.DUPLICATE_CL_ORD_ID, DUPLICATE_CL_ORD_ID
        elif order.is_final:
            reason, text = CxlRejReason.TOO_LATE_TO_CANCEL, "too late: order is final"
        elif order.pending is not None and (
            kind is not CxlRejResponseTo.CANCEL or order.pending.kind is CxlRejResponseTo.CANCEL
        ):
            # but a cancel may come over a pending replace (see the module)
            reason, text = CxlRejReason.ALREADY_PENDING, "a cancel or replace is pending"
        else:
            return order
        result.cancel_rejects.append(self._cancel_reject(order, cl_ord_id, reason, kind, text))
        return None

    def _superseded(self, order: Order, replace: PendingChange) -> CancelReject:
        """The OrderCancelReject of a pending replace a cancel of the order
        came over: the order is being canceled, the replace never applied."""
        return self._cancel_reject(
            order,
            replace.cl_ord_id,
            CxlRejReason.OTHER,
            CxlRejResponseTo.REPLACE,
            SUPERSEDED_BY_CANCEL,
        )

    def _cancel_reject(
        self,
        order: Order,
        cl_ord_id: str,
        reason: CxlRejReason,
        kind: CxlRejResponseTo,
        text: str,
    ) -> CancelReject:
        """The OrderCancelReject of request ``cl_ord_id`` for ``order``: it
        names the order by its last accepted ClOrdID (OrigClOrdID), whichever
        of its ids the request gave, and its status as it stands."""
        return CancelReject(
            order.client,
            cl_ord_id,
            order.cl_ord_id,
            order.order_id,
            order.status,
            reason,
            kind,
            text,
        )

    def _apply_replace(
        self,
        order: Order,
        cl_ord_id: str,
        qty: int,
        price: int | None,
        book: BookSnapshot | None,
        result: Result,
    ) -> None:
        new_price = order.price if price is None else price
        loses_priority = qty > order.qty or new_price != order.price
        rests = order.ord_type is LIMIT and (order.tif is DAY or order.tif is GTC)
        if rests and loses_priority:
            self._side_book(order).remove(order)
        self._rename(order, cl_ord_id)
        order.qty = qty
        order.price = new_price
        order.leaves_qty = qty - order.cum_qty
        order.status = _working_status(order)
        result.executions.append(self._report(order, EXEC_REPLACED))
        if order.leaves_qty == 0:
            self._close(order)
        elif rests and loses_priority:
            order.seq = self._next_seq()
            self._work(order, book, result)
        elif self.internal_crossing:
            # Back from routing: other clients may have come in crossable meanwhile.
            self._cross(order, result)

    def ids_of(self, client: str) -> IdIndex | None:
        """The index of the ClOrdIDs ``client`` used that are still known
        (read it, never change it)."""
        return self._by_cl_ord_id.get(client)

    def _lookup(self, client: str, cl_ord_id: str) -> Order | None:
        index = self._by_cl_ord_id.get(client)
        return None if index is None else index.get(cl_ord_id)

    def _next_seq(self) -> int:
        """The next time priority: later than every one given before."""
        self._last_seq += 1
        return self._last_seq

    def _index_of(self, order: Order) -> IdIndex:
        """Where the order's ClOrdIDs are kept: its client's, or the house's
        ids in that client's name."""
        by_client = self._house_ids if order.house else self._by_cl_ord_id
        index = by_client.get(order.client)
        if index is None:
            index = by_client[order.client] = IdIndex()
        return index

    def _rename(self, order: Order, cl_ord_id: str) -> None:
        if order.first_cl_ord_id is None:
            order.first_cl_ord_id = order.cl_ord_id
        self._alias(order, order.cl_ord_id)
        order.orig_cl_ord_id = order.cl_ord_id
        order.cl_ord_id = cl_ord_id

    def _index_all(self, order: Order) -> None:
        """Make ``order`` known by every ClOrdID it has (its own, its
        aliases and the first it had)."""
        index = self._index_of(order)
        for cl_ord_id in (order.cl_ord_id, *order.aliases):
            index.put(cl_ord_id, order)
        if order.first_cl_ord_id is not None:
            index.put(order.first_cl_ord_id, order)

    def _index(self, order: Order, cl_ord_id: str) -> None:
        """Make ``order`` known by one more ClOrdID of its client."""
        self._index_of(order).put(cl_ord_id, order)
        self._alias(order, cl_ord_id)

    def _alias(self, order: Order, cl_ord_id: str) -> None:
        """Keep ``cl_ord_id`` among the order's aliases, once; past
        :data:`MAX_ALIASES`, the oldest is forgotten (but its own and the
        first it had, which stay known)."""
        aliases = order.aliases
        if cl_ord_id in aliases:
            return
        aliases += (cl_ord_id,)
        if len(aliases) > MAX_ALIASES:
            dropped = aliases[0]
            aliases = aliases[1:]
            if dropped != order.cl_ord_id and dropped != order.first_cl_ord_id:
                self._index_of(order).discard(dropped, order)
        order.aliases = aliases

    def _begin(self) -> Result:
        """The result of a call that may end orders; what the call before
        forgot past ``retain_finished`` is let go of."""
        if self._evicted:
            self._evicted = {}
        return Result()

    def _retire(self, order: Order) -> None:
        """Keep a final order for lookups; forget the oldest beyond the bound,
        shared between the clients (:func:`keep_shared`); those forgotten
        are still found by :meth:`find` until the next call: the caller
        journals the orders a call ended, and those may be among them."""
        for oldest in keep_shared(self._finished, self._kept, order, self.retain_finished):
            self._forget(oldest)
            self._evicted[oldest.order_id] = oldest

    def _forget(self, order: Order) -> None:
        by_client = self._house_ids if order.house else self._by_cl_ord_id
        index = by_client.get(order.client)
        if index is None:
            return
        for cl_ord_id in (order.cl_ord_id, *order.aliases):
            index.discard(cl_ord_id, order)
        if order.first_cl_ord_id is not None:
            index.discard(order.first_cl_ord_id, order)

    def _work(self, order: Order, book: BookSnapshot | None, result: Result) -> None:
        """Cross a fresh (or re-priced) order, then route or rest what is left."""
        if self.internal_crossing:
            self._cross(order, result, book)
            if not order.leaves_qty:
                return
        if _marketable(order, book):
            self._route(order, result)
        elif order.tif is IOC or order.tif is FOK:
            self._finish(order, STATUS_CANCELED, EXEC_CANCELED, NOT_MARKETABLE, result)
            return
        if order.tif is DAY or order.tif is GTC:
            self._side_book(order).add(order)

    def _route(self, order: Order, result: Result) -> None:
        qty = order.leaves_qty - order.routing_qty
        order.routing_qty += qty
        first = order.first_cl_ord_id  # Order.entry_cl_ord_id, without a property call
        result.routes.append(
            RouteNeed(
                order.order_id,
                order.client,
                order.symbol,
                order.side,
                qty,
                order.price,
                order.tif,
                order.cl_ord_id,
                order.cl_ord_id if first is None else first,
            )
        )

    def _crossable(self, taker: Order, book: BookSnapshot | None = None) -> Iterator[Order]:
        """Resting orders ``taker`` may cross with now, in priority order.
        With the LP ``book``, only at prices at least as good for the taker
        as the LPs' best: a better LP price is taken at the LP."""
        side_book = self._books[taker.symbol][1 if taker.side is BUY else 0]
        sign = side_book.sign
        limit_key = None if taker.price is None else taker.price * sign
        if book is not None:
            best = book.best_ask if taker.side is BUY else book.best_bid
            if best is not None and (limit_key is None or best.price * sign < limit_key):
                limit_key = best.price * sign
        for key in side_book.keys:
            if limit_key is not None and key > limit_key:
                break
            for maker in side_book.levels[key].values():
                if maker.client != taker.client and maker.leaves_qty > maker.routing_qty:
                    yield maker

    def _cross(self, taker: Order, result: Result, book: BookSnapshot | None = None) -> None:
        if taker.leaves_qty <= taker.routing_qty:
            return
        done: list[Order] = []
        for maker in self._crossable(taker, book):
            qty = min(taker.leaves_qty - taker.routing_qty, maker.leaves_qty - maker.routing_qty)
            assert maker.price is not None
            price = maker.price
            self._fill(taker, qty, price, INTERNAL, result, close=False)
            self._fill(maker, qty, price, INTERNAL, result, close=False)
            if not maker.leaves_qty:
                done.append(maker)
            if taker.leaves_qty == taker.routing_qty:
                break
        for maker in done:
            self._close(maker)
        if not taker.leaves_qty:
            self._close(taker)

    def _fok_fillable(self, order: Order, book: BookSnapshot | None, lp_lots: int | None) -> bool:
        # The client book within the order's limit, not only the part at or
        # better than the LPs' best: what the LPs do not fill crosses there
        # when the routing is done.
        available = 0
        if self.internal_crossing:
            for maker in self._crossable(order):
                available += maker.leaves_qty - maker.routing_qty
                if available >= order.qty:
                    return True
        if lp_lots is not None:
            available += lp_lots
        elif book is not None:
            available += book.sweep(order.side, order.qty - available, order.price)[0]
        return available >= order.qty

    def _fill(
        self,
        order: Order,
        qty: int,
        price: int,
        counterparty: str,
        result: Result,
        close: bool = True,
    ) -> None:
        order.cum_qty += qty
        order.leaves_qty -= qty
        order.notional += qty * price
        if order.leaves_qty == 0:
            order.status = STATUS_FILLED
        elif order.pending is None:
            order.status = STATUS_PARTIALLY_FILLED
        result.executions.append(
            self._report(order, EXEC_TRADE, last_qty=qty, last_px=price, counterparty=counterparty)
        )
        if close and order.leaves_qty == 0:
            self._close(order)

    def _finish(
        self, order: Order, status: OrdStatus, exec_type: ExecType, text: str, result: Result
    ) -> None:
        """End a working order without a fill: cancel, expire."""
        order.status = status
        order.leaves_qty = 0
        result.executions.append(self._report(order, exec_type, text=text))
        self._close(order)

    def _close(self, order: Order) -> None:
        """Forget a final order everywhere but in the ClOrdID index (until
        it is retired from there too)."""
        if self._open.pop(order.order_id, None) is not None:
            if order.price is not None:
                self._side_book(order).remove(order)
            self._retire(order)

    def _reject(self, order: Order, reason: OrdRejReason, text: str, result: Result) -> None:
        order.status = STATUS_REJECTED
        order.leaves_qty = 0
        result.executions.append(
            self._report(order, EXEC_REJECTED, text=text, ord_rej_reason=reason)
        )

    def _side_book(self, order: Order) -> _SideBook:
        return self._books[order.symbol][0 if order.side is BUY else 1]

    def _report(
        self,
        order: Order,
        exec_type: ExecType,
        *,
        last_qty: int = 0,
        last_px: int | None = None,
        counterparty: str = "",
        text: str = "",
        cl_ord_id: str | None = None,
        orig_cl_ord_id: str | None = None,
        ord_rej_reason: OrdRejReason | None = None,
    ) -> Execution:
        return Execution(
            self._exec_ids.next(),
            exec_type,
            order.order_id,
            order.client,
            order.cl_ord_id if cl_ord_id is None else cl_ord_id,
            order.orig_cl_ord_id if cl_ord_id is None else orig_cl_ord_id,
            order.symbol,
            order.side,
            order.ord_type,
            order.tif,
            order.qty,
            order.price,
            order.status,
            order.cum_qty,
            order.leaves_qty,
            order.notional,
            last_qty,
            last_px,
            counterparty,
            text,
            ord_rej_reason,
        )


def _by_seq(order: Order) -> int:
    return order.seq


def _unsolicited(order: Order, pending: PendingChange) -> bool:
    """Whether ``pending`` is a cancel of the house's: it waits under the
    order's own ClOrdID, where a client's cancel has one of its own."""
    return pending.kind is CxlRejResponseTo.CANCEL and pending.cl_ord_id == order.cl_ord_id


def _working_status(order: Order) -> OrdStatus:
    if order.leaves_qty == 0:
        return STATUS_FILLED
    return STATUS_PARTIALLY_FILLED if order.cum_qty else STATUS_NEW


def _marketable(order: Order, book: BookSnapshot | None) -> bool:
    """Market orders always; limit orders when the LP side reaches the limit."""
    if order.price is None:
        return True
    if book is None:
        return False
    if order.side is BUY:
        ask = book.best_ask
        return ask is not None and ask.price <= order.price
    bid = book.best_bid
    return bid is not None and bid.price >= order.price
