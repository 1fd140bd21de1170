"""What one client's market data costs another client's orders.

Starts one gateway on ``config/default.toml`` (in a temporary directory,
its own ports).  A victim (CLIENT1) sends market orders at ``--rate`` for
``--duration`` s, in rounds of three runs each:

- ``alone``: nothing else is connected;
- ``reading``: another process logged on as CLIENT2 holds ``--subscriptions``
  MarketDataRequests (each for every instrument, full depth, incremental
  refreshes) and reads everything it is sent;
- ``not reading``: the same, but it stops reading once subscribed (with a
  small receive buffer), and the run starts ``--settle`` s later, once what
  the kernel holds for it is full and the gateway has to do something about
  it.

Printed: each run as ``fixgw bench`` prints it, the subscriber's bytes and
messages received per second, and whether the gateway dropped it; then the
median P99 of each kind of run and its ratio to ``alone``.

    .venv/bin/python bench/md_fanout_bench.py [--rate 2000] [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hop_bench import _fixgw, _wait_for_port  # the same processes, started alike

from gateway.fix import codec
from gateway.sim.loadgen import CpuMeter, LoadClient, RunStats

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = (b"EUR/USD", b"GBP/USD", b"USD/JPY", b"XAU/USD", b"BTC/USD", b"US500", b"WTI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the subscriber (a process of its own: --subscriber) ----------------------------------


def _frame(msg_type: bytes, seq: int, body: bytes) -> bytes:
    ts = codec.format_utc_timestamp(time.time())
    payload = b"35=%b\x0134=%d\x0149=CLIENT2\x0152=%b\x0156=GATEWAY\x01%b" % (
        msg_type,
        seq,
        ts,
        body,
    )
    return codec.finish_message(b"FIX.4.4", payload)


class _Subscriber(asyncio.Protocol):
    def __init__(self, read: bool) -> None:
        self.read = read
        self.received = 0
        self.messages = 0
        self.logged_on = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.messages += data.count(b"\x0110=")
        if not self.logged_on.is_set() and b"\x0135=A\x01" in data:
            self.logged_on.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def _subscribe(port: int, count: int, read: bool, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if not read:  # what the kernel holds for it fills in seconds, not minutes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    _, sub = await loop.create_connection(lambda: _Subscriber(read), sock=sock)
    assert sub.transport is not None
    sub.transport.write(_frame(b"A", 1, b"98=0\x01108=30\x01141=Y\x01"))
    await asyncio.wait_for(sub.logged_on.wait(), 10)
    symbols = b"".join(b"55=%b\x01" % s for s in SYMBOLS)
    requests = [
        _frame(
            b"V",
            2 + i,
            b"262=MD%d\x01263=1\x01264=0\x01265=1\x01267=2\x01269=0\x01269=1\x01146=%d\x01%b"
            % (i, len(SYMBOLS), symbols),
        )
        for i in range(count)
    ]
    sub.transport.write(b"".join(requests))
    await asyncio.sleep(0.5)
    if not read:
        sub.transport.pause_reading()
    start, received, messages = time.perf_counter(), sub.received, sub.messages
    try:
        await asyncio.wait_for(sub.closed.wait(), seconds)
        dropped = f"dropped by the gateway after {time.perf_counter() - start:.1f} s"
    except TimeoutError:
        dropped = "still connected"
    elapsed = time.perf_counter() - start
    print(
        f"subscriber: {(sub.received - received) / elapsed / 1e6:.2f} MB/s, "
        f"{(sub.messages - messages) / elapsed:,.0f} msg/s read, {dropped}",
        flush=True,
    )
    sub.transport.abort()


# -- the runs -----------------------------------------------------------------------------


async def _measure(args: argparse.Namespace, port: int, gateway_pid: int) -> int:
    meter = CpuMeter({"gateway": gateway_pid})
    victim = LoadClient("CLIENT1", "GATEWAY")
    await victim.connect("127.0.0.1", port)
    await victim.run(args.warm_up, None, 100)
    count = int(args.rate * args.duration)
    runs: dict[str, list[RunStats]] = {"alone": [], "reading": [], "not reading": []}
    for i in range(args.rounds):
        print(f"round {i + 1}", flush=True)
        for kind in runs:
            proc = None
            if kind != "alone":
                cmd = [sys.executable, __file__, "--subscriber", str(port)]
                cmd += ["--subscriptions", str(args.subscriptions)]
                # logged on, subscribed, streaming; one that does not read is
                # given the time to fill what the kernel holds for it
                settle = 1.5 if kind == "reading" else args.settle
                cmd += ["--seconds", str(settle + args.duration + 2)]
                if kind == "not reading":
                    cmd.append("--no-read")
                proc = await asyncio.create_subprocess_exec(*cmd)
                await asyncio.sleep(settle)
            before = meter.read()
            stats = await victim.run(count, args.rate, 1000)
            stats.cpu_s = meter.used(before, meter.read())
            runs[kind].append(stats)
            print(f"  {kind:<12} {stats.summary()}", flush=True)
            print(f"               {stats.cpu_summary()}", flush=True)
            if proc is not None:
                await proc.wait()
    await victim.logout()
    alone = statistics.median(r.percentile(99) for r in runs["alone"])
    for kind, stats_list in runs.items():
        p99 = statistics.median(r.percentile(99) for r in stats_list)
        print(f"median P99 {kind:<12} {p99 / 1000:7.3f} ms  {p99 / alone:5.2f}x alone")
    incomplete = [r for rs in runs.values() for r in rs if r.completed != r.sent]
    if incomplete:
        print(f"{len(incomplete)} run(s) did not get every answer")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="victim orders per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of three runs")
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument(
        "--settle", type=float, default=8.0, help="seconds a non-reader is given before a run"
    )
    parser.add_argument("--warm-up", type=int, default=2000, help="victim orders before the runs")
    parser.add_argument("--keep", action="store_true", help="keep the gateway's directory")
    parser.add_argument("--subscriber", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--no-read", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=7.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscriber:
        uvloop.run(_subscribe(args.subscriber, args.subscriptions, not args.no_read, args.seconds))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="md-fanout-"))
    port = _free_port()
    log = open(workdir / "gateway.log", "wb")  # noqa: SIM115 (closed with the process)
    cmd = [*_fixgw(), "run", "--config", "config/default.toml", "--fix-port", str(port)]
    cmd += ["--http-port", "0", "--drop-copy-port", "0", "--data-dir", str(workdir / "data")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        _wait_for_port(port, proc, "the gateway", 30)
        return uvloop.run(_measure(args, port, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if args.keep:
            print(f"log and stores kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
