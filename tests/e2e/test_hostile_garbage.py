"""Hostile bytes over loopback against the daemon run in this process (the
same Gateway that ``fixgw run`` builds), while a client trades beside them.

Before a Logon, bytes that cannot be FIX, or cannot become a Logon within
``max_message_size``, are closed by the server within a second, not held
for the logon timeout (10 s), and each refusal is one warning naming the
peer and the reason.  The trading client loses nothing.  After a Logon,
what the session ignores is counted in ``fixgw_session_garbled_messages_total``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from netkit import free_port
from structlog.testing import capture_logs
from test_order_flow import order, until_final

from config import SessionSettings, default_config_path, load_config, with_overrides
from gateway.daemon import Gateway
from gateway.fix import codec
from gateway.fix.codec import FixMessage, FrameDecoder
from gateway.fix.events import CloseConnection, LoggedOut
from gateway.net.client import FixClient

CLOSED_WITHIN = 1.0  # seconds; the logon timeout is 10


def stamp() -> bytes:
    return codec.format_utc_timestamp(time.time())


def raw_message(sender: bytes, msg_type: bytes, seq: int, body: bytes = b"") -> bytes:
    header = [(34, b"%d" % seq), (49, sender), (52, stamp()), (56, b"GATEWAY")]
    return codec.encode_message(b"FIX.4.4", msg_type, header, body)


def big_logon() -> bytes:
    """A Logon of about 70 KB, over the default max_message_size of 64 KiB."""
    body = b"98=0\x01108=30\x01553=" + b"u" * 70_000 + b"\x01"
    return raw_message(b"CLIENT3", b"A", 1, body)


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# name -> (the writes an attacker makes, the reason the server logs)
ATTACKS: dict[str, tuple[list[bytes], str]] = {
    "HTTP request": ([b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n"], "not FIX"),
    "TLS ClientHello": (
        [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64],
        "not FIX",
    ),
    "a megabyte of random bytes": (
        [random.Random(20261203).randbytes(1 << 20)],
        "not FIX",
    ),
    "BodyLength of 100 MB, trickled": (
        one_byte_at_a_time(b"8=FIX.4.4\x019=100000000\x0135=A\x01"),
        "message larger than max_message_size",
    ),
    "BodyLength not a number, trickled": (
        one_byte_at_a_time(b"8=FIX.4.4\x019=12abc\x01"),
        "not FIX",
    ),
    "70 KB Logon": ([big_logon()], "message larger than max_message_size"),
}


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = with_overrides(
        load_config(default_config_path()),
        fix_port=free_port(),
        http_port=free_port(),
        drop_copy_port=0,
        data_dir=str(tmp_path),
    )
    running = Gateway(cfg)
    await running.start()
    yield running
    await running.stop()


async def attack(port: int, source: str, writes: list[bytes]) -> bytes:
    """Send ``writes`` from ``source`` and wait (up to CLOSED_WITHIN seconds
    after the last byte went out, or after the server stopped taking them)
    for the server to close; returns whatever it sent back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    received = b""
    try:
        try:
            for data in writes:
                writer.write(data)
                await writer.drain()
                if len(writes) > 1:
                    await asyncio.sleep(0)  # let the server read this piece alone
        except ConnectionError:
            pass  # closed before everything was sent
        async with asyncio.timeout(CLOSED_WITHIN):
            try:
                while chunk := await reader.read(65536):
                    received += chunk
            except ConnectionError:
                pass  # reset: the server closed with our bytes unread
    finally:
        writer.close()
    return received


async def trade(client: FixClient, stop: asyncio.Event) -> list[bytes]:
    """Market orders one after another until ``stop``; the final status of each."""
    statuses: list[bytes] = []
    n = 0
    while not stop.is_set() or n < 3:
        n += 1
        cl_ord_id = f"V{n}"
        client.send(b"D", order(cl_ord_id, side="1" if n % 2 else "2"))
        reports = await until_final(client, cl_ord_id.encode())
        statuses.append(reports[-1].get(39) or b"")
    return statuses


