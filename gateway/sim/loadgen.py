"""Load generator: a FIX client that sends NewOrderSingle at a fixed rate or
as fast as a bound on orders in flight allows, and measures wire-to-wire
latency from each order's send to its final answer (at a fixed rate, an
order the bound held back from the moment it fell due: see :class:`Pacing`).

The yardstick, measured in the same run with the same client, is a bare
uvloop *fill responder* in a process of its own (as the gateway is): a
protocol that frames FIX messages and answers each NewOrderSingle with a
templated ExecutionReport (filled), with no session layer, matching or
routing behind it.  The gateway's figures are read against it.

With ``--cpu-of NAME=PID`` each run also reports the CPU time the client and
the named processes (the gateway, LP simulators) used during it, as cores
and as microseconds per order answered: on a shared machine, where latency
moves with the neighbours, CPU per order is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from config import SessionSettings
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.events import ApplicationMessage, Event
from gateway.net.client import FixClient, LogonError
from gateway.ops.tokens import ADMIN_TOKEN_ENV

_FINAL_STATUSES = frozenset({b"2", b"4", b"8", b"C"})

# A paced run sends the orders that are due once per tick. The event loop's
# timers have millisecond resolution: a shorter sleep fires at once, and the
# client would spin a whole core, taking it from the gateway it measures.
PACE_TICK_S = 0.001


STALL_US = 5000
"""An answer later than this (in µs) is counted as stalled."""


@dataclass
class RunStats:
    """What one load run measured (latencies in microseconds)."""

    offered_rate: float | None
    sent: int = 0
    completed: int = 0
    rejected: int = 0
    elapsed: float = 0.0
    latencies_us: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process
    slow_at_ns: list[int] = field(default_factory=list)  # answers later than STALL_US, when

    @property
    def stalls(self) -> int:
        """Episodes of answers later than :data:`STALL_US`: slow answers less
        than that apart count as one (one stall of the gateway delays every
        order waiting behind it)."""
        episodes, last = 0, None
        for at in self.slow_at_ns:
            if last is None or at - last > STALL_US * 1000:
                episodes += 1
            last = at
        return episodes

    @property
    def throughput(self) -> float:
        """Orders worked a second: answers that were refusals (the gateway
        shedding load past its capacity, a limit) are not the work it did."""
        worked = self.completed - self.rejected
        return worked / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies_us)
        if not data:
            return float("nan")
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]

    def summary(self) -> str:
        offered = f"{self.offered_rate:,.0f}/s" if self.offered_rate else "max"
        return (
            f"offered {offered:>9}  sent {self.sent:>7,}  done {self.completed:>7,}  "
            f"rejected {self.rejected:>5,}  throughput {self.throughput:>9,.0f}/s  "
            f"P50 {self.percentile(50) / 1000:7.3f} ms  "
            f"P95 {self.percentile(95) / 1000:7.3f} ms  "
            f"P99 {self.percentile(99) / 1000:7.3f} ms  "
            f"max {max(self.latencies_us, default=0) / 1000:7.3f} ms  "
            f"over {STALL_US // 1000} ms {len(self.slow_at_ns):,} in {self.stalls:,} stall(s)"
        )

    def cpu_summary(self) -> str:
        """CPU used during the run per process: cores, and µs per order answered."""
        parts = []
        for name, seconds in self.cpu_s.items():
            cores = seconds / self.elapsed if self.elapsed > 0 else 0.0
            per_order = seconds / self.completed * 1e6 if self.completed else 0.0
            parts.append(f"{name} {cores:.2f} cores {per_order:,.0f} µs/order")
        return "cpu: " + "; ".join(parts)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # fields after the command name, which is in parentheses and may hold spaces
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time of this process and of named others, read before and after a run."""

    def __init__(self, others: Mapping[str, int]) -> None:
        self.others = dict(others)

    def read(self) -> dict[str, float]:
        now = {"client": time.process_time()}
        for name, pid in self.others.items():
            try:
                now[name] = process_cpu_seconds(pid)
            except OSError:  # the process is gone: it is left out of this run
                continue
        return now

    @staticmethod
    def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in after if name in before}


