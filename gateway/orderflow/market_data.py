"""Market data on the aggregated LP book over FIX.

MarketDataRequest (V): SubscriptionRequestType 0 answers one snapshot (W);
1 answers a snapshot and then an incremental refresh (X) each time the
symbol's aggregated book changes (or a full refresh (W) when the request
asks for MDUpdateType 0); 2 ends the subscription named by MDReqID.  Levels
from all LPs are merged by price (sizes summed) and cut to MarketDepth (0:
the whole book).  A request that cannot be served gets a
MarketDataRequestReject (Y) with MDReqRejReason and a Text.

Clients are shown only prices they can trade on: the quotes of the LPs no
order is routed to (disabled by a reload: :meth:`MarketDataService.hide_lps`,
told by the routing as the rules change) are left out of what they are
sent, and such an LP's quotes owe no refresh.  Hiding an LP, or showing it
again, owes each subscription to a symbol it quotes a refresh to the book
as it is now shown.  With no LP hidden, the aggregated book is read as it
is, at no cost more.

What a client's market data costs is its own, not everyone's:

- Nothing is sent from inside a request or a book update: the snapshot a
  request is answered with, and each refresh, is owed by its subscription
  and sent from a callback of its own, at most ``refreshes_per_turn``
  messages per turn of the event loop, oldest subscription first; the rest
  waits for the next turn, behind the orders and answers that came
  meanwhile.  So order flow keeps priority however many subscriptions a
  quote touches or a client opens.
- Each subscription owes at most one refresh per symbol, computed when it is
  sent, from the book as it is then: however many quotes came in between,
  the client gets one refresh from what it was last sent to the book now
  (conflation).
- Refreshes go out at most once per ``refresh_interval`` seconds: a book
  change marks its subscriptions, and they are sent together when the
  interval since the last sending has passed (the snapshot that answers a
  request is not paced).  So a subscription gets at most about one refresh
  per symbol per interval however often the LPs quote, and what fan-out
  costs is bounded by subscriptions x symbols / interval.
- A client with more than ``hold_bytes`` queued and not taken (it reads
  slowly or not at all, or its bytes cannot be written: a full disk),
  counted after each message sent, is held: its subscriptions wait apart
  (the rest of the turn's budget goes to the others), nothing is built
  for them, and the client is looked at once per turn (or every
  ``HOLD_RECHECK`` seconds when nothing else is due); once it has caught up
  it gets one refresh per symbol to the book as it is then.  A snapshot
  request counts against ``max_subscriptions`` until it is answered.
- Market data (W, X) is not stored for resend: a ResendRequest gets a
  SequenceReset-GapFill over it, as FIX allows for data that is stale by
  then.  Subscriptions end with the session; a client that comes back
  subscribes again.  Rejects (Y) are sent at once and stored like any other
  answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import structlog

from config.schema import DEFAULT_MAX_ID_LENGTH, MOST_ID_LENGTH
from gateway.fix.codec import FixMessage, encode_fields
from gateway.fix.session import Session
from gateway.net.peerlog import PeerLog
from gateway.orderflow.mapping import excerpt, too_long_text
from router.book import AggregatedBook, BookSnapshot, BooksWithout
from router.model import Instrument
from router.units import format_decimal

_log = structlog.get_logger("gateway.orderflow.market_data")

BID, OFFER = b"0", b"1"
NEW, CHANGE, DELETE = b"0", b"1", b"2"

# MDReqRejReason (281)
UNKNOWN_SYMBOL = b"0"
DUPLICATE_MD_REQ_ID = b"1"
INSUFFICIENT_BANDWIDTH = b"2"
UNSUPPORTED_SUBSCRIPTION_TYPE = b"4"
UNSUPPORTED_MARKET_DEPTH = b"5"
UNSUPPORTED_MD_UPDATE_TYPE = b"6"
UNSUPPORTED_MD_ENTRY_TYPE = b"8"

Levels = dict[tuple[bytes, int], int]  # (entry type, price ticks) -> qty lots

Send = Callable[[Session, bytes, bytes, float], None]
"""Sends one application message to a session, stored, and has it written."""


class Feed(Protocol):
    """Where market data leaves (the net layer's outbox)."""

    def send_transient(self, session: Session, msg_type: bytes, body: bytes, now: float) -> bool:
        """Send a message that is not stored for resend, and have it written;
        False when the session is not logged on."""
        ...

    def backlog(self, session: Session) -> int | None:
        """Bytes queued to the session's peer and not taken yet, written to
        its connection or still waiting to be (a message sent counts at
        once); None when it has no open connection."""
        ...


Defer = Callable[[float, Callable[[], None]], None]
"""Runs a callback after a delay in seconds (0: on the next loop turn)."""


@dataclass(slots=True, eq=False)
class _Subscription:
    session: Session
    md_req_id: bytes
    symbols: tuple[str, ...]
    depth: int
    entry_types: frozenset[bytes]
    incremental: bool
    live: bool  # a subscription (263=1), not a snapshot owed once (263=0)
    # what the client was last sent, per symbol
    last: dict[str, Levels] = field(default_factory=dict)
    # symbols owed a refresh: their book changed since, or not sent yet
    dirty: set[str] = field(default_factory=set)
    # symbols owed a full refresh (W) whatever the update type: the snapshot
    # that answers the request
    full: set[str] = field(default_factory=set)
    held: bool = False  # waits apart until its client has caught up


MAX_SUBSCRIPTIONS_PER_SESSION: Final = 100
"""Live subscriptions one session may hold; each costs a refresh per quote."""

REFRESHES_PER_TURN: Final = 32
"""Market data messages sent in one turn of the event loop, at most."""

REFRESH_INTERVAL: Final = 0.1
"""Seconds between two sendings of refreshes, at least (0: as books change)."""

HOLD_BYTES: Final = 64 * 1024
"""Bytes queued to a client and not taken yet, beyond which its
subscriptions are held until it catches up."""

HOLD_RECHECK: Final = 0.05
"""Seconds between looks at held subscriptions when nothing else is due."""

_NO_LEVELS: Final[Levels] = {}
"""Nothing sent yet (never changed: shared by every subscription)."""

_TEXTS_KEPT: Final = 4096
"""Formatted prices (and sizes) kept per symbol before the cache starts over."""


def _loop_defer(delay: float, callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    if delay <= 0:
        loop.call_soon(callback)
    else:
        loop.call_later(delay, callback)


class MarketDataService:
    """Subscriptions per session and the refreshes they are owed."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        book: AggregatedBook,
        send: Send,
        feed: Feed,
        clock: Callable[[], float],
        *,
        max_subscriptions: int = MAX_SUBSCRIPTIONS_PER_SESSION,
        refreshes_per_turn: int = REFRESHES_PER_TURN,
        hold_bytes: int = HOLD_BYTES,
        refresh_interval: float = REFRESH_INTERVAL,
        defer: Defer = _loop_defer,
    ) -> None:
        """``send(session, msg_type, body, now)`` sends a reject, stored;
        market data goes out through ``feed`` unstored, refreshes on
        later loop turns (``defer``), timed by ``clock``."""
        self._instruments = instruments
        self._send = send
        self._feed = feed
        self._clock = clock
        self._book = book
        self._max_subscriptions = max_subscriptions
        self._per_turn = refreshes_per_turn
        self._hold_bytes = hold_bytes
        self._defer = defer
        self._interval = refresh_interval
        # subscriptions whose books changed, waiting for the next sending
        self._paced: dict[_Subscription, None] = {}
        self._paced_due = False
        self._last_paced = float("-inf")
        self._by_symbol: dict[str, list[_Subscription]] = {}
        self._by_key: dict[tuple[str, bytes], _Subscription] = {}
        self._count: dict[str, int] = {}  # live subscriptions per session
        # subscriptions owed a refresh, oldest first
        self._pending: dict[_Subscription, None] = {}
        # subscriptions of clients that are behind, per client, oldest first
        self._held: dict[Session, dict[_Subscription, None]] = {}
        # a client's holds, logged once a minute with the count between (one
        # reading a little slower than its market data comes is held and
        # catches up at every sending); and the clients held whose hold was
        # logged (their catch-up is)
        self._holds_said = PeerLog(
            _log, "market_data_held", "held_since_last", level="info", peer_field="session"
        )
        self._held_said: set[Session] = set()
        self._flush_due = False
        self._recheck_due = False
        # price and size texts already formatted, per symbol
        self._texts: dict[str, dict[int, bytes]] = {}
        self._sizes: dict[str, dict[int, bytes]] = {}
        # LPs whose quotes clients are not shown, and per symbol the book
        # without them, built once per change of the aggregated book
        self._shown = BooksWithout()  # the books without the hidden LPs

    # -- requests -------------------------------------------------------------------

    def on_request(
        self,
        session: Session,
        msg: FixMessage,
        now: float,
        max_id_length: int = DEFAULT_MAX_ID_LENGTH,
    ) -> None:
        """Serve or refuse one MarketDataRequest; an MDReqID (262) longer
        than ``max_id_length`` bytes is refused (it would be kept and repeated
        on every refresh) and echoed cut to that length.  One that ends a
        subscription (263=2) is looked up as given first: the subscription
        may have been made before a reload lowered the limit."""
        md_req_id = msg.get(262) or b""
        request_type = msg.get(263)
        key = (session.session_id, md_req_id)
        if request_type == b"2" and len(md_req_id) <= MOST_ID_LENGTH:
            sub = self._by_key.pop(key, None)
            if sub is not None:
                self._count[key[0]] -= 1
                self._forget(sub)
                return
        if len(md_req_id) > max_id_length:
            text = too_long_text("MDReqID (262)", len(md_req_id), max_id_length)
            self._reject(session, md_req_id[:max_id_length], None, text.encode(), now)
            return
        if request_type == b"2":
            self._reject(session, md_req_id, None, b"Unknown MDReqID", now)
            return
        if request_type not in (b"0", b"1"):
            self._reject(
                session,
                md_req_id,
                UNSUPPORTED_SUBSCRIPTION_TYPE,
                b"Unsupported SubscriptionRequestType",
                now,
            )
            return
        depth_raw = msg.get(264) or b"0"
        if not depth_raw.isdigit():
            self._reject(
                session, md_req_id, UNSUPPORTED_MARKET_DEPTH, b"Unsupported MarketDepth", now
            )
            return
        update_type = msg.get(265) or b"1"
        if update_type not in (b"0", b"1"):
            self._reject(
                session, md_req_id, UNSUPPORTED_MD_UPDATE_TYPE, b"Unsupported MDUpdateType", now
            )
            return
        entry_types = frozenset(v for t, v in msg.fields if t == 269)
        if not entry_types or not entry_types <= {BID, OFFER}:
            self._reject(
                session,
                md_req_id,
                UNSUPPORTED_MD_ENTRY_TYPE,
                b"Only MDEntryType 0 (bid) and 1 (offer) are served",
                now,
            )
            return
        symbols = tuple(dict.fromkeys(v.decode("latin-1") for t, v in msg.fields if t == 55))
        unknown = [s for s in symbols if s not in self._instruments]
        if not symbols or unknown:
            text = _unknown_symbols(unknown) if unknown else "No symbol requested"
            self._reject(session, md_req_id, UNKNOWN_SYMBOL, text.encode("latin-1"), now)
            return
        if request_type == b"1" and key in self._by_key:
            self._reject(session, md_req_id, DUPLICATE_MD_REQ_ID, b"Duplicate MDReqID", now)
            return
        if self._count.get(key[0], 0) >= self._max_subscriptions:
            too_many = b"Too many subscriptions: at most %d per session" % self._max_subscriptions
            self._reject(session, md_req_id, INSUFFICIENT_BANDWIDTH, too_many, now)
            return
        live = request_type == b"1"
        sub = _Subscription(
            session=session,
            md_req_id=md_req_id,
            symbols=symbols,
            depth=int(depth_raw),
            entry_types=entry_types,
            incremental=update_type == b"1",
            live=live,
        )
        # the snapshot is owed like a refresh: sent on a later turn within
        # the budget, held while the client is behind (a snapshot request
        # counts against the bound until it is answered)
        sub.dirty.update(symbols)
        sub.full.update(symbols)
        self._count[key[0]] = self._count.get(key[0], 0) + 1
        if live:
            self._by_key[key] = sub
            for symbol in symbols:
                self._by_symbol.setdefault(symbol, []).append(sub)
        self._owe(sub)

    def refuse(
        self,
        session: Session,
        msg: FixMessage,
        reason: bytes,
        text: bytes,
        now: float,
        max_id_length: int = DEFAULT_MAX_ID_LENGTH,
    ) -> None:
        """MarketDataRequestReject (Y) of the request ``msg`` for a reason
        found before it is read (the client's message rate), with
        MDReqRejReason ``reason`` and Text ``text``; its MDReqID echoed cut
        to ``max_id_length``.  Not logged: the caller logs such refusals as
        a count (a client over its rate would write the log at that rate)."""
        md_req_id = (msg.get(262) or b"")[:max_id_length]
        self._reject(session, md_req_id, reason, text, now, log=False)

    def drop_session(self, session: Session) -> None:
        """Forget a session's subscriptions and owed snapshots (it logged out)."""
        self._count.pop(session.session_id, None)
        for key in [k for k in self._by_key if k[0] == session.session_id]:
            self._forget(self._by_key.pop(key))
        for owed in (self._pending, self._paced):
            for sub in [sub for sub in owed if sub.session is session]:
                del owed[sub]
        self._held.pop(session, None)
        self._held_said.discard(session)

    def _forget(self, sub: _Subscription) -> None:
        for symbol in sub.symbols:
            self._by_symbol[symbol].remove(sub)
        self._pending.pop(sub, None)
        self._paced.pop(sub, None)
        held = self._held.get(sub.session)
        if held is not None:
            held.pop(sub, None)

    def _owe(self, sub: _Subscription) -> None:
        """``sub`` has something to send: queued, unless its client is held."""
        if sub.held:
            return
        self._pending[sub] = None  # keeps its place when already waiting
        if not self._flush_due:
            self._flush_due = True
            self._defer(0.0, self._flush)

    def _reject(
        self,
        session: Session,
        md_req_id: bytes,
        reason: bytes | None,
        text: bytes,
        now: float,
        log: bool = True,
    ) -> None:
        fields = [(58, text), (262, md_req_id)]
        if reason is not None:
            fields.append((281, reason))
        self._send(session, b"Y", encode_fields(fields), now)
        if not log:
            return
        _log.info(
            "market_data_rejected",
            session=session.session_id,
            md_req_id=md_req_id.decode("latin-1"),
            text=text.decode("latin-1"),
        )

    # -- LPs not shown ----------------------------------------------------------------

    @property
    def hidden_lps(self) -> frozenset[str]:
        """The LPs whose quotes clients are not shown."""
        return self._shown.lps

    def hide_lps(self, lps: Collection[str]) -> None:
        """Show clients the book without the quotes of ``lps`` (the LPs no
        order is routed to; none: the whole book) from now on.  Each
        subscription to a symbol an LP hidden or shown again quotes is owed
        a refresh, as if its book had changed."""
        hidden = frozenset(lps)
        changed = hidden ^ self._shown.lps
        if not changed:
            return
        self._shown.leave_out(hidden)
        _log.info("market_data_lps_hidden", lps=sorted(hidden))
        quote = self._book.quote
        for symbol, subs in self._by_symbol.items():
            if subs and any(quote(lp, symbol) is not None for lp in changed):
                self.on_book_update(symbol)

    def _shown_book(self, symbol: str) -> BookSnapshot | None:
        """``symbol``'s merged book without the quotes of the hidden LPs."""
        snapshot = self._book.snapshot(symbol)
        return None if snapshot is None else self._shown.of(snapshot)

    # -- refreshes --------------------------------------------------------------------

    def on_book_update(self, symbol: str) -> None:
        """``symbol``'s book changed: its subscriptions are owed a refresh,
        sent on a later loop turn (see the module docs)."""
        subs = self._by_symbol.get(symbol)
        if not subs:
            return
        if self._interval <= 0:
            for sub in subs:
                sub.dirty.add(symbol)
                self._owe(sub)
            return
        paced = self._paced
        for sub in subs:
            sub.dirty.add(symbol)
            paced[sub] = None
        if not self._paced_due:
            self._paced_due = True
            # bounded both ways: the clock may step
            wait = self._last_paced + self._interval - self._clock()
            self._defer(min(max(wait, 0.0), self._interval), self._send_paced)

    def _send_paced(self) -> None:
        """The interval has passed: what books changed since is owed."""
        self._paced_due = False
        self._last_paced = self._clock()
        paced, self._paced = self._paced, {}
        for sub in paced:
            self._owe(sub)

    def send_now(self) -> None:
        """Send everything owed now, paced or not and beyond the per-turn
        budget (a stop: the quotes' withdrawal before the Logout); what is
        owed to a client that is behind stays held."""
        if self._paced:
            self._send_paced()
        while self._pending:
            self.flush()

    @property
    def pending(self) -> int:
        """Subscriptions owed a refresh (held and paced ones included)."""
        owed = set(self._pending)
        owed.update(self._paced)
        for subs in self._held.values():
            owed.update(subs)
        return len(owed)

    def _flush(self) -> None:
        self._flush_due = False
        self.flush()

    def _recheck(self) -> None:
        self._recheck_due = False
        self.flush()

    def flush(self) -> None:
        """Send what is owed, oldest first, at most ``refreshes_per_turn``
        messages; the rest is left for the next turn, a client that is behind
        until it has caught up (looked at once per call)."""
        now = self._clock()
        for session in list(self._held):
            if not self._behind(session, now):
                for sub in self._held.pop(session):
                    sub.held = False
                    self._pending[sub] = None
        try:
            self._send_owed(now)
        finally:
            # whatever happened above, what is still owed is sent later
            if self._pending:
                if not self._flush_due:
                    self._flush_due = True
                    self._defer(0.0, self._flush)
            elif self._held and not self._recheck_due:
                self._recheck_due = True
                self._defer(HOLD_RECHECK, self._recheck)

    def _behind(self, session: Session, now: float) -> bool:
        """Whether ``session``'s client has too much queued and not taken
        (logged as it falls behind, at most once a minute with the holds
        since, and as it catches up from a hold logged)."""
        backlog = self._feed.backlog(session)
        late = backlog is None or backlog > self._hold_bytes or not session.is_logged_on
        was_late = session in self._held
        if late and not was_late:
            if self._holds_said.happened(session.session_id, now, queued=backlog):
                self._held_said.add(session)
        elif was_late and not late and session in self._held_said:
            self._held_said.discard(session)
            _log.info("market_data_resumed", session=session.session_id, queued=backlog)
        return late

    def _send_owed(self, now: float) -> None:
        pending = self._pending
        budget = self._per_turn
        behind: dict[Session, bool] = {}
        # subscriptions alike (same symbol, depth and entry types) share
        # their levels, and when they were sent the same levels before, the
        # entries of their refresh: built once, not once per subscription
        levels_of: dict[tuple[str, int, frozenset[bytes]], Levels] = {}
        entries_of: dict[tuple[str, int, frozenset[bytes], int], tuple[Levels, int, bytes]] = {}
        snapshot = self._shown_book if self._shown.lps else self._book.snapshot
        send = self._feed.send_transient
        while pending and budget > 0:
            sub = next(iter(pending))
            del pending[sub]
            session = sub.session
            late = behind.get(session)
            if late is None:
                late = behind[session] = self._behind(session, now)
            if late:
                sub.held = True
                self._held.setdefault(session, {})[sub] = None
                continue
            for symbol in list(sub.dirty):
                if budget <= 0:
                    break
                sub.dirty.discard(symbol)
                key = (symbol, sub.depth, sub.entry_types)
                levels = levels_of.get(key)
                if levels is None:
                    levels = levels_of[key] = self._levels(sub, snapshot(symbol))
                full = symbol in sub.full
                previous = sub.last.get(symbol, _NO_LEVELS)
                if not full and (levels is previous or levels == previous):
                    continue
                sub.last[symbol] = levels
                sub.full.discard(symbol)
                # a full refresh does not depend on what was sent before
                incremental = sub.incremental and not full
                base = previous if incremental else _NO_LEVELS
                cache_key = (*key, id(base))
                cached = entries_of.get(cache_key)
                if cached is None or cached[0] is not base:
                    if incremental:
                        count, entries = self._changes(symbol, previous, levels)
                    else:
                        count, entries = self._entries(symbol, levels)
                    cached = entries_of[cache_key] = (base, count, entries)
                if incremental:
                    body = b"262=%b\x01268=%d\x01%b" % (sub.md_req_id, cached[1], cached[2])
                    send(session, b"X", body, now)
                else:
                    body = b"55=%b\x01262=%b\x01268=%d\x01%b" % (
                        symbol.encode(),
                        sub.md_req_id,
                        cached[1],
                        cached[2],
                    )
                    send(session, b"W", body, now)
                budget -= 1
                # what was just queued counts: a client that passes the
                # bound is sent nothing more, not the rest of the budget
                late = behind[session] = self._behind(session, now)
                if late:
                    break
            if sub.dirty and late:
                sub.held = True
                self._held.setdefault(session, {})[sub] = None
            elif sub.dirty:
                pending[sub] = None  # the rest on a later turn, behind the others
            elif not sub.live:
                # a snapshot request answered in full
                owed = self._count.get(session.session_id, 0)
                if owed:
                    self._count[session.session_id] = owed - 1

    def _levels(self, sub: _Subscription, snapshot: BookSnapshot | None) -> Levels:
        levels: Levels = {}
        if snapshot is None:
            return levels
        for entry_type, side in ((BID, snapshot.bids), (OFFER, snapshot.asks)):
            if entry_type not in sub.entry_types:
                continue
            count = 0
            for level in side:
                key = (entry_type, level.price)
                if key not in levels:
                    if sub.depth and count == sub.depth:
                        break
                    count += 1
                    levels[key] = 0
                levels[key] += level.qty
        return levels

    def _px(self, symbol: str, ticks: int) -> bytes:
        texts = self._texts.get(symbol)
        if texts is None or len(texts) > _TEXTS_KEPT:
            texts = self._texts[symbol] = {}
        text = texts.get(ticks)
        if text is None:
            text = texts[ticks] = format_decimal(self._instruments[symbol].ticks_to_price(ticks))
        return text

    def _size(self, symbol: str, lots: int) -> bytes:
        sizes = self._sizes.get(symbol)
        if sizes is None or len(sizes) > _TEXTS_KEPT:
            sizes = self._sizes[symbol] = {}
        text = sizes.get(lots)
        if text is None:
            text = sizes[lots] = format_decimal(self._instruments[symbol].lots_to_qty(lots))
        return text

    def _entries(self, symbol: str, levels: Levels) -> tuple[int, bytes]:
        """The entries of a full refresh: their count and bytes."""
        entries = [
            b"269=%b\x01270=%b\x01271=%b\x01"
            % (entry_type, self._px(symbol, price), self._size(symbol, qty))
            for (entry_type, price), qty in levels.items()
        ]
        return len(entries), b"".join(entries)

    def _changes(self, symbol: str, previous: Levels, levels: Levels) -> tuple[int, bytes]:
        """The entries of an incremental refresh from ``previous`` to
        ``levels``: their count and bytes."""
        sym = symbol.encode()
        entries = []
        for entry_type, price in previous:
            if (entry_type, price) not in levels:
                entries.append(
                    b"279=%b\x01269=%b\x0155=%b\x01270=%b\x01"
                    % (DELETE, entry_type, sym, self._px(symbol, price))
                )
        for key, qty in levels.items():
            old = previous.get(key)
            if old == qty:
                continue
            action = NEW if old is None else CHANGE
            entry_type, price = key
            entries.append(
                b"279=%b\x01269=%b\x0155=%b\x01270=%b\x01271=%b\x01"
                % (action, entry_type, sym, self._px(symbol, price), self._size(symbol, qty))
            )
        return len(entries), b"".join(entries)


_SYMBOLS_NAMED: Final = 3
"""Unknown symbols a MarketDataRequestReject names, each cut as any client
string a Text repeats; the rest are counted."""


def _unknown_symbols(unknown: list[str]) -> str:
    named = ", ".join(excerpt(symbol) for symbol in unknown[:_SYMBOLS_NAMED])
    rest = len(unknown) - _SYMBOLS_NAMED
    return f"Unknown symbol {named}" + (f" and {rest} more" if rest > 0 else "")