@pytest.mark.asyncio
async def test_garbage_before_logon_is_closed_at_once_while_a_client_trades(
    gateway: Gateway,
) -> None:
    victim = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await victim.connect("127.0.0.1", gateway.fix_port)
    stop = asyncio.Event()
    trading = asyncio.create_task(trade(victim, stop))
    # each attack from an address of its own, as from separate hosts: this
    # test is about how the bytes are judged, not about repeated failures
    # from one address (which slow that address down)
    sources = {name: f"127.0.0.{10 + i}" for i, name in enumerate(ATTACKS)}
    with capture_logs() as logs:
        try:
            answers = await asyncio.gather(
                *(
                    attack(gateway.fix_port, sources[name], writes)
                    for name, (writes, _) in ATTACKS.items()
                )
            )
        finally:
            stop.set()
            statuses = await trading
    # no answer to any of them: there is no session to answer on
    assert answers == [b""] * len(ATTACKS)
    refusals = [e for e in logs if e["event"] == "connection_refused"]
    for name, (_, reason) in ATTACKS.items():
        mine = [e for e in refusals if e["peer"].startswith(sources[name] + ":")]
        assert [(e["log_level"], e["reason"]) for e in mine] == [("warning", reason)], name
        assert len(mine[0]["received"]) <= codec.LOGGED_CHARS + 3

    # the trading client lost nothing: every order filled, the session never
    # dropped, and every message the gateway sent it has arrived
    assert statuses
    assert all(s == b"2" for s in statuses), statuses
    assert victim.logged_on
    assert not [e for e in victim.events if isinstance(e, (LoggedOut, CloseConnection))]
    [served] = [s for s in gateway.sessions if s.target_comp_id == b"CLIENT1"]
    assert served.store.next_sender_seq == victim.session.store.next_target_seq
    assert served.store.next_target_seq == victim.session.store.next_sender_seq
    await victim.logout()


