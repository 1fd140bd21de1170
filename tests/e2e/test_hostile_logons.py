"""A password guesser beside a trading client: 2,000 bad logons from one
address leave the daemon's sockets as they were, are really slowed
down, and neither the trading client nor the real owner of the guessed
CompID (from the same address) is shut out.  A flood of idle connections,
to the FIX port or to the HTTP port, holds no more than a few of the
daemon's descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netkit import log_events

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.states import SessionState
from gateway.net.client import FixClient
from gateway.net.server import (
    FREE_FAILURES,
    MAX_HELD_PER_PAIR,
    MAX_UNBOUND_PER_ADDRESS,
    MIN_LOGON_DELAY,
)
from gateway.ops.connections import MAX_HTTP_PER_ADDRESS

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pass-8472"
BAD_LOGONS = 2000


@pytest.fixture
def password_config(tmp_path: Path) -> Path:
    text = (REPO / "config" / "default.toml").read_text()
    text, n = re.subn(
        r'(?m)^(TargetCompID = "CLIENT1".*)$', rf'\1\nPassword = "{PASSWORD}"', text, count=1
    )
    assert n == 1
    path = tmp_path / "password.toml"
    path.write_text(text)
    return path


def bad_logon() -> bytes:
    header = [
        (34, b"1"),
        (49, b"CLIENT1"),
        (52, codec.format_utc_timestamp(time.time())),
        (56, b"GATEWAY"),
    ]
    return codec.encode_message(b"FIX.4.4", b"A", header, b"98=0\x01108=30\x01554=guess\x01")


async def try_bad_logon(port: int) -> tuple[float, bool]:
    """One guess: the seconds until the daemon closed the connection, and
    whether the guess was tried (answered with a Logout) rather than closed
    unread."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = b""
    try:
        writer.write(bad_logon())
        await writer.drain()
        while data := await reader.read(65536):
            received += data
    except ConnectionResetError:
        pass  # closed to make room for newer connections from this address
    answered = time.monotonic() - started
    writer.close()
    with contextlib.suppress(ConnectionResetError):
        await writer.wait_closed()
    return answered, b"\x0135=5\x01" in received