class Pacing:
    """When the orders of a paced run fall due, and when each was first
    found due.

    Order ``n`` (from 1) of a run at ``rate``/s is due ``(n - 1) / rate`` s
    after its start; once a tick the client sends the orders due by then,
    as many as its bound on orders in flight lets out.  An order held back
    by the bound waits in the client for the gateway to answer others: its
    latency runs from the tick that first found it due, not from its send,
    or the wait the gateway's backlog made would be left out (30,000/s
    offered with 200 in flight to a gateway answering 10,000/s: the orders
    wait seconds in the client, each answer comes 20 ms after its send)."""

    def __init__(self, start_ns: int, rate: float, count: int) -> None:
        self.start_ns = start_ns
        self.interval_ns = 1e9 / rate
        self.count = count
        # (orders due up to, the tick that found them due), oldest first
        self._found: deque[tuple[int, int]] = deque()
        self._noted = 0

    def due(self, now_ns: int) -> int:
        """How many orders of the run are due by the tick ``now_ns``."""
        due = min(self.count, int((now_ns - self.start_ns) / self.interval_ns) + 1)
        if due > self._noted:
            self._found.append((due, now_ns))
            self._noted = due
        return due

    def held_since(self, number: int, now_ns: int) -> int | None:
        """When order ``number``, sent at the tick ``now_ns``, was first
        found due, if that was at an earlier tick (the bound held it back);
        None if at this one: it is timed from its send."""
        found = self._found
        while found[0][0] < number:
            found.popleft()
        at = found[0][1]
        return at if at < now_ns else None


class LoadClient(FixClient):
    """A FixClient that times every order to its final answer."""

    def __init__(
        self, sender: str, target: str, symbol: str = "EUR/USD", qty: str = "1000"
    ) -> None:
        # a load run starts afresh: both sides reset their sequence numbers at logon
        super().__init__(
            SessionSettings(
                SenderCompID=sender, TargetCompID=target, HeartBtInt=30, ResetOnLogon=True
            )
        )
        self._pending: dict[bytes, int] = {}
        # buys and sells alternate, so the client's position stays flat and
        # no risk limit is reached however long the run
        self._order_tails = tuple(
            b"\x0121=1\x0138=%b\x0140=1\x0154=%b\x0155=%b\x0159=3\x0160="
            % (qty.encode(), side, symbol.encode())
            for side in (b"1", b"2")
        )
        self._prefix = b"L%d-" % int(time.time() * 1000)
        self._next = 0
        self.stats = RunStats(None)
        self._idle = asyncio.Event()
        # as-fast-as-possible runs: every answer makes room for the next order
        self._refill_to = 0
        self._max_in_flight = 0
        self.monotonic_ns: Callable[[], int] = time.perf_counter_ns
        """The clock orders are timed by."""
        self.tick: Callable[[float], Awaitable[None]] = asyncio.sleep
        """Waits between two ticks of a paced run."""

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, ApplicationMessage):
            super()._on_event(event)
            return
        msg: FixMessage = event.message
        mt = msg.msg_type
        if mt == b"8":
            if msg.get(39) not in _FINAL_STATUSES:
                return
            rejected = msg.get(39) == b"8"
        elif mt == b"D" or mt == b"j":  # echo profile, or a business reject
            rejected = mt == b"j"
        else:
            return
        key = msg.get(11) if mt != b"j" else msg.get(379)
        sent_at = self._pending.pop(key or b"", None)
        if sent_at is None:
            return
        stats = self.stats
        stats.completed += 1
        stats.rejected += rejected
        done_at = self.monotonic_ns()
        latency = (done_at - sent_at) / 1000
        stats.latencies_us.append(latency)
        if latency > STALL_US:
            stats.slow_at_ns.append(done_at)
        if stats.sent < self._refill_to:
            self._fill_window()
        if not self._pending:
            self._idle.set()

    def _fill_window(self) -> None:
        while len(self._pending) < self._max_in_flight and self.stats.sent < self._refill_to:
            self.send_order()

    def send_order(self, due_ns: int | None = None) -> None:
        """Send the next order, timed from ``due_ns`` when given (when a
        paced run's order fell due, held back until now), else from now."""
        self._next += 1
        cl_ord_id = b"%b%d" % (self._prefix, self._next)
        now = self.clock()
        tail = self._order_tails[self._next & 1]
        body = b"11=%b%b%b\x01" % (cl_ord_id, tail, codec.format_utc_timestamp(now))
        self._pending[cl_ord_id] = self.monotonic_ns() if due_ns is None else due_ns
        self.outbox.send(self.session, b"D", body, now)
        self.stats.sent += 1

    def send_due(self, pacing: Pacing, now_ns: int, max_in_flight: int) -> None:
        """One tick of a paced run: the orders due by ``now_ns`` that the
        bound on orders in flight lets out, each held back before timed
        from when it fell due."""
        due = pacing.due(now_ns)
        while self.stats.sent < due and self.in_flight < max_in_flight:
            self.send_order(pacing.held_since(self.stats.sent + 1, now_ns))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def run(
        self, count: int, rate: float | None, max_in_flight: int = 1000, drain: float = 10.0
    ) -> RunStats:
        """Send ``count`` orders at ``rate``/s (None: as fast as the bound on
        orders in flight allows) and wait for the answers, giving up when none
        has come for ``drain`` s."""
        self.stats = RunStats(rate)
        self._pending.clear()
        self._idle.clear()
        clock = self.monotonic_ns
        start = clock()
        if rate is None:
            # event driven: answers refill the window (see _on_event), so the
            # client spends no CPU waiting
            self._max_in_flight = max_in_flight
            self._refill_to = count
            self._fill_window()
        else:
            pacing = Pacing(start, rate, count)
            while self.stats.sent < count and self.session.is_logged_on:
                self.send_due(pacing, clock(), max_in_flight)
                await self.tick(PACE_TICK_S)
        # wait for the answers; give up once none has come for `drain` s
        last, last_progress = -1, clock()
        # no answer comes once the gateway has ended the session
        while self._pending and self.session.is_logged_on:
            self._idle.clear()
            try:
                async with asyncio.timeout(0.05):
                    await self._idle.wait()
            except TimeoutError:
                pass
            now = clock()
            if self.stats.completed != last:
                last, last_progress = self.stats.completed, now
            elif now - last_progress > drain * 1e9:
                break
        self._refill_to = 0
        self.stats.elapsed = (clock() - start) / 1e9
        return self.stats


