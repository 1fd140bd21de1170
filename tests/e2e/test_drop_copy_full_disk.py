"""The drop-copy process on a disk it cannot write to: it ends saying why
in named lines, never in a bare traceback (its lines go to the gateway's
log, every line of which is a named event), and the state it reports for
the gateway to show is written again once the disk has room."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs
from test_drop_copy_restart_backoffice import _config, _journal_missed

from gateway.dropcopy.service import DropCopyService
from gateway.net.server import bind_listening

RUN_WITHIN = 60


def _files_cannot_grow() -> None:
    """In the child: no file may grow past 0 bytes, so every write to one
    fails (EFBIG), as every write fails on a full disk (ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def _close(service: DropCopyService) -> None:
    for store in service.stores:
        store.close()
    service.copier.close()


@pytest.mark.parametrize("store", ["kept", "new"])
def test_a_drop_copy_that_cannot_write_ends_in_named_lines(tmp_path: Path, store: str) -> None:
    cfg = _config(tmp_path)
    _journal_missed(tmp_path, 2)  # copies to make, so its store must grow
    if store == "kept":
        # the store and the cursor of a process before it
        _close(DropCopyService(cfg))
    sockets = bind_listening("127.0.0.1", 0, "gateway.drop_copy_port")
    fd = sockets[0].fileno()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.dropcopy", "--listen-fd", str(fd)],
            input=msgspec.json.encode(cfg),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=[fd],
            preexec_fn=_files_cannot_grow,
            timeout=RUN_WITHIN,
        )
    finally:
        for sock in sockets:
            sock.close()
    said = done.stdout.decode(errors="replace")
    assert done.returncode == 1, said
    events = []
    for line in said.splitlines():
        if line == "ready":  # its word to the gateway, on standard output
            continue
        try:
            events.append(json.loads(line)["event"])
        except ValueError:
            pytest.fail(f"not a named event: {line!r} in\n{said}")
    assert "drop_copy_failed" in events


def test_the_state_for_the_gateway_is_written_again_once_it_can_be(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _journal_missed(tmp_path, 1)
    service = DropCopyService(cfg)
    state = tmp_path / "dropcopy" / "sessions.json"
    # the file it is written to first cannot be written
    blocked = state.with_suffix(".tmp")
    blocked.mkdir(parents=True)
    try:
        with capture_logs() as logs:
            service.report()
            service.report()
        assert [e["event"] for e in logs] == ["drop_copy_state_not_written"]
        assert not state.exists()
        blocked.rmdir()
        with capture_logs() as logs:
            service.report()
        assert [e["event"] for e in logs] == ["drop_copy_state_written"]
        sessions = json.loads(state.read_text())
        assert [s["session"] for s in sessions] == ["FIX.4.4:GATEWAY->BACKOFFICE"]
    finally:
        _close(service)
