"""Peers that misbehave at the socket level, over loopback: what the
acceptor does with a connection it closes while the peer reads nothing, and
with connections that never get as far as a Logon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from netkit import make_certificate
from structlog.testing import capture_logs

from config import SessionSettings
from gateway.fix import codec, new_order_single
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.peerlog import LOGGED_EVERY
from gateway.net.server import MAX_UNBOUND_PER_ADDRESS, FixServer
from gateway.net.transport import CLOSE_GRACE

GATEWAY = SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1")


def frame(msg_type: bytes, seq: int, body: bytes = b"") -> bytes:
    header = [
        (34, b"%d" % seq),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(time.time())),
        (56, b"GATEWAY"),
    ]
    return codec.encode_message(b"FIX.4.4", msg_type, header, body)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Acceptor:
    """A FixServer on a free loopback port with the one session GATEWAY <- CLIENT1."""

    def __init__(self) -> None:
        self.session = Session(GATEWAY, MemoryStore())
        self.server = FixServer(
            SessionRegistry([self.session]),
            {self.session.session_id: EchoApplication()},
            max_outbound_buffer=64 * 1024 * 1024,
        )
        self.port = 0


@pytest_asyncio.fixture
async def acceptor() -> AsyncIterator[Acceptor]:
    a = Acceptor()
    a.port = await a.server.start("127.0.0.1", 0)
    yield a
    await a.server.stop(grace=0.5)


async def until(condition: object, timeout: float) -> bool:
    """Poll ``condition`` (a callable) until true or ``timeout`` passes."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)  # polling, with the deadline above
    return bool(condition())


@pytest.mark.asyncio
async def test_a_connection_closed_while_its_peer_reads_nothing_is_let_go(
    acceptor: Acceptor,
) -> None:
    """The peer logs on, stops reading with more queued for it than the
    kernel holds, and logs out: the gateway answers and closes; the bytes
    it queued can never leave, so the connection is dropped, not kept
    open for as long as the peer keeps its socket."""
    loop = asyncio.get_running_loop()
    before = open_fds()
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    try:
        await loop.sock_connect(peer, ("127.0.0.1", acceptor.port))
        await loop.sock_sendall(peer, frame(b"A", 1, b"98=0\x01108=30\x01"))
        assert await until(lambda: acceptor.session.is_logged_on, 5)
        seq = 2
        # orders are echoed: until some of the answers wait in the gateway
        while not acceptor.server.outbox.backlog(acceptor.session):
            _, body = new_order_single(
                "X" * 40, "EURUSD", "buy", 1, transact_time=time.time(), price=1, ord_type="limit"
            )
            batch = b"".join(
                frame(b"D", seq + i, body + b"58=" + b"x" * 2000 + b"\x01") for i in range(50)
            )
            seq += 50
            await loop.sock_sendall(peer, batch)
            await asyncio.sleep(0.01)  # polling, with the bound below
            assert seq < 100_000
        await loop.sock_sendall(peer, frame(b"5", seq))
        assert await until(lambda: not acceptor.session.is_connected, 5)
        # answered and closed: the connection goes, whatever the peer does
        assert await until(lambda: not acceptor.server.connections, CLOSE_GRACE + 5)
        assert open_fds() == before + 1  # the peer's own socket only
    finally:
        peer.close()


def server_context(directory: Path) -> ssl.SSLContext:
    """A TLS context for the acceptor, with a self-signed certificate."""
    cert_file, key_file = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.mark.asyncio
async def test_a_tls_handshake_never_begun_is_closed_at_the_logon_timeout(
    tmp_path: Path,
) -> None:
    """Connections to the TLS port that send nothing are closed at the
    logon timeout, like those to a plain port."""
    session = Session(GATEWAY, MemoryStore())
    server = FixServer(
        SessionRegistry([session]), {session.session_id: EchoApplication()}, logon_timeout=0.5
    )
    port = await server.start("127.0.0.1", 0, tls=server_context(tmp_path))
    loop = asyncio.get_running_loop()
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            # the gateway closes: the peer reads the end of the stream
            async with asyncio.timeout(5):
                assert await loop.sock_recv(peer, 1024) == b""
    finally:
        await server.stop(grace=0.5)


