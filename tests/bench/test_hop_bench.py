"""The FIX hop benchmark starts its four processes, measures both setups and
stops everything it started (timings are printed, never asserted)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from netkit import free_port

REPO = Path(__file__).resolve().parents[2]


def test_one_short_round_measures_both_setups() -> None:
    ports = [str(free_port()) for _ in range(4)]
    args = ["--rounds", "1", "--rate", "200", "--duration", "0.5", "--warm-up", "50"]
    args += ["--lp-ports", ports[0], ports[1], "--hop-port", ports[2], "--local-port", ports[3]]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hop_bench.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    runs = [line for line in lines if "offered" in line]
    assert len(runs) == 2
    assert runs[0].lstrip().startswith("FIX hop")
    assert runs[1].lstrip().startswith("in-process")
    for run in runs:
        assert "sent     100  done     100  rejected     0" in run
    assert any(line.startswith("median P99: FIX hop") for line in lines)
    # every server the benchmark started is gone
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()


def test_a_taken_port_stops_it_before_anything_starts() -> None:
    ports = [str(free_port()) for _ in range(3)]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        local = str(taken.getsockname()[1])
        args = ["--lp-ports", ports[0], ports[1], "--hop-port", ports[2], "--local-port", local]
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "hop_bench.py"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {local} (local) is in use" in done.stderr
    for port in ports:  # nothing was started
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