class RawSession:
    """A client logged on over a plain socket, to send what FixClient never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.seq = 1

    @classmethod
    async def logon(cls, port: int, sender: bytes) -> RawSession:
        raw = cls(*await asyncio.open_connection("127.0.0.1", port))
        raw.send(b"A", b"98=0\x01108=30\x01141=Y\x01")
        answer = await raw.receive()
        assert answer.msg_type == b"A"
        return raw

    def send(self, msg_type: bytes, body: bytes = b"") -> None:
        self.writer.write(raw_message(b"CLIENT2", msg_type, self.seq, body))
        self.seq += 1

    async def receive(self, timeout: float = 5.0) -> FixMessage:
        async with asyncio.timeout(timeout):
            while (frame := self.decoder.next_frame()) is None:
                data = await self.reader.read(65536)
                assert data, "the gateway closed the session"
                self.decoder.feed(data)
        return codec.parse_frame(frame)

    async def answer_to_test_request(self, probe: bytes) -> FixMessage:
        self.send(b"1", b"112=%b\x01" % probe)
        while True:
            msg = await self.receive()
            if msg.msg_type == b"0" and msg.get(112) == probe:
                return msg


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def garbled_count(gateway: Gateway, client: str) -> float:
    text = await asyncio.to_thread(scrape, gateway.http_port)
    sample = f'fixgw_session_garbled_messages_total{{session="FIX.4.4:GATEWAY->{client}"}}'
    match = re.search("^" + re.escape(sample) + r" (\S+)$", text, re.M)
    assert match is not None, text
    return float(match.group(1))


@pytest.mark.asyncio
async def test_garbage_after_logon_is_ignored_and_counted_in_the_metrics(
    gateway: Gateway,
) -> None:
    raw = await RawSession.logon(gateway.fix_port, b"CLIENT2")
    await raw.answer_to_test_request(b"BEFORE")
    before = await garbled_count(gateway, "CLIENT2")

    # a run of junk, then a frame whose CheckSum is wrong (a number it
    # does not use up), then one over max_message_size
    good = raw_message(b"CLIENT2", b"0", raw.seq)
    wrong = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    oversized = raw_message(b"CLIENT2", b"0", raw.seq, b"58=" + b"z" * 70_000 + b"\x01")
    raw.writer.write(b"\x00\xffnot FIX at all\r\n" + wrong + oversized)
    # answered in order: once the answer is here, the garbage was read
    await raw.answer_to_test_request(b"AFTER")
    assert await garbled_count(gateway, "CLIENT2") == before + 3

    raw.send(b"5")
    logout = await raw.receive()
    assert logout.msg_type == b"5"
    raw.writer.close()


@pytest.mark.asyncio
async def test_short_resend_requests_back_to_back_are_paced_as_a_long_one_is(
    gateway: Gateway,
) -> None:
    """Thousands of ResendRequests of a few dozen numbers each, sent in one
    write by a peer that reads nothing meanwhile: each waits for the answer
    to the one before to be written, so the bytes queued to the peer stay
    bounded (it is not dropped as a slow consumer), the answers are a
    fraction of what answering each at once would send, and the session
    goes on."""
    raw = await RawSession.logon(gateway.fix_port, b"CLIENT2")
    for n in range(10):
        raw.send(b"D", order(f"R{n}"))
    finals = 0
    while finals < 10:
        if (await raw.receive()).get(39) == b"2":
            finals += 1
    stored = gateway.sessions[
        [s.target_comp_id for s in gateway.sessions].index(b"CLIENT2")
    ].store.next_sender_seq
    requests = 20_000
    with capture_logs() as logs:
        data = b""
        for _ in range(requests):
            data += raw_message(b"CLIENT2", b"2", raw.seq, b"7=2\x0116=0\x01")
            raw.seq += 1
        raw.writer.write(data)
        await raw.writer.drain()
        resent = 0
        probe = b"AFTER-RESENDS"
        raw.send(b"1", b"112=%b\x01" % probe)
        async with asyncio.timeout(120):
            while True:
                msg = await raw.receive(timeout=60)
                if msg.get(43) == b"Y":
                    resent += 1
                elif msg.msg_type == b"0" and msg.get(112) == probe:
                    break
    assert not [e for e in logs if e["event"] == "slow_consumer_disconnected"]
    at_once = requests * (stored - 2)  # every request answered in full, at once
    assert 0 < resent < at_once / 4, (resent, at_once)
    raw.send(b"D", order("AFTER"))
    while (await raw.receive()).get(11) != b"AFTER":
        pass
    raw.writer.close()


@pytest.mark.asyncio
async def test_a_flood_of_rejected_messages_is_answered_but_not_logged_one_line_each(
    gateway: Gateway,
) -> None:
    """A logged-on client sending messages the session rejects, as fast as
    it can: each gets its Reject, the log a line of them a second at most
    (with the count of those not logged), and a client trading beside it
    is served."""
    victim = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await victim.connect("127.0.0.1", gateway.fix_port)
    raw = await RawSession.logon(gateway.fix_port, b"CLIENT2")
    flood = 5_000
    with capture_logs() as logs:
        data = b""
        for _ in range(flood):
            data += raw_message(b"CLIENT2", b"0", raw.seq, b"4999=x\x01")  # Invalid tag number
            raw.seq += 1
        raw.writer.write(data)
        stop = asyncio.Event()
        trading = asyncio.create_task(trade(victim, stop))
        rejects = 0
        try:
            async with asyncio.timeout(120):
                while rejects < flood:
                    msg = await raw.receive(timeout=60)
                    if msg.msg_type == b"3":
                        assert msg.get(373) == b"0"
                        rejects += 1
        finally:
            stop.set()
            statuses = await trading
    said = [e for e in logs if e["event"] == "message_rejected"]
    # one at once, then one a second at most: a few lines, not one a message
    assert 1 <= len(said) < 100, len(said)
    assert all(s == b"2" for s in statuses), statuses
    await raw.answer_to_test_request(b"AFTER")
    raw.writer.close()
    await victim.logout()


@pytest.mark.asyncio
async def test_logons_resetting_the_numbers_in_one_write_are_not_each_taken(
    gateway: Gateway,
) -> None:
    """A logged-on client sending a thousand Logons with ResetSeqNumFlag in
    one write: each taken would rewrite its store (a new file, synced) on
    the loop every session shares.  One is taken, the next ends the session
    with a Logout saying why, and a client trading beside it is served."""
    victim = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await victim.connect("127.0.0.1", gateway.fix_port)
    raw = await RawSession.logon(gateway.fix_port, b"CLIENT2")
    await raw.answer_to_test_request(b"BEFORE")
    reset = raw_message(b"CLIENT2", b"A", 1, b"98=0\x01108=30\x01141=Y\x01")
    stop = asyncio.Event()
    trading = asyncio.create_task(trade(victim, stop))
    raw.writer.write(reset * 1_000)
    taken = 0  # each reset taken is answered with a Logon
    try:
        async with asyncio.timeout(60):
            while (msg := await raw.receive(timeout=30)).msg_type == b"A":
                taken += 1
                if taken == 1_000:
                    break
    finally:
        stop.set()
        statuses = await trading
    assert taken == 1
    assert msg.msg_type == b"5"
    assert b"ResetSeqNumFlag" in (msg.get(58) or b"")
    assert all(s == b"2" for s in statuses), statuses
    raw.writer.close()
    await victim.logout()
