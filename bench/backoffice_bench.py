"""What the back office costs the gateway, how far behind it runs, and how
fast it catches up after an outage.

Starts ``fixgw run`` on ``config/default.toml`` (a temporary data directory,
its own ports; the three in-process simulated LPs write their statements),
``fixgw backoffice run`` on the same file, and loads the gateway with
``fixgw bench`` (market orders from CLIENT1), in three phases:

1. ``with``: ``--rate`` orders/s for ``--duration`` s with the back office
   running; its lag (how long the oldest trade of each reconciliation run
   waited for it) and records are sampled every 0.5 s;
2. ``away``: the back office is stopped (SIGKILL) and the same load runs
   for ``--outage`` s;
3. ``back``: the back office starts again under the same load; printed:
   how long until it holds every drop-copy message the gateway has sent
   (catch-up), the messages it took per second meanwhile, and the breaks
   once it is caught up (expected: none).

Each phase prints the gateway's latency as ``fixgw bench`` measures it, so
the three P99s can be compared in one run.  With ``--wire on`` (Linux, as
root) each phase also prints the gateway's latency as the wire shows it
(``bench/wire.py``: from the NewOrderSingle's packet to the final
report's, both stamped by the kernel as they are sent), which the client's
own scheduling beside the back office does not reach; each phase's
warm-up (its first 2,000 orders, sent as fast as they go) left out.

With ``--place on`` the gateway runs on a CPU of its own (``gateway.cpus``)
and the drop copy, the back office (``backoffice.cpus``) and the load
client on the others, as docs/operations.md advises on a shared machine;
with ``--client-cpus gateway`` too, the load client shares the gateway's
CPU instead (on a 2-CPU machine, the only way to keep the back office's
work off the client that measures the gateway: clients of a real gateway
are on other machines).

With ``--intake SECONDS`` it measures instead how fast the back office
takes in a backlog with nothing else running: the gateway is loaded as fast
as it goes for that long with the back office not started, then the back
office starts and the time from its logon to holding every drop-copy
message is printed (messages, and fills, per second), then the time until
everything it holds is reconciled.

    .venv/bin/python bench/backoffice_bench.py [--rate 3000] [--duration 20] [--outage 60]
        [--idle-priority on|off] [--place on|off] [--client-cpus others|gateway]
        [--intake SECONDS] [--wire on|off]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wire

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PREFIX: list[str] = []
"""Put before the load client's command (``taskset`` with ``--place on``)."""
TOKEN = "dev-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def placement() -> tuple[list[int], list[int]]:
    """With ``--place on``: the gateway on the first CPU, the rest (the
    drop copy, the back office, the load client) on the others."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[:1], (allowed[1:] or allowed)


def config(
    tmp: Path, idle_priority: bool = True, place: bool = False
) -> tuple[Path, int, int, int]:
    fix_port, http_port, bo_port = free_port(), free_port(), free_port()
    text = (ROOT / "config" / "default.toml").read_text()
    if place:
        gateway_cpus, others = placement()
        text = text.replace("\n[gateway]\n", f"\n[gateway]\ncpus = {gateway_cpus}\n", 1)
        text = text.replace("\n[backoffice]\n", f"\n[backoffice]\ncpus = {others}\n", 1)
    text = re.sub(r"(?m)^fix_port = \d+", f"fix_port = {fix_port}", text)
    text = re.sub(r"(?m)^drop_copy_port = \d+", f"drop_copy_port = {free_port()}", text)
    text = re.sub(r"(?m)^http_port = 8080", f"http_port = {http_port}", text)
    text = re.sub(r"(?m)^http_port = 8082", f"http_port = {bo_port}", text)
    text = re.sub(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{tmp / "data"}"', text)
    text = re.sub(
        r"(?m)^idle_priority = true", f"idle_priority = {str(idle_priority).lower()}", text
    )
    path = tmp / "bench.toml"
    path.write_text(text)
    return path, fix_port, http_port, bo_port


def get(port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", *args], cwd=ROOT, stdout=out, stderr=out
        )


def bench(fix_port: int, http_port: int, rate: float | None, duration: float) -> str:
    """``fixgw bench`` at ``rate`` orders/s (None: as fast as it goes)."""
    done = subprocess.run(
        [
            *CLIENT_PREFIX,
            sys.executable,
            "-m",
            "gateway",
            "bench",
            "--port",
            str(fix_port),
            "--http-port",
            str(http_port),
            *(["--rate", str(rate)] if rate is not None else ["--max"]),
            "--duration",
            str(duration),
            "--no-yardstick",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("offered"))
    return " ".join(line.split())


class Sampler(threading.Thread):
    """The back office's lag and records, every 0.5 s."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.lags: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.lags.append(get(self.port, "/backoffice/status")["lag_seconds"])
            except OSError:
                pass


