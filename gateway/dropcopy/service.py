"""The drop-copy process: the drop-copy sessions, served on their own port,
fed from the order journal as the gateway writes it.

The gateway starts it (``python -m gateway.dropcopy``) with the config in
force as JSON on its standard input and the listening sockets it bound
(``--listen-fd``), and starts it again if it dies.  It ends when told to
(SIGTERM, SIGINT) or when the gateway is gone.  Nothing of the order path
waits for it: it reads what the journal already holds, at its own pace, on
its own core (see :mod:`gateway.dropcopy.follow`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from config import Config
from gateway.dropcopy.copies import DropCopies, DropCopyApplication
from gateway.dropcopy.follow import Cursor, JournalCopier
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import Application
from gateway.fix.session import Session
from gateway.fix.store import SessionStore
from gateway.net.server import FixServer, server_tls
from gateway.net.transport import Outbox
from gateway.ops.admin import session_info
from gateway.storage.session_store import open_store
from gateway.storage.writeback import start_writeback

__all__ = ["DropCopyService", "drop_copy_sessions"]

_log = structlog.get_logger("gateway.dropcopy")

POLL_MIN: Final = 0.002
POLL_MAX: Final = 0.05
"""How long the journal is left between reads: the shortest right after
copies were made, doubling while there is nothing new."""

READ_LIMIT: Final = 1 << 20
"""Bytes of the journal read at most per turn."""

MAX_BACKLOG: Final = 1 << 20
"""Bytes waiting to be written to a logged-on counterparty past which no
more is read from the journal until they are (a back office catching up
reads more slowly than a journal is read).  This and ``READ_LIMIT`` are a
quarter of ``gateway.max_outbound_buffer`` when that is less: a
counterparty is waited for, not disconnected as a slow consumer (but by
one journal batch whose copies alone pass that bound)."""

PARENT_CHECK: Final = 1.0
REPORT_EVERY: Final = 1.0
"""How often the sessions' state is written for the gateway to show."""


def drop_copy_sessions(config: Config) -> list[str]:
    """The session ids of the config's drop-copy sessions."""
    return [s.session_id for s in config.sessions if s.Application == "dropcopy"]


