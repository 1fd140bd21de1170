"""``python -m gateway.dropcopy --listen-fd N [--listen-fd M ...]``: the
drop-copy process, started by the gateway with the config in force as JSON
on its standard input (see :mod:`gateway.dropcopy.service`)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

import msgspec
import structlog
import uvloop

from config import Config
from gateway.dropcopy.service import DropCopyService, install_signals
from gateway.ops.logs import configure_logging

NICE = 5


def lower_priority() -> None:
    """A copy is never urgent, an order is: under Linux's ``SCHED_IDLE``
    policy the process gets a core only when nothing else wants one (the
    gateway, its clients), and catches up when the load falls; elsewhere
    it is niced."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(0, idle, os.sched_param(0))
            return
        except OSError:  # pragma: no cover - not allowed here: niced instead
            pass
    try:
        os.nice(NICE)
    except OSError:  # pragma: no cover - not allowed here: run as is
        pass


def die_with(parent: int) -> bool:
    """Be killed the moment ``parent``, the gateway, ends, however it ends
    (Linux): a gateway killed and started again at once finds the
    drop-copy port free, whatever this process was doing (nothing is lost:
    the next one goes on from the cursor).  False when the parent is gone
    already; elsewhere the service's watch of its parent ends it within a
    second."""
    if not parent or sys.platform != "linux":
        return True
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def ready() -> None:
    """Tell the gateway the sessions are served: one line on standard output."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def main() -> int:
    # Ctrl-C is the gateway's to act on (see install_signals)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m gateway.dropcopy")
    parser.add_argument("--listen-fd", type=int, action="append", default=[], required=True)
    parser.add_argument("--parent", type=int, default=0, help="end when this process is gone")
    args = parser.parse_args()
    if not die_with(args.parent):
        return 0
    config = msgspec.json.decode(sys.stdin.buffer.read(), type=Config)
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    lower_priority()
    if config.gateway.drop_copy_cpus:
        # where the gateway said, which checked them (its own CPUs, which
        # this process inherited, are not the ones to check against)
        try:
            os.sched_setaffinity(0, config.gateway.drop_copy_cpus)
        except OSError as exc:  # gone since (a CPU taken offline): run as started
            structlog.get_logger("gateway.dropcopy").warning(
                "drop_copy_not_placed", cpus=list(config.gateway.drop_copy_cpus), error=str(exc)
            )
    sockets = [socket.socket(fileno=fd) for fd in args.listen_fd]

    async def serve() -> bool:
        service = DropCopyService(config)
        install_signals(service)
        await service.run(sockets, args.parent, ready)
        return service.failed

    try:
        return 1 if uvloop.run(serve()) else 0
    except OSError as exc:
        # its files cannot be written (a full disk): said in one line, and
        # the gateway starts it again; the next one copies what this did not store
        structlog.get_logger("gateway.dropcopy").error("drop_copy_failed", error=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