def _tcp_queues() -> dict[tuple[str, str], tuple[int, int]]:
    """The kernel's IPv4 TCP sockets (/proc/net/tcp) but those in TIME_WAIT
    (an earlier connection between the same ports): (local, remote) address
    as listed there -> (bytes sent but not acknowledged, bytes received but
    not read)."""
    queues: dict[tuple[str, str], tuple[int, int]] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "06":
            continue
        tx, rx = fields[4].split(":")
        queues[fields[1], fields[2]] = (int(tx, 16), int(rx, 16))
    return queues


def _listed(address: tuple[str, int]) -> str:
    """An IPv4 address and port as /proc/net/tcp writes them."""
    host, port = address
    return f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"


def all_read(peer: socket.socket) -> bool:
    """Everything ``peer`` sent has been read by the end it is connected
    to: acknowledged at the peer's end, and none of it left waiting at the
    other (as the kernel counts them)."""
    here, there = _listed(peer.getsockname()), _listed(peer.getpeername())
    queues = _tcp_queues()
    sent, received = queues.get((here, there)), queues.get((there, here))
    return sent is not None and received is not None and sent[0] == 0 and received[1] == 0


def long_logon() -> bytes:
    """A Logon past 4 KiB (RawData), too long to be identified at once."""
    raw = b"R" * 4800
    return frame(b"A", 1, b"95=%d\x0196=%b\x0198=0\x01108=30\x01" % (len(raw), raw))


def gated(session: Session, gate: RefusingGate) -> FixServer:
    """An acceptor of ``session`` whose Logons ``gate`` must let through."""
    return FixServer(
        SessionRegistry([session]), {session.session_id: EchoApplication()}, logon_gate=gate
    )


