"""How the gateway runs the drop-copy process: started once the order
journal has been recovered, given the config in force and the drop-copy
port's sockets, started again (after 1 s, doubling to 30 s) whenever it
ends on its own, and stopped after the journal's last batch is written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog

from config import Config, OrdersSettings

__all__ = ["DropCopyProcess", "read_cursor"]

_log = structlog.get_logger("gateway.dropcopy.process")

RESTART_MIN: Final = 1.0
RESTART_MAX: Final = 30.0
STOP_GRACE: Final = 10.0
READY_WITHIN: Final = 30.0
_PAIR: Final = struct.Struct("<QQ")


SESSIONS_FILE: Final = "sessions.json"
"""Where the drop-copy process reports its sessions, in ``<data_dir>/dropcopy``."""


def read_sessions(data_dir: Path, running: bool) -> list[dict[str, Any]]:
    """The drop-copy sessions as last reported (see :data:`SESSIONS_FILE`);
    while the process does not run, their state is ``unknown`` and none is
    logged on."""
    try:
        reported = json.loads((data_dir / "dropcopy" / SESSIONS_FILE).read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(reported, list):
        return []
    if not running:
        reported = [{**s, "state": "unknown", "logged_on": False} for s in reported]
    return reported


def place(pid: int, cpus: tuple[int, ...], idle: bool) -> None:
    """Put the drop-copy process ``pid`` where it runs the moment it is
    started: on ``cpus`` when named and, with ``idle``, under Linux's
    ``SCHED_IDLE`` policy.  It does so itself too, but only once Python
    and its imports have run (most of a second of CPU), which would
    otherwise run on the gateway's CPUs, at the gateway's priority."""
    if cpus:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:  # a CPU taken offline, or gone already: as it places itself
            pass
    policy = getattr(os, "SCHED_IDLE", None)
    if idle and policy is not None:
        try:
            os.sched_setscheduler(pid, policy, os.sched_param(0))
        except OSError:  # not allowed here, or gone already: as it places itself
            pass


def read_cursor(data_dir: Path) -> int:
    """The serial of the last journal batch the drop copy has stored copies of."""
    try:
        data = (data_dir / "dropcopy" / "cursor").read_bytes()
    except OSError:
        return 0
    return _PAIR.unpack(data)[0] if len(data) == _PAIR.size else 0


class DropCopyProcess:
    """The drop-copy process of one gateway (see the module documentation)."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self._config = msgspec.json.encode(config)
        self._sockets = sockets
        self.data_dir = Path(config.gateway.data_dir)
        self._cpus = tuple(config.gateway.drop_copy_cpus)
        self.port = int(sockets[0].getsockname()[1]) if sockets else 0
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def reconfigure(self, orders: OrdersSettings) -> None:
        """The ``[orders]`` a reload put in force, for the process's next
        start (the end of the trading day names the captures' TradeDate)."""
        config = msgspec.json.decode(self._config, type=Config)
        self._config = msgspec.json.encode(msgspec.structs.replace(config, orders=orders))

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def up(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.up and self._proc is not None else None

    async def _spawn(self, idle: bool = True) -> None:
        """Start the process, placed at once (see :func:`place`); ``idle``
        False leaves its priority to it, for the start the gateway waits
        for before it serves orders (at idle priority, CPUs busy with other
        work would hold that start back)."""
        fds = [s.fileno() for s in self._sockets]
        args = [a for fd in fds for a in ("--listen-fd", str(fd))]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.dropcopy",
            *args,
            "--parent",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=fds,
        )
        place(proc.pid, self._cpus, idle)
        assert proc.stdin is not None
        proc.stdin.write(self._config)
        proc.stdin.close()
        self._proc = proc

    async def _ready(self) -> bool:
        """Whether the process said it serves its sessions (its one line on
        standard output) before it ended or ``READY_WITHIN`` passed."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return False
        try:
            async with asyncio.timeout(READY_WITHIN):
                line = await proc.stdout.readline()
        except TimeoutError:
            return False
        return line.strip() == b"ready"

    async def start(self) -> None:
        """Start the process and wait until it serves its sessions (it
        logs why it could not, and is started again, if it ends first)."""
        await self._spawn(idle=False)
        await self._ready()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        delay = RESTART_MIN
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            if time.monotonic() - started > 4 * RESTART_MAX:
                delay = RESTART_MIN  # it had been running well
            _log.error("drop_copy_exited", code=code, restart_in=delay)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            delay = min(delay * 2, RESTART_MAX)
            self.restarts += 1
            try:
                await self._spawn()
            except OSError as exc:
                _log.error("drop_copy_not_started", error=str(exc))

    async def stop(self) -> None:
        """Stop the process (it copies what the journal holds first) and
        close the sockets."""
        self._stopping = True
        if self._task is not None:
            # not in the middle of starting another one
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await proc.wait()
            except TimeoutError:
                _log.warning("drop_copy_killed", after=STOP_GRACE)
                proc.kill()
                await proc.wait()
        for sock in self._sockets:
            sock.close()
