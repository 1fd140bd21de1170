"""``fixgw run`` on a data directory whose disk takes no more: refused in
one line naming the data directory and the cause, exit 2, whether it
starts on it for the first time or again.

The process's files may not grow (RLIMIT_FSIZE): every write to them
fails, as on a full disk, with EFBIG for ENOSPC."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netkit import free_port

ROOT = Path(__file__).resolve().parents[2]


def _files_cannot_grow() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


@pytest.mark.parametrize("before", ["first start", "ran before"])
def test_a_start_on_a_full_disk_is_refused_naming_the_data_directory(
    tmp_path: Path, daemon_factory: Any, before: str
) -> None:
    data_dir = tmp_path / "data"
    if before == "ran before":
        d = daemon_factory(data_dir=data_dir).start()
        assert d.stop() == 0
    else:
        data_dir.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "gateway", "run", "--fix-port", str(free_port())),
            *("--http-port", "0", "--drop-copy-port", str(free_port())),
            *("--data-dir", str(data_dir)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_files_cannot_grow,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert said == [
        f"fixgw: refusing to start: cannot use the data directory {data_dir}: File too large"
    ]
