"""The FIX 4.4 LP adapter: the gateway as a FIX initiator to an LP's acceptor.

It drives the project's own FIX session layer (``gateway.fix``: codec,
session, store; ``gateway.net.transport`` for the asyncio edge) in the initiator
role, so an LP session has everything a client session has: logon with
CompIDs and password, heartbeats and TestRequest, gap fill and resend,
sequence numbers and sent messages persisted under ``data_dir``.

On logon it subscribes to market data for each of its symbols (one
MarketDataRequest per symbol, snapshot plus incremental updates); each snapshot (W) or incremental
refresh (X) becomes a :class:`~router.model.Quote` of the LP's book (one
the LP resends with PossDupFlag=Y is applied to the book but makes no
quote: see :meth:`FixLp._on_market_data`).  Child
orders go out as NewOrderSingle (IOC, limit at the child's price), cancels
as OrderCancelRequest; ExecutionReports come back as ``ChildAck`` (New),
``ChildFill`` (Trade), ``ChildReject`` (Rejected) and ``ChildCanceled``
(Canceled, Expired, Done for day: the lots still open).

When the link drops, the adapter reports ``LpStatus(up=False)`` and ends
every open child with ``ChildCanceled(reason="lp disconnected")`` as the
adapter contract requires, so the router re-routes or finishes the orders.
It then reconnects with exponential backoff (``reconnect_min_ms`` doubling
up to ``reconnect_max_ms``) and reports ``LpStatus(up=True)`` after the next
logon; the session's sequence numbers continue from the store.  A fill the
LP made before it saw the drop and reports once the link is back is passed
on, and the router books it as a late fill; after the logon each child the
drop ended is also asked about with an OrderStatusRequest, and one the LP
still works is canceled.  A fill the LP reports for a child it had
canceled, rejected or filled in full is passed on too, once per ExecID
(the latest 10,000 canceled or rejected, and apart the latest 10,000
filled in full, are watched), and booked to the house; it is logged
``lp_fill_after_end``, or ``lp_fill_beyond_child`` for a child filled in
full.

Settings (``[lps.settings]``): ``host``, ``port``, ``sender_comp_id`` (ours),
``target_comp_id`` (the LP's), ``username``, ``password``,
``heartbeat_interval`` (s), ``data_dir`` (session store; default
``lp-sessions`` under the gateway's data directory), ``fsync`` (bool), ``market_depth``,
``symbols`` (default: every instrument), ``reconnect_min_ms``,
``reconnect_max_ms``, ``connect_timeout_ms`` (how long ``connect`` waits for
the first logon before returning with the LP down), ``max_outbound_buffer``
(bytes queued to an LP that does not read before the link is dropped, as
for a client: its open children are then canceled and it reconnects).

After a gateway restart, :meth:`FixLp.recover` makes the children left open
known again, so that the reports the LP resends for the sequence gap are
understood, and asks the LP about each with an OrderStatusRequest (35=H)
once logged on: one still working is canceled, one ended (or unknown to the
LP) is over for what the gateway had not seen filled.  A child the gateway
gave up on (the drop of the link) is among them until the LP's answer
after a restart settles it, or its trading day is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Final

import structlog

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.events import ApplicationMessage, Event, LoggedOn, LoggedOut, RejectReceived
from gateway.fix.session import Session
from gateway.fix.states import SessionState
from gateway.net.transport import Connection, FixTransportProtocol, Outbox
from gateway.storage.session_store import open_store
from lp_adapters.base import (
    DISCONNECTED_REASON,
    UNKNOWN_AFTER_RESTART_REASON,
    EventSink,
    LpAdapter,
)
from lp_adapters.fix.settings import FixLpSettings
from lp_adapters.recent import Recent, SeqWindow, joined_ids
from router.members import BUY
from router.model import (
    EXEC_ID_SEP,
    ChildAck,
    ChildBust,
    ChildCanceled,
    ChildCorrection,
    ChildFill,
    ChildOrder,
    ChildReject,
    EndedChild,
    Instrument,
    Level,
    LpStatus,
    Quote,
    RecoveredOrder,
)
from router.units import price_bytes, qty_bytes, remembered

_log = structlog.get_logger("lp_adapters.fix.adapter")

_BID: Final = b"0"
_OFFER: Final = b"1"

# children ended by a drop and still watched for a late report
_MAX_DROPPED: Final = 10_000
# children the LP canceled, rejected or filled in full, watched for a fill
# it should not report any more (the latest ones)
_MAX_ENDED: Final = 10_000
# fills whose lots and price are kept for a Trade Cancel that may name one
_MAX_FILLS_KEPT: Final = 100_000
_SEQS_KEPT: Final = 10_000
"""How far back (in MsgSeqNums) a NewOrderSingle's number is kept to read a
session-level Reject by."""

# OrdStatus of an order the LP is still working: New, Partially filled,
# Pending cancel, Pending new, Pending replace
_WORKING = frozenset((b"0", b"1", b"6", b"A", b"E"))


class _Open:
    """A child order at the LP."""

    __slots__ = ("asked", "child", "exec_ids", "filled")

    def __init__(self, child: ChildOrder) -> None:
        self.child = child
        self.filled = 0
        # the ExecIDs of the fills counted in ``filled`` (made at the first)
        self.exec_ids: set[str] | None = None
        # whether its status was asked for after a cancel the LP refused
        self.asked = False


class _Protocol(FixTransportProtocol):
    def __init__(self, adapter: FixLp) -> None:
        super().__init__(adapter.clock, adapter.cfg.max_outbound_buffer, adapter.outbox)
        self._adapter = adapter

    def _open(self, now: float) -> Connection:
        session = self._adapter.session
        self._outbox.bind(session, self)
        session.connection_made(now)
        return session

    def _dispatch(self, event: Event, now: float) -> None:
        self._adapter._on_session_event(event, now)

    def _closed(self, now: float) -> None:
        self._adapter._on_connection_closed()


# LPs report the same quantities and prices over and over: their lots and
# ticks are remembered (router.units.remembered).
_LOTS: dict[tuple[bytes, str], tuple[Instrument, int]] = {}
_TICKS: dict[tuple[bytes, str], tuple[Instrument, int]] = {}


def _lots(raw: bytes, instrument: Instrument) -> int:
    """LastQty (32) in lots; raises for text that is not a number on the grid."""
    return instrument.qty_to_lots(Decimal(raw.decode()))


def _ticks(raw: bytes, instrument: Instrument) -> int:
    """LastPx (31) in ticks; raises for text that is not a number on the grid."""
    return instrument.price_to_ticks(Decimal(raw.decode()))


_BUSTS: Final = frozenset({b"H", b"G"})
"""ExecTypes of a Trade Cancel and a Trade Correct."""

_ENDED: Final = frozenset((b"4", b"C", b"3"))
"""OrdStatus (39) of an order that is done with a part unfilled: canceled,
expired, done for the day."""
_OVER: Final = _ENDED | {b"2", b"8"}
"""OrdStatus (39) of an order over at the LP: filled, canceled, rejected,
expired, done for the day (stopped or suspended, it may still fill)."""
# why a Trade Cancel or Correct is not applied again: it was before; or (a
# cancel) the whole fill was
_BUST_APPLIED: Final = "its ExecID was applied already"
_FILL_REVERSED: Final = "the fill it names was reversed already"


def _restated_lots(msg: FixMessage, instrument: Instrument, most: int, of: str) -> int | str:
    """The LastQty of a Trade Cancel or Correct in lots, 1 to ``most``
    (``of``: what those are), or why it is not."""
    try:
        lots = remembered(_LOTS, msg.get(32) or b"0", instrument, _lots)
    except (InvalidOperation, ValueError, ArithmeticError):
        return "its LastQty is not a whole number of lots"
    if not 0 < lots <= most:
        return f"its LastQty is not 1 to {most} lots" + (f", {of}" if of else "")
    return lots


def _take(book: dict[tuple[bytes, int], int], key: tuple[bytes, int], lots: int) -> None:
    """The ``lots`` an entry added at the level ``key`` of ``book``, taken off."""
    left = book.get(key, 0) - lots
    if left > 0:
        book[key] = left
    else:
        book.pop(key, None)


def _ticks_towards_client(raw: bytes, instrument: Instrument, buying: bool) -> int | None:
    """A price between two ticks as the tick on the client's side of it (the
    lower for a buy, the higher for a sell); None if it is not a price."""
    try:
        price = Decimal(raw.decode("latin-1"))
        if not price.is_finite():
            return None
        ticks = price / instrument.tick_size
        whole = int(ticks.to_integral_value(ROUND_FLOOR if buying else ROUND_CEILING))
    except (InvalidOperation, ValueError, ArithmeticError):
        return None
    return whole if abs(whole) <= instrument.max_ticks() else None


class FixLp(LpAdapter):
    """A liquidity provider reached over FIX 4.4 (see the module docstring)."""

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: FixLpSettings,
    ) -> None:
        super().__init__(name, instruments, sink, settings)
        cfg = settings
        symbols = cfg.symbols if cfg.symbols is not None else tuple(self.instruments)
        self.cfg = cfg
        self.symbols = symbols
        self.session_settings = SessionSettings(
            SenderCompID=cfg.sender_comp_id,
            TargetCompID=cfg.target_comp_id,
            HeartBtInt=cfg.heartbeat_interval,
            Username=cfg.username or None,
            Password=cfg.password or None,
            # LPs add tags of their own (5000 and up) to their reports: a
            # Reject of such a report would leave its fill unbooked
            ValidateUserDefinedFields=False,
            Application="orders",
        )
        self._session: Session | None = None
        self._outbox: Outbox | None = None
        self._up = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._protocol: _Protocol | None = None
        self._closed: asyncio.Event | None = None
        self._logged_on: asyncio.Event | None = None
        self._open: dict[str, _Open] = {}
        # MsgSeqNum of each NewOrderSingle sent -> its child, the latest ones
        self._child_of_seq: SeqWindow[str] = SeqWindow(_SEQS_KEPT)
        # children ended by a drop of the link: the LP may still report a
        # fill it made before it saw the drop (the gateway books it late)
        self._dropped: dict[str, _Open] = {}
        # children the LP canceled, rejected or filled in full: a fill it
        # reports for one all the same is passed on (the gateway books it to
        # the house)
        self._ended: Recent[str, EndedChild] = Recent(_MAX_ENDED)
        # those it filled in full, apart: they do not push the others out
        self._filled: Recent[str, EndedChild] = Recent(_MAX_ENDED)
        # the ExecIDs of the Trade Cancels and Corrects passed on, the latest
        self._busts: Recent[str, bool] = Recent(_MAX_ENDED)
        # child and ExecID of each fill booked in this run (and of each
        # Trade Correct passed on, for the fill it books) -> its lots not
        # reversed by a Trade Cancel or Correct, and the price it was booked at
        self._fill_lots: Recent[str, tuple[int, int]] = Recent(_MAX_FILLS_KEPT)
        # child and ExecID of each fill corrected in this run -> the
        # correction's ExecID (a later one names that)
        self._corrected: Recent[str, str] = Recent(_MAX_FILLS_KEPT)
        # children from before a restart or a drop, to ask the LP about once up
        self._unverified: set[str] = set()
        self._cancel_seq = 0
        self._md_seq = 0
        self._logged_on_here = False
        # per symbol: {(entry type, price ticks): lots}
        self._books: dict[str, dict[tuple[bytes, int], int]] = {}
        # per symbol, the entries the LP gives an MDEntryID: {id: (entry
        # type, price ticks, lots)}, each counted in its level of the book
        self._entries: dict[str, dict[bytes, tuple[bytes, int, int]]] = {}

    # --- link ------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def session(self) -> Session:
        if self._session is None:
            where = self.cfg.data_dir
            store = open_store(
                "file",
                Path(where) if where is not None else self.data_dir / "lp-sessions",
                self.session_settings.session_id,
                fsync=self.cfg.fsync,
            )
            self._session = Session(self.session_settings, store, initiator=True)
        return self._session

    @property
    def outbox(self) -> Outbox:
        """Writes the LP session: the gateway's write barrier (its order
        journal) first, then the session store, then the socket."""
        if self._outbox is None:
            self._outbox = Outbox(self._write_barrier)
        return self._outbox

    def _write_barrier(self) -> None:
        if self.write_barrier is not None:
            self.write_barrier()

    def _send(self, msg_type: bytes, body: bytes, now: float) -> int:
        return self.outbox.send(self.session, msg_type, body, now)

    async def connect(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._logged_on = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"lp:{self.name}")
        try:
            async with asyncio.timeout(self.cfg.connect_timeout_ms / 1000):
                await self._logged_on.wait()
        except TimeoutError:
            _log.warning("lp_not_up_yet", lp=self.name, host=self.cfg.host, port=self.cfg.port)

    async def disconnect(self) -> None:
        self._stopping = True
        protocol = self._protocol
        closed = self._closed
        if protocol is not None and closed is not None:
            if self._up:
                protocol.logout("gateway stopping")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await closed.wait()
            if not closed.is_set():
                # no Logout answered, or none to send (the Logon itself not
                # answered): the connection is dropped, and its end seen
                # before the session's store is closed
                protocol.abort()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await closed.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._go_down("disconnected")
        if self._session is not None:
            store = self._session.store
            self._session = None
            try:
                store.close()
            except OSError as exc:
                # a full disk: what it holds was never sent (the store is
                # written before the socket), and the gateway's stop goes on
                _log.critical(
                    "lp_store_not_closed",
                    lp=self.name,
                    store=str(getattr(store, "path", "")),
                    error=exc.strerror or repr(exc),
                    hint="what was not written had not been sent to the LP; free space "
                    "and start again: the session goes on from what was written",
                )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.cfg.reconnect_min_ms / 1000
        while not self._stopping:
            self._closed = asyncio.Event()
            self._logged_on_here = False  # on this connection
            try:
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(self), self.cfg.host, self.cfg.port
                )
            except OSError as exc:
                _log.warning("lp_connect_failed", lp=self.name, error=str(exc), retry_in=delay)
            else:
                self._protocol = protocol
                await self._closed.wait()
                self._protocol = None
                if self._stop_requested():
                    return
                if self._logged_on_here:
                    # it was up: the backoff starts over
                    delay = self.cfg.reconnect_min_ms / 1000
                _log.info("lp_reconnect_in", lp=self.name, seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.reconnect_max_ms / 1000)

    def _stop_requested(self) -> bool:
        return self._stopping

    def _on_session_event(self, event: Event, now: float) -> None:
        if isinstance(event, ApplicationMessage):
            self._on_message(event.message, now)
        elif isinstance(event, RejectReceived):
            msg = event.message
            ref = msg.get(45) or b""
            child_id = self._child_of_seq.pop(int(ref)) if ref.isdigit() else None
            if child_id is not None and (msg.get(372) or b"D") == b"D":
                self._refused(child_id, "session Reject", msg.get(58))
        elif isinstance(event, LoggedOn):
            self._logged_on_here = True
            session = self._session
            if session is not None:
                # what was sent before this logon is never sent again: the
                # orders among it were ended when the link dropped, and
                # their clients told; a ResendRequest gets a gap fill
                session.resend_from = session.store.next_sender_seq
            self._subscribe(now)
            self._ask_status(now)
            self._go_up()
        elif isinstance(event, LoggedOut):
            self._go_down(DISCONNECTED_REASON)

    def _on_connection_closed(self) -> None:
        session = self._session
        if (
            not self._logged_on_here
            and session is not None
            and session.peer_logout_text is not None
        ):
            # the LP answered our Logon with a Logout: say so, and why
            text = session.peer_logout_text.decode("latin-1", "replace")[:200]
            _log.warning("lp_logon_refused", lp=self.name, text=text)
        self._go_down(DISCONNECTED_REASON)
        if self._closed is not None:
            self._closed.set()

    def _go_up(self) -> None:
        if self._up:
            return
        self._up = True
        self.sink(LpStatus(self.name, True, "logged on"))
        if self._logged_on is not None:
            self._logged_on.set()

    def _go_down(self, reason: str) -> None:
        self._books.clear()
        self._entries.clear()
        if not self._up:
            return
        self._up = False
        if self._logged_on is not None:
            self._logged_on.clear()
        self.sink(LpStatus(self.name, False, reason))
        open_children, self._open = self._open, {}
        self._child_of_seq.clear()
        dropped = self._dropped
        for child_id, entry in open_children.items():
            dropped[child_id] = entry
            self._unverified.add(child_id)
            self.sink(ChildCanceled(child_id, entry.child.qty - entry.filled, DISCONNECTED_REASON))
        while len(dropped) > _MAX_DROPPED:
            oldest = next(iter(dropped))
            _log.error("dropped_child_forgotten", lp=self.name, child_id=oldest)
            del dropped[oldest]
            self._unverified.discard(oldest)

    # --- market data -----------------------------------------------------------------

    def _subscribe(self, now: float) -> None:
        """One MarketDataRequest per symbol, so that an LP refusing one
        symbol still streams the others."""
        for symbol in self.symbols:
            self._md_seq += 1
            fields: list[tuple[int, bytes]] = [
                (262, b"%s-MD%d" % (self.name.encode(), self._md_seq)),
                (263, b"1"),
                (264, b"%d" % self.cfg.market_depth),
                (265, b"1"),
                (267, b"2"),
                (269, _BID),
                (269, _OFFER),
                (146, b"1"),
                (55, symbol.encode()),
            ]
            self._send(b"V", codec.encode_fields(fields), now)

    def _on_market_data(self, msg: FixMessage, now: float, full: bool) -> None:
        """Apply a snapshot (W) or an incremental refresh (X) to the LP's
        books and publish each book it changed.  One the LP resends
        (PossDupFlag=Y, in answer to a ResendRequest) is as old as its
        OrigSendingTime: it is applied, so that the refreshes after it
        build on it, but nothing is published from it (the gateway's book
        takes the LP's levels from fresh data only, stamped as it arrives),
        and an incremental entry of it for a symbol with no book (cleared
        when the link dropped) is skipped: what it changed is not here."""
        resent = msg.get(43) == b"Y"
        symbol = (msg.get(55) or b"").decode("latin-1")
        touched: set[str] = set()
        if full:
            self._books[symbol] = {}
            self._entries.pop(symbol, None)
            touched.add(symbol)
        # group entries start with MDUpdateAction (X) or MDEntryType (W)
        first = 279 if full is False else 269
        entries: list[dict[int, bytes]] = []
        for tag, value in msg.fields:
            if tag == first:
                entries.append({})
            if entries and tag in (279, 269, 278, 270, 271, 55):
                entries[-1][tag] = value
        for e in entries:
            sym = (e.get(55) or msg.get(55) or b"").decode("latin-1")
            instrument = self.instruments.get(sym)
            if instrument is None:
                continue
            action = e.get(279)
            entry_id = e.get(278)
            # an entry the LP names by its MDEntryID: a change or a delete
            # need not say its side, price or size again
            ids = self._entries.get(sym)
            named = ids.get(entry_id) if ids is not None and entry_id is not None else None
            side = e.get(269) or (named[0] if named is not None else None)
            raw = e.get(270)
            if side not in (_BID, _OFFER) or (raw is None and named is None):
                if entry_id is not None and action in (b"1", b"2"):
                    _log.warning(
                        "lp_market_data_unknown_entry",
                        lp=self.name,
                        symbol=sym,
                        md_entry_id=entry_id.decode("latin-1")[:64],
                    )
                continue
            try:
                if raw is None and named is not None:
                    price = named[1]
                else:
                    price = instrument.price_to_ticks(Decimal((raw or b"").decode()))
                size = e.get(271)
                if size is None and named is not None and action == b"1":
                    lots = named[2]
                else:
                    lots = int(Decimal((size or b"0").decode()) // instrument.lot_size)
            except (InvalidOperation, ValueError, ArithmeticError):
                _log.warning("lp_market_data_unreadable", lp=self.name, symbol=sym)
                continue
            if price <= 0:
                # no price the gateway can trade at (nor a client order name)
                _log.warning(
                    "lp_price_not_positive",
                    lp=self.name,
                    symbol=sym,
                    price=(raw or b"").decode("latin-1"),
                )
                continue
            book = self._books.get(sym)
            if book is None:
                if resent:
                    continue
                book = self._books[sym] = {}
            touched.add(sym)
            if entry_id is not None and (named is not None or action != b"2"):
                # entries kept by MDEntryID: a level holds what they add up to
                if ids is None:
                    ids = self._entries[sym] = {}
                if named is not None:
                    del ids[entry_id]
                    _take(book, (named[0], named[1]), named[2])
                if action != b"2":
                    # kept if it fills no lot too: it is still the LP's entry
                    ids[entry_id] = (side, price, max(lots, 0))
                    if lots > 0:
                        key = (side, price)
                        book[key] = book.get(key, 0) + lots
                continue
            key = (side, price)
            if action == b"2" or lots <= 0:
                book.pop(key, None)
            else:
                book[key] = lots
        if resent:
            return
        for sym in touched:
            self._publish(sym, now)

    def _publish(self, symbol: str, now: float) -> None:
        book = self._books.get(symbol, {})
        depth = self.cfg.market_depth
        bids = sorted(((p, q) for (s, p), q in book.items() if s == _BID), reverse=True)[:depth]
        asks = sorted((p, q) for (s, p), q in book.items() if s == _OFFER)[:depth]
        self.sink(
            Quote(
                self.name,
                symbol,
                tuple(Level(p, q) for p, q in bids),
                tuple(Level(p, q) for p, q in asks),
                now,
            )
        )

    # --- orders ----------------------------------------------------------------------

    def send(self, child: ChildOrder) -> None:
        if child.child_id in self._open:
            raise ValueError(f"child {child.child_id} is already open at {self.name}")
        if not self._up or self._logging_out():
            why = "is logging out" if self._up else "is not connected"
            asyncio.get_running_loop().call_soon(
                self.sink, ChildReject(child.child_id, f"{self.name} {why}")
            )
            return
        instrument = self.instruments[child.symbol]
        now = self.clock()
        fields: list[tuple[int, bytes]] = [
            (11, child.child_id.encode()),
            (38, qty_bytes(instrument, child.qty)),
            (40, b"2"),
            (44, price_bytes(instrument, child.price)),
        ]
        fields += [
            (54, b"1" if child.side is BUY else b"2"),
            (55, child.symbol.encode()),
            (59, b"3"),
            (60, codec.format_utc_timestamp(now)),
        ]
        self._open[child.child_id] = _Open(child)
        seq = self._send(b"D", codec.encode_fields(fields), now)
        # a session-level Reject names the order by this MsgSeqNum only
        self._child_of_seq.put(seq, child.child_id)

    def recover(self, children: Sequence[RecoveredOrder]) -> None:
        """Children from before a restart: known again (so that what the LP
        resends about them after the next logon is understood, a fill
        counted before once), and each one asked about with an
        OrderStatusRequest once logged on."""
        for child, open_lots, exec_ids in children:
            entry = _Open(child)
            entry.filled = child.qty - open_lots
            entry.exec_ids = set(exec_ids) if exec_ids else None
            self._open[child.child_id] = entry
            self._unverified.add(child.child_id)

    def recover_ended(self, ended: Sequence[tuple[EndedChild, bool]]) -> None:
        """Children ended before a restart: a Trade report for one is passed
        on (once per ExecID), as before the restart."""
        for record, in_full in ended:
            (self._filled if in_full else self._ended).put(record.order.child_id, record)

    def _ask_status(self, now: float) -> None:
        """OrderStatusRequest for each child recovered after a restart or
        ended by a drop, and not yet settled.  Its answer comes after what
        the LP resends for the gap, so a child the LP ended meanwhile is
        settled by then."""
        for child_id in sorted(self._unverified):
            entry = self._open.get(child_id) or self._dropped.get(child_id)
            if entry is None:
                continue
            self._ask_status_of(entry.child, now)
        self._unverified.clear()

    def _ask_status_of(self, child: ChildOrder, now: float) -> None:
        """An OrderStatusRequest for ``child``: its answer is an
        ExecutionReport with ExecType I (:meth:`_on_status`)."""
        fields = [
            (11, child.child_id.encode()),
            (54, b"1" if child.side is BUY else b"2"),
            (55, child.symbol.encode()),
        ]
        self._send(b"H", codec.encode_fields(fields), now)

    def cancel(self, child_id: str) -> None:
        entry = self._open.get(child_id) or self._dropped.get(child_id)
        if entry is None or not self._up:
            return
        child = entry.child
        instrument = self.instruments[child.symbol]
        self._cancel_seq += 1
        now = self.clock()
        fields = [
            (11, b"%s-C%d" % (child_id.encode(), self._cancel_seq)),
            (38, qty_bytes(instrument, child.qty)),
            (41, child_id.encode()),
            (54, b"1" if child.side is BUY else b"2"),
            (55, child.symbol.encode()),
            (60, codec.format_utc_timestamp(now)),
        ]
        self._send(b"F", codec.encode_fields(fields), now)

    def _on_cancel_reject(self, msg: FixMessage, now: float) -> None:
        """An OrderCancelReject.  One saying the child is over at the LP
        (OrdStatus filled, canceled, rejected, expired, done for the day)
        or unknown to it (CxlRejReason 1) while it is open here means a
        report that ended it never came: its status is asked for, once, and
        the answer ends it (:meth:`_on_status`), rather than the child
        waiting for the router to give it up and staying open here."""
        child_id = (msg.get(41) or b"").decode("latin-1")
        status = msg.get(39)
        _log.info(
            "lp_cancel_rejected",
            lp=self.name,
            child_id=child_id,
            status=(status or b"").decode("latin-1"),
            reason=(msg.get(58) or b"").decode("latin-1"),
        )
        entry = self._open.get(child_id)
        if entry is None or entry.asked:
            return
        if msg.get(102) != b"1" and status not in _OVER:
            return
        entry.asked = True
        self._ask_status_of(entry.child, now)

    def _on_message(self, msg: FixMessage, now: float) -> None:
        mt = msg.msg_type
        if mt == b"8":
            self._on_execution(msg)
        elif mt == b"X":
            self._on_market_data(msg, now, full=False)
        elif mt == b"W":
            self._on_market_data(msg, now, full=True)
        elif mt == b"j":
            self._on_business_reject(msg)
        elif mt == b"9":
            self._on_cancel_reject(msg, now)
        elif mt == b"Y":
            _log.error(
                "lp_market_data_rejected",
                lp=self.name,
                md_req_id=(msg.get(262) or b"").decode("latin-1"),
                reason=(msg.get(58) or b"").decode("latin-1"),
            )

    def _on_business_reject(self, msg: FixMessage) -> None:
        """A BusinessMessageReject.  One of a NewOrderSingle names it by its
        ClOrdID (379) or, written by the LP's FIX engine rather than its
        application, by its MsgSeqNum (45) alone: that child ends at once.
        Any other (a MarketDataRequest, cancel or status request refused,
        or an order no longer open) is named."""
        ref_type = msg.get(372) or b""
        ref_id = (msg.get(379) or b"").decode("latin-1")
        ref_seq = msg.get(45) or b""
        if ref_type == b"D":
            by_seq = self._child_of_seq.pop(int(ref_seq)) if ref_seq.isdigit() else None
            child_id = ref_id or by_seq
            if child_id is not None and child_id in self._open:
                self._refused(child_id, "BusinessMessageReject", msg.get(58))
                return
        _log.error(
            "lp_business_reject",
            lp=self.name,
            ref_msg_type=ref_type.decode("latin-1")[:8],
            ref_id=ref_id[:64],
            ref_seq_num=ref_seq.decode("latin-1")[:20],
            reason=(msg.get(380) or b"").decode("latin-1")[:8],
            text=(msg.get(58) or b"").decode("latin-1")[:200],
        )

    def _refused(self, child_id: str, how: str, text: bytes | None) -> None:
        """The LP refused the NewOrderSingle of ``child_id`` outright (no
        ExecutionReport will come): it ends now, not at its timeout."""
        entry = self._open.pop(child_id, None)
        if entry is None:
            return
        self._watch_ended(child_id, entry)  # a fill for it all the same is passed on
        reason = f"{how} by {self.name}: {(text or b'').decode('latin-1')}".rstrip(": ")
        _log.warning("lp_child_refused", lp=self.name, child_id=child_id, reason=reason)
        if entry.filled:
            # it cannot have been worked; should it have been, the rest ends
            self.sink(ChildCanceled(child_id, entry.child.qty - entry.filled, reason))
        else:
            self.sink(ChildReject(child_id, reason))

    def _on_execution(self, msg: FixMessage) -> None:
        exec_type = msg.get(150)
        if exec_type in _BUSTS:
            self._on_bust(msg)
            return
        cl_ord_id = (msg.get(11) or b"").decode("latin-1")
        child_id = cl_ord_id
        if child_id not in self._open:
            child_id = (msg.get(41) or b"").decode("latin-1")
        entry = self._open.get(child_id)
        if entry is None:
            dropped = self._dropped.get(cl_ord_id) or self._dropped.get(child_id)
            if dropped is not None:
                self._on_dropped_report(dropped, msg)
                return
            for where in (self._ended, self._filled):
                ended_id = cl_ord_id if cl_ord_id in where else child_id
                ended = where.get(ended_id)
                if ended is not None:
                    if exec_type == b"F":
                        self._on_fill_after_end(ended_id, ended, where, msg)
                    return
            if exec_type == b"I":
                # a status asked for about a child the LP's resent reports
                # had settled already
                return
            _log.warning(
                "lp_report_for_unknown_child",
                lp=self.name,
                cl_ord_id=cl_ord_id,
                exec_type=exec_type,
            )
            return
        child = entry.child
        text = (msg.get(58) or b"").decode("latin-1")
        if exec_type == b"0":
            self.sink(ChildAck(child_id, (msg.get(37) or b"").decode("latin-1")))
        elif exec_type == b"F":
            fill = self._fill(entry, msg)
            if fill is not None:
                if fill.leaves == 0:
                    self._end(child_id, entry)
                self.sink(fill)
            status = self._status(msg, child)
            if (status in _ENDED or status == b"2") and child_id in self._open:
                # the fill that ends the order, the rest canceled in the
                # same report (an IOC partly filled, as some LPs send it):
                # no cancel of its own follows; or the LP says the order is
                # filled (by its OrdStatus, or its CumQty) while the lots
                # booked of it fall short (a LastQty off the lot grid, or
                # none): nothing more will come either
                self._end(child_id, entry)
                left = child.qty - entry.filled
                if status == b"2" or self._more_filled(msg, entry):
                    self._filled_beyond(child_id, msg, entry.filled)
                if status == b"2":
                    reason = text or "filled at the LP past the lots booked"
                else:
                    reason = text or "rest canceled by LP"
                self.sink(ChildCanceled(child_id, left, reason))
        elif exec_type == b"8":
            self._end(child_id, entry)
            self.sink(ChildReject(child_id, text or "rejected by LP"))
        elif exec_type in (b"4", b"C", b"3"):
            self._end(child_id, entry)
            left = child.qty - entry.filled
            if self._more_filled(msg, entry):
                self._filled_beyond(child_id, msg, entry.filled)
            self.sink(ChildCanceled(child_id, left, text or "canceled by LP"))
        elif exec_type == b"I":
            self._on_status(entry, msg, text)

    def _on_bust(self, msg: FixMessage) -> None:
        """A Trade Cancel (ExecType H) or Trade Correct (G) of a fill already
        booked, named as an error with what the desk needs: the LP, the
        order, the ExecID it busts or corrects (19), and its terms.

        One of a fill this adapter passed on in this run (or of a
        correction's booking) is passed on, a cancel as a
        :class:`ChildBust` (see :meth:`_bust`), a correction as a
        :class:`ChildCorrection` (see :meth:`_correct`): the gateway books
        the reversal, and the corrected fill, at the LP to the house (the
        client was told of the fill and keeps it; what to do with its side
        is the desk's).  One refused is not applied: the fill stands until
        the desk acts.  One applied before and sent again is a warning."""
        exec_type = msg.get(150)

        def text(tag: int) -> str:
            return (msg.get(tag) or b"").decode("latin-1")[:64]

        cancel = exec_type == b"H"
        why = self._bust(msg) if cancel else self._correct(msg)
        repeat = why == _BUST_APPLIED or (cancel and why == _FILL_REVERSED)
        if not why:
            books = "the reversal" if cancel else "the reversal and the corrected fill"
            kind = "bust" if cancel else "correction"
            hint = (
                f"passed on: the gateway books {books} at the LP to the house "
                f"(lp_trade_{kind}_booked) or says why not (lp_trade_{kind}_refused); "
                "the client's fill stands"
            )
        elif repeat:
            hint = f"not applied again ({why}): nothing more to do"
        else:
            hint = (
                f"not applied ({why}): the fill stands in the gateway's books until the desk acts"
            )
        (_log.warning if repeat else _log.error)(
            "lp_trade_bust" if cancel else "lp_trade_correction",
            lp=self.name,
            cl_ord_id=text(11),
            exec_id=text(17),
            exec_ref_id=text(19),
            last_qty=text(32),
            last_px=text(31),
            text=text(58),
            applied=not why,
            hint=hint,
        )

    def _standing(self, msg: FixMessage) -> tuple[ChildOrder, Instrument, str, str, int, int] | str:
        """What a Trade Cancel or Correct names: its child, the child's
        instrument, its own ExecID and its ExecRefID, and the lots of the
        fill (or of a correction's booking) it names not reversed yet with
        the price they were booked at; or why it cannot be applied.  Only
        bookings of this run are known here (one from before a restart is
        named, not applied), and an ExecID is applied once, never one of a
        fill's."""
        exec_id = (msg.get(17) or b"").decode("latin-1")
        if not exec_id:
            return "no ExecID"
        if exec_id in self._busts:
            return _BUST_APPLIED
        ref = (msg.get(19) or b"").decode("latin-1")
        found = self._booked(msg)
        if found is None:
            return "it names no child order of this LP's known here"
        child, counted = found
        key = f"{child.child_id}{EXEC_ID_SEP}{ref}"
        booked = self._fill_lots.get(key)
        if booked is None and not counted(ref):
            return "its ExecRefID names no fill booked for the order (nor a correction of one)"
        if counted(exec_id) or f"{child.child_id}{EXEC_ID_SEP}{exec_id}" in self._fill_lots:
            return "its ExecID is that of a fill booked"
        if booked is None:
            return "the fill it names was booked before a restart, or too long ago"
        left, price = booked
        if not left:
            by = self._corrected.get(key)
            if by is not None:
                return f"the fill it names was corrected already, by ExecID {by[:64]}"
            return _FILL_REVERSED
        instrument = self.instruments.get(child.symbol)
        if instrument is None:
            return f"{child.symbol} is no longer configured"
        return child, instrument, exec_id, ref, left, price

    def _bust(self, msg: FixMessage) -> str:
        """Pass a Trade Cancel on as a :class:`ChildBust`; "" when it is, or
        why it is not.  It reverses at most the lots of the fill it names
        not reversed yet, at the price that fill was booked at, so that the
        two bookings net to nothing."""
        standing = self._standing(msg)
        if isinstance(standing, str):
            return standing
        child, instrument, exec_id, ref, left, price = standing
        lots = _restated_lots(msg, instrument, left, "the fill's not reversed yet")
        if isinstance(lots, str):
            return lots
        self._busts.put(exec_id, True)
        self._fill_lots.put(f"{child.child_id}{EXEC_ID_SEP}{ref}", (left - lots, price))
        self.sink(
            ChildBust(
                child.child_id, exec_id, ref, self.name, child.symbol, child.side, lots, price
            )
        )
        return ""

    def _correct(self, msg: FixMessage) -> str:
        """Pass a Trade Correct on as a :class:`ChildCorrection`; "" when it
        is, or why it is not.  The lots of the fill it names not reversed
        yet are reversed at the price they were booked at, and its LastQty
        (whole lots, 1 to the instrument's largest order) at its LastPx (on
        the grid, positive, within the child's limit: the checks a fill's
        price passes, but a price that fails them is refused, not booked at
        the limit) is the fill as it now stands, known by the correction's
        ExecID: a later cancel or correction of it names that."""
        standing = self._standing(msg)
        if isinstance(standing, str):
            return standing
        child, instrument, exec_id, ref, left, price = standing
        lots = _restated_lots(msg, instrument, instrument.max_lots, "")
        if isinstance(lots, str):
            return lots
        raw = msg.get(31)
        if raw is None:
            return "no LastPx"
        try:
            ticks = remembered(_TICKS, raw, instrument, _ticks)
        except (InvalidOperation, ValueError, ArithmeticError):
            return "its LastPx is not a price on the instrument's grid"
        if ticks <= 0:
            return "its LastPx is not positive"
        if ticks > child.price if child.side is BUY else ticks < child.price:
            return "its LastPx is past the child's limit"
        key = f"{child.child_id}{EXEC_ID_SEP}{ref}"
        self._busts.put(exec_id, True)
        self._fill_lots.put(key, (0, price))
        self._corrected.put(key, exec_id)
        self._fill_lots.put(f"{child.child_id}{EXEC_ID_SEP}{exec_id}", (lots, ticks))
        self.sink(
            ChildCorrection(
                child.child_id,
                exec_id,
                ref,
                self.name,
                child.symbol,
                child.side,
                left,
                price,
                lots,
                ticks,
            )
        )
        return ""

    def _booked(self, msg: FixMessage) -> tuple[ChildOrder, Callable[[str], bool]] | None:
        """The child a Trade Cancel or Correct is about (its ClOrdID, or OrigClOrdID)
        and whether an ExecID is of a fill counted for it here."""
        for tag in (11, 41):
            child_id = (msg.get(tag) or b"").decode("latin-1")
            entry = self._open.get(child_id) or self._dropped.get(child_id)
            if entry is not None:
                return entry.child, (entry.exec_ids or set()).__contains__
            for where in (self._filled, self._ended):
                ended = where.get(child_id)
                if ended is not None:
                    return ended.order, ended.counted
        return None

    def _end(self, child_id: str, entry: _Open) -> None:
        """The LP canceled, rejected or filled the child in full: it is open
        no more, and watched for a fill the LP should not report any more."""
        del self._open[child_id]
        self._watch_ended(child_id, entry)

    def _watch_ended(
        self, child_id: str, entry: _Open, into: Recent[str, EndedChild] | None = None
    ) -> None:
        # the latest _MAX_ENDED of each kind, as objects the collector does
        # not track (``into``: where it is kept already)
        if into is None:
            into = self._filled if entry.filled >= entry.child.qty else self._ended
        into.put(child_id, EndedChild(entry.child, entry.filled, joined_ids(entry.exec_ids)))

    def _on_fill_after_end(
        self, child_id: str, ended: EndedChild, where: Recent[str, EndedChild], msg: FixMessage
    ) -> None:
        """A Trade report for a child the LP canceled, rejected or filled in
        full already: the LP broke its word (or executed more than it was
        asked), but the fill is its, and passed on (once)."""
        child = ended.order
        entry = _Open(child)
        entry.filled = ended.filled
        entry.exec_ids = set(ended.exec_ids.split(EXEC_ID_SEP)) if ended.exec_ids else None
        complete = ended.filled >= child.qty
        fill = self._fill(entry, msg)
        if fill is None:
            return
        self._watch_ended(child_id, entry, where)  # with this fill counted
        _log.error(
            "lp_fill_beyond_child" if complete else "lp_fill_after_end",
            lp=self.name,
            child_id=fill.child_id,
            exec_id=fill.exec_id,
            qty=fill.qty,
        )
        self.sink(fill)

    def _fill(self, entry: _Open, msg: FixMessage) -> ChildFill | None:
        """The ChildFill a Trade report carries (None if it is unreadable, or
        repeats the ExecID of a fill already counted)."""
        child = entry.child
        exec_id = (msg.get(17) or b"").decode("latin-1")
        seen = entry.exec_ids
        if seen is not None and exec_id in seen:
            _log.warning("lp_duplicate_fill_ignored", lp=self.name, exec_id=exec_id)
            return None
        if exec_id in self._busts:
            # an ExecID names one execution: booked, it would count twice
            _log.error(
                "lp_fill_exec_id_of_a_restatement",
                lp=self.name,
                child_id=child.child_id,
                exec_id=exec_id,
                hint="not booked: its ExecID is that of a Trade Cancel or Correct applied; "
                "ask the LP what it is",
            )
            return None
        instrument = self.instruments[child.symbol]
        raw_qty = msg.get(32) or b"0"
        try:
            lots = remembered(_LOTS, raw_qty, instrument, _lots)
        except (InvalidOperation, ValueError, ArithmeticError):
            lots = self._lots_off_grid(child, instrument, raw_qty, exec_id)
        else:
            if lots <= 0:
                self._unreadable(child, exec_id, raw_qty)
        if lots <= 0:
            return None
        price = self._fill_price(child, instrument, msg.get(31), exec_id)
        entry.filled += lots
        if seen is None:
            entry.exec_ids = {exec_id}
        else:
            seen.add(exec_id)
        leaves = max(child.qty - entry.filled, 0)
        self._fill_lots.put(f"{child.child_id}{EXEC_ID_SEP}{exec_id}", (lots, price))
        return ChildFill(child.child_id, exec_id, lots, price, leaves)

    def _unreadable(self, child: ChildOrder, exec_id: str, raw_qty: bytes) -> None:
        """A Trade report of no quantity, or of one far past its child's and
        off the lot grid: nothing booked, said for the desk."""
        _log.error(
            "lp_fill_unreadable",
            lp=self.name,
            child_id=child.child_id,
            exec_id=exec_id,
            error=f"LastQty {raw_qty.decode('latin-1')[:40]!r} is not a quantity to book",
        )

    def _lots_off_grid(
        self, child: ChildOrder, instrument: Instrument, raw: bytes, exec_id: str
    ) -> int:
        """The whole lots of a fill whose LastQty is not a whole number of
        lots: booked (an execution is never dropped), the remainder named
        for the desk to settle with the LP (the LP's statement will differ
        by it); 0 when it is not a quantity at all."""
        text = raw.decode("latin-1")
        try:
            qty = Decimal(text)
        except InvalidOperation:
            qty = Decimal("NaN")
        if not qty.is_finite() or qty <= 0 or qty // instrument.lot_size > child.qty * 2 + 1:
            # none, or far past the child (LastQty 1E+20): not booked as lots
            self._unreadable(child, exec_id, raw)
            return 0
        lots = int(qty // instrument.lot_size)
        _log.error(
            "lp_fill_quantity_off_lots",
            lp=self.name,
            child_id=child.child_id,
            exec_id=exec_id,
            last_qty=text[:40],
            booked=str(instrument.lots_to_qty(lots)),
            lot_size=str(instrument.lot_size),
        )
        return lots

    def _fill_price(
        self, child: ChildOrder, instrument: Instrument, raw: bytes | None, exec_id: str
    ) -> int:
        """The price a fill is booked at, in ticks: the LP's, on the grid and
        within the child's limit.  A price past the limit (the LP filled
        through it), of zero or less, missing or unreadable is booked at the
        limit, the worst the client accepted; a price between two ticks (a
        sub-tick improvement) at the tick on the client's side.  Each is
        named in an error or warning line with the LP's own price, and
        differs from the LP's statement by that much: a price break the
        desk takes up with the LP."""
        buying = child.side is BUY
        if raw is None:
            return self._price_refused(child, instrument, exec_id, raw, "no LastPx")
        try:
            ticks = remembered(_TICKS, raw, instrument, _ticks)
        except (InvalidOperation, ValueError, ArithmeticError):
            near = _ticks_towards_client(raw, instrument, buying)
            if near is None:
                return self._price_refused(child, instrument, exec_id, raw, "LastPx is not a price")
            if near == child.price:
                # rounded to the client's side onto the limit: the LP's
                # price itself is through it, by less than a tick
                return self._price_refused(
                    child, instrument, exec_id, raw, "LastPx is past the child's limit"
                )
            ticks = near
            _log.warning(
                "lp_fill_price_off_grid",
                lp=self.name,
                child_id=child.child_id,
                exec_id=exec_id,
                last_px=raw.decode("latin-1")[:40],
                booked=str(instrument.ticks_to_price(ticks)),
            )
        if ticks <= 0:
            return self._price_refused(child, instrument, exec_id, raw, "LastPx is not positive")
        if ticks > child.price if buying else ticks < child.price:
            return self._price_refused(
                child, instrument, exec_id, raw, "LastPx is past the child's limit"
            )
        return ticks

    def _price_refused(
        self, child: ChildOrder, instrument: Instrument, exec_id: str, raw: bytes | None, why: str
    ) -> int:
        """The child's limit, for a fill whose price cannot stand, said."""
        _log.error(
            "lp_fill_price_refused",
            lp=self.name,
            child_id=child.child_id,
            exec_id=exec_id,
            reason=why,
            last_px=(raw or b"").decode("latin-1")[:40],
            booked=str(instrument.ticks_to_price(child.price)),
        )
        return child.price

    def _on_dropped_report(self, entry: _Open, msg: FixMessage) -> None:
        """A report about a child the drop of the link ended: a fill is
        passed on (the gateway books it as a late fill); a final state
        settles it; a status of a child still working cancels it."""
        child_id = entry.child.child_id
        exec_type = msg.get(150)
        status = self._status(msg, entry.child)
        if exec_type == b"F":
            fill = self._fill(entry, msg)
            if fill is None:
                return
            _log.error("lp_fill_after_drop", lp=self.name, child_id=child_id, qty=fill.qty)
            if fill.leaves == 0:
                # filled in full: a fill reported after this one is beyond it
                del self._dropped[child_id]
                self._watch_ended(child_id, entry)
            self.sink(fill)
        elif exec_type == b"I" and status in _WORKING:
            self.cancel(child_id)
        elif exec_type in (b"8", b"4", b"C", b"3", b"I"):
            # settled; a fill the LP reports for it all the same is passed on
            if entry.filled < entry.child.qty and (
                (exec_type == b"I" and status == b"2") or self._more_filled(msg, entry)
            ):
                # filled at the LP, and the fills not all seen: its
                # position here lacks them (as for a child recovered)
                self._filled_beyond(child_id, msg, entry.filled)
            del self._dropped[child_id]
            self._watch_ended(child_id, entry)

    def _status(self, msg: FixMessage, child: ChildOrder) -> bytes | None:
        """The OrdStatus (39) of a report about ``child``, read with its
        CumQty (14): an order the LP says is working (partially filled, as
        some LPs say on the fill that completes it) while its CumQty is the
        child's whole quantity or more is filled (2), and nothing more will
        come for it."""
        status = msg.get(39)
        raw = msg.get(14)
        instrument = self.instruments.get(child.symbol)
        if status not in _WORKING or raw is None or instrument is None:
            return status
        try:
            cum = Decimal(raw.decode("latin-1"))
        except InvalidOperation:
            return status
        if cum.is_finite() and cum >= instrument.lots_to_qty(child.qty):
            return b"2"
        return status

    def _logging_out(self) -> bool:
        """Whether our Logout is out (the LP's answer or the timeout ends
        the link): FIX sends nothing more after it, and an order the LP
        took meanwhile would be ended here as the link drops."""
        session = self._session
        return session is not None and session.state is SessionState.LOGOUT_SENT

    def _more_filled(self, msg: FixMessage, entry: _Open) -> bool:
        """Whether a report ending ``entry``'s child says, by its CumQty
        (14), that the LP filled more of it than the lots booked here (fills
        never seen: sent before a sequence reset, or refused by the
        session)."""
        raw = msg.get(14)
        instrument = self.instruments.get(entry.child.symbol)
        if raw is None or instrument is None:
            return False
        try:
            cum = Decimal(raw.decode("latin-1"))
        except InvalidOperation:
            return False
        return cum.is_finite() and cum > instrument.lots_to_qty(entry.filled)

    def _filled_beyond(self, child_id: str, msg: FixMessage, filled: int) -> None:
        """Name a child the LP says it filled (``msg``: OrdStatus 2, or a
        CumQty) past the ``filled`` lots booked of it: the LP's position
        here lacks the rest, for the desk to settle against the LP's
        statement."""
        _log.error(
            "lp_reports_filled_beyond_fills_seen",
            lp=self.name,
            child_id=child_id,
            cum_qty=(msg.get(14) or b"").decode("latin-1")[:40],
            lots_seen_filled=filled,
        )

    def _on_status(self, entry: _Open, msg: FixMessage, text: str) -> None:
        """The answer to an OrderStatusRequest for a recovered child, or one
        whose cancel the LP refused saying it is over: still working at the
        LP, it is canceled there; ended (or unknown to the LP), what the
        gateway has not seen filled is over."""
        child = entry.child
        status = self._status(msg, child)
        if status in _WORKING:
            self.cancel(child.child_id)
            return
        left = child.qty - entry.filled
        if left and (status == b"2" or self._more_filled(msg, entry)):
            self._filled_beyond(child.child_id, msg, entry.filled)
        self._end(child.child_id, entry)
        if status != b"8":
            reason = text or "ended at the LP"
        elif entry.asked:
            reason = "not known to the LP"
        else:
            reason = UNKNOWN_AFTER_RESTART_REASON
        self.sink(ChildCanceled(child.child_id, left, reason))
