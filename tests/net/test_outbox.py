"""The outbox: the order in which a turn's writes happen (journal batch,
stores, sockets), a failed journal write that holds everything back until
it succeeds, and messages to a session with no connection.

The session store is a real file store: what the socket is given must be
in its file already, and what the journal flushes must come before it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import SessionStore
from gateway.net.server import AcceptedConnection, FixServer
from gateway.net.transport import Outbox
from gateway.orderflow.market_data import HOLD_BYTES, MarketDataService
from gateway.storage.session_store import JOURNAL_NAME, FileStore, open_store
from router.book import AggregatedBook
from router.model import AssetClass, Instrument, Level, Quote

NOW = 1_700_000_000.0


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)  # polling, with the deadline above
    return condition()


class Disk:
    """The session store's file, and a log of each write with the size the
    store's file had at that moment."""

    def __init__(self, store: SessionStore) -> None:
        assert isinstance(store, FileStore)
        self.file = store.path / JOURNAL_NAME
        self.log: list[tuple[str, int]] = []

    def note(self, what: str) -> None:
        self.log.append((what, self.size()))

    def size(self) -> int:
        return self.file.stat().st_size


class Journal:
    """A write barrier that notes each flush, and fails while told to."""

    def __init__(self) -> None:
        self.disk: Disk | None = None
        self.failures = 0

    def flush(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        if self.disk is not None:
            self.disk.note("journal")


class Socket:
    """The transport of one accepted connection: notes what is written."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.data = b""
        self.written = asyncio.Event()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.disk.note("socket")
        self.data += data
        self.written.set()

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def logout(seq: int) -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(NOW)),
        (56, b"GW"),
    ]
    return codec.encode_message(b"FIX.4.4", b"5", header, b"")


def logon(seq: int = 1) -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(NOW)),
        (56, b"GW"),
    ]
    return codec.encode_message(b"FIX.4.4", b"A", header, b"98=0\x01108=30\x01")


SETTINGS = SessionSettings(SenderCompID="GW", TargetCompID="CLIENT1")


class Setup:
    def __init__(self, directory: Path) -> None:
        self.journal = Journal()
        self.outbox = Outbox(self.journal.flush)
        store = open_store("file", directory, SETTINGS.session_id)
        self.session = Session(SETTINGS, store)
        self.disk = self.journal.disk = Disk(store)
        self.server = FixServer(
            SessionRegistry([self.session]),
            {self.session.session_id: EchoApplication()},
            clock=lambda: NOW,
            outbox=self.outbox,
        )
        self.socket = Socket(self.disk)

    async def logged_on(self) -> int:
        """Log on; the store's file size then."""
        conn = self.conn = AcceptedConnection(self.server)
        conn.connection_made(self.socket)  # type: ignore[arg-type]
        before = self.disk.size()
        conn.data_received(logon())
        await asyncio.wait_for(self.socket.written.wait(), 5)
        assert self.session.is_logged_on
        # the Logon's answer left in that order too
        [(first, at_journal), (second, at_socket)] = self.disk.log
        assert (first, second) == ("journal", "socket")
        assert at_journal == before < at_socket
        self.disk.log.clear()
        self.socket.written.clear()
        return at_socket


@pytest.mark.asyncio
async def test_a_turn_writes_the_journal_then_the_store_then_the_socket(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    stored = await setup.logged_on()
    setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
    setup.outbox.send(setup.session, b"8", b"11=B\x01", NOW)
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # two messages, one batch: the journal flushed while the store's file
    # did not have them yet, the socket written once they were in it
    [(first, at_journal), (second, at_socket)] = setup.disk.log
    assert (first, second) == ("journal", "socket")
    assert at_journal == stored < at_socket
    assert setup.socket.data.count(b"\x0135=8\x01") == 2
    setup.session.store.close()


@pytest.mark.asyncio
async def test_nothing_leaves_while_the_journal_cannot_be_written(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    stored = await setup.logged_on()
    setup.journal.failures = 2
    setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # two failed tries wrote nothing, not even the store; the third all of it
    [(first, at_journal), (second, at_socket)] = setup.disk.log
    assert (first, second) == ("journal", "socket")
    assert at_journal == stored < at_socket
    assert b"11=A\x01" in setup.socket.data
    setup.session.store.close()


@pytest.mark.asyncio
async def test_writes_failing_in_a_row_are_said_once_and_their_end_too(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    await setup.logged_on()
    setup.journal.failures = 5
    with structlog.testing.capture_logs() as logs:
        setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
        await asyncio.wait_for(setup.socket.written.wait(), 5)
    said = [(e["event"], e.get("failed_attempts")) for e in logs]
    assert said == [("write_failed", 1), ("write_resumed", 5)]
    setup.session.store.close()


@pytest.mark.asyncio
async def test_a_message_to_a_session_with_no_connection_is_stored_and_flushed(
    tmp_path: Path,
) -> None:
    journal = Journal()
    outbox = Outbox(journal.flush)
    store = open_store("file", tmp_path, SETTINGS.session_id)
    session = Session(SETTINGS, store)
    disk = journal.disk = Disk(store)
    before = disk.size()
    seq = outbox.send(session, b"8", b"11=A\x01", NOW)
    outbox.send(session, b"8", b"11=B\x01", NOW)
    assert disk.size() == before  # not before the end of the turn
    turn = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turn.set_result, None)
    await turn
    assert disk.log == [("journal", before)]
    assert disk.size() > before
    assert [s for s, _ in session.store.get_sent(1, 10)] == [seq, seq + 1]
    store.close()


@pytest.mark.asyncio
async def test_a_written_batch_is_followed_by_the_pause_once_the_store_has_it(
    tmp_path: Path,
) -> None:
    """A process at idle priority gives its core back after each batch of
    writes, not in the middle of one."""
    store = open_store("file", tmp_path, SETTINGS.session_id)
    disk = Disk(store)
    before = disk.size()
    outbox = Outbox(pause=lambda: disk.note("pause"))
    session = Session(SETTINGS, store)
    outbox.send(session, b"8", b"11=A\x01", NOW)
    outbox.send(session, b"8", b"11=B\x01", NOW)
    turn = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turn.set_result, None)
    await turn
    assert [what for what, _ in disk.log] == ["pause"]
    assert disk.log[0][1] > before  # both stored before it
    store.close()


@pytest.mark.asyncio
async def test_a_write_held_for_the_next_turn_leaves_with_what_that_turn_sends(
    tmp_path: Path,
) -> None:
    """An in-process LP answers on the next loop turn: the report sent
    before it and the answer's report leave in one write, not two."""
    setup = Setup(tmp_path)
    await setup.logged_on()
    loop = asyncio.get_running_loop()
    setup.outbox.send(setup.session, b"8", b"11=NEW\x01", NOW)  # the write is queued ...
    loop.call_soon(setup.outbox.send, setup.session, b"8", b"11=FILL\x01", NOW)  # ... then this
    setup.outbox.write_after_next_turn()
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # the first write carried both, the New first
    assert setup.socket.data.count(b"\x0135=8\x01") == 2
    assert [what for what, _ in setup.disk.log] == ["journal", "socket"]
    assert setup.socket.data.index(b"11=NEW\x01") < setup.socket.data.index(b"11=FILL\x01")
    setup.session.store.close()


@pytest.mark.asyncio
async def test_a_write_is_held_once_only(tmp_path: Path) -> None:
    """A peer that keeps the next turn busy cannot hold the writes back:
    a write that waited one turn is not held again."""
    setup = Setup(tmp_path)
    await setup.logged_on()
    loop = asyncio.get_running_loop()
    turns = 0

    def busy() -> None:  # every turn, more work that asks for a hold
        nonlocal turns
        turns += 1
        setup.outbox.write_after_next_turn()
        if not setup.socket.written.is_set():
            loop.call_soon(busy)

    setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
    setup.outbox.write_after_next_turn()
    loop.call_soon(busy)
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    assert turns == 2  # written after the second turn
    assert not setup.outbox.writing
    setup.session.store.close()


@pytest.mark.asyncio
async def test_a_connection_ended_while_the_journal_cannot_be_written_is_closed(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path)
    await setup.logged_on()
    setup.journal.failures = 2
    with structlog.testing.capture_logs() as logs:
        setup.conn.data_received(logout(2))  # answered with a Logout, then closed
        assert setup.socket.closed
        assert b"\x0135=5\x01" not in setup.socket.data  # nothing left unwritten to disk
        # the connection's end is seen however the disk does: it is let go
        setup.conn.connection_lost(None)
        assert setup.conn not in setup.server.connections
        # the session's store is written once the disk takes it again
        size = setup.disk.size()
        assert await until(lambda: setup.disk.size() > size, 5)
    events = [e["event"] for e in logs if e["event"].startswith("write_")]
    assert events == ["write_failed", "write_resumed"]
    setup.session.store.close()


EURUSD = Instrument(
    symbol="EUR/USD",
    asset_class=AssetClass.FX,
    tick_size=Decimal("0.00001"),
    lot_size=Decimal("1000"),
    min_lots=1,
    max_lots=1000,
    quote_currency="USD",
)


@pytest.mark.asyncio
async def test_market_data_built_while_writes_fail_is_held_as_for_a_client_behind(
    tmp_path: Path,
) -> None:
    """Nothing leaves while the journal cannot be written (a full disk):
    refreshes built meanwhile count as queued to their client as much as
    bytes its peer has not taken, so they are held past the same bound
    instead of piling up unsent for as long as the disk stays full (and
    leaving all at once when it takes writes again)."""
    setup = Setup(tmp_path)
    await setup.logged_on()
    book = AggregatedBook()

    def send(session: Session, msg_type: bytes, body: bytes, now: float) -> None:
        setup.outbox.send(session, msg_type, body, now)

    service = MarketDataService(
        {EURUSD.symbol: EURUSD},
        book,
        send,
        setup.outbox,
        lambda: NOW,
        refresh_interval=0.0,
    )

    def quote(mid: int) -> None:
        bids = tuple(Level(mid - 1 - i, 5 + i) for i in range(5))
        asks = tuple(Level(mid + 1 + i, 5 + i) for i in range(5))
        book.update(Quote("A", EURUSD.symbol, bids, asks, NOW))
        service.on_book_update(EURUSD.symbol)

    quote(108_500)
    request = codec.encode_message(
        b"FIX.4.4",
        b"V",
        [(34, b"2"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(NOW)), (56, b"GW")],
        b"262=MD1\x01263=1\x01264=0\x01265=1\x01267=2\x01269=0\x01269=1\x01146=1\x0155=EUR/USD\x01",
    )
    service.on_request(setup.session, codec.parse_frame(request), NOW)
    await asyncio.wait_for(setup.socket.written.wait(), 5)  # the snapshot
    assert b"\x0135=W\x01" in setup.socket.data
    setup.socket.written.clear()
    before = len(setup.socket.data)

    setup.journal.failures = 1_000_000_000
    turn = 0
    for turn in range(3000):  # a quote a turn, each worth a refresh
        quote(108_500 + turn)
        await asyncio.sleep(0)
    setup.journal.failures = 0
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # what waited is what a client behind may have queued, not a refresh a turn
    assert len(setup.socket.data) - before < 2 * HOLD_BYTES
    # and the client is brought to the book as it is now once it has caught up
    last = b"270=%b\x01" % str(EURUSD.ticks_to_price(108_500 + turn + 5)).encode()  # worst ask
    assert await until(lambda: last in setup.socket.data[-2000:], 5)
    setup.session.store.close()
