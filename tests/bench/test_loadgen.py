"""The load generator measures what it claims: every order answered, counted once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netkit import free_port

from config import default_config_path, parse_config
from gateway.daemon import Gateway
from gateway.sim.loadgen import RunStats, process_cpu_seconds, run_load, saturation, yardstick

ECHO = """
[gateway]
fix_port = {port}
http_port = 0
data_dir = "{data}"
[store]
backend = "memory"
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"
Application = "echo"
"""


@pytest.mark.asyncio
async def test_yardstick_answers_every_order() -> None:
    stats = await yardstick(duration=0.2, max_in_flight=50)
    assert stats.sent > 0
    assert stats.completed == stats.sent
    assert len(stats.latencies_us) == stats.completed


@pytest.mark.asyncio
async def test_fixed_rate_and_max_runs_against_the_gateway(tmp_path: Path) -> None:
    port = free_port()
    gateway = Gateway(parse_config(ECHO.format(port=port, data=tmp_path)))
    await gateway.start()
    try:
        fixed, unbounded = await run_load(
            "127.0.0.1", port, "CLIENT1", "GATEWAY", [500.0, None], 0.2, 20
        )
    finally:
        await gateway.stop()
    for stats in (fixed, unbounded):
        assert stats.completed == stats.sent > 0
        assert stats.rejected == 0
    assert fixed.sent == 100


def test_saturation_names_the_first_rate_not_kept_up_with() -> None:
    ok = RunStats(1000.0, sent=10, completed=10, elapsed=0.01, latencies_us=[100.0] * 10)
    slow = RunStats(2000.0, sent=10, completed=10, elapsed=1.0, latencies_us=[100.0] * 10)
    assert saturation([ok, slow]).startswith("2,000/s: throughput")
    assert saturation([ok]) == "nothing saturated up to the highest fixed rate"
    shed = RunStats(
        3000.0, sent=10, completed=10, rejected=4, elapsed=0.001, latencies_us=[100.0] * 10
    )
    assert saturation([ok, shed]) == "3,000/s: 4 orders refused"
    assert shed.throughput == 6 / 0.001  # the refused are no work done


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``fixgw bench`` with these arguments, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reload_comparison_reloads_a_running_daemon(daemon_factory: object, tmp_path: Path) -> None:
    path = tmp_path / "fixgw.toml"
    path.write_text(default_config_path().read_text())
    d = daemon_factory("--config", str(path)).start()  # type: ignore[operator]
    args = ["--port", str(d.fix_port), "--http-port", str(d.http_port)]
    args += ["--reload-every", "0.2", "--reload-file", str(path), "--rate", "300"]
    args += ["--duration", "1"]
    proc = run_bench(*args)
    assert proc.returncode == 0, proc.stderr
    assert "reloads: applied" in proc.stdout
    assert "invalid" not in proc.stdout
    assert "mean P99 without reloads" in proc.stdout
    assert d.log_text().count('"config_reloaded"') >= 4


def test_process_cpu_seconds_counts_work_done() -> None:
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert process_cpu_seconds(os.getpid()) - before >= 0.05  # clock ticks are coarse


def test_cpu_summary_per_process() -> None:
    stats = RunStats(1000.0, sent=1000, completed=1000, elapsed=2.0)
    stats.cpu_s = {"client": 0.5, "gateway": 1.0}
    assert stats.cpu_summary() == (
        "cpu: client 0.25 cores 500 µs/order; gateway 0.50 cores 1,000 µs/order"
    )


def test_bench_reports_the_cpu_of_named_processes(daemon_factory: object) -> None:
    d = daemon_factory().start()  # type: ignore[operator]
    args = ["--port", str(d.fix_port), "--rate", "500", "--duration", "0.5"]
    args += ["--no-yardstick", "--cpu-of", f"gateway={d.proc.pid}"]
    proc = run_bench(*args)
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.strip().startswith("cpu:")]
    used = dict(
        (part.split()[0], int(part.split()[3].replace(",", "")))
        for part in line.strip().removeprefix("cpu: ").split("; ")
    )
    assert set(used) == {"client", "gateway"}
    assert used["gateway"] > 0  # the gateway did work for every order


def test_bench_refuses_a_malformed_cpu_of() -> None:
    proc = run_bench("--cpu-of", "gateway")
    assert proc.returncode == 2
    assert "expected NAME=PID" in proc.stderr


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--in-flight", "0", "a whole number above 0"),  # waited for ever
        ("--in-flight", "-3", "a whole number above 0"),
        ("--rate", "0", "a number above 0"),  # ZeroDivisionError after the warm-up
        ("--rate", "-5", "a number above 0"),  # exit 0 with NaN percentiles
        ("--rate", "nan", "a number above 0"),
        ("--base-rate", "0", "a number above 0"),
        ("--duration", "-1", "a number above 0"),
        ("--duration", "inf", "a number above 0"),
        ("--reload-every", "-1", "a number from 0 up (0: off)"),
    ],
)
def test_bench_refuses_arguments_it_cannot_run_with(
    flag: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the command line (exit status 2, its usage), before any
    connection is made."""
    from gateway.cli import main

    port = str(free_port())  # nothing there: a run would end with exit status 1
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--port", port, "--duration", "1", "--no-yardstick", flag, value])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"fixgw bench: error: argument {flag}: {says}, got {value!r}"
    )


def test_bench_without_a_gateway_is_one_line() -> None:
    port = free_port()
    proc = run_bench("--port", str(port), "--rate", "10", "--duration", "0.5", "--no-yardstick")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"fixgw bench: cannot connect to 127.0.0.1:{port}: Connection refused"
    ]


@pytest.mark.asyncio
async def test_a_run_ends_when_the_gateway_ends_the_session(tmp_path: Path) -> None:
    """A paced run whose gateway stops mid-way ends with what it had, not
    waiting for answers that cannot come."""
    import asyncio

    from gateway.sim.loadgen import LoadClient, _connect

    port = free_port()
    gateway = Gateway(parse_config(ECHO.format(port=port, data=tmp_path)))
    await gateway.start()
    client = LoadClient("CLIENT1", "GATEWAY")
    await _connect(client, "127.0.0.1", port)
    run = asyncio.create_task(client.run(20_000, 500.0, 20))
    try:
        async with asyncio.timeout(10):
            while client.stats.completed < 50:
                await asyncio.sleep(0.01)  # polling, within the timeout above
                assert not run.done()
        await gateway.stop()
        async with asyncio.timeout(5):  # its drain would wait 10 s for nothing
            stats = await run
    finally:
        run.cancel()
    assert 50 <= stats.completed < 20_000