class FillResponder(asyncio.Protocol):
    """The yardstick: answers a Logon, then every NewOrderSingle with a
    filled ExecutionReport built from a template.  No session layer."""

    def __init__(self) -> None:
        self._decoder = codec.FrameDecoder()
        self._seq = 0
        self._exec = 0
        self._transport: asyncio.Transport | None = None
        self._sender = b""
        self._target = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        out = []
        now = time.time()
        ts = codec.format_utc_timestamp(now)
        while (frame := self._decoder.next_frame()) is not None:
            mt_at = frame.find(b"\x0135=") + 4
            mt = frame[mt_at : frame.find(b"\x01", mt_at)]
            if mt == b"A":
                msg = codec.parse_frame(frame)
                self._sender = msg.get(56) or b""
                self._target = msg.get(49) or b""
                body = b"98=0\x01108=%b\x01" % (msg.get(108) or b"30")
            elif mt == b"D":
                at = frame.find(b"\x0111=") + 4
                cl_ord_id = frame[at : frame.find(b"\x01", at)]
                self._exec += 1
                body = (
                    b"6=1.1\x0111=%b\x0114=1000\x0117=X%d\x0131=1.1\x0132=1000\x0137=O%d\x01"
                    b"39=2\x0154=1\x0155=EUR/USD\x01150=F\x01151=0\x01"
                    % (cl_ord_id, self._exec, self._exec)
                )
                mt = b"8"
            else:
                continue
            self._seq += 1
            payload = b"35=%b\x0134=%d\x0149=%b\x0152=%b\x0156=%b\x01%b" % (
                mt,
                self._seq,
                self._sender,
                ts,
                self._target,
                body,
            )
            out.append(codec.finish_message(b"FIX.4.4", payload))
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


class BenchError(Exception):
    """The bench cannot run; the message is one line for its user."""


async def _connect(client: LoadClient, host: str, port: int) -> None:
    """Log ``client`` on at ``host``:``port``; :class:`BenchError` saying
    why not (nothing listening there, the logon refused)."""
    try:
        await client.connect(host, port)
    except LogonError as refused:
        raise BenchError(str(refused)) from None
    except OSError as failed:  # a name of its own: see docs/compiled.md
        raise BenchError(f"cannot connect to {host}:{port}: {failed.strerror or failed}") from None


async def run_load(
    host: str,
    port: int,
    sender: str,
    target: str,
    rates: Sequence[float | None],
    duration: float,
    max_in_flight: int,
    meter: CpuMeter | None = None,
) -> list[RunStats]:
    client = LoadClient(sender, target)
    await _connect(client, host, port)
    await client.run(min(2000, int(duration * 1000)), None, max_in_flight)  # warm-up
    results = []
    for rate in rates:
        count = int((rate or 20_000) * duration)
        before = meter.read() if meter is not None else {}
        stats = await client.run(count, rate, max_in_flight)
        if meter is not None:
            stats.cpu_s = meter.used(before, meter.read())
        results.append(stats)
    await client.logout()
    return results


