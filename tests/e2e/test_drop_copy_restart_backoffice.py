"""When the back office counts a drop copy caught up: never before the
drop-copy process has copied what the order journal held when it started
(a process started again after it ended goes on from its cursor, and what
it missed meanwhile must reach the back office before it is caught up)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import msgspec
import pytest

from backoffice.service import Feed, drop_copy_session
from config import Config, SessionSettings, default_config_path, load_config
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient, LogonError
from gateway.net.server import bind_listening
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Message

CLIENT_SESSION = "FIX.4.4:GATEWAY->CLIENT1"
PER_BATCH = 40


def _config(data_dir: Path) -> Config:
    cfg = load_config(default_config_path())
    return msgspec.structs.replace(
        cfg, gateway=msgspec.structs.replace(cfg.gateway, data_dir=str(data_dir))
    )


def _journal_missed(data_dir: Path, batches: int) -> int:
    """Client reports written to the journal while no drop-copy process
    ran (its cursor at none of them); how many."""
    sender = Session(SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore())
    journal = OrderJournal(data_dir / "orders", keep_segments=True)
    list(journal.replay())
    seq = 1
    for _ in range(batches):
        for _ in range(PER_BATCH):
            exec_id = b"E%d" % seq
            body = (
                b"37=O1\x0111=A\x0117=%b\x01150=F\x0139=1\x0155=EUR/USD\x0154=1\x0138=1000000\x01"
                b"32=1000\x0131=1.1\x01151=999000\x0114=1000\x016=1.1\x01"
                b"60=20261204-10:00:00.000\x01" % exec_id
            )
            raw = sender.send_recorded(b"8", body, 1_796_385_600.0)[1]
            journal.add(Message(CLIENT_SESSION, 1.0, seq, raw, "LP_A"))
            seq += 1
        journal.flush()
    journal.close()
    return batches * PER_BATCH


@pytest.mark.asyncio
@pytest.mark.parametrize("batches", [25, 250, 1000])  # 1,000 to 40,000 reports
async def test_a_drop_copy_started_again_is_not_caught_up_before_it_has_sent_what_it_missed(
    tmp_path: Path, batches: int
) -> None:
    cfg = _config(tmp_path)
    missed = _journal_missed(tmp_path, batches)
    sockets = bind_listening("127.0.0.1", 0, "gateway.drop_copy_port")
    port = sockets[0].getsockname()[1]
    # listening since the process before this one: the back office's
    # Logon waits on the port before the new process starts
    sockets[0].listen()
    client = FixClient(drop_copy_session(cfg), MemoryStore())
    first = asyncio.create_task(client.connect("127.0.0.1", port, timeout=60))
    # the drop-copy process as the gateway starts it again, its cursor
    # before every batch the journal holds
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.dropcopy",
        "--listen-fd",
        str(sockets[0].fileno()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        pass_fds=[sockets[0].fileno()],
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(msgspec.json.encode(cfg))
    process.stdin.close()
    for sock in sockets:
        sock.close()
    feed = Feed("gateway", "127.0.0.1", port, 0, "BACKOFFICE-GATEWAY")
    feed.client = client
    received = 0
    early: list[int] = []

    async def take() -> None:
        nonlocal received
        while True:
            await client.messages.get()
            received += 1

    said: list[bytes] = []

    async def hear(out: asyncio.StreamReader) -> None:
        # what it logs is read as it comes (a full pipe would stop it)
        while line := await out.readline():
            said.append(line)

    taking = asyncio.create_task(take())
    hearing = asyncio.create_task(hear(process.stdout))
    try:
        with contextlib.suppress(LogonError):
            await first
        was_on, dropped = client.logged_on, 0
        deadline = time.monotonic() + 120
        while received < missed:
            assert time.monotonic() < deadline, f"{received} of {missed} copies received"
            if not client.logged_on:
                # the back office's attempts, until one is answered
                dropped += was_on
                with contextlib.suppress(LogonError):
                    await client.connect("127.0.0.1", port, timeout=30)
                was_on = client.logged_on
                continue
            if feed.caught_up():
                early.append(received)
            await asyncio.sleep(0.001)  # polling, with the deadline above
        assert early == [], f"caught up with {early[0]} of {missed} copies received"
        # a catch-up longer than the session keeps past a gap does not end
        # the session: what it did not keep it asks for again
        assert dropped == 0
        async with asyncio.timeout(10):
            while not feed.caught_up():  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polling, within the timeout above
    finally:
        first.cancel()
        taking.cancel()
        client.abort()
        if process.returncode is None:
            process.terminate()
        await asyncio.gather(first, taking, process.wait(), hearing, return_exceptions=True)
