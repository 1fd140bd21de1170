"""What the FIX hop to the LPs costs: P99 through two ``fixgw lp-sim``
processes next to P99 through the in-process simulated LPs, paired.

Starts, each in a temporary directory of its own: two LP simulators
(``config/lp-sim-a.toml`` and ``config/lp-sim-b.toml`` on ports 9901 and
9902, where ``config/fix-lps.toml`` looks for them; with ``--lp-ports`` a
copy of that file names the other ports), one gateway on
``config/fix-lps.toml`` (the FIX hop) and one on ``config/default.toml``
(in-process LPs), each with its own FIX port.  One load client per gateway
logs on and warms up (``--warm-up`` orders as fast as they go); then
``--rounds`` rounds of ``--duration`` s at ``--rate`` orders/s run against
one gateway, then the other (the order alternates from round to round), so
that a noisy machine's drift falls on both alike.  Every process stays up
throughout: between its runs a gateway idles, and the LPs only stream
quotes.

Printed: every run (as ``fixgw bench`` prints it, with the CPU of each
process), the ratio of hop P99 to in-process P99 in each round, and the
ratio of the median P99s over all rounds.

    .venv/bin/python bench/hop_bench.py [--rate 3000] [--duration 5] [--rounds 4]
"""

from __future__ import annotations

import argparse
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

from gateway.sim.loadgen import CpuMeter, LoadClient, RunStats

ROOT = Path(__file__).resolve().parents[1]

LP_CONFIGS = {"lpx1": "config/lp-sim-a.toml", "lpx2": "config/lp-sim-b.toml"}
# the LPs' ports in config/fix-lps.toml; other ports go into a copy of it
CONFIGURED_PORTS = {"lpx1": 9901, "lpx2": 9902}


def _fixgw() -> list[str]:
    here = Path(sys.executable).with_name("fixgw")
    return [str(here)] if here.exists() else [sys.executable, "-m", "gateway"]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} (see its log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} is not listening on port {port} after {limit:g} s")


def _refuse_taken(ports: dict[str, int]) -> None:
    """Stop before starting anything if a port is taken: the wait for the
    new server would otherwise be satisfied by whatever listens there."""
    for what, port in ports.items():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            continue
        raise SystemExit(
            f"port {port} ({what}) is in use: stop what listens there, or choose "
            "others with --lp-ports, --hop-port and --local-port"
        )


class Processes:
    """The four servers, started and stopped together."""

    def __init__(
        self, workdir: Path, hop_port: int, local_port: int, lp_ports: dict[str, int]
    ) -> None:
        self.workdir = workdir
        self.hop_port = hop_port
        self.local_port = local_port
        self.lp_ports = lp_ports
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _hop_config(self) -> str:
        config = "config/fix-lps.toml"
        if self.lp_ports == CONFIGURED_PORTS:
            return config
        text = (ROOT / config).read_text()
        for name, port in self.lp_ports.items():
            text = text.replace(f"port = {CONFIGURED_PORTS[name]}\n", f"port = {port}\n")
        copy = self.workdir / "fix-lps.toml"
        copy.write_text(text)
        return str(copy)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(_fixgw() + args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        _refuse_taken({**self.lp_ports, "hop": self.hop_port, "local": self.local_port})
        for name, port in self.lp_ports.items():
            proc = self._start(
                name,
                [
                    "lp-sim",
                    "--config",
                    LP_CONFIGS[name],
                    "--port",
                    str(port),
                    "--data-dir",
                    str(self.workdir / name),
                ],
            )
            _wait_for_port(port, proc, f"lp-sim {name}", 30)
        for name, config, port in (
            ("hop", self._hop_config(), self.hop_port),
            ("local", "config/default.toml", self.local_port),
        ):
            proc = self._start(
                name,
                [
                    "run",
                    "--config",
                    config,
                    "--fix-port",
                    str(port),
                    "--http-port",
                    "0",
                    "--drop-copy-port",
                    "0",
                    "--data-dir",
                    str(self.workdir / name),
                ],
            )
            _wait_for_port(port, proc, f"gateway ({config})", 30)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _measure(args: argparse.Namespace, procs: Processes) -> int:
    hop = LoadClient("CLIENT1", "GATEWAY")
    local = LoadClient("CLIENT1", "GATEWAY")
    await hop.connect("127.0.0.1", procs.hop_port)
    await local.connect("127.0.0.1", procs.local_port)
    for client in (hop, local):
        await client.run(args.warm_up, None, args.in_flight)
    hop_meter = CpuMeter({n: procs.pid(n) for n in ("hop", "lpx1", "lpx2")})
    local_meter = CpuMeter({"local": procs.pid("local")})
    count = int(args.rate * args.duration)
    runs: dict[str, list[RunStats]] = {"hop": [], "local": []}

    async def one(name: str) -> RunStats:
        client, meter = (hop, hop_meter) if name == "hop" else (local, local_meter)
        before = meter.read()
        stats = await client.run(count, args.rate, args.in_flight)
        stats.cpu_s = meter.used(before, meter.read())
        runs[name].append(stats)
        label = "FIX hop   " if name == "hop" else "in-process"
        print(f"  {label} {stats.summary()}")
        print(f"             {stats.cpu_summary()}", flush=True)
        return stats

    print(
        f"{args.rounds} rounds of {args.duration:g} s at {args.rate:,.0f}/s "
        f"(FIX hop: config/fix-lps.toml and two lp-sim; in-process: config/default.toml)"
    )
    ratios = []
    for i in range(args.rounds):
        order = ("hop", "local") if i % 2 == 0 else ("local", "hop")
        got = {name: await one(name) for name in order}
        ratio = got["hop"].percentile(99) / got["local"].percentile(99)
        ratios.append(ratio)
        print(f"  round {i + 1}: hop P99 / in-process P99 = {ratio:.2f}x", flush=True)
    await hop.logout()
    await local.logout()
    hop_p99 = statistics.median(r.percentile(99) for r in runs["hop"])
    local_p99 = statistics.median(r.percentile(99) for r in runs["local"])
    print(
        f"median P99: FIX hop {hop_p99 / 1000:.3f} ms, in-process {local_p99 / 1000:.3f} ms: "
        f"{hop_p99 / local_p99:.2f}x (rounds: {', '.join(f'{r:.2f}x' for r in ratios)})"
    )
    incomplete = [r for rs in runs.values() for r in rs if r.completed != r.sent]
    if incomplete:
        print(f"{len(incomplete)} run(s) did not get every answer")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="orders per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of runs")
    parser.add_argument("--in-flight", type=int, default=1000, help="bound on orders in flight")
    parser.add_argument("--hop-port", type=int, default=9886, help="FIX port of the hop gateway")
    parser.add_argument("--local-port", type=int, default=9887, help="FIX port of the other")
    parser.add_argument("--warm-up", type=int, default=2000, help="orders before the runs")
    parser.add_argument(
        "--lp-ports",
        type=int,
        nargs=2,
        default=list(CONFIGURED_PORTS.values()),
        metavar=("A", "B"),
        help="FIX ports of the two LP simulators",
    )
    parser.add_argument("--keep", action="store_true", help="keep the processes' directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hop-bench-"))
    lp_ports = dict(zip(CONFIGURED_PORTS, args.lp_ports, strict=True))
    procs = Processes(workdir, args.hop_port, args.local_port, lp_ports)
    try:
        procs.start()
        return uvloop.run(_measure(args, procs))
    finally:
        procs.stop()
        if args.keep:
            print(f"logs and stores kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
