"""Where the wall-clock time of an order goes, seen from the system calls.

Starts a gateway on the default config (compiled if installed so) and an
independent load client (``fixgw bench`` at ``--rate``), then records for
``--seconds`` the system calls of both processes with the kernel's syscall
tracepoints (``perf record``; needs root or a permissive
``perf_event_paranoid``).  Each read of the client's orders by the gateway
is one batch; for every batch it reports:

* **wake**: the client's write to the gateway's return from ``epoll_pwait``;
* **work**: the end of the read to the gateway's first write (parsing, the
  session layer, risk, matching, routing, the LP's answer, the reports);
* **durable**: the first write (the order journal, then each session's
  store) to the first write to the client's socket;
* **rounds**: write rounds to the client's socket before the next read
  (the reports of one read leave in one write, or in several loop turns);
* **last out**: the end of the read to the last of those writes;
* **client**: that last write to the client's read of it;
* **total**: the client's write to its read of the last answers.

Tracepoints cost a microsecond or two per call, far less than the stages.

    .venv/bin/python bench/order_timeline.py [--rate 3000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hop_bench import _fixgw, _wait_for_port  # the same processes, started alike
from md_fanout_bench import _free_port

ROOT = Path(__file__).resolve().parents[1]
EVENTS = (
    "syscalls:sys_enter_read",
    "syscalls:sys_exit_read",
    "syscalls:sys_enter_write",
    "syscalls:sys_exit_epoll_pwait",
    "syscalls:sys_exit_epoll_wait",
)
LINE = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+syscalls:sys_(\w+):\s*(.*)$")


@dataclass
class Call:
    pid: int
    at: float  # seconds
    kind: str  # read, read_done, write, woke
    fd: int = -1
    size: int = 0


@dataclass
class Batch:
    sent: float
    woke: float
    read_done: float
    size: int
    first_write: float = 0.0
    first_out: float = 0.0
    last_out: float = 0.0
    rounds: int = 0
    answered: float = 0.0
    files: set[int] = field(default_factory=set)


def _socket_fds(pid: int) -> set[int]:
    fds = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            continue
    return fds


def _signed(text: str) -> int:
    """A return value as perf prints it (hex, errors as large unsigned)."""
    value = int(text, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _calls(script: str) -> list[Call]:
    calls = []
    for line in script.splitlines():
        m = LINE.match(line)
        if m is None:
            continue
        pid, at, what, rest = int(m[1]), float(m[2]), m[3], m[4]
        if what == "enter_read":
            calls.append(Call(pid, at, "read", fd=int(rest.split(",")[0].split(":")[1], 16)))
        elif what == "exit_read":
            calls.append(Call(pid, at, "read_done", size=_signed(rest)))
        elif what == "enter_write":
            parts = dict(p.strip().split(": ") for p in rest.split(","))
            calls.append(
                Call(pid, at, "write", fd=int(parts["fd"], 16), size=int(parts["count"], 16))
            )
        elif what in ("exit_epoll_pwait", "exit_epoll_wait") and _signed(rest) > 0:
            calls.append(Call(pid, at, "woke"))
    return calls


def _batches(
    calls: list[Call], gateway: int, client: int, sockets: dict[int, set[int]]
) -> list[Batch]:
    """Pair each read of client bytes by the gateway with the client's write
    before it and the gateway's writes after it."""
    batches: list[Batch] = []
    sent = woke = 0.0
    reading: dict[int, int] = {}
    current: Batch | None = None
    waiting: list[Batch] = []  # batches written out that the client has not read all of
    for call in calls:
        if call.pid == client:
            if call.kind == "write" and call.fd in sockets[client]:
                sent = call.at
            elif call.kind == "read":
                reading[client] = call.fd
            elif call.kind == "read_done" and reading.get(client, -1) in sockets[client]:
                for batch in waiting:
                    if batch.answered < batch.last_out:
                        batch.answered = call.at
                waiting = [b for b in waiting if b is current or b.answered < b.last_out]
            continue
        if call.pid != gateway:
            continue
        if call.kind == "woke":
            woke = call.at
        elif call.kind == "read":
            reading[gateway] = call.fd
        elif call.kind == "read_done" and reading.get(gateway, -1) in sockets[gateway]:
            if call.size <= 0 or not sent:
                continue
            if current is not None and current.rounds:
                batches.append(current)
            current = Batch(sent, woke, call.at, call.size)
        elif call.kind == "write" and current is not None:
            if not current.first_write:
                current.first_write = call.at
            if call.fd in sockets[gateway]:
                if not current.rounds:
                    waiting.append(current)
                current.rounds += 1
                current.first_out = current.first_out or call.at
                current.last_out = call.at
            else:
                current.files.add(call.fd)
    return [b for b in batches if b.answered >= b.last_out and b.woke >= b.sent]