def sockets(pid: int) -> int:
    """The sockets the process holds open (its other descriptors, such as
    the reload worker's pipes, come and go on their own)."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(fds / fd).startswith("socket:")
        except FileNotFoundError:
            pass  # closed meanwhile
    return count


async def trade(port: int, up: asyncio.Event, stop: asyncio.Event) -> tuple[int, int]:
    """CLIENT2 sends market orders until ``stop``; (sent, answered finally)."""
    client = FixClient(SessionSettings(SenderCompID="CLIENT2", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", port)
    up.set()
    sent = final = 0
    while not stop.is_set():
        sent += 1
        fields = [(11, b"V%d" % sent), (38, b"1000"), (40, b"1"), (54, b"1")]
        fields += [(55, b"EUR/USD"), (59, b"3"), (60, codec.format_utc_timestamp(time.time()))]
        client.send(b"D", codec.encode_fields(fields))
        while True:
            report = await client.receive(timeout=10)
            if report.get(39) in (b"2", b"4", b"8"):
                final += 1
                break
        await asyncio.sleep(0.01)  # a steady trickle, not a flood
    await client.logout()
    return sent, final


@pytest.mark.asyncio
async def test_two_thousand_bad_logons_leak_nothing_and_shut_no_one_out(
    daemon_factory: Any, password_config: Path
) -> None:
    d = daemon_factory("--config", str(password_config)).start()
    up, stop = asyncio.Event(), asyncio.Event()
    victim = asyncio.create_task(trade(d.fix_port, up, stop))
    await asyncio.wait_for(up.wait(), 10)
    before = sockets(d.proc.pid)  # the listening socket and the victim's

    limit = asyncio.Semaphore(100)

    async def guess() -> float:
        async with limit:
            return await try_bad_logon(d.fix_port)

    started = time.monotonic()
    guesses = await asyncio.gather(*(guess() for _ in range(BAD_LOGONS)))
    elapsed = time.monotonic() - started
    # past the free ones, a guess is tried only after it was held for the
    # delay, a few of the pair at once; the others are closed unread
    tried = sum(was_tried for _, was_tried in guesses)
    assert tried <= FREE_FAILURES + MAX_HELD_PER_PAIR * (elapsed / MIN_LOGON_DELAY + 1)
    assert tried < BAD_LOGONS / 10
    stop.set()
    sent, final = await victim
    assert sent > 0
    assert final == sent  # the trading client lost nothing

    # every connection of the guesser is closed (and the victim logged out)
    deadline = time.monotonic() + 15
    # a count in /proc has no event to wait on: polled, with a deadline
    while sockets(d.proc.pid) >= before and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # polling, with the deadline above
    assert sockets(d.proc.pid) == before - 1

    # one more guess is slowed down ...
    seconds, was_tried = await try_bad_logon(d.fix_port)
    assert was_tried
    assert seconds >= MIN_LOGON_DELAY * 0.9
    # ... and the real owner of the CompID, from the same address, still logs on
    owner = FixClient(
        SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", Password=PASSWORD)
    )
    await owner.connect("127.0.0.1", d.fix_port, timeout=15)
    assert owner.logged_on
    await owner.logout()
    # the slowing is logged as it grows, a few lines, not one per guess
    slowed = [e for e in log_events(d.log_text()) if e["event"] == "logon_slowed"]
    assert 0 < len(slowed) <= 8


@pytest.mark.asyncio
async def test_connections_that_never_log_on_are_bounded_per_address(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    up, stop = asyncio.Event(), asyncio.Event()
    victim = asyncio.create_task(trade(d.fix_port, up, stop))
    await asyncio.wait_for(up.wait(), 10)
    before = sockets(d.proc.pid)

    idle = [await asyncio.open_connection("127.0.0.1", d.fix_port) for _ in range(500)]
    # the daemon keeps the newest few of them, however many come
    deadline = time.monotonic() + 15
    # a count in /proc has no event to wait on: polled, with a deadline
    while sockets(d.proc.pid) > before + MAX_UNBOUND_PER_ADDRESS:
        assert time.monotonic() < deadline, sockets(d.proc.pid) - before
        await asyncio.sleep(0.05)  # polling, with the deadline above
    closed = 0

    async def closed_by_daemon(reader: asyncio.StreamReader) -> None:
        nonlocal closed
        try:
            await reader.read(1)
        except ConnectionResetError:
            pass
        closed += 1

    # every one but the newest few is closed by the daemon (no timing: each
    # waits for its end, all under one deadline)
    waits = [asyncio.create_task(closed_by_daemon(reader)) for reader, _ in idle]
    async with asyncio.timeout(30):
        while closed < 500 - MAX_UNBOUND_PER_ADDRESS:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waits = [w for w in waits if not w.done()]
    assert len(waits) <= MAX_UNBOUND_PER_ADDRESS

    # a real client from the same address still logs on
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port, timeout=5)
    assert client.logged_on
    await client.logout()
    stop.set()
    sent, final = await victim
    assert final == sent > 0
    for _, writer in idle:
        writer.close()
    for wait in waits:
        wait.cancel()
    capped = [e for e in log_events(d.log_text()) if e["event"] == "unbound_connections_capped"]
    assert len(capped) == 1
    assert capped[0]["peer"] == "127.0.0.1"


@pytest.mark.asyncio
async def test_http_connections_are_bounded_per_address(daemon_factory: Any) -> None:
    """Connections to the HTTP port that never finish a request (a
    slow-loris client) are bounded per address as the FIX port's are: they
    cannot take the descriptors the FIX sessions and the journal need."""
    d = daemon_factory().start()
    flood = 500
    idle = []
    for _ in range(flood):
        reader, writer = await asyncio.open_connection("127.0.0.1", d.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: fixgw\r\n")  # never finished
        idle.append((reader, writer))
    closed = 0

    async def closed_by_daemon(reader: asyncio.StreamReader) -> None:
        nonlocal closed
        with contextlib.suppress(ConnectionResetError):
            await reader.read(1)
        closed += 1

    # every one but the newest few is closed by the daemon (no timing: each
    # waits for its end, all under one deadline)
    waits = [asyncio.create_task(closed_by_daemon(reader)) for reader, _ in idle]
    async with asyncio.timeout(30):
        while closed < flood - MAX_HTTP_PER_ADDRESS:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waits = [w for w in waits if not w.done()]
    assert len(waits) <= MAX_HTTP_PER_ADDRESS

    # the admin API still answers that address, and a FIX client logs on
    headers = {"Authorization": "Bearer dev-admin-token"}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{d.http_port}/admin/sessions"
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
    client = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await client.connect("127.0.0.1", d.fix_port, timeout=5)
    assert client.logged_on
    await client.logout()
    for _, writer in idle:
        writer.close()
    for wait in waits:
        wait.cancel()
    capped = [e for e in log_events(d.log_text()) if e["event"] == "http_connections_capped"]
    assert len(capped) == 1
    assert capped[0]["peer"] == "127.0.0.1"


@pytest.mark.asyncio
async def test_a_flood_of_idle_connections_does_not_push_out_the_owners_held_logon(
    daemon_factory: Any, password_config: Path
) -> None:
    d = daemon_factory("--config", str(password_config)).start()
    for _ in range(FREE_FAILURES):
        _, was_tried = await try_bad_logon(d.fix_port)
        assert was_tried
    # the owner's Logon is now held by the throttle, from the guesser's address
    owner = FixClient(
        SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY", Password=PASSWORD)
    )
    logon = asyncio.create_task(owner.connect("127.0.0.1", d.fix_port, timeout=15))
    async with asyncio.timeout(10):
        # the client's state has no event of its own: looked at each turn
        while owner.session.state is not SessionState.LOGON_SENT:  # noqa: ASYNC110
            await asyncio.sleep(0)  # polling: one loop turn
    # then more idle connections from that address than the bound, paced a
    # little, all while the owner's Logon is held
    idle = []
    for _ in range(2 * MAX_UNBOUND_PER_ADDRESS):
        idle.append(await asyncio.open_connection("127.0.0.1", d.fix_port))
        await asyncio.sleep(0.005)  # pacing
    await logon
    assert owner.logged_on
    await owner.logout()
    for _, writer in idle:
        writer.close()


def test_the_default_listens_on_loopback_and_an_open_address_without_passwords_is_warned_of(
    daemon_factory: Any,
) -> None:
    default = (REPO / "config" / "default.toml").read_text()
    assert re.search(r'(?m)^fix_host = "127\.0\.0\.1"', default)
    assert re.search(r'(?m)^http_host = "127\.0\.0\.1"', default)
    d = daemon_factory("--fix-host", "0.0.0.0").start()
    deadline = time.monotonic() + 10
    while "gateway_started" not in d.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling, with the deadline above
    warned = [
        event["session"]
        for event in log_events(d.log_text())
        if event["event"] == "session_without_password_on_open_address"
    ]
    assert sorted(warned) == [
        "FIX.4.4:GATEWAY->BACKOFFICE",
        *(f"FIX.4.4:GATEWAY->CLIENT{i}" for i in (1, 2, 3)),
    ]
