"""Market data on the aggregated LP book over FIX.

MarketDataRequest (V): SubscriptionRequestType 0 answers one snapshot (W);
1 answers a snapshot and then an incremental refresh (X) each time the
symbol's aggregated book changes (or a full refresh (W) when the request
asks for MDUpdateType 0); 2 ends the subscription named by MDReqID.  Levels
from all LPs are merged by price (sizes summed) and cut to MarketDepth (0:
the whole book).  A request that cannot be served gets a
MarketDataRequestReject (Y) with MDReqRejReason and a Text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from config.schema import DEFAULT_MAX_ID_LENGTH
from gateway.fix.codec import FixMessage, encode_fields
from gateway.fix.session import Session
from gateway.orderflow.mapping import too_long_text
from router.book import AggregatedBook, BookSnapshot
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
"""Sends one application message to a session and has it written."""


@dataclass(slots=True)
class _Subscription:
    session: Session
    md_req_id: bytes
    symbols: tuple[str, ...]
    depth: int
    entry_types: frozenset[bytes]
    incremental: bool
    last: dict[str, Levels] = field(default_factory=dict)


MAX_SUBSCRIPTIONS_PER_SESSION = 100
"""Live subscriptions one session may hold; each costs a refresh per quote."""


class MarketDataService:
    """Subscriptions per session and the refreshes they are owed."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        book: AggregatedBook,
        send: Send,
        max_subscriptions: int = MAX_SUBSCRIPTIONS_PER_SESSION,
    ) -> None:
        """``send(session, msg_type, body, now)`` sends one message and has
        it written (refreshes go out on the book's updates, not in answer
        to a request)."""
        self._instruments = instruments
        self._send = send
        self._book = book
        self._max_subscriptions = max_subscriptions
        self._by_symbol: dict[str, list[_Subscription]] = {}
        self._by_key: dict[tuple[str, bytes], _Subscription] = {}
        self._count: dict[str, int] = {}  # live subscriptions per session

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
        on every refresh) and echoed cut to that length."""
        md_req_id = msg.get(262) or b""
        if len(md_req_id) > max_id_length:
            text = too_long_text("MDReqID (262)", len(md_req_id), max_id_length)
            self._reject(session, md_req_id[:max_id_length], None, text.encode(), now)
            return
        request_type = msg.get(263)
        key = (session.session_id, md_req_id)
        if request_type == b"2":
            sub = self._by_key.pop(key, None)
            if sub is None:
                self._reject(session, md_req_id, None, b"Unknown MDReqID", now)
                return
            self._count[key[0]] -= 1
            for symbol in sub.symbols:
                self._by_symbol[symbol].remove(sub)
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
            text = f"Unknown symbol {', '.join(unknown)}" if unknown else "No symbol requested"
            self._reject(session, md_req_id, UNKNOWN_SYMBOL, text.encode(), now)
            return
        if request_type == b"1" and key in self._by_key:
            self._reject(session, md_req_id, DUPLICATE_MD_REQ_ID, b"Duplicate MDReqID", now)
            return
        if request_type == b"1" and self._count.get(key[0], 0) >= self._max_subscriptions:
            too_many = b"Too many subscriptions: at most %d per session" % self._max_subscriptions
            self._reject(session, md_req_id, INSUFFICIENT_BANDWIDTH, too_many, now)
            return
        sub = _Subscription(
            session=session,
            md_req_id=md_req_id,
            symbols=symbols,
            depth=int(depth_raw),
            entry_types=entry_types,
            incremental=update_type == b"1",
        )
        for symbol in symbols:
            levels = self._levels(sub, self._book.snapshot(symbol))
            sub.last[symbol] = levels
            self._send(session, b"W", self._full_refresh(sub, symbol, levels), now)
        if request_type == b"1":
            self._by_key[key] = sub
            self._count[key[0]] = self._count.get(key[0], 0) + 1
            for symbol in symbols:
                self._by_symbol.setdefault(symbol, []).append(sub)

    def drop_session(self, session: Session) -> None:
        """Forget a session's subscriptions (it logged out)."""
        self._count.pop(session.session_id, None)
        for key in [k for k in self._by_key if k[0] == session.session_id]:
            sub = self._by_key.pop(key)
            for symbol in sub.symbols:
                self._by_symbol[symbol].remove(sub)

    def _reject(
        self, session: Session, md_req_id: bytes, reason: bytes | None, text: bytes, now: float
    ) -> None:
        fields = [(58, text), (262, md_req_id)]
        if reason is not None:
            fields.append((281, reason))
        self._send(session, b"Y", encode_fields(fields), now)
        _log.info(
            "market_data_rejected",
            session=session.session_id,
            md_req_id=md_req_id.decode("latin-1"),
            text=text.decode(),
        )

    # -- refreshes --------------------------------------------------------------------

    def on_book_update(self, symbol: str, snapshot: BookSnapshot | None, now: float) -> None:
        subs = self._by_symbol.get(symbol)
        if not subs:
            return
        for sub in subs:
            levels = self._levels(sub, snapshot)
            previous = sub.last.get(symbol, {})
            if levels == previous:
                continue
            sub.last[symbol] = levels
            if sub.incremental:
                body = self._incremental(sub, symbol, previous, levels)
                self._send(sub.session, b"X", body, now)
            else:
                self._send(sub.session, b"W", self._full_refresh(sub, symbol, levels), now)

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
        return format_decimal(self._instruments[symbol].ticks_to_price(ticks))

    def _size(self, symbol: str, lots: int) -> bytes:
        return format_decimal(self._instruments[symbol].lots_to_qty(lots))

    def _full_refresh(self, sub: _Subscription, symbol: str, levels: Levels) -> bytes:
        entries = [
            b"269=%b\x01270=%b\x01271=%b\x01"
            % (entry_type, self._px(symbol, price), self._size(symbol, qty))
            for (entry_type, price), qty in levels.items()
        ]
        return b"55=%b\x01262=%b\x01268=%d\x01%b" % (
            symbol.encode(),
            sub.md_req_id,
            len(entries),
            b"".join(entries),
        )

    def _incremental(
        self, sub: _Subscription, symbol: str, previous: Levels, levels: Levels
    ) -> bytes:
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
        return b"262=%b\x01268=%d\x01%b" % (sub.md_req_id, len(entries), b"".join(entries))
