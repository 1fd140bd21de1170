"""The load generator measures what it claims: every order answered, counted once."""

from __future__ import annotations

from pathlib import Path

import pytest
from netkit import free_port

from config import parse_config
from gateway.daemon import Gateway
from gateway.loadgen import RunStats, run_load, saturation, yardstick

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


def test_reload_comparison_reloads_a_running_daemon(daemon_factory: object, tmp_path: Path) -> None:
    import subprocess
    import sys

    from config import default_config_path

    path = tmp_path / "fixgw.toml"
    path.write_text(default_config_path().read_text())
    d = daemon_factory("--config", str(path)).start()  # type: ignore[operator]
    args = ["--port", str(d.fix_port), "--http-port", str(d.http_port)]
    args += ["--reload-every", "0.2", "--reload-file", str(path), "--rate", "300"]
    args += ["--duration", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reloads: applied" in proc.stdout
    assert "invalid" not in proc.stdout
    assert "mean P99 without reloads" in proc.stdout
    assert d.log_text().count('"config_reloaded"') >= 4
