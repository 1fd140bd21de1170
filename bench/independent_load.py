"""Load from an independent FIX client, beside a bare fill responder, in one run.

``fixgw bench`` measures with the project's own FIX client, compiled with
the gateway: it shares the gateway's codec and session layer, and its
yardstick is the project's compiled responder. This script is the check
from outside. Its client is a FIX 4.4 initiator written here in plain
interpreted Python on uvloop, and it imports nothing of the project: its
framing, its messages and its session handling (Logon with a sequence
reset, Heartbeat to a TestRequest, a gap fill to a ResendRequest, Logout)
are its own. Its yardstick is a bare uvloop fill responder, also written
here and run in a process of its own: it frames what it reads and answers
a Logon with a Logon and each NewOrderSingle with a templated
ExecutionReport (filled), with no session layer behind it.
``--responder project`` adds the project's compiled responder (the one
``fixgw bench`` uses) under this same client.

Each run sends market orders (IOC, buys and sells in turn so the client's
position stays flat) on one connection, either paced (``--rate``: the
orders due are sent every millisecond) or as fast as ``--in-flight``
orders in flight allow (``--max``), and reports throughput and the
latency of each order from its send to its final ExecutionReport (paced,
an order held back by ``--in-flight`` from when it fell due): P50,
P95, P99, max, the answers later than 5 ms and the stalls they make (later
answers less than 5 ms apart count as one stall), and the CPU the client
used. A client at one full core is the run's bound: then the ratio says
how much of the client's capacity the gateway lets it use.

    python bench/independent_load.py --port 9876 --max --duration 5
    python bench/independent_load.py --port 9876 --rate 3000 --duration 10
    python bench/independent_load.py --port 9876 --stress   # 1x, 2x, 5x, 10x of 3,000/s

The gateway is started apart (``fixgw run``); ``--no-gateway`` measures
the responders alone.  ``--wire`` (Linux, as root) also prints, under each
of the gateway's runs, its latency as the wire shows it (``bench/wire.py``:
from the NewOrderSingle's packet to the final report's, both stamped by
the kernel as they are sent): the gateway's part alone, without the time
this client waits for a CPU before it writes or reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wire

SOH = b"\x01"
FINAL = frozenset({b"2", b"4", b"8", b"C"})
STALL_US = 5000
TICK_S = 0.001  # a paced run sends the orders due once per millisecond


# -- FIX framing and fields, written for this client alone -------------------


def next_frame(buf: bytearray) -> bytes | None:
    """Take one whole message off the front of ``buf``, or None.

    A frame is ``8=...<SOH>9=<n><SOH>`` then n bytes of body, then
    ``10=ccc<SOH>``; bytes before a ``8=`` are skipped."""
    start = buf.find(b"8=")
    if start < 0:  # keep a last "8" that may begin one
        del buf[: len(buf) - 1 if buf.endswith(b"8") else len(buf)]
        return None
    if start:
        del buf[:start]
    first = buf.find(SOH)
    if first < 0 or len(buf) < first + 4:
        return None
    if buf[first + 1 : first + 3] != b"9=":
        del buf[:2]  # not a header: look for the next one
        return next_frame(buf)
    second = buf.find(SOH, first + 3)
    if second < 0:
        return None
    body_length = int(buf[first + 3 : second])
    end = second + 1 + body_length + 7  # "10=ccc<SOH>"
    if len(buf) < end:
        return None
    frame = bytes(buf[:end])
    del buf[:end]
    return frame


def field_of(frame: bytes, tag: bytes) -> bytes | None:
    """The value of the first field ``tag`` in ``frame`` (not the first)."""
    key = SOH + tag + b"="
    at = frame.find(key)
    if at < 0:
        return None
    at += len(key)
    return frame[at : frame.find(SOH, at)]


class Clock:
    """SendingTime text, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def now(self) -> bytes:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second)).encode()
        return b"%b.%03d" % (self._prefix, int((t - second) * 1000))