def sent_by_gateway(http_port: int) -> int:
    sessions = {s["session"]: s for s in get(http_port, "/admin/sessions")}
    return int(sessions["FIX.4.4:GATEWAY->BACKOFFICE"]["next_sender_seq"]) - 1


def intake(
    fix_port: int, http_port: int, bo_port: int, path: Path, tmp: Path, seconds: float
) -> None:
    """The back office's intake of a backlog, nothing else running."""
    print(f"backlog, no back office: {bench(fix_port, http_port, None, seconds)}")
    behind = sent_by_gateway(http_port)
    office = start(["backoffice", "run", "--config", str(path)], tmp / "bo.log")
    try:
        wait(lambda: get(bo_port, "/backoffice/status")["drop_copy"]["logged_on"], 60)
        logged_on = time.monotonic()
        wait(
            lambda: get(bo_port, "/backoffice/status")["drop_copy"]["last_seq_stored"] >= behind,
            900,
        )
        seconds_taken = time.monotonic() - logged_on
        wait(lambda: get(bo_port, "/backoffice/status")["lag_seconds"] == 0, 300)
        reconciled = time.monotonic() - logged_on

        def counted() -> int:
            # the records are counted by reconciliation runs: the count once it stops moving
            first = get(bo_port, "/backoffice/status")["records"]["client_trades"]
            time.sleep(1.5)
            again = get(bo_port, "/backoffice/status")["records"]["client_trades"]
            return int(again) if again == first else 0

        fills = wait(counted, 120)
        print(
            f"  took in {behind:,} drop-copy messages ({fills:,} fills) in {seconds_taken:.1f} s "
            f"from its logon: {behind / seconds_taken:,.0f} messages/s, "
            f"{fills / seconds_taken:,.0f} fills/s; all reconciled after {reconciled:.1f} s: "
            f"{fills / reconciled:,.0f} fills/s"
        )
    finally:
        office.send_signal(signal.SIGTERM)
        office.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--outage", type=float, default=60)
    parser.add_argument(
        "--idle-priority",
        choices=("on", "off"),
        default="on",
        help="the back office as SCHED_IDLE (the default config) or only niced",
    )
    parser.add_argument(
        "--place",
        choices=("on", "off"),
        default="off",
        help="the gateway on a CPU of its own (gateway.cpus), the drop copy, the back "
        "office (backoffice.cpus) and the load client on the others",
    )
    parser.add_argument(
        "--client-cpus",
        choices=("others", "gateway"),
        default="others",
        help="with --place on: the load client beside the drop copy and the back office "
        "(others), or on the gateway's CPU (gateway), so that what the back office does "
        "on its CPU reaches the gateway only, not the client measuring it",
    )
    parser.add_argument(
        "--intake",
        type=float,
        metavar="SECONDS",
        help="measure the intake of a backlog of this many seconds of full load instead",
    )
    parser.add_argument(
        "--wire",
        choices=("on", "off"),
        default="off",
        help="also the gateway's latency on the wire, per phase (bench/wire.py; root)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fixgw-bo-bench-"))
    place = args.place == "on"
    path, fix_port, http_port, bo_port = config(tmp, args.idle_priority == "on", place)
    if place:
        client_cpus = placement()[0 if args.client_cpus == "gateway" else 1]
        CLIENT_PREFIX[:] = ["taskset", "-c", ",".join(map(str, client_cpus))]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gateway = start(["run", "--config", str(path)], tmp / "gateway.log")
        procs.append(gateway)
        wait(lambda: bool(get(http_port, "/admin/sessions")), 30)
        if args.intake:
            intake(fix_port, http_port, bo_port, path, tmp, args.intake)
            return
        office = start(["backoffice", "run", "--config", str(path)], tmp / "bo.log")
        procs.append(office)
        wait(lambda: get(bo_port, "/backoffice/status")["drop_copy"]["logged_on"], 30)

        capture = None
        # each phase: (label, began, ended, orders of its warm-up)
        phases: list[tuple[str, float, float, int]] = []
        if args.wire == "on":
            capture = subprocess.Popen(
                [*CLIENT_PREFIX, *wire.command(fix_port, tmp / "wire.txt")],
                stdout=subprocess.PIPE,
            )
            procs.append(capture)  # ended with the rest, whatever happens
            assert capture.stdout is not None
            if capture.stdout.readline() != b"capturing\n":
                print("the wire capture did not start (Linux, as root): no wire figures")
                capture = None

        def phase(label: str, seconds: float) -> str:
            began = time.time()
            line = bench(fix_port, http_port, args.rate, seconds)
            # fixgw bench's warm-up: min(2,000, 1,000 a second of the run)
            phases.append((label, began, time.time(), min(2000, int(seconds * 1000))))
            return line

        sampler = Sampler(bo_port)
        sampler.start()
        print(f"with the back office:   {phase('with the back office', args.duration)}")
        sampler.stop.set()
        sampler.join()
        lags = sorted(sampler.lags)
        if lags:
            print(
                f"  reconciliation lag: median {lags[len(lags) // 2]:.2f} s, "
                f"max {lags[-1]:.2f} s over {len(lags)} samples"
            )

        office.send_signal(signal.SIGKILL)
        office.wait()
        print(f"back office away:       {phase('back office away', args.outage)}")
        # the drop-copy process reports its sessions each second
        time.sleep(1.5)
        behind = sent_by_gateway(http_port)
        office = start(["backoffice", "run", "--config", str(path)], tmp / "bo.log")
        procs.append(office)
        restarted = time.monotonic()
        caught: dict[str, float] = {}

        def catch_up() -> None:
            def done() -> bool:
                stored = get(bo_port, "/backoffice/status")["drop_copy"]["last_seq_stored"]
                return bool(stored >= behind)

            wait(done, 600)
            caught["s"] = time.monotonic() - restarted

        waiter = threading.Thread(target=catch_up, daemon=True)
        waiter.start()
        print(f"back office catching up: {phase('back office catching up', args.duration)}")
        if capture is not None:
            capture.send_signal(signal.SIGTERM)
            if capture.wait(60) != 0 or not (tmp / "wire.txt").exists():
                print("  the wire capture failed: no wire figures")
                capture = None
        if capture is not None:
            for delivered, since in ((False, "sent"), (True, "taken in")):
                rows = wire.read(tmp / "wire.txt", delivered)
                for label, began, ended, warm_up in phases:
                    measured = sorted(wire.window(rows, began, ended))[warm_up:]
                    print(f"  on the wire from the order {since}, {label}:")
                    print(f"    {wire.summary(measured)}")
        waiter.join()
        seconds = caught.get("s", float("nan"))
        print(
            f"  caught up with {behind:,} drop-copy messages in {seconds:.1f} s "
            f"(at least {behind / seconds:,.0f} messages/s while the load went on)"
        )

        # settled: nothing pending and nothing new for two seconds (heartbeats
        # take sequence numbers too, so the last one stored is not the last sent)
        def settled() -> bool:
            first = get(bo_port, "/backoffice/status")
            time.sleep(2)
            second = get(bo_port, "/backoffice/status")
            return bool(first["records"] == second["records"] and second["records"]["pending"] == 0)

        wait(settled, 600)
        status = get(bo_port, "/backoffice/status")
        breaks = get(bo_port, "/backoffice/breaks")
        print(f"  records: {status['records']}; breaks: {breaks['count']} {breaks['by_type']}")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
