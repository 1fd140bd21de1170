"""The market data service: requests answered or refused, and refreshes
sent on later loop turns within a budget, one per subscription and symbol
however many quotes came in between, held while the client is behind, and
always bringing the client's book to the book as it is when sent.

The client's side is modelled independently: it applies every full (W) and
incremental (X) refresh it receives to a book of its own, which must equal
the merged LP quotes (cut to the requested depth) once everything owed was
sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import cast

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from test_order_mapping import INSTRUMENTS, inbound

from gateway.fix.session import Session
from gateway.orderflow.market_data import HOLD_RECHECK, MarketDataService
from router.book import AggregatedBook
from router.model import Level, Quote

SYMBOLS = ("EUR/USD", "BTC/USD")
PER_TURN = 4
HOLD = 1000


@dataclass(eq=False)
class FakeSession:
    session_id: str
    is_logged_on: bool = True


@dataclass
class Feed:
    """Records what is sent; ``queued`` plays the bytes a peer has not taken."""

    sent: list[tuple[FakeSession, bytes, bytes]] = field(default_factory=list)
    queued: dict[str, int] = field(default_factory=dict)

    def send_transient(self, session: Session, msg_type: bytes, body: bytes, now: float) -> bool:
        fake = cast(FakeSession, session)
        if not fake.is_logged_on:
            return False
        self.sent.append((fake, msg_type, body))
        return True

    def backlog(self, session: Session) -> int | None:
        return self.queued.get(session.session_id, 0)


@dataclass
class Turns:
    """The event loop's turns: callbacks deferred by 0 run on the next turn,
    later ones when the time they wait for has come."""

    now: float = 0.0
    due: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def defer(self, delay: float, callback: Callable[[], None]) -> None:
        self.due.append((self.now + delay, callback))

    def turn(self) -> int:
        """Run what is due now; returns how many callbacks ran."""
        ready = [(t, c) for t, c in self.due if t <= self.now]
        self.due = [(t, c) for t, c in self.due if t > self.now]
        for _, callback in ready:
            callback()
        return len(ready)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    def __init__(self, per_turn: int = PER_TURN, interval: float = 0.0) -> None:
        self.book = AggregatedBook()
        self.feed = Feed()
        self.turns = Turns()
        self.stored: list[tuple[bytes, bytes]] = []
        self.service = MarketDataService(
            INSTRUMENTS,
            self.book,
            lambda session, msg_type, body, now: self.stored.append((msg_type, body)),
            self.feed,
            lambda: self.turns.now,
            refreshes_per_turn=per_turn,
            hold_bytes=HOLD,
            refresh_interval=interval,
            defer=self.turns.defer,
        )
        self.quotes: dict[tuple[str, str], Quote] = {}

    def quote(self, lp: str, symbol: str, mid: int, levels: int, qty: int = 5) -> None:
        bids = tuple(Level(mid - 1 - i, qty + i) for i in range(levels))
        asks = tuple(Level(mid + 1 + i, qty + i) for i in range(levels))
        q = Quote(lp, symbol, bids, asks, self.turns.now)
        self.quotes[(lp, symbol)] = q
        self.book.update(q)
        self.service.on_book_update(symbol)

    def subscribe(
        self,
        session: FakeSession,
        md_req_id: bytes,
        symbols: tuple[str, ...] = SYMBOLS,
        depth: int = 0,
        incremental: bool = True,
        answered: bool = True,
    ) -> None:
        """Subscribe; with ``answered``, turns run until the snapshot was sent."""
        fields = [(146, b"%d" % len(symbols))]
        fields += [(55, s.encode()) for s in symbols]
        fields += [(262, md_req_id), (263, b"1"), (264, b"%d" % depth)]
        fields += [(265, b"1" if incremental else b"0"), (267, b"2"), (269, b"0"), (269, b"1")]
        msg = inbound(b"V", *fields)
        self.service.on_request(cast(Session, session), msg, self.turns.now)
        if answered:
            self.settle()

    def settle(self, limit: int = 10_000) -> None:
        """Run turns (and wait for held ones) until nothing is owed."""
        for _ in range(limit):
            if not self.service.pending and not self.turns.due:
                return
            if not self.turns.turn():
                self.turns.advance(HOLD_RECHECK)
        raise AssertionError("refreshes still owed")

    def expected(
        self, symbol: str, depth: int, hidden: frozenset[str] = frozenset()
    ) -> dict[tuple[bytes, Decimal], Decimal]:
        """The merged book from the quotes themselves, but those of ``hidden``."""
        inst = INSTRUMENTS[symbol]
        out: dict[tuple[bytes, Decimal], Decimal] = {}
        for entry_type, best_first in ((b"0", True), (b"1", False)):
            merged: dict[int, int] = {}
            for (lp, sym), q in self.quotes.items():
                if sym == symbol and lp not in hidden:
                    for level in q.bids if entry_type == b"0" else q.asks:
                        merged[level.price] = merged.get(level.price, 0) + level.qty
            prices = sorted(merged, reverse=best_first)
            if depth:
                prices = prices[:depth]
            for p in prices:
                key = (entry_type, inst.ticks_to_price(p))
                out[key] = inst.lots_to_qty(merged[p])
        return out


def fields_of(body: bytes) -> list[tuple[int, bytes]]:
    return [(int(t), v) for t, _, v in (f.partition(b"=") for f in body.split(b"\x01") if f)]


class ClientBooks:
    """What a client makes of the refreshes it receives."""

    def __init__(self) -> None:
        self.books: dict[tuple[bytes, str], dict[tuple[bytes, Decimal], Decimal]] = {}

    def apply(self, msg_type: bytes, body: bytes) -> None:
        fields = fields_of(body)
        if msg_type == b"W":
            values = dict(fields[:3])
            book: dict[tuple[bytes, Decimal], Decimal] = {}
            entries = fields[3:]
            for i in range(0, len(entries), 3):
                (_, entry_type), (_, px), (_, size) = entries[i : i + 3]
                book[(entry_type, Decimal(px.decode()))] = Decimal(size.decode())
            self.books[(values[262], values[55].decode())] = book
            return
        assert msg_type == b"X"
        md_req_id = fields[0][1]
        i = 2
        while i < len(fields):
            action, entry_type, symbol, px = (v for _, v in fields[i : i + 4])
            book = self.books[(md_req_id, symbol.decode())]
            key = (entry_type, Decimal(px.decode()))
            if action == b"2":
                del book[key]
                i += 4
            else:
                assert (action == b"0") == (key not in book)
                book[key] = Decimal(fields[i + 4][1].decode())
                i += 5


def test_quotes_between_two_turns_cost_one_refresh_per_subscription_and_symbol() -> None:
    h = Harness(per_turn=100)
    client = FakeSession("C1")
    h.quote("A", "EUR/USD", 108_500, 3)
    h.subscribe(client, b"S1", ("EUR/USD",), answered=False)
    h.subscribe(client, b"S2", ("EUR/USD",), depth=1, incremental=False, answered=False)
    assert h.feed.sent == []  # nothing inside the request either
    h.turns.turn()
    assert len(h.feed.sent) == 2  # the two snapshots, on the next turn
    h.feed.sent.clear()
    for mid in range(108_501, 108_511):
        h.quote("A", "EUR/USD", mid, 3)
        h.quote("B", "EUR/USD", mid + 2, 2)
    assert h.feed.sent == []  # nothing inside the book's update
    h.turns.turn()
    assert [(m, f[0][1]) for _, m, b in h.feed.sent for f in [fields_of(b)]] == [
        (b"X", b"S1"),
        (b"W", b"EUR/USD"),
    ]
    assert h.stored == []  # market data is not stored for resend


def test_refreshes_are_paced_to_one_sending_per_interval() -> None:
    h = Harness(per_turn=100, interval=0.1)
    client = FakeSession("C1")
    h.quote("A", "EUR/USD", 108_500, 3)
    h.quote("A", "BTC/USD", 60_000, 3)
    h.subscribe(client, b"S1", answered=False)
    h.turns.turn()
    assert len(h.feed.sent) == 2  # the snapshots are not paced
    books = ClientBooks()
    times: list[float] = []
    seen = 0
    # a quote on each symbol every 10 ms for a second: 200 book changes
    for step in range(1, 101):
        h.turns.advance(0.01)
        h.quote("A", "EUR/USD", 108_500 + step % 7, 3)
        h.quote("B", "BTC/USD", 60_000 + step % 3, 2)
        h.turns.turn()
        times += [h.turns.now] * (len(h.feed.sent) - seen)
        seen = len(h.feed.sent)
    h.settle()
    times += [h.turns.now] * (len(h.feed.sent) - seen)
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    refreshes = times[2:]
    # about one per symbol per 100 ms, not one per quote
    assert 2 * 9 <= len(refreshes) <= 2 * 12
    sendings = sorted(set(refreshes))
    assert all(b - a >= 0.1 - 1e-9 for a, b in pairwise(sendings))
    for symbol in SYMBOLS:  # and the client ends on the book all the same
        assert books.books[(b"S1", symbol)] == h.expected(symbol, 0)


def test_a_turn_sends_at_most_its_budget_and_the_rest_follows_in_order() -> None:
    h = Harness(per_turn=PER_TURN)
    clients = [FakeSession(f"C{i}") for i in range(10)]
    h.quote("A", "EUR/USD", 108_500, 2)
    for i, c in enumerate(clients):
        h.subscribe(c, b"S%d" % i, ("EUR/USD",))
    h.feed.sent.clear()
    h.quote("A", "EUR/USD", 108_501, 2)
    per_turn = []
    while h.turns.turn():
        per_turn.append(len(h.feed.sent) - sum(per_turn))
    assert per_turn == [4, 4, 2]
    assert [s.session_id for s, _, _ in h.feed.sent] == [c.session_id for c in clients]


def test_a_subscription_owed_again_keeps_its_place() -> None:
    h = Harness(per_turn=1)
    a, b = FakeSession("A"), FakeSession("B")
    h.quote("A", "EUR/USD", 108_500, 1)
    h.quote("A", "BTC/USD", 60_000, 1)
    h.subscribe(a, b"SA", ("EUR/USD",))
    h.subscribe(b, b"SB", ("BTC/USD",))
    h.feed.sent.clear()
    h.quote("A", "EUR/USD", 108_501, 1)
    h.quote("A", "BTC/USD", 60_001, 1)
    h.quote("A", "EUR/USD", 108_502, 1)  # A is owed again: still first, once
    h.settle()
    assert [s.session_id for s, _, _ in h.feed.sent] == ["A", "B"]


def test_a_client_behind_is_held_then_brought_to_the_book_as_it_is_then() -> None:
    h = Harness()
    slow, fast = FakeSession("SLOW"), FakeSession("FAST")
    h.quote("A", "EUR/USD", 108_500, 3)
    h.subscribe(slow, b"S", ("EUR/USD",))
    h.subscribe(fast, b"F", ("EUR/USD",))
    books = ClientBooks()
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    h.feed.sent.clear()
    h.feed.queued["SLOW"] = HOLD + 1
    for mid in range(108_501, 108_521):
        h.quote("A", "EUR/USD", mid, 3)
        h.turns.turn()
    assert {s.session_id for s, _, _ in h.feed.sent} == {"FAST"}
    assert h.service.pending == 1  # the held one
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    h.feed.sent.clear()
    h.turns.advance(HOLD_RECHECK)
    h.turns.turn()
    assert h.feed.sent == []  # still behind: looked at, nothing built
    h.feed.queued["SLOW"] = HOLD
    h.settle()
    ((session, msg_type, body),) = h.feed.sent
    assert session is slow
    assert msg_type == b"X"
    books.apply(msg_type, body)
    expected = h.expected("EUR/USD", 0)
    assert books.books[(b"S", "EUR/USD")] == expected == books.books[(b"F", "EUR/USD")]


def test_a_turn_stops_sending_to_a_client_once_what_it_queued_passes_the_bound() -> None:
    """What a turn queues to a client counts as soon as it is queued: a
    client whose refreshes pass the bound in the middle of a turn is sent
    nothing more (its queue stays within the bound and one message, below
    the one that drops a slow consumer), and the rest of the budget goes to
    the others."""
    h = Harness(per_turn=32)
    greedy, other = FakeSession("GREEDY"), FakeSession("OTHER")
    queued_by_send = h.feed.send_transient

    def send(session: Session, msg_type: bytes, body: bytes, now: float) -> bool:
        # the peer takes nothing: each message stays queued
        sid = session.session_id
        h.feed.queued[sid] = h.feed.queued.get(sid, 0) + len(body)
        return queued_by_send(session, msg_type, body, now)

    h.feed.send_transient = send  # type: ignore[method-assign]
    for symbol in SYMBOLS:
        h.quote("A", symbol, 108_500, 5)
    for i in range(10):
        h.subscribe(greedy, b"G%d" % i, answered=False)
    h.subscribe(other, b"O", answered=False)
    h.turns.turn()
    longest = max(len(body) for _, _, body in h.feed.sent)
    assert HOLD < h.feed.queued["GREEDY"] <= HOLD + longest
    assert [s.session_id for s, _, _ in h.feed.sent].count("OTHER") == len(SYMBOLS)
    sent = len(h.feed.sent)
    h.turns.advance(HOLD_RECHECK)
    h.turns.turn()
    assert len(h.feed.sent) == sent  # held until it has caught up


def test_a_client_held_again_and_again_is_logged_once_a_minute() -> None:
    """A client that reads a little slower than its market data comes is
    held and catches up again at every sending: its first hold and catch-up
    are logged, the holds that follow within a minute are counted, and said
    on the line of the first hold after it."""
    h = Harness()
    client = FakeSession("C1")
    other = FakeSession("C2")
    h.quote("A", "EUR/USD", 108_500, 3)
    h.subscribe(client, b"S1", ("EUR/USD",))
    h.subscribe(other, b"S2", ("EUR/USD",))
    with structlog.testing.capture_logs() as logs:
        for i in range(100):
            h.feed.queued["C1"] = HOLD + 1
            h.quote("A", "EUR/USD", 108_501 + i % 2, 3)
            h.turns.turn()  # held
            h.feed.queued["C1"] = 0
            h.settle()  # caught up
            h.turns.advance(0.1)
        h.turns.advance(60.0)
        h.feed.queued["C1"] = HOLD + 1
        h.quote("A", "EUR/USD", 108_400, 3)
        h.turns.turn()
        h.feed.queued["C2"] = HOLD + 1  # another client's first hold is its own
        h.quote("A", "EUR/USD", 108_401, 3)
        h.turns.turn()
    said = [(e["event"], e["session"], e.get("held_since_last")) for e in logs]
    assert said == [
        ("market_data_held", "C1", None),
        ("market_data_resumed", "C1", None),
        ("market_data_held", "C1", 99),  # the 99 holds within the minute, counted
        ("market_data_held", "C2", None),
    ]


def test_an_ended_subscription_or_session_is_owed_nothing() -> None:
    h = Harness()
    a, b = FakeSession("A"), FakeSession("B")
    h.quote("A", "EUR/USD", 108_500, 1)
    h.subscribe(a, b"SA", ("EUR/USD",))
    h.subscribe(b, b"SB", ("EUR/USD",))
    h.feed.sent.clear()
    h.quote("A", "EUR/USD", 108_501, 1)
    cancel = inbound(b"V", (262, b"SA"), (263, b"2"))
    h.service.on_request(cast(Session, a), cancel, 0.0)
    h.service.drop_session(cast(Session, b))
    assert h.service.pending == 0
    h.settle()
    assert h.feed.sent == []


def test_a_session_not_logged_on_is_held() -> None:
    h = Harness()
    a = FakeSession("A")
    h.quote("A", "EUR/USD", 108_500, 1)
    h.subscribe(a, b"SA", ("EUR/USD",))
    h.feed.sent.clear()
    a.is_logged_on = False
    h.quote("A", "EUR/USD", 108_501, 1)
    h.turns.turn()
    h.turns.advance(HOLD_RECHECK)
    h.turns.turn()
    assert h.service.pending == 1  # held, nothing built for it
    # (a session that logs on again starts afresh; this plays a stalled link)
    a.is_logged_on = True
    h.settle()
    ((_, msg_type, _),) = h.feed.sent
    assert msg_type == b"X"


def test_a_client_with_no_open_connection_is_held() -> None:
    h = Harness()
    a = FakeSession("A")
    h.quote("A", "EUR/USD", 108_500, 1)
    h.subscribe(a, b"SA", ("EUR/USD",))
    h.feed.sent.clear()
    h.feed.backlog = lambda session: None  # type: ignore[method-assign]
    h.quote("A", "EUR/USD", 108_501, 1)
    h.turns.turn()
    assert h.feed.sent == []
    assert h.service.pending == 1


_op = st.one_of(
    st.tuples(
        st.just("quote"),
        st.sampled_from(("A", "B")),
        st.sampled_from(SYMBOLS),
        st.integers(-6, 6),
        st.integers(0, 4),
    ),
    st.tuples(st.just("turn")),
    st.tuples(st.just("behind"), st.sampled_from(("C0", "C1", "C2")), st.booleans()),
    st.tuples(st.just("hide"), st.frozensets(st.sampled_from(("A", "B")))),
)


@settings(max_examples=150, deadline=None)
@given(
    subs=st.lists(
        st.tuples(st.sampled_from(("C0", "C1", "C2")), st.integers(0, 3), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    ops=st.lists(_op, max_size=60),
    interval=st.sampled_from((0.0, 0.02, 0.05)),
)
def test_whatever_the_quotes_turns_and_backlogs_every_client_ends_on_the_book(
    subs: list[tuple[str, int, bool]], ops: list[tuple[object, ...]], interval: float
) -> None:
    h = Harness(interval=interval)
    hidden: frozenset[str] = frozenset()
    sessions = {n: FakeSession(n) for n in ("C0", "C1", "C2")}
    books = ClientBooks()
    base = {"EUR/USD": 108_500, "BTC/USD": 60_000}
    h.quote("A", "EUR/USD", base["EUR/USD"], 2)
    for i, (name, depth, incremental) in enumerate(subs):
        h.subscribe(sessions[name], b"S%d" % i, SYMBOLS, depth, incremental)
    for _, msg_type, body in h.feed.sent:  # the snapshots, sent at once
        books.apply(msg_type, body)
    seen = len(h.feed.sent)
    for op in ops:
        if op[0] == "quote":
            _, lp, symbol, move, levels = cast(tuple[str, str, str, int, int], op)
            h.quote(lp, symbol, base[symbol] + move, levels)
        elif op[0] == "turn":
            h.turns.turn()
            h.turns.advance(0.01)
        elif op[0] == "hide":
            hidden = cast(frozenset[str], op[1])
            h.service.hide_lps(hidden)
        else:
            _, name, behind = op
            h.feed.queued[str(name)] = HOLD + 1 if behind else 0
        sent_now = h.feed.sent[seen:]
        held = {n for n, q in h.feed.queued.items() if q > HOLD}
        assert not {s.session_id for s, _, _ in sent_now} & held
        for _, msg_type, body in sent_now:
            books.apply(msg_type, body)
        seen = len(h.feed.sent)
    h.feed.queued.clear()
    h.settle()
    for _, msg_type, body in h.feed.sent[seen:]:
        books.apply(msg_type, body)
    for i, (_, depth, _) in enumerate(subs):
        for symbol in SYMBOLS:
            assert books.books[(b"S%d" % i, symbol)] == h.expected(symbol, depth, hidden)


def test_a_hidden_lps_quotes_are_not_shown_and_hiding_or_showing_it_refreshes() -> None:
    """The LPs no order is routed to (disabled) are hidden: their levels
    leave every client's book at once, their quotes meanwhile send nothing,
    a snapshot leaves them out, and shown again they are back at once."""
    h = Harness(per_turn=100)
    a, b = FakeSession("A"), FakeSession("B")
    h.quote("A", "EUR/USD", 108_500, 2)
    h.quote("B", "EUR/USD", 108_503, 2)
    h.quote("A", "BTC/USD", 60_000, 2)
    h.subscribe(a, b"SA", SYMBOLS)
    h.subscribe(b, b"SB", ("EUR/USD",), depth=1, incremental=False)
    books = ClientBooks()
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    h.feed.sent.clear()
    hidden = frozenset({"A"})
    h.service.hide_lps(hidden)
    assert h.service.hidden_lps == hidden
    h.settle()
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    assert books.books[(b"SA", "EUR/USD")] == h.expected("EUR/USD", 0, hidden)
    assert books.books[(b"SA", "BTC/USD")] == {}  # A alone quotes it
    assert books.books[(b"SB", "EUR/USD")] == h.expected("EUR/USD", 1, hidden)
    h.feed.sent.clear()
    h.quote("A", "EUR/USD", 108_499, 3)
    h.quote("A", "BTC/USD", 60_001, 1)
    h.service.hide_lps({"A"})  # as it was: nothing owed for it
    h.settle()
    assert h.feed.sent == []
    h.subscribe(b, b"SNAP", ("EUR/USD",))
    ((_, msg_type, body),) = h.feed.sent
    books.apply(msg_type, body)
    assert books.books[(b"SNAP", "EUR/USD")] == h.expected("EUR/USD", 0, hidden)
    h.feed.sent.clear()
    h.service.hide_lps(())
    h.settle()
    for _, msg_type, body in h.feed.sent:
        books.apply(msg_type, body)
    for key, symbol, depth in (
        (b"SA", "EUR/USD", 0),
        (b"SA", "BTC/USD", 0),
        (b"SB", "EUR/USD", 1),
        (b"SNAP", "EUR/USD", 0),
    ):
        assert books.books[(key, symbol)] == h.expected(symbol, depth)


def test_hiding_an_lp_that_quotes_nothing_subscribed_owes_nothing() -> None:
    h = Harness()
    a = FakeSession("A")
    h.quote("A", "EUR/USD", 108_500, 2)
    h.quote("B", "BTC/USD", 60_000, 2)
    h.subscribe(a, b"SA", ("EUR/USD",))
    h.feed.sent.clear()
    h.service.hide_lps({"B"})
    assert h.service.pending == 0
    h.settle()
    assert h.feed.sent == []


def test_a_snapshot_request_is_answered_once_and_owes_nothing_later() -> None:
    h = Harness()
    a = FakeSession("A")
    h.quote("A", "EUR/USD", 108_500, 2)
    request = inbound(
        b"V",
        (146, b"1"),
        (55, b"EUR/USD"),
        (262, b"SNAP"),
        (263, b"0"),
        (264, b"1"),
        (267, b"1"),
        (269, b"1"),
    )
    h.service.on_request(cast(Session, a), request, 0.0)
    h.settle()
    ((_, msg_type, body),) = h.feed.sent
    assert msg_type == b"W"
    books = ClientBooks()
    books.apply(msg_type, body)
    expected = {k: v for k, v in h.expected("EUR/USD", 1).items() if k[0] == b"1"}
    assert books.books[(b"SNAP", "EUR/USD")] == expected  # offers only, best one
    h.quote("A", "EUR/USD", 108_501, 2)
    h.settle()
    assert len(h.feed.sent) == 1
    assert h.service.pending == 0


def test_ending_an_unknown_subscription_is_refused() -> None:
    h = Harness()
    a = FakeSession("A")
    h.service.on_request(cast(Session, a), inbound(b"V", (262, b"NOPE"), (263, b"2")), 0.0)
    assert h.feed.sent == []
    ((msg_type, body),) = h.stored  # a reject is stored like any answer
    assert msg_type == b"Y"
    assert dict(fields_of(body))[262] == b"NOPE"
    assert dict(fields_of(body))[58] == b"Unknown MDReqID"


def test_unknown_symbols_are_named_a_few_and_cut_as_any_client_string() -> None:
    """A request naming thousands of unknown symbols, or one very long one,
    gets a short Text: at most three, each cut, the rest counted; bytes
    outside ASCII come back as they were sent."""
    h = Harness()
    a = FakeSession("A")
    symbols = [b"S" * 60_000, b"\xff\xfe", *(b"X%d" % n for n in range(6_000))]
    fields = [(146, b"%d" % len(symbols)), *((55, s) for s in symbols)]
    request = inbound(
        b"V", *fields, (262, b"MDL"), (263, b"1"), (264, b"1"), (267, b"1"), (269, b"0")
    )
    h.service.on_request(cast(Session, a), request, 0.0)
    ((msg_type, body),) = h.stored
    assert msg_type == b"Y"
    text = dict(fields_of(body))[58]
    assert text == (
        b"Unknown symbol " + b"S" * 64 + b"...[60000 chars], \xff\xfe, X0 and 5999 more"
    )


def test_a_client_that_logs_out_loses_its_subscriptions() -> None:
    h = Harness()
    a = FakeSession("A")
    h.quote("A", "EUR/USD", 108_500, 1)
    for i in range(3):
        h.subscribe(a, b"S%d" % i, ("EUR/USD",))
    h.service.drop_session(cast(Session, a))
    h.feed.sent.clear()
    h.quote("A", "EUR/USD", 108_501, 1)
    h.settle()
    assert h.feed.sent == []
    # its MDReqIDs are free again, and it may hold as many as before
    h.subscribe(a, b"S0", ("EUR/USD",))
    assert [m for _, m, _ in h.feed.sent] == [b"W"]


def test_snapshots_are_sent_within_the_budget_and_held_while_the_client_is_behind() -> None:
    h = Harness(per_turn=PER_TURN)
    reader, stalled = FakeSession("R"), FakeSession("S")
    h.quote("A", "EUR/USD", 108_500, 2)
    h.quote("A", "BTC/USD", 60_000, 2)
    h.feed.queued["S"] = HOLD + 1
    for i in range(5):
        h.subscribe(reader, b"R%d" % i, SYMBOLS, answered=False)
        h.subscribe(stalled, b"S%d" % i, SYMBOLS, answered=False)
    per_turn = []
    while h.turns.turn():
        per_turn.append(len(h.feed.sent) - sum(per_turn))
    assert max(per_turn) <= PER_TURN
    assert sum(per_turn) == 5 * len(SYMBOLS)  # the reader's, all of them W
    assert {(s.session_id, m) for s, m, _ in h.feed.sent} == {("R", b"W")}
    assert h.service.pending == 5  # the stalled client's, waiting apart
    h.feed.queued["S"] = 0
    h.settle()
    assert sum(s.session_id == "S" for s, _, _ in h.feed.sent) == 5 * len(SYMBOLS)


def test_snapshot_requests_waiting_for_their_answer_count_against_the_bound() -> None:
    h = Harness()
    h.service = MarketDataService(
        INSTRUMENTS,
        h.book,
        lambda session, msg_type, body, now: h.stored.append((msg_type, body)),
        h.feed,
        lambda: h.turns.now,
        max_subscriptions=3,
        hold_bytes=HOLD,
        defer=h.turns.defer,
    )
    a = FakeSession("A")
    h.feed.queued["A"] = HOLD + 1  # not reading: nothing is answered
    snapshot = [(146, b"1"), (55, b"EUR/USD"), (263, b"0"), (264, b"1")]
    snapshot += [(267, b"1"), (269, b"0")]
    for i in range(4):
        request = inbound(b"V", (262, b"Q%d" % i), *snapshot)
        h.service.on_request(cast(Session, a), request, 0.0)
        h.turns.turn()
    ((msg_type, body),) = h.stored
    assert msg_type == b"Y"
    assert dict(fields_of(body))[262] == b"Q3"
    h.feed.queued["A"] = 0
    h.settle()
    assert [m for _, m, _ in h.feed.sent] == [b"W"] * 3
    request = inbound(b"V", (262, b"Q4"), *snapshot)  # answered: room again
    h.service.on_request(cast(Session, a), request, 0.0)
    h.settle()
    assert len(h.feed.sent) == 4