def _row(name: str, values: list[float], unit: str = "µs") -> str:
    values = sorted(values)
    p90, p99 = values[int(len(values) * 0.9)], values[int(len(values) * 0.99)]
    return (
        f"{name:<10} median {statistics.median(values):7.0f}   p90 {p90:7.0f}   p99 {p99:7.0f}"
        f"   max {values[-1]:7.0f} {unit}"
    )


def report(batches: list[Batch], worst: int = 0) -> str:
    def us(pairs: list[tuple[float, float]]) -> list[float]:
        return [(b - a) * 1e6 for a, b in pairs]

    one = min(b.size for b in batches)
    size = statistics.median(b.size for b in batches)
    lines = [
        f"{len(batches)} reads; bytes per read median {size:.0f} (one order is about {one} bytes)",
        _row("wake", us([(b.sent, b.woke) for b in batches])),
        _row("work", us([(b.read_done, b.first_write) for b in batches])),
        _row("durable", us([(b.first_write, b.first_out) for b in batches])),
        _row("rounds", [float(b.rounds) for b in batches], ""),
        _row("last out", us([(b.read_done, b.last_out) for b in batches])),
        _row("client", us([(b.last_out, b.answered) for b in batches])),
        _row("total", us([(b.sent, b.answered) for b in batches])),
    ]
    slow = sorted(batches, key=lambda b: b.answered - b.sent, reverse=True)[:worst]
    if slow:
        lines.append(
            f"the {len(slow)} slowest reads (µs): wake, work, durable, rounds, last out, client"
        )
    for b in slow:
        stages = (b.woke - b.sent, b.first_write - b.read_done, b.first_out - b.first_write)
        rest = (b.last_out - b.read_done, b.answered - b.last_out)
        lines.append(
            f"  at {b.sent - batches[0].sent:7.3f} s  total {(b.answered - b.sent) * 1e6:8.0f}:  "
            + "  ".join(f"{x * 1e6:6.0f}" for x in stages)
            + f"  {b.rounds}  "
            + "  ".join(f"{x * 1e6:6.0f}" for x in rest)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="orders per second")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds recorded")
    parser.add_argument("--config", default="config/default.toml")
    parser.add_argument("--worst", type=int, default=0, help="list the slowest reads, by stage")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    workdir = Path(tempfile.mkdtemp(prefix="order-timeline-"))
    port = _free_port()
    cmd = [*_fixgw(), "run", "--config", args.config, "--fix-port", str(port)]
    cmd += ["--http-port", "0", "--drop-copy-port", "0", "--data-dir", str(workdir / "data")]
    gateway = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client: subprocess.Popen[bytes] | None = None
    try:
        _wait_for_port(port, gateway, "the gateway", 30)
        bench = [*_fixgw(), "bench", "--port", str(port), "--rate", str(args.rate)]
        bench += ["--duration", str(args.seconds + 4), "--no-yardstick"]
        client = subprocess.Popen(bench, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(2.5)  # logged on, warmed up, at its rate
        sockets = {gateway.pid: _socket_fds(gateway.pid), client.pid: _socket_fds(client.pid)}
        data = workdir / "perf.data"
        record = ["perf", "record", "-q", "-o", str(data), "-p", f"{gateway.pid},{client.pid}"]
        for event in EVENTS:
            record += ["-e", event]
        subprocess.run([*record, "--", "sleep", str(args.seconds)], check=True)
        out, _ = client.communicate(timeout=60)
        script = subprocess.run(
            ["perf", "script", "-i", str(data), "-F", "pid,time,event,trace"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        batches = _batches(_calls(script), gateway.pid, client.pid, sockets)
        if not batches:
            raise SystemExit("no batch recorded (is perf allowed to trace syscalls here?)")
        print(report(batches, args.worst))
        lines = [line for line in out.decode().splitlines() if "offered" in line]
        print("the client's own figures:", *lines, sep="\n")
    finally:
        for proc in (client, gateway):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
