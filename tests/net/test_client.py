"""The initiator over loopback: what a failed Logon tells its caller (who
refused what, and the Text of the acceptor's Logout), and a client that
keeps no store logging on again with ResetSeqNumFlag."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from config import SessionSettings
from gateway.fix import codec, new_order_single
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient, LogonError
from gateway.net.server import FixServer

GATEWAY = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1", Password="secret")


def client_settings(reset: bool = False) -> SessionSettings:
    """CLIENT1's side; with ``reset`` its Logon carries ResetSeqNumFlag(141)=Y."""
    return SessionSettings(
        SenderCompID="CLIENT1", TargetCompID="GATEWAY", Password="secret", ResetOnLogon=reset
    )


class Acceptor:
    """A FixServer on a free loopback port with the one session GATEWAY <- CLIENT1."""

    def __init__(self) -> None:
        self.session = Session(GATEWAY, MemoryStore())
        self.server = FixServer(
            SessionRegistry([self.session]), {self.session.session_id: EchoApplication()}
        )
        self.port = 0

    def logon(self, what: str) -> str:
        """How a failed Logon of CLIENT1 to this acceptor begins."""
        return f"logon to 127.0.0.1:{self.port} as CLIENT1 -> GATEWAY {what}"


@pytest_asyncio.fixture
async def acceptor() -> AsyncIterator[Acceptor]:
    a = Acceptor()
    a.port = await a.server.start("127.0.0.1", 0)
    yield a
    await a.server.stop(grace=0.5)


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_acceptor(handler: RawHandler) -> AsyncIterator[int]:
    """A bare TCP server on a free loopback port (yielded) that answers each
    connection with ``handler``; on leaving, every connection is done and
    closed."""
    handled: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append(asyncio.ensure_future(handle(reader, writer)))

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*handled), 5)


def logout_frame(seq: int, text: bytes | None) -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"GATEWAY"),
        (52, codec.format_utc_timestamp(time.time())),
        (56, b"CLIENT1"),
    ]
    body = b"58=%b\x01" % text if text is not None else b""
    return codec.encode_message(b"FIX.4.4", b"5", header, body)


@pytest.mark.asyncio
async def test_a_refused_logon_carries_the_acceptors_text(acceptor: Acceptor) -> None:
    first = FixClient(client_settings())
    await first.connect("127.0.0.1", acceptor.port)
    await first.logout()
    # a second client with no store of its own starts again from 1
    again = FixClient(client_settings())
    with pytest.raises(LogonError) as refused:
        await again.connect("127.0.0.1", acceptor.port)
    text = "MsgSeqNum too low, expecting 3 but received 1"
    assert str(refused.value) == acceptor.logon(f"refused: {text}")
    assert refused.value.refused
    assert refused.value.text == text
    assert isinstance(refused.value, ConnectionError)
    assert not again.logged_on


@pytest.mark.asyncio
async def test_a_wrong_password_is_refused_in_the_acceptors_words(acceptor: Acceptor) -> None:
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", Password="no"))
    with pytest.raises(ConnectionError, match=r"refused: Invalid username or password$"):
        await c.connect("127.0.0.1", acceptor.port)


@pytest.mark.asyncio
async def test_a_connection_closed_without_a_logout_says_so(acceptor: Acceptor) -> None:
    # the acceptor knows no session for this CompID: it closes without a word
    c = FixClient(SessionSettings(SenderCompID="NOBODY", TargetCompID="GATEWAY"))
    with pytest.raises(LogonError) as failed:
        await c.connect("127.0.0.1", acceptor.port)
    assert str(failed.value) == (
        f"logon to 127.0.0.1:{acceptor.port} as NOBODY -> GATEWAY failed: "
        "the acceptor closed the connection without a Logout"
    )
    assert not failed.value.refused
    assert failed.value.text == ""


@pytest.mark.asyncio
async def test_a_logon_left_unanswered_says_so() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with raw_acceptor(silent) as port:
        c = FixClient(client_settings())
        with pytest.raises(LogonError, match=r"GATEWAY failed: no answer within 0\.2 s$"):
            await c.connect("127.0.0.1", port, timeout=0.2)


@pytest.mark.asyncio
async def test_a_tls_handshake_left_unanswered_says_so_within_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with raw_acceptor(silent) as port:
        c = FixClient(client_settings())
        with pytest.raises(LogonError, match=r"GATEWAY failed: no answer within 0\.2 s$"):
            async with asyncio.timeout(5):
                await c.connect("127.0.0.1", port, timeout=0.2, tls=ssl.create_default_context())
    assert not c.connected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (b"go away", "go away"),
        (None, "Logout without a Text"),
        (b"tab\there", "tab\\there"),
    ],
)
@pytest.mark.asyncio
async def test_a_logout_that_comes_in_pieces_is_read_whole(text: bytes | None, shown: str) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # the Logon
        for i, byte in enumerate(logout_frame(1, text)):
            writer.write(bytes([byte]))
            if i % 7 == 0:
                await writer.drain()
                await asyncio.sleep(0)  # pacing: the Logout in pieces
        await writer.drain()
        await reader.read()  # the client's Logout, then its close

    async with raw_acceptor(refuse) as port:
        c = FixClient(client_settings())
        with pytest.raises(LogonError) as refused:
            await c.connect("127.0.0.1", port)
    assert str(refused.value) == (
        f"logon to 127.0.0.1:{port} as CLIENT1 -> GATEWAY refused: {shown}"
    )
    assert refused.value.text == (text or b"").decode()


@pytest.mark.asyncio
async def test_a_logon_answer_our_side_cannot_take_is_said_to_be_ours(
    acceptor: Acceptor,
) -> None:
    # a client store that expects 5 from an acceptor starting at 1
    store = MemoryStore()
    store.set_next_target_seq(5)
    c = FixClient(client_settings(), store)
    with pytest.raises(LogonError) as failed:
        await c.connect("127.0.0.1", acceptor.port)
    assert str(failed.value) == acceptor.logon(
        "failed on our side: MsgSeqNum too low, expecting 5 but received 1"
    )
    assert not failed.value.refused


@pytest.mark.asyncio
async def test_a_client_without_a_store_logs_on_again_with_reset_seq_num_flag(
    acceptor: Acceptor,
) -> None:
    # the acceptor keeps its numbers (ResetOnLogon false) but honours 141=Y
    assert not GATEWAY.ResetOnLogon
    for run in range(3):
        c = FixClient(client_settings(reset=True))
        await c.connect("127.0.0.1", acceptor.port)
        assert acceptor.session.store.next_target_seq == 2
        cl_ord_id = f"R{run}"
        c.send(*new_order_single(cl_ord_id, "EUR/USD", "buy", 1000, transact_time=time.time()))
        echoed = await c.receive()
        assert echoed.get(11) == cl_ord_id.encode()
        await c.logout()
        assert not c.logged_on
