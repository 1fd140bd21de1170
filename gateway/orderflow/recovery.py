"""Folding the order journal back into state, after a restart.

:class:`Recovery` reads journal entries oldest first and keeps what the
order path needs to continue: the last state of every order, the child
orders that had not ended (with what they had filled and the LP ExecIDs
seen), the latest ones their LPs ended (a fill an LP reports for one after
the end is still booked to the house, once), and the DAY orders due to
expire.  Fills are booked into the
exposure ledger it is given as they are read, so positions come back
exactly as they were.  :meth:`Recovery.regrid` then checks the journal's
ticks and lots against the instruments configured now.  It does no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from config import ConfigError
from gateway.orderflow.journal_entries import (
    Abandoned,
    ClientState,
    DayEndMoved,
    DayEnds,
    Dropped,
    Ended,
    EndedState,
    Entry,
    Expiring,
    Filled,
    Grid,
    Holdings,
    InFlight,
    Message,
    OrderState,
    Positions,
    RetainFinished,
    Run,
    Sent,
    Traded,
)
from matcher.engine import Retained, keep_shared
from matcher.orders import Order, OrdStatus
from risk.accounts import Accounts
from router.exposure import ExposureLedger
from router.model import ChildOrder, Instrument, TimeInForce

__all__ = ["HOUSE", "GridChange", "RecoveredChild", "Recovery"]

HOUSE = "(house)"
"""The account of fills no client ordered: late fills of children given up,
the part of an LP's fill beyond what was asked."""

# messages kept per session to complete a store that is behind the journal,
# of a session whose store's numbers are not known: the latest (those known
# keep every message the store lacks, :attr:`Recovery.floors`)
_MESSAGE_TAIL = 10_000

KEEP_ENDED = 10_000
"""Children their LP ended that the routing watches for a fill after the
end: the latest canceled or rejected ones, and apart from them the latest
filled in full (so that the many filled do not push the others out)."""


@dataclass(slots=True)
class RecoveredChild:
    """A child order that had not ended: ``open`` lots not yet seen filled,
    the LP ExecIDs already booked, and whether the gateway had given up on
    it (a late fill of an abandoned child goes to the house account)."""

    child: ChildOrder
    open: int
    exec_ids: set[str] = field(default_factory=set)
    abandoned: bool = False
    booked: set[tuple[str, str]] = field(default_factory=set)
    """(ExecID, account) of each booking read: one LP fill can be booked in
    two parts, the client's and the house's."""
    counted: frozenset[str] = frozenset()
    """ExecIDs its ``open`` already counts (the child's state was written
    after them: a checkpoint written in slices copies them behind it)."""
    settled: bool = False
    """Given up on, and its LP not to be asked about it again (it said what
    became of it, or its trading day ended): journaled as its end."""


@dataclass(frozen=True, slots=True)
class GridChange:
    """An instrument whose tick or lot size the config changed since the
    journal was written, the journal holding nothing open in it: its
    sizes then and now (decimal strings), and what of it was forgotten,
    being counted on the old grid: final orders kept for status requests
    and duplicate checks, and children given up on or ended that were
    watched for a late fill."""

    symbol: str
    tick_size: tuple[str, str]
    lot_size: tuple[str, str]
    final_orders: int
    children: int


