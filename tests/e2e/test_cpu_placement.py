"""CPU placement from the config, as started from the command line: the
gateway on its CPUs and the drop-copy process on the others; a CPU the
machine does not give the process stops the gateway and the back office
with one line naming the setting."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

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