async def yardstick(duration: float, max_in_flight: int) -> RunStats:
    """The bare uvloop fill responder, in a child process, under the same
    client, as fast as it goes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gateway.sim.loadgen import serve_responder; serve_responder()",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            port = int(await proc.stdout.readline())
        (stats,) = await run_load(
            "127.0.0.1", port, "BENCH", "RESPONDER", [None], duration, max_in_flight
        )
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    return stats


def serve_responder() -> None:
    """Run a FillResponder on an ephemeral loopback port, print the port on
    stdout, and serve until terminated."""
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FillResponder, "127.0.0.1", 0)
        listening = cast(Any, server).sockets  # a list under uvloop (see server.py)
        print(listening[0].getsockname()[1], flush=True)
        await server.serve_forever()

    uvloop.run(serve())


def stress_rates(base: float) -> list[float | None]:
    return [base, 2 * base, 5 * base, 10 * base, None]


def saturation(results: Sequence[RunStats]) -> str:
    """The first offered rate the gateway did not keep up with, and why."""
    for r in results:
        if r.offered_rate is None:
            continue
        if r.completed < r.sent:
            return f"{r.offered_rate:,.0f}/s: {r.sent - r.completed} orders unanswered"
        if r.rejected:
            return f"{r.offered_rate:,.0f}/s: {r.rejected:,} orders refused"
        if r.throughput < 0.95 * r.offered_rate:
            return (
                f"{r.offered_rate:,.0f}/s: throughput {r.throughput:,.0f}/s below the offered rate"
            )
        if r.percentile(99) > 10_000:
            return f"{r.offered_rate:,.0f}/s: P99 {r.percentile(99) / 1000:.1f} ms above 10 ms"
    return "nothing saturated up to the highest fixed rate"


class Reloads:
    """Asks the gateway to reload its config every ``every`` seconds over
    ``POST /admin/reload``, from a process of its own so that the requests
    cost the measuring client nothing.  With ``file``, the first LP's
    ``soft_penalty_ticks`` in that file is flipped between two values before
    each reload, so that every reload really swaps the rules in force."""

    def __init__(self, url: str, token: str, every: float, file: str | None) -> None:
        self.url = url
        self.token = token
        self.every = every
        self.file = file
        self.outcomes: dict[str, int] = {}

    async def start(self) -> asyncio.subprocess.Process:
        """The requester process, started and ready, not yet sending."""
        args = [self.url, self.token, repr(self.every), self.file or ""]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.ops.reload_requester",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        await proc.stdout.readline()  # "ready"
        return proc

    async def run(self, proc: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
        """Let ``proc`` send reloads until ``stop`` is set."""
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await stop.wait()
        proc.send_signal(signal.SIGTERM)
        proc.stdin.close()
        assert proc.stdout is not None
        out = await proc.stdout.read()
        await proc.wait()
        for status in out.decode().split():
            self.outcomes[status] = self.outcomes.get(status, 0) + 1


async def _reload_comparison(args: argparse.Namespace) -> int:
    """P99 at one rate without, then with, a config reload every
    ``--reload-every`` seconds, in one run."""
    rate = args.rate or args.base_rate
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or "dev-admin-token"
    url = f"http://{args.host}:{args.http_port}/admin/reload"
    reloads = Reloads(url, token, args.reload_every, args.reload_file)
    client = LoadClient(args.sender, args.target)
    await _connect(client, args.host, args.port)
    await client.run(min(2000, int(args.duration * 1000)), None, args.in_flight)  # warm-up
    count = int(rate * args.duration)
    # alternate runs without and with reloads, so drift of a noisy machine
    # falls on both alike
    quiet_runs, busy_runs = [], []
    for _ in range(2):
        quiet_runs.append(await client.run(count, rate, args.in_flight))
        stop = asyncio.Event()
        requester = await reloads.start()
        await asyncio.sleep(1.0)  # its start-up is over before the measured run
        task = asyncio.create_task(reloads.run(requester, stop))
        busy_runs.append(await client.run(count, rate, args.in_flight))
        stop.set()
        await task
    await client.logout()
    print(f"gateway {args.host}:{args.port} as {args.sender}->{args.target}, {rate:,.0f}/s")
    for quiet, busy in zip(quiet_runs, busy_runs, strict=True):
        print("  without reloads:   " + quiet.summary())
        print(f"  reload every {args.reload_every:g} s: " + busy.summary())
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(reloads.outcomes.items()))
    print(f"  reloads: {outcomes}")
    quiet_p99 = sum(r.percentile(99) for r in quiet_runs) / len(quiet_runs)
    busy_p99 = sum(r.percentile(99) for r in busy_runs) / len(busy_runs)
    print(
        f"mean P99 without reloads {quiet_p99 / 1000:.3f} ms, with {busy_p99 / 1000:.3f} ms: "
        f"{busy_p99 / quiet_p99:.2f}x"
    )
    return 0


async def _main(args: argparse.Namespace) -> int:
    if args.reload_every:
        return await _reload_comparison(args)
    rates: list[float | None] = (
        stress_rates(args.base_rate)
        if args.rate is None and not args.max
        else [None if args.max else args.rate]
    )
    yard = None
    if not args.no_yardstick:
        print(
            f"yardstick: bare uvloop fill responder (own process), same client, "
            f"{args.duration:g} s, "
            f"max in flight {args.in_flight}"
        )
        yard = await yardstick(args.duration, args.in_flight)
        print("  " + yard.summary())
    print(f"gateway {args.host}:{args.port} as {args.sender}->{args.target}")
    meter = CpuMeter(dict(args.cpu_of)) if args.cpu_of else None
    results = await run_load(
        args.host,
        args.port,
        args.sender,
        args.target,
        rates,
        args.duration,
        args.in_flight,
        meter,
    )
    for r in results:
        print("  " + r.summary())
        if r.cpu_s:
            print("    " + r.cpu_summary())
    best = max(r.throughput for r in results)
    if yard is None:
        print(f"best gateway throughput {best:,.0f}/s (no yardstick in this run)")
    else:
        print(
            f"best gateway throughput {best:,.0f}/s = {best / yard.throughput:.2f} x "
            f"the yardstick's {yard.throughput:,.0f}/s"
        )
    if len(results) > 1:
        print(f"first saturation: {saturation(results)}")
    return 0


def _named_pid(text: str) -> tuple[str, int]:
    name, sep, pid = text.partition("=")
    if not sep or not name or not pid.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PID, got {text!r}")
    return name, int(pid)


def _positive(text: str) -> float:
    """A number above 0 (not infinite): a rate or a duration."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:  # NaN too
        raise argparse.ArgumentTypeError(f"a number above 0, got {text!r}")
    return value


