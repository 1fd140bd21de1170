"""The ``fixgw lp-sim`` process: its session stores, the FIX acceptor and the
simulated LP application (:mod:`gateway.sim.lp_sim`), run until a signal.

The port is bound before anything else: when it is taken, the process says
so in one line and stops before a session store exists."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from config.loader import ConfigError
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.session import Session
from gateway.fix.store import SessionStore, StoreError
from gateway.net.server import FixServer, ListenError, bind_listening
from gateway.net.transport import Outbox
from gateway.sim.lp_sim import LpSimApplication
from gateway.sim.lp_sim_config import LpSimConfig, load_lp_sim_config, statement_dir
from gateway.storage.session_store import open_store
from lp_adapters.simulated.statement import FLUSH_INTERVAL, StatementWriter

_log = structlog.get_logger("gateway.sim.lp_sim")


class LpSimulator:
    """Everything one ``fixgw lp-sim`` process runs, started and stopped as one.

    ``statement_flush_interval`` is how long a fill may wait in memory before
    it is written to the statement (seconds)."""

    def __init__(
        self, config: LpSimConfig, *, statement_flush_interval: float = FLUSH_INTERVAL
    ) -> None:
        self.config = config
        lp = config.lp
        self.data_dir = Path(lp.data_dir).absolute()
        self.statement = StatementWriter(
            statement_dir(config).absolute(), lp.name, flush_interval=statement_flush_interval
        )
        self.outbox = Outbox()
        self.application = LpSimApplication(config, self.outbox, statement=self.statement)
        self.stores: list[SessionStore] = []
        self.sessions: list[Session] = []
        try:
            for settings in config.sessions:
                store = open_store(
                    "file",
                    self.data_dir / "sessions",
                    settings.session_id,
                    fsync=lp.fsync == "batch",
                )
                self.stores.append(store)
                self.sessions.append(Session(settings, store))
        except BaseException:
            self._close_stores()
            raise
        self.fix_server = FixServer(
            SessionRegistry(self.sessions),
            {session.session_id: self.application for session in self.sessions},
            logon_timeout=max(s.LogonTimeout for s in config.sessions),
            outbox=self.outbox,
        )
        self.port = 0

    def _close_stores(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()

    async def start(self, port: int, sockets: Sequence[socket.socket] = ()) -> int:
        """Start quoting, then listen (on ``sockets`` when bound beforehand
        to ``port``); returns the bound port."""
        await self.application.start()
        if sockets:
            self.port = await self.fix_server.serve(sockets)
        else:
            self.port = await self.fix_server.start(self.config.lp.host, port)
        _log.info(
            "lp_sim_started",
            lp=self.config.lp.name,
            port=self.port,
            data_dir=str(self.data_dir),
            statements=str(self.statement.directory),
            sessions=[s.session_id for s in self.sessions],
            symbols=list(self.application.instruments),
        )
        return self.port

    async def stop(self) -> None:
        """Cancel what is open and withdraw the quotes, log every session out,
        close the stores."""
        await self.application.stop()
        await self.fix_server.stop()
        self.application.close()
        self._close_stores()
        _log.info("lp_sim_stopped", lp=self.config.lp.name)


async def run_lp_sim(config: LpSimConfig, port: int, sockets: Sequence[socket.socket] = ()) -> int:
    """Run the LP simulator on ``port`` (``sockets`` bound to it beforehand,
    :func:`~gateway.net.server.bind_listening`) until SIGTERM or SIGINT,
    then log the sessions out cleanly.  Returns the process exit status."""
    try:
        simulator = LpSimulator(config)
    except (StoreError, OSError) as exc:
        for sock in sockets:
            sock.close()
        _log.error("lp_sim_store_unavailable", lp=config.lp.name, error=str(exc))
        return 1
    try:
        await simulator.start(port, sockets)
    except OSError as exc:
        _log.error("lp_sim_listen_failed", lp=config.lp.name, port=port, error=str(exc))
        await simulator.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        _log.info("lp_sim_stopping", lp=config.lp.name)
        await simulator.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def main(args: argparse.Namespace) -> int:
    """``fixgw lp-sim --config FILE --port N [--data-dir DIR] [--statements DIR]``: exit status
    2 and every problem listed when the configuration is refused, exit
    status 2 and one line when the port cannot be had."""
    path = str(args.config)
    port = int(args.port)
    errors: list[str] = []
    if not 1 <= port <= 65535:
        errors.append(f"--port: must be between 1 and 65535, got {port}")
    config: LpSimConfig | None = None
    try:
        config = load_lp_sim_config(path, data_dir=args.data_dir, statements=args.statements)
    except ConfigError as exc:
        errors = [*exc.errors, *errors]
    if config is None or errors:
        print(f"{path}: refusing to start, {len(errors)} configuration error(s):", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
        return 2

    try:
        sockets = bind_listening(config.lp.host, port, "--port")
    except ListenError as exc:
        print(f"fixgw: {exc}", file=sys.stderr)
        return 2

    import uvloop

    from gateway.ops.logs import configure_logging

    configure_logging(config.lp.log_level, config.lp.log_format)
    return int(uvloop.run(run_lp_sim(config, port, sockets)))