def encode(
    msg_type: bytes, seq: int, sender: bytes, target: bytes, ts: bytes, body: bytes
) -> bytes:
    payload = b"35=%b\x0134=%d\x0149=%b\x0152=%b\x0156=%b\x01%b" % (
        msg_type,
        seq,
        sender,
        ts,
        target,
        body,
    )
    head = b"8=FIX.4.4\x019=%d\x01" % len(payload)
    return b"%b%b10=%03d\x01" % (head, payload, (sum(head) + sum(payload)) % 256)


# -- the measures of a run ----------------------------------------------------


@dataclass
class Run:
    label: str
    offered: float | None
    sent: int = 0
    done: int = 0
    rejected: int = 0
    elapsed: float = 0.0
    client_cpu_s: float = 0.0
    latencies_us: list[float] = field(default_factory=list)
    slow_at_ns: list[int] = field(default_factory=list)
    began: float = 0.0  # wall time, to find the run's orders on the wire
    ended: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def stalls(self) -> int:
        episodes, last = 0, None
        for at in self.slow_at_ns:
            if last is None or at - last > STALL_US * 1000:
                episodes += 1
            last = at
        return episodes

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_us)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))]

    def line(self) -> str:
        offered = f"{self.offered:,.0f}/s" if self.offered else "max"
        cores = self.client_cpu_s / self.elapsed if self.elapsed else 0.0
        return (
            f"{self.label:<22} offered {offered:>8}  done {self.done:>8,}  "
            f"rejected {self.rejected:>6,}  {self.rate:>8,.0f}/s  "
            f"P50 {self.pct(50) / 1000:6.3f}  P95 {self.pct(95) / 1000:6.3f}  "
            f"P99 {self.pct(99) / 1000:7.3f}  "
            f"max {max(self.latencies_us, default=0) / 1000:7.3f} ms  "
            f"over 5 ms {len(self.slow_at_ns):,} in {self.stalls:,} stall(s)  "
            f"client {cores:.2f} cores"
        )


class Pacing:
    """When the orders of a paced run fall due, and when each was first
    found due.

    Order ``n`` (from 1) of a run at ``rate``/s is due ``(n - 1) / rate`` s
    after its start; once a tick the client sends the orders due by then,
    as many as ``--in-flight`` lets out.  An order held back by that bound
    waits in the client for the gateway to answer others: its latency runs
    from the tick that first found it due, not from its send, or the wait
    the gateway's backlog made would be left out (30,000/s offered with 200
    in flight to a gateway answering 10,000/s: the orders wait seconds in
    the client, each answer comes 20 ms after its send)."""

    def __init__(self, start_ns: int, rate: float, count: int) -> None:
        self.start_ns = start_ns
        self.interval_ns = 1e9 / rate
        self.count = count
        self.found: deque[tuple[int, int]] = deque()  # (due up to, found at)
        self.noted = 0

    def due(self, now_ns: int) -> int:
        """How many orders of the run are due by the tick ``now_ns``."""
        due = min(self.count, int((now_ns - self.start_ns) / self.interval_ns) + 1)
        if due > self.noted:
            self.found.append((due, now_ns))
            self.noted = due
        return due

    def held_since(self, number: int, now_ns: int) -> int | None:
        """When order ``number``, sent at the tick ``now_ns``, was first
        found due, if at an earlier tick (the bound held it back); None if
        at this one: it is timed from its send."""
        while self.found[0][0] < number:
            self.found.popleft()
        at = self.found[0][1]
        return at if at < now_ns else None


# -- the client ---------------------------------------------------------------


