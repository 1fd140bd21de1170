"""``fixgw run`` on a data directory whose disk takes no more: refused in
one line naming the data directory and the cause, exit 2, whether it
starts on it for the first time or again.

The process's files may not grow (RLIMIT_FSIZE): every write to them
fails, as on a full disk, with EFBIG for ENOSPC.  A data directory on a
file system mounted read-only is refused the same way, naming that cause."""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import tempfile
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


_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
"""A shell script mounting the folder ``$1`` read-only, then running the
rest of its arguments (in a mount namespace of its own: ``unshare -rm``)."""


def _read_only_mounts() -> bool:
    """Whether this machine lets a process mount in a namespace of its own
    (``unshare``, unprivileged user namespaces or root)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            ["unshare", "-rm", "sh", "-c", _READ_ONLY, "sh", folder, "true"],
            capture_output=True,
            timeout=30,
        )
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mounts(), reason="no mount namespace to mount read-only in")
def test_a_start_on_a_read_only_file_system_is_refused_naming_it(
    tmp_path: Path, daemon_factory: Any
) -> None:
    data_dir = tmp_path / "data"
    d = daemon_factory(data_dir=data_dir).start()
    assert d.stop() == 0
    run = [
        sys.executable,
        *("-m", "gateway", "run", "--fix-port", str(free_port())),
        *("--http-port", "0", "--drop-copy-port", str(free_port())),
        *("--data-dir", str(data_dir)),
    ]
    # the data directory mounted read-only, for this process alone
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", _READ_ONLY, "sh", str(data_dir), *run],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(said) == 1, said
    assert said[0].endswith(
        f"refusing to start: gateway.data_dir: cannot write to {data_dir}: Read-only file system"
    ), said
