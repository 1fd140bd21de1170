"""The outbox: the order in which a turn's writes happen (journal batch,
stores, sockets), a failed journal write that holds everything back until
it succeeds, and messages to a session with no connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.server import AcceptedConnection, FixServer
from gateway.net.transport import Outbox

NOW = 1_700_000_000.0


class RecordingStore(MemoryStore):
    """A memory store that notes each flush in the shared log."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(created=NOW)
        self.log = log

    def flush(self) -> None:
        super().flush()
        self.log.append("store")


class Journal:
    """A write barrier that notes each flush, and fails while told to."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.failures = 0

    def flush(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.log.append("journal")


class Socket:
    """The transport of one accepted connection: notes what is written."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.data = b""
        self.written = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.log.append("socket")
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
        pass

    def abort(self) -> None:
        pass


def logon(seq: int = 1) -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(NOW)),
        (56, b"GW"),
    ]
    return codec.encode_message(b"FIX.4.4", b"A", header, b"98=0\x01108=30\x01")


class Setup:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.journal = Journal(self.log)
        self.outbox = Outbox(self.journal.flush)
        settings = SessionSettings(SenderCompID="GW", TargetCompID="CLIENT1")
        self.session = Session(settings, RecordingStore(self.log))
        self.server = FixServer(
            SessionRegistry([self.session]),
            {self.session.session_id: EchoApplication()},
            clock=lambda: NOW,
            outbox=self.outbox,
        )
        self.socket = Socket(self.log)

    async def logged_on(self) -> None:
        conn = AcceptedConnection(self.server)
        conn.connection_made(self.socket)  # type: ignore[arg-type]
        conn.data_received(logon())
        await asyncio.wait_for(self.socket.written.wait(), 5)
        assert self.session.is_logged_on
        # the Logon's answer left in that order too
        assert self.log == ["journal", "store", "socket"]
        self.log.clear()
        self.socket.written.clear()


@pytest.mark.asyncio
async def test_a_turn_writes_the_journal_then_the_store_then_the_socket() -> None:
    setup = Setup()
    await setup.logged_on()
    setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
    setup.outbox.send(setup.session, b"8", b"11=B\x01", NOW)
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # two messages, one batch: one journal flush, one store flush, one write
    assert setup.log == ["journal", "store", "socket"]
    assert setup.socket.data.count(b"\x0135=8\x01") == 2


@pytest.mark.asyncio
async def test_nothing_leaves_while_the_journal_cannot_be_written() -> None:
    setup = Setup()
    await setup.logged_on()
    setup.journal.failures = 2
    setup.outbox.send(setup.session, b"8", b"11=A\x01", NOW)
    await asyncio.wait_for(setup.socket.written.wait(), 5)
    # two failed tries wrote nothing; the third wrote all, in order
    assert setup.log == ["journal", "store", "socket"]
    assert b"11=A\x01" in setup.socket.data


@pytest.mark.asyncio
async def test_a_message_to_a_session_with_no_connection_is_stored_and_flushed() -> None:
    log: list[str] = []
    journal = Journal(log)
    outbox = Outbox(journal.flush)
    session = Session(
        SessionSettings(SenderCompID="GW", TargetCompID="CLIENT1"), RecordingStore(log)
    )
    seq = outbox.send(session, b"8", b"11=A\x01", NOW)
    outbox.send(session, b"8", b"11=B\x01", NOW)
    flushed = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(flushed.set_result, None)
    await flushed
    assert log == ["journal", "store"]
    assert [s for s, _ in session.store.get_sent(1, 10)] == [seq, seq + 1]