class Initiator(asyncio.Protocol):
    """One FIX session as the initiator: logs on with a sequence reset,
    sends orders and times each to its final ExecutionReport."""

    def __init__(self, sender: str, target: str, symbol: str, qty: int) -> None:
        self.sender = sender.encode()
        self.target = target.encode()
        self.clock = Clock()
        self.buf = bytearray()
        self.seq = 0
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.logged_on: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.tails = tuple(
            b"\x0121=1\x0138=%d\x0140=1\x0154=%b\x0155=%b\x0159=3\x0160="
            % (qty, side, symbol.encode())
            for side in (b"1", b"2")
        )
        self.prefix = b"X%d-" % int(time.time() * 1000)
        self.next_id = 0
        self.pending: dict[bytes, int] = {}
        self.run = Run("", None)
        self.refill_to = 0
        self.max_in_flight = 0
        self.idle = asyncio.Event()
        self.session_rejects = 0
        self.out: list[bytes] = []  # orders made, written together (see flush)

    # transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send(b"A", b"98=0\x01108=30\x01141=Y\x01")

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.logged_on, self.closed):
            if not fut.done():
                fut.set_exception(ConnectionError("the connection closed"))

    def send(self, msg_type: bytes, body: bytes) -> None:
        self.seq += 1  # after any order made before it, in one write
        self.out.append(
            encode(msg_type, self.seq, self.sender, self.target, self.clock.now(), body)
        )
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (frame := next_frame(self.buf)) is not None:
            self.on_message(frame)
        self.flush()

    def flush(self) -> None:
        """The orders made since the last flush, in one write."""
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def on_message(self, frame: bytes) -> None:
        mt = field_of(frame, b"35")
        if mt == b"8":
            status = field_of(frame, b"39")
            if status in FINAL:
                self.answered(field_of(frame, b"11"), status == b"8")
        elif mt == b"j":  # a business reject names the order in 379
            self.answered(field_of(frame, b"379"), True)
        elif mt == b"A":
            if not self.logged_on.done():
                self.logged_on.set_result(None)
        elif mt == b"1":
            self.send(b"0", b"112=%b\x01" % (field_of(frame, b"112") or b""))
        elif mt == b"2":
            # nothing is stored here to resend: a SequenceReset (reset mode,
            # whose own number is not checked) moves the peer past it all;
            # it takes seq + 1 itself, so numbers go on from seq + 2
            self.send(b"4", b"36=%d\x01" % (self.seq + 2))
        elif mt == b"3":
            self.session_rejects += 1
        elif mt == b"5":
            if not self.closed.done():
                self.closed.set_result(None)
            if not self.logged_on.done():
                text = (field_of(frame, b"58") or b"").decode(errors="replace")
                self.logged_on.set_exception(ConnectionError(f"logon refused: {text}"))

    def answered(self, cl_ord_id: bytes | None, rejected: bool) -> None:
        sent_at = self.pending.pop(cl_ord_id or b"", None)
        if sent_at is None:
            return
        run = self.run
        run.done += 1
        run.rejected += rejected
        now = time.perf_counter_ns()
        latency = (now - sent_at) / 1000
        run.latencies_us.append(latency)
        if latency > STALL_US:
            run.slow_at_ns.append(now)
        if run.sent < self.refill_to:
            while len(self.pending) < self.max_in_flight and self.run.sent < self.refill_to:
                self.send_order()
        if not self.pending:
            self.idle.set()

    def send_order(self, due_ns: int | None = None) -> None:
        """Make the next order, timed from ``due_ns`` when given (a paced
        order held back until now), else from now."""
        self.next_id += 1
        cl_ord_id = b"%b%d" % (self.prefix, self.next_id)
        ts = self.clock.now()
        body = b"11=%b%b%b\x01" % (cl_ord_id, self.tails[self.next_id & 1], ts)
        self.pending[cl_ord_id] = time.perf_counter_ns() if due_ns is None else due_ns
        self.seq += 1
        self.out.append(encode(b"D", self.seq, self.sender, self.target, ts, body))
        self.run.sent += 1

    async def load(self, label: str, count: int, rate: float | None, in_flight: int) -> Run:
        self.run = Run(label, rate)
        self.pending.clear()
        self.idle.clear()
        cpu0 = time.process_time()
        start = time.perf_counter()
        self.run.began = time.time()
        if rate is None:
            self.max_in_flight, self.refill_to = in_flight, count
            while len(self.pending) < in_flight and self.run.sent < count:
                self.send_order()
            self.flush()
        else:
            pacing = Pacing(time.perf_counter_ns(), rate, count)
            # no answer comes once the connection has ended
            while self.run.sent < count and not self.closed.done():
                now_ns = time.perf_counter_ns()
                due = pacing.due(now_ns)
                while self.run.sent < due and len(self.pending) < in_flight:
                    self.send_order(pacing.held_since(self.run.sent + 1, now_ns))
                self.flush()
                await asyncio.sleep(TICK_S)
        last, last_change = -1, time.perf_counter()
        while self.pending and not self.closed.done() and time.perf_counter() - last_change < 10.0:
            self.idle.clear()
            try:
                async with asyncio.timeout(0.05):
                    await self.idle.wait()
            except TimeoutError:
                pass
            if self.run.done != last:
                last, last_change = self.run.done, time.perf_counter()
        self.refill_to = 0
        self.run.elapsed = time.perf_counter() - start
        self.run.ended = time.time()
        self.run.client_cpu_s = time.process_time() - cpu0
        return self.run

    async def logout(self) -> None:
        self.send(b"5", b"")
        try:
            async with asyncio.timeout(2):
                await self.closed
        except (TimeoutError, ConnectionError):
            pass
        if self.transport is not None:
            self.transport.close()


