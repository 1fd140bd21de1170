"""CPU placement from the config, as started from the command line: the
gateway on its CPUs and the drop-copy process on the others from the
moment it is started (and at idle priority, when started again); a CPU the machine does not give
the process stops the gateway and the back office with one line naming the
setting."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import default_config_path, load_config
from gateway.dropcopy.process import DropCopyProcess
from gateway.net.server import bind_listening

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (ROOT / "config" / "default.toml").read_text()

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")


def placed(text: str, line: str) -> str:
    """The default config with ``line`` at the start of its ``[gateway]`` table."""
    assert "\n[gateway]\n" in text
    return text.replace("\n[gateway]\n", f"\n[gateway]\n{line}\n", 1)


def cpus_of(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def drop_copy_pid(log: str) -> int | None:
    import json

    for line in log.splitlines():
        if '"drop_copy_started"' in line:
            return int(json.loads(line)["pid"])
    return None


@pytest.mark.asyncio
async def test_the_gateway_runs_on_its_cpus_and_the_drop_copy_on_the_others(
    daemon_factory: Any, tmp_path: Path
) -> None:
    allowed = os.sched_getaffinity(0)
    first = min(allowed)
    path = tmp_path / "fixgw.toml"
    path.write_text(placed(DEFAULT_TEXT, f"cpus = [{first}]"))
    d = daemon_factory("--config", str(path)).start()
    assert d.proc is not None
    assert cpus_of(d.proc.pid) == {first}
    deadline = time.monotonic() + 20
    while (pid := drop_copy_pid(d.log_text())) is None:
        assert time.monotonic() < deadline, "the drop copy did not start"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    # set as it starts: read once it has said it is ready
    others = (allowed - {first}) or allowed
    deadline = time.monotonic() + 20
    while cpus_of(pid) != others:
        assert time.monotonic() < deadline, f"drop copy on {cpus_of(pid)}, not {others}"
        await asyncio.sleep(0.05)  # polling, with the deadline above
    assert '"gateway_placed"' in d.log_text()


@pytest.mark.asyncio
async def test_the_drop_copy_started_again_is_placed_before_it_runs_a_line(
    tmp_path: Path,
) -> None:
    """The gateway starts its drop-copy process again while it trades (the
    process ended): a child of the gateway, it begins on the gateway's CPUs
    and at its priority.  Its start (Python and its imports, most of a
    second of CPU) must not run there: it is on its own CPUs, at idle
    priority, from the moment it is started, not once it has placed itself."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("one CPU only: nowhere else to put it")
    cpu = max(allowed)
    cfg = load_config(default_config_path())
    cfg = msgspec.structs.replace(
        cfg,
        gateway=msgspec.structs.replace(
            cfg.gateway, data_dir=str(tmp_path / "data"), drop_copy_cpus=(cpu,)
        ),
    )
    process = DropCopyProcess(cfg, bind_listening("127.0.0.1", 0, "gateway.drop_copy_port"))
    try:
        await process._spawn()  # as _watch starts it again
        pid = process.pid
        assert pid is not None
        assert cpus_of(pid) == {cpu}
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    finally:
        await process.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_cpu_the_machine_does_not_give_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fixgw.toml"
    path.write_text(placed(DEFAULT_TEXT, "cpus = [4000]"))
    done = refused(
        [
            "run",
            "--config",
            str(path),
            "--fix-port",
            str(free_port()),
            "--http-port",
            "0",
            "--drop-copy-port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "gateway.cpus: CPU 4000 not available to this process" in lines[0]
    # refused before anything was made on disk
    assert not (tmp_path / "data").exists()


def test_a_cpu_the_machine_does_not_give_stops_the_back_office_with_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fixgw.toml"
    text = DEFAULT_TEXT.replace("\n[backoffice]\n", "\n[backoffice]\ncpus = [4000]\n", 1)
    assert text != DEFAULT_TEXT
    path.write_text(re.sub(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{tmp_path / "data"}"', text))
    done = refused(["backoffice", "run", "--config", str(path)])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "backoffice.cpus: CPU 4000 not available to this process" in lines[0]