def _counted(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


class Recovery:
    """The state read so far from a journal.  Of the final orders, only
    those the matcher kept are kept (``keep_finished``, shared between the
    clients as it shares them: :func:`~matcher.engine.keep_shared`), so
    that a long day's journal is read in bounded memory."""

    def __init__(
        self,
        ledger: ExposureLedger,
        accounts: Accounts,
        keep_finished: int = 100_000,
        keep_ended: int = KEEP_ENDED,
    ) -> None:
        self.ledger = ledger
        self.accounts = accounts
        self.keep_finished = keep_finished
        self.keep_ended = keep_ended
        self.orders: dict[str, Order] = {}
        """Order id -> last state, in the order of their last change."""
        # the final orders kept, as the matcher keeps them as they end, and
        # per client how many of them are its own
        self._finished = Retained()
        self._kept: dict[str, int] = {}
        self.children: dict[str, RecoveredChild] = {}
        self.ended: dict[str, RecoveredChild] = {}
        """Children their LPs canceled or rejected, the latest
        ``keep_ended`` oldest first: ``open`` is their lots not filled
        (below 0 once filled beyond what was asked)."""
        self.filled_in_full: dict[str, RecoveredChild] = {}
        """The same, of the children their LPs filled in full."""
        self.expiring: list[str] = []
        self.messages: dict[str, deque[Message]] = {}
        """Session id -> the messages journaled for it that its store may
        lack, oldest first."""
        self.floors: dict[str, tuple[float, int]] = {}
        """Session id -> its store's creation time and next sender number,
        when known before the journal is read: of such a session every
        message the store lacks is kept (a store restored from an older
        copy may lack a whole day), of another only the latest."""
        self.fills = 0
        """Fills booked into the ledger while reading."""
        self.duplicate_fills = 0
        """Fills read twice (a damaged journal) and booked once."""
        self.holdings_read = False
        """Whether the journal held the margin accounts' holdings (a journal
        written before they were kept holds positions only)."""
        self.day_ends_at = 0.0
        """When the trading day of the orders read ends (0: the journal does
        not say: written by an earlier version)."""
        self.grid: dict[str, tuple[str, str]] | None = None
        """Symbol -> (tick size, lot size), the grid the journal's ticks
        and lots are counted on (None: it does not say: written by an
        earlier version)."""
        self._grid_sizes: dict[str, tuple[float, float]] = {}

    def apply(self, entry: Entry) -> None:
        if isinstance(entry, OrderState):
            order = entry.order
            orders = self.orders
            before = orders.get(order.order_id)
            if (
                before is not None
                and before.is_final
                and not order.is_final
                and order.seq <= before.seq
            ):
                # a final order never works again here: this state is older
                # than the one read (a checkpoint written in slices holds an
                # order as its slice was written, and copies behind it the
                # states journaled on the way there, ending with that one).
                # One taken open from a cluster's copy (its end here never
                # copied) has a later time priority: it works again
                return
            orders.pop(order.order_id, None)
            orders[order.order_id] = order
            if order.is_final and (before is None or not before.is_final):
                # kept as the matcher kept it when it ended, in the same
                # order: the same clients share the bound, the same are kept
                # (by its id: the state read last of it may be a later copy)
                for gone in keep_shared(self._finished, self._kept, order, self.keep_finished):
                    orders.pop(gone.order_id, None)
        elif isinstance(entry, Filled):
            self._fill(entry)
        elif isinstance(entry, Sent):
            self.children[entry.child.child_id] = RecoveredChild(entry.child, entry.child.qty)
        elif isinstance(entry, Ended):
            child = self.children.get(entry.child_id)
            if child is not None and child.abandoned:
                # given up on, then settled: watched for a late fill until a restart
                child.settled = True
            elif child is not None:
                del self.children[entry.child_id]
                self._ended(entry.child_id, child, child.open <= 0)
        elif isinstance(entry, Abandoned):
            child = self.children.get(entry.child_id)
            if child is not None:
                child.abandoned = True
        elif isinstance(entry, InFlight):
            self.children[entry.child.child_id] = RecoveredChild(
                entry.child,
                entry.open,
                set(entry.exec_ids),
                entry.abandoned,
                counted=frozenset(entry.exec_ids),
            )
        elif isinstance(entry, EndedState):
            recovered = RecoveredChild(
                entry.child, entry.open, set(entry.exec_ids), counted=frozenset(entry.exec_ids)
            )
            self._ended(entry.child.child_id, recovered, entry.filled_in_full)
        elif isinstance(entry, Message):
            floor = self.floors.get(entry.session)
            if floor is not None and (entry.created != floor[0] or entry.seq < floor[1]):
                return  # the store has it (or is of another sequence)
            tail = self.messages.get(entry.session)
            if tail is None:
                tail = self.messages[entry.session] = deque(
                    maxlen=None if floor is not None else _MESSAGE_TAIL
                )
            tail.append(entry)
        elif isinstance(entry, Traded):
            # on the grid it was journaled on: a fill's P&L stays its own
            # when the config changed the instrument's grid since
            sizes = self._grid_sizes.get(entry.symbol)
            if sizes is None:
                self.accounts.trade(entry.client, entry.symbol, entry.side, entry.qty, entry.price)
            else:
                self.accounts.trade_on_grid(
                    entry.client, entry.symbol, entry.side, entry.qty, entry.price, *sizes
                )
            if entry.internal:
                self.ledger.apply_cross(
                    entry.client, entry.symbol, entry.side, entry.qty, entry.price
                )
        elif isinstance(entry, Positions):
            self.ledger.load(entry.lps, entry.clients, entry.last_price)
        elif isinstance(entry, Holdings):
            self.accounts.load(entry.clients)
            self.holdings_read = True
        elif isinstance(entry, ClientState):
            self.ledger.set_client(entry.client, entry.positions)
            self.accounts.set_client(entry.client, entry.holdings)
        elif isinstance(entry, Dropped):
            for order_id in entry.order_ids:
                self.orders.pop(order_id, None)
        elif isinstance(entry, Expiring):
            self.expiring = list(entry.order_ids)
        elif isinstance(entry, DayEnds):
            self.day_ends_at = entry.at
            self._forget_day()
        elif isinstance(entry, DayEndMoved):
            self.day_ends_at = entry.at
        elif isinstance(entry, RetainFinished):
            # the bound the matcher kept its final orders under from here on
            self.keep_finished = entry.bound
        elif isinstance(entry, Grid):
            self.grid = dict(entry.sizes)
            self._grid_sizes = {
                symbol: (float(Decimal(tick)), float(Decimal(lot)))
                for symbol, (tick, lot) in entry.sizes.items()
            }
        elif isinstance(entry, Run):
            pass

    def finish(self, instruments: Mapping[str, Instrument]) -> int:
        """After the last entry: a journal that held positions but no
        holdings gives the accounts its client positions, each at the
        symbol's last fill price as its average (the average paid is not
        in such a journal).  Returns how many clients were so seeded."""
        if self.holdings_read:
            return 0
        _, clients, last_price = self.ledger.positions()
        seeded: dict[str, dict[str, tuple[int, float, float]]] = {}
        for client, by_symbol in clients.items():
            if client == HOUSE:
                continue
            for symbol, lots in by_symbol.items():
                instrument = instruments.get(symbol)
                if instrument is None or not lots:
                    continue
                price = float(instrument.tick_size * last_price.get(symbol, 0))
                seeded.setdefault(client, {})[symbol] = (lots, price, 0.0)
        if seeded:
            self.accounts.load(seeded)
        return len(seeded)

    def regrid(self, instruments: Mapping[str, Instrument]) -> list[GridChange]:
        """After the last entry, before anything is written: ConfigError if
        the journal holds open orders in an instrument no longer
        configured; then the instruments configured with another tick or
        lot size than the journal's ticks and lots are counted on.  Raises
        ConfigError, one line per instrument, when the journal holds an
        open order, a child in flight, or a position (a client's, an LP's
        or the house's) in one: read on the new grid, a buy of 5 lots at 100,000 ticks would
        become another order.  Otherwise forgets what it holds in them
        (final orders, children given up or ended, the last fill price)
        and returns the changes; the checkpoint that follows records the
        new grid.  A journal that does not say its grid (written by an
        earlier version) is not checked."""
        unknown = {o.symbol for o in self.orders.values() if not o.is_final} - set(instruments)
        if unknown:
            raise ConfigError(
                [
                    f"instruments: {symbol} is not configured, but the order journal holds "
                    f"open orders in it; configure it until they are closed"
                    for symbol in sorted(unknown)
                ]
            )
        # nor positions in margin accounts: left out of the margin, never
        # closed by a stop-out, and of no value the watch could see
        held_in: dict[str, list[str]] = {}
        for client, holdings in sorted(self.accounts.holdings().items()):
            if not self.accounts.is_margined(client):
                continue  # a client's own trades, kept, not margined
            for symbol, (lots, _, _) in holdings.items():
                if lots and symbol not in instruments:
                    held_in.setdefault(symbol, []).append(f"{client} {lots:+d} lots")
        if held_in:
            raise ConfigError(
                [
                    f"instruments: {symbol} is not configured, but margin accounts hold "
                    f"positions in it ({', '.join(said)}); configure it until they are closed"
                    for symbol, said in sorted(held_in.items())
                ]
            )
        grid = self.grid
        if grid is None:
            return []
        changed: dict[str, tuple[str, str, Instrument]] = {}
        for symbol, (tick, lot) in grid.items():
            instrument = instruments.get(symbol)
            # (one no longer configured holds no open order: refused above)
            if instrument is not None and (
                Decimal(tick) != instrument.tick_size or Decimal(lot) != instrument.lot_size
            ):
                changed[symbol] = (tick, lot, instrument)
        if not changed:
            return []
        opened = dict.fromkeys(changed, 0)
        in_flight = dict.fromkeys(changed, 0)
        positioned: set[str] = set()
        for order in self.orders.values():
            if order.symbol in opened and not order.is_final:
                opened[order.symbol] += 1
        for recovered in self.children.values():
            symbol = recovered.child.symbol
            if symbol in in_flight and not recovered.abandoned:
                in_flight[symbol] += 1
        lps, clients, last_price = self.ledger.positions()
        for by_symbol in (*lps.values(), *clients.values()):
            positioned.update(s for s, lots in by_symbol.items() if lots and s in changed)
        for holdings in self.accounts.holdings().values():
            positioned.update(s for s, held in holdings.items() if held[0] and s in changed)
        held: dict[str, list[str]] = {}
        for symbol in changed:
            said = held[symbol] = []
            if opened[symbol]:
                said.append(_counted(opened[symbol], "open order"))
            if in_flight[symbol]:
                said.append(_counted(in_flight[symbol], "child order") + " in flight")
            if symbol in positioned:
                said.append("positions")
        refused = [
            f"instruments: {symbol} is configured with tick_size {instrument.tick_size} and "
            f"lot_size {instrument.lot_size}, but the order journal holds "
            f"{', '.join(held[symbol])} in it counted in ticks of {tick} and lots of {lot}; "
            "put the old sizes back, or close the orders and positions in it first, "
            "or trade the new definition under a new symbol"
            for symbol, (tick, lot, instrument) in sorted(changed.items())
            if held[symbol]
        ]
        if refused:
            raise ConfigError(refused)
        changes = []
        for symbol, (tick, lot, instrument) in sorted(changed.items()):
            final = [o for o, order in self.orders.items() if order.symbol == symbol]
            for order_id in final:
                del self.orders[order_id]
            children = 0
            for kept in (self.children, self.ended, self.filled_in_full):
                gone = [c for c, recovered in kept.items() if recovered.child.symbol == symbol]
                for child_id in gone:
                    del kept[child_id]
                children += len(gone)
            last_price.pop(symbol, None)
            changes.append(
                GridChange(
                    symbol,
                    (tick, str(instrument.tick_size)),
                    (lot, str(instrument.lot_size)),
                    len(final),
                    children,
                )
            )
        self.ledger.load(lps, clients, last_price)
        return changes

    def _forget_day(self) -> None:
        """A day ended: its final orders were forgotten then (their
        ClOrdIDs may be used again), all but the DAY orders its end
        expired, whose states come last, just before."""
        orders = self.orders
        expired = set()
        for order in reversed(orders.values()):
            if order.status is not OrdStatus.EXPIRED or order.tif is not TimeInForce.DAY:
                break
            expired.add(order.order_id)
        self.orders = {
            order_id: order
            for order_id, order in orders.items()
            if not order.is_final or order_id in expired
        }
        # the matcher kept those the day end expired, and no other
        self._finished = Retained()
        self._kept = {}
        for order in [o for o in self.orders.values() if o.is_final]:
            for gone in keep_shared(self._finished, self._kept, order, self.keep_finished):
                del self.orders[gone.order_id]

    def finished(self) -> list[Order]:
        """The final orders kept, each as read last, in the order the
        matcher keeps them (that :meth:`~matcher.engine.Matcher.restore`
        takes): as they ended, a quiet client's kept past the bound moved
        to the newest end."""
        orders = self.orders
        return [orders[o.order_id] for o in self._finished if o.order_id in orders]

    def _ended(self, child_id: str, child: RecoveredChild, filled_in_full: bool) -> None:
        where = self.filled_in_full if filled_in_full else self.ended
        where.pop(child_id, None)
        where[child_id] = child
        if len(where) > 2 * self.keep_ended:
            kept = dict(list(where.items())[-self.keep_ended :])
            if filled_in_full:
                self.filled_in_full = kept
            else:
                self.ended = kept

    def _fill(self, fill: Filled) -> None:
        # the house's booking of an LP's bust or correction of a fill,
        # which restates it: no fill of the child
        restated = bool(fill.busts or fill.corrects)
        child = self.children.get(fill.child_id)
        if child is None:
            ended = self.ended.get(fill.child_id) or self.filled_in_full.get(fill.child_id)
            if ended is not None:
                key = (fill.exec_id, fill.account)
                if key in ended.booked:
                    # booked once by the order path: a damaged journal
                    self.duplicate_fills += 1
                    return
                ended.booked.add(key)
                # a fill its LP reported after the end, booked to the house
                # (its state, written after it by a checkpoint in slices, may
                # count it already); not a booking of a bust or correction
                if fill.exec_id not in ended.exec_ids and not restated:
                    ended.exec_ids.add(fill.exec_id)
                    ended.open -= fill.qty
        else:
            key = (fill.exec_id, fill.account)
            if key in child.booked:
                # the order path books an ExecID once; a repeat here would
                # mean a damaged journal, and is not booked again either
                self.duplicate_fills += 1
                return
            child.booked.add(key)
            # a child whose state was written after this fill (a checkpoint
            # written in slices) already counts it in its open lots
            counted = fill.exec_id in child.counted
            if not restated:
                child.exec_ids.add(fill.exec_id)
            if not child.abandoned and fill.account != HOUSE and not counted:
                child.open -= fill.qty
        self.fills += 1
        self.ledger.apply_fill(
            fill.lp, fill.account, fill.symbol, fill.side, fill.qty, fill.price, not restated
        )