async def measure(
    label: str,
    host: str,
    port: int,
    sender: str,
    target: str,
    rates: list[float | None],
    duration: float,
    in_flight: int,
) -> list[Run]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: Initiator(sender, target, "EUR/USD", 1000), host, port
    )
    async with asyncio.timeout(10):
        await client.logged_on
    await client.load("warm-up", 2000, None, in_flight)
    runs = []
    for rate in rates:
        count = int((rate or 40_000) * duration)
        runs.append(await client.load(label, count, rate, in_flight))
    await client.logout()
    if client.session_rejects:
        print(f"  ({label}: {client.session_rejects} session-level Reject(s) received)")
    return runs


# -- the bare responder -------------------------------------------------------


class Responder(asyncio.Protocol):
    """Answers a Logon with a Logon and each NewOrderSingle with a filled
    ExecutionReport from a template; nothing else."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seq = 0
        self.exec_id = 0
        self.clock = Clock()
        self.sender = b""
        self.target = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        ts = self.clock.now()
        while (frame := next_frame(self.buf)) is not None:
            mt = field_of(frame, b"35")
            if mt == b"D":
                self.exec_id += 1
                body = (
                    b"6=1.1\x0111=%b\x0114=1000\x0117=E%d\x0131=1.1\x0132=1000\x0137=O%d\x01"
                    b"39=2\x0154=1\x0155=EUR/USD\x01150=F\x01151=0\x01"
                    % (field_of(frame, b"11") or b"", self.exec_id, self.exec_id)
                )
                mt = b"8"
            elif mt == b"A":
                self.sender = field_of(frame, b"56") or b""
                self.target = field_of(frame, b"49") or b""
                body = b"98=0\x01108=%b\x01" % (field_of(frame, b"108") or b"30")
            elif mt == b"1":
                body, mt = b"112=%b\x01" % (field_of(frame, b"112") or b""), b"0"
            elif mt == b"5":
                body = b""
            else:
                continue
            self.seq += 1
            out.append(encode(mt, self.seq, self.sender, self.target, ts, body))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def serve_responder() -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    uvloop.run(serve())


RESPONDERS = {
    "own": [sys.executable, os.path.abspath(__file__), "--serve-responder"],
    "project": [
        sys.executable,
        "-c",
        "from gateway.sim.loadgen import serve_responder; serve_responder()",
    ],
}


async def measure_responder(
    kind: str, rates: list[float | None], duration: float, in_flight: int
) -> list[Run]:
    proc = await asyncio.create_subprocess_exec(*RESPONDERS[kind], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            port = int(await proc.stdout.readline())
        return await measure(
            f"responder ({kind})",
            "127.0.0.1",
            port,
            "BENCH",
            "RESPONDER",
            rates,
            duration,
            in_flight,
        )
    finally:
        proc.terminate()
        await proc.wait()


# -- the command --------------------------------------------------------------


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


async def main(args: argparse.Namespace) -> int:
    if args.stress:
        rates: list[float | None] = [args.base_rate * k for k in (1, 2, 5, 10)]
    else:
        rates = [None if args.max else (args.rate or args.base_rate)]
    if not args.no_gateway and not port_open(args.host, args.port):
        print(
            f"nothing listens on {args.host}:{args.port}: start the gateway first (fixgw run)",
            file=sys.stderr,
        )
        return 2
    print(
        f"independent client (interpreted, no code of the project), one connection, "
        f"{args.duration:g} s a run, at most {args.in_flight} in flight"
    )
    yard: dict[str, float] = {}
    for kind in args.responder:
        for run in await measure_responder(kind, rates, args.duration, args.in_flight):
            print("  " + run.line())
            yard[kind] = max(yard.get(kind, 0.0), run.rate)
    if args.no_gateway:
        return 0
    capture, out = None, ""
    if args.wire:
        fd, out = tempfile.mkstemp(prefix="wire-", suffix=".txt")
        os.close(fd)
        # the capture is bench/wire.py, beside this file: no code of the project either
        capture = await asyncio.create_subprocess_exec(
            *wire.command(args.port, out), stdout=subprocess.PIPE
        )
        assert capture.stdout is not None
        async with asyncio.timeout(30):
            if await capture.stdout.readline() != b"capturing\n":
                await capture.wait()
                print("the wire capture did not start (Linux, as root)", file=sys.stderr)
                capture = None
    try:
        runs = await measure(
            "gateway",
            args.host,
            args.port,
            args.sender,
            args.target,
            rates,
            args.duration,
            args.in_flight,
        )
    finally:
        if capture is not None and capture.returncode is None:
            capture.terminate()
            await capture.wait()
    # the wire's orders, from the order sent and from it taken in
    on_wire: dict[str, list[tuple[float, float]]] = {}
    if capture is not None and capture.returncode == 0:
        on_wire = {"sent": wire.read(Path(out)), "taken in": wire.read(Path(out), True)}
    elif capture is not None:
        print("the wire capture failed", file=sys.stderr)
    if out:
        os.unlink(out)
    for run in runs:
        print("  " + run.line())
        for since, rows in on_wire.items():
            measured = wire.window(rows, run.began, run.ended)
            print(f"    on the wire from the order {since}: {wire.summary(measured)}")
        if args.slow_times and run.slow_at_ns:
            # CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps samples
            stamps = " ".join(f"{at / 1e9:.6f}" for at in run.slow_at_ns)
            print(f"    answers over 5 ms at (monotonic s): {stamps}")
    # orders worked: refusals (a gateway shedding past its capacity) are no work
    best = max((r.done - r.rejected) / r.elapsed for r in runs if r.elapsed > 0)
    for kind, rate in yard.items():
        print(f"gateway {best:,.0f}/s = {best / rate:.2f}x the {kind} responder's {rate:,.0f}/s")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9876, help="the gateway's FIX port")
    p.add_argument("--sender", default="CLIENT1", help="our SenderCompID")
    p.add_argument("--target", default="GATEWAY", help="the gateway's CompID")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, help="one paced run at this many orders/s")
    mode.add_argument("--max", action="store_true", help="one run as fast as --in-flight allows")
    mode.add_argument(
        "--stress", action="store_true", help="paced runs at 1, 2, 5, 10x --base-rate"
    )
    p.add_argument("--base-rate", type=float, default=3000.0)
    p.add_argument("--duration", type=float, default=5.0, help="seconds a run")
    p.add_argument("--in-flight", type=int, default=200, help="bound on orders in flight")
    p.add_argument(
        "--responder",
        type=lambda s: [k for k in s.split(",") if k],
        default=["own"],
        help="yardsticks to run first: own (this script's), project (fixgw bench's), "
        "comma-separated, or '' for none",
    )
    p.add_argument("--no-gateway", action="store_true", help="measure the responders only")
    p.add_argument(
        "--slow-times",
        action="store_true",
        help="print when each answer over 5 ms came (CLOCK_MONOTONIC), to line up with a profile",
    )
    p.add_argument(
        "--wire",
        action="store_true",
        help="also the gateway's latency on the wire (bench/wire.py: Linux, as root), "
        "which this client's own scheduling does not reach",
    )
    p.add_argument("--serve-responder", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for kind in args.responder:
        if kind not in RESPONDERS:
            p.error(f"--responder: {kind!r} is not one of {', '.join(RESPONDERS)}")
    return args


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.serve_responder:
        serve_responder()
    else:
        sys.exit(uvloop.run(main(arguments)))