class RefusingGate:
    """A logon gate for which another gateway serves every session."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def claim(self, session: Session) -> tuple[str, int | None] | None:
        self.asked.append(session.session_id)
        return "served elsewhere", None

    def disconnected(self, session: Session) -> None:
        pass


@pytest.mark.parametrize("split", [100, 4100, 4999])
@pytest.mark.asyncio
async def test_a_long_logon_in_pieces_is_put_to_the_logon_gate(split: int) -> None:
    """However long the Logon and however it is cut, the session it names
    is not taken before the gate has let this gateway take it."""
    session = Session(GATEWAY, MemoryStore())
    gate = RefusingGate()
    server = gated(session, gate)
    port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    logon = long_logon()
    assert len(logon) > 4096
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            await loop.sock_sendall(peer, logon[:split])
            assert await until(lambda: all_read(peer), 5), "the first piece was not read"
            await loop.sock_sendall(peer, logon[split:])
            async with asyncio.timeout(5):
                while await loop.sock_recv(peer, 4096):
                    pass
        assert gate.asked == [session.session_id]
        assert session.state.name == "DISCONNECTED"
        assert session.store.next_target_seq == 1  # the Logon was not read
    finally:
        await server.stop(grace=0.5)


class AdmittingGate(RefusingGate):
    """A logon gate that lets this gateway take every session."""

    async def claim(self, session: Session) -> tuple[str, int | None] | None:
        self.asked.append(session.session_id)
        return None


@pytest.mark.asyncio
async def test_a_long_logon_in_pieces_logs_on_once_the_gate_let_it() -> None:
    session = Session(GATEWAY, MemoryStore())
    gate = AdmittingGate()
    server = gated(session, gate)
    port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    logon = long_logon()
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            for i in range(0, len(logon), 1000):
                await loop.sock_sendall(peer, logon[i : i + 1000])
                # each piece read on its own
                assert await until(lambda: all_read(peer), 5), f"the piece at {i} was not read"
            async with asyncio.timeout(5):
                answer = await loop.sock_recv(peer, 4096)
            assert b"\x0135=A\x01" in answer
        assert gate.asked == [session.session_id]
    finally:
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_a_long_logon_held_by_the_failed_logon_delay_logs_on_once_let_through() -> None:
    """A Logon too long to be identified at once, from an address whose
    logons failed: held for the delay, its rest read after it, then put to
    the gate and logged on."""
    session = Session(GATEWAY, MemoryStore())
    gate = AdmittingGate()
    server = gated(session, gate)
    for _ in range(4):  # one past the free ones: the next Logon waits a little
        server.failures.record(("127.0.0.1", ""), time.time())
    port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    logon = long_logon()
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            await loop.sock_sendall(peer, logon[:4200])  # past 4 KiB: held as is
            # the first piece read, the delay begun
            assert await until(lambda: any(c.identified for c in server.connections), 5)
            await loop.sock_sendall(peer, logon[4200:])  # arrives while held
            async with asyncio.timeout(10):
                answer = await loop.sock_recv(peer, 4096)
            assert b"\x0135=A\x01" in answer
        assert gate.asked == [session.session_id]
    finally:
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_a_logon_with_a_heartbeat_that_is_no_number_is_refused_before_the_gate() -> None:
    session = Session(GATEWAY, MemoryStore())
    gate = AdmittingGate()
    server = gated(session, gate)
    port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            await loop.sock_sendall(peer, frame(b"A", 1, b"98=0\x01108=abc\x01"))
            answer = b""
            async with asyncio.timeout(5):
                while chunk := await loop.sock_recv(peer, 4096):
                    answer += chunk
        assert gate.asked == []  # turned away as on a gateway alone
        assert b"\x0135=A\x01" not in answer
        assert errors == []  # not an error out of the connection's reading
    finally:
        loop.set_exception_handler(None)
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_a_logon_with_a_heartbeat_of_thousands_of_digits_is_refused_before_the_gate() -> None:
    """More digits than int() reads (4,300 by default): turned away as a
    heartbeat out of bounds, not an error out of the connection's reading."""
    session = Session(GATEWAY, MemoryStore())
    gate = AdmittingGate()
    server = gated(session, gate)
    port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        peer = socket.socket()
        peer.setblocking(False)
        with peer:
            await loop.sock_connect(peer, ("127.0.0.1", port))
            await loop.sock_sendall(peer, frame(b"A", 1, b"98=0\x01108=%b\x01" % (b"3" * 5000)))
            answer = b""
            async with asyncio.timeout(5):
                while chunk := await loop.sock_recv(peer, 4096):
                    answer += chunk
        assert gate.asked == []
        assert b"\x0135=A\x01" not in answer
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_an_address_flooding_again_and_again_is_logged_once_a_minute() -> None:
    """A peer that opens one connection too many, closes them all and does
    it again is logged once a minute at most, not once a flood, with the
    connections closed since its last line."""
    now = [1000.0]
    session = Session(GATEWAY, MemoryStore())
    server = FixServer(
        SessionRegistry([session]),
        {session.session_id: EchoApplication()},
        logon_timeout=60,  # far longer than the test: only the bound closes them
        wait_clock=lambda: now[0],
    )
    port = await server.start("127.0.0.1", 0)

    async def flood() -> None:
        """One connection past the bound: the oldest is closed; then all."""
        conns = [
            await asyncio.open_connection("127.0.0.1", port)
            for _ in range(MAX_UNBOUND_PER_ADDRESS + 1)
        ]
        async with asyncio.timeout(10):  # closed by the server
            with contextlib.suppress(ConnectionResetError):
                await conns[0][0].read()
        for _, writer in conns:
            writer.close()
        # the server has let them all go: the address has none left
        assert await until(lambda: not server.connections, 10)

    try:
        with capture_logs() as logs:
            for _ in range(5):
                await flood()
            now[0] += LOGGED_EVERY
            await flood()
    finally:
        await server.stop(grace=0.5)
    capped = [e for e in logs if e["event"] == "unbound_connections_capped"]
    assert [(e["peer"], e.get("closed_since_last")) for e in capped] == [
        ("127.0.0.1", None),
        ("127.0.0.1", 4),
    ]