class DropCopyService:
    """The drop-copy sessions and the journal's follower, on one loop."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        gw = config.gateway
        self.config = config
        data_dir = Path(gw.data_dir)
        fsync = config.store.fsync == "batch"
        self.stores: list[SessionStore] = []
        self.sessions: list[Session] = []
        applications: dict[str, Application] = {}
        clients: dict[str, str] = {}
        for settings in config.sessions:
            if settings.Application != "dropcopy":
                if settings.Application != "echo":
                    clients[settings.session_id] = settings.TargetCompID
                continue
            store = open_store("file", data_dir / "sessions", settings.session_id, fsync=fsync)
            self.stores.append(store)
            session = Session(settings, store, max_message_size=gw.max_message_size)
            self.sessions.append(session)
            applications[settings.session_id] = DropCopyApplication()
        # at idle priority the process keeps a core it was given until it
        # sleeps, yields or the next tick (4 ms): it yields after each
        # batch of writes (a part of a resend among them) and while copying
        pause = getattr(os, "sched_yield", None)
        self.outbox = Outbox(pause=pause)
        # the copies of one read, on top of those waiting, stay below the
        # bytes past which a counterparty would be disconnected
        room = gw.max_outbound_buffer // 4
        self.max_backlog = min(MAX_BACKLOG, room)
        self.read_limit = min(READ_LIMIT, room)
        self.fix_server = FixServer(
            SessionRegistry(self.sessions),
            applications,
            max_message_size=gw.max_message_size,
            max_outbound_buffer=gw.max_outbound_buffer,
            logon_timeout=max(s.LogonTimeout for s in config.sessions),
            clock=clock,
            outbox=self.outbox,
        )
        self.copier = JournalCopier(
            data_dir / "orders",
            Cursor(data_dir / "dropcopy", fsync=fsync),
            DropCopies(self.sessions),
            clients,
            {i.symbol: i.to_instrument() for i in config.instruments},
            flush=self._flush,
            wake=self.outbox.wake,
            clock=clock,
            trading_day_end=config.orders.trading_day_end,
            pause=pause,
        )
        self._tls = server_tls(gw)
        self._status = data_dir / "dropcopy" / "sessions.json"
        self._report_failed = ""
        self._stop = asyncio.Event()
        self.port = 0
        self.failed = False
        self.orphaned = False

    def _flush(self) -> None:
        """The stores, then the sockets.  A store that cannot be written
        raises (the outbox would retry later, and the cursor must not move
        past copies that are not stored)."""
        for store in self.stores:
            store.flush()
        self.outbox.write_pending()

    def _backlogged(self) -> bool:
        for session in self.sessions:
            backlog = self.outbox.backlog(session)
            if backlog is not None and backlog > self.max_backlog:
                return True
        return False

    async def _follow(self) -> None:
        try:
            await self._follow_journal()
        except Exception:
            # the process ends, said why; the gateway starts it again
            _log.exception("drop_copy_failed")
            self.failed = True
            self._stop.set()

    async def _follow_journal(self) -> None:
        delay = POLL_MIN
        while not self._stop.is_set():
            if self._backlogged():
                await asyncio.sleep(POLL_MIN)
                continue
            if self.copier.poll(self.read_limit):
                delay = POLL_MIN
                await asyncio.sleep(0)
                continue
            try:
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, POLL_MAX)

    async def _watch_parent(self, parent: int) -> None:
        while os.getppid() == parent:
            try:
                async with asyncio.timeout(PARENT_CHECK):
                    await self._stop.wait()
                return
            except TimeoutError:
                pass
        _log.warning("drop_copy_gateway_gone", parent=parent)
        # the next process goes on from the cursor: end now, letting the port go
        self.orphaned = True
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> None:
        """Write the sessions' state where the gateway reads it
        (``<data_dir>/dropcopy/sessions.json``, replaced whole)."""
        state = [session_info(s) for s in self.sessions]
        path = self._status
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(json.dumps(state).encode())
            os.replace(tmp, path)
        except OSError as exc:
            # a full disk: the gateway shows the state last written, and
            # this is tried again at the next report
            error = str(exc)
            if error != self._report_failed:
                _log.warning("drop_copy_state_not_written", path=str(path), error=error)
                self._report_failed = error
            return
        if self._report_failed:
            _log.info("drop_copy_state_written", path=str(path))
            self._report_failed = ""

    async def _report_often(self) -> None:
        while not self._stop.is_set():
            self.report()
            try:
                async with asyncio.timeout(REPORT_EVERY):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def run(
        self, sockets: list[socket.socket], parent: int = 0, ready: Callable[[], None] | None = None
    ) -> None:
        """Serve on ``sockets`` and follow the journal until :meth:`stop`
        (or, with ``parent``, until that process is gone); ``ready`` is
        called once the sessions are served."""
        self.port = await self.fix_server.serve(sockets, self._tls)
        _log.info(
            "drop_copy_started",
            pid=os.getpid(),
            port=self.port,
            sessions=[s.session_id for s in self.sessions],
            cursor=self.copier.cursor.serial,
        )
        if ready is not None:
            ready()
        tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._report_often())]
        writeback = start_writeback(
            lambda: [getattr(s, "fileno", lambda: -1)() for s in self.stores],
            self.config.store.writeback_ms,
        )
        if parent:
            tasks.append(asyncio.create_task(self._watch_parent(parent)))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.fix_server.stop()
            # told to stop by the gateway: what the journal holds by now is
            # copied (stored, and sent at the next logon) before the stores close
            while not (self.failed or self.orphaned) and self.copier.poll(READ_LIMIT):
                pass
            if writeback is not None:
                writeback.stop()
            self.outbox.write_pending()
            self.copier.close()
            self.report()
            for store in self.stores:
                store.close()
            _log.info("drop_copy_stopped", cursor=self.copier.cursor.serial)


def install_signals(service: DropCopyService) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.stop)
    # a reload of the gateway's config is the gateway's business, and so is
    # Ctrl-C (SIGINT to the terminal's whole process group, ignored since
    # the process started): the gateway stops this process once its
    # sessions are logged out and the journal's last batch is written
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
