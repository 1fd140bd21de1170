"""Loopback helpers shared by the tests that start processes or servers."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    """Wait until something listens on ``port``; raise if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling, with the deadline above
    raise TimeoutError(f"port {port} not listening after {timeout}s")


def log_events(log: str | Path) -> list[dict[str, Any]]:
    """The JSON events of a process's log (its text, or the file holding it)."""
    text = log.read_text(errors="replace") if isinstance(log, Path) else log
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
