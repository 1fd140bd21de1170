"""A drop-copy counterparty that reads slowly is waited for, never dropped:
the drop-copy process stops reading the journal while copies wait to be
written to it, well before the bytes queued to it reach
``gateway.max_outbound_buffer``, past which a peer is disconnected as a
slow consumer, whatever that is set to."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs
from test_drop_copy_process import until
from test_drop_copy_restart_backoffice import PER_BATCH, _config, _journal_missed

from backoffice.service import drop_copy_session
from gateway.dropcopy.service import DropCopyService
from gateway.fix.store import MemoryStore
from gateway.net.client import FixClient
from gateway.net.server import bind_listening

BATCHES = 150  # 6,000 reports, some 2.4 MB of copies


@pytest.mark.asyncio
async def test_a_counterparty_reading_slowly_is_waited_for_not_dropped(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    # the least the config allows
    cfg = msgspec.structs.replace(
        cfg, gateway=msgspec.structs.replace(cfg.gateway, max_outbound_buffer=65536)
    )
    service = DropCopyService(cfg)
    sockets = bind_listening("127.0.0.1", 0, "gateway.drop_copy_port")
    # what the kernel holds for the counterparty is little: the rest waits
    # in the process (an accepted connection takes its listener's size)
    sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    port = sockets[0].getsockname()[1]
    with capture_logs() as logs:
        running = asyncio.create_task(service.run(sockets))
        client = FixClient(drop_copy_session(cfg), MemoryStore())
        try:
            await client.connect("127.0.0.1", port, timeout=10)
            # the back office busy elsewhere: it takes nothing for now
            client.hold_reading(True)
            loop = asyncio.get_running_loop()
            missed = await loop.run_in_executor(None, _journal_missed, tmp_path, BATCHES)
            assert missed == BATCHES * PER_BATCH
            await until(
                lambda: service._backlogged() or not client.connected,
                "the copies wait for the counterparty",
            )
            assert client.logged_on, [e for e in logs if e["event"] == "slow_consumer_disconnected"]
            # it reads again: everything comes, on the same connection
            client.hold_reading(False)
            received = 0
            while received < missed:
                msg = await client.receive(timeout=30)
                received += msg.msg_type == b"8"
            assert client.logged_on
        finally:
            service.stop()
            await running
            client.abort()
    assert not [e for e in logs if e["event"] == "slow_consumer_disconnected"]