def _at_least_zero(text: str) -> float:
    """A number from 0 up (not infinite): 0 is off."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"a number from 0 up (0: off), got {text!r}")
    return value


def _count(text: str) -> int:
    """A whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number above 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9876)
    parser.add_argument("--sender", default="CLIENT1", help="our SenderCompID")
    parser.add_argument("--target", default="GATEWAY", help="the gateway's CompID")
    parser.add_argument("--rate", type=_positive, help="one run at this many orders/s")
    parser.add_argument("--max", action="store_true", help="one run as fast as possible")
    parser.add_argument(
        "--base-rate",
        type=_positive,
        default=3000.0,
        help="stress runs at 1, 2, 5, 10 x this, then max",
    )
    parser.add_argument("--duration", type=_positive, default=5.0, help="seconds per run")
    parser.add_argument("--in-flight", type=_count, default=1000, help="bound on orders in flight")
    parser.add_argument(
        "--reload-every",
        type=_at_least_zero,
        default=0.0,
        help="instead of the stress runs: P99 at --rate (or --base-rate) without, then with, "
        "POST /admin/reload every this many seconds",
    )
    parser.add_argument("--http-port", type=int, default=8080, help="the gateway's HTTP port")
    parser.add_argument(
        "--admin-token",
        default="",
        help="bearer token (default: $FIXGW_ADMIN_TOKEN or the dev one)",
    )
    parser.add_argument(
        "--reload-file",
        help="the gateway's config file: flip its first soft_penalty_ticks before each reload",
    )
    parser.add_argument(
        "--cpu-of",
        action="append",
        type=_named_pid,
        default=[],
        metavar="NAME=PID",
        help="also report the CPU this process used in each run (repeatable)",
    )
    parser.add_argument(
        "--no-yardstick",
        action="store_true",
        help="skip the bare uvloop yardstick (for profiling runs; figures are then unpaired)",
    )


def main(args: argparse.Namespace) -> int:
    import uvloop

    try:
        return uvloop.run(_main(args))
    except BenchError as exc:
        print(f"fixgw bench: {exc}", file=sys.stderr)
        return 1
