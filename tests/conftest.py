"""Shared fixtures: free ports and daemons started as real processes; and a
check, before anything runs, that the compiled modules are those of the
sources."""

from __future__ import annotations

import importlib.machinery
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog
from buildkit import PACKAGES, ROOT, compiled_sources
from hypothesis import settings
from netkit import free_port

from gateway.dropcopy.process import READY_WITHIN, STOP_GRACE

# Property tests assert what holds, never how fast: no per-example deadline
# (Hypothesis's default, 200 ms, fails an example the machine was merely
# slow on).  The examples are the same on every run (derandomize): a run is
# red for the code, never for the examples drawn that day.
settings.register_profile("fixgw", deadline=None, derandomize=True)
settings.load_profile("fixgw")

# Code under test that never configured logging renders with structlog's
# defaults, whose console renderer draws exceptions with rich when rich is
# installed (the test tools bring it): a tenth of a second per traceback,
# which would hold the loop past the short timeouts some tests use.  Plain
# tracebacks, as the daemon's own logging renders them.
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


# Longer than the daemon's own waits, so that a slow machine makes a test
# slow, not red: its start waits up to 30 s for the drop copy to be ready,
# its stop gives the drop copy 10 s to finish copying.
DAEMON_START_S = READY_WITHIN + 30
DAEMON_STOP_S = STOP_GRACE + 20


def _scheduling() -> tuple[int, int, frozenset[int]]:
    """The test process's scheduling policy, nice level and CPUs."""
    return (
        os.sched_getscheduler(0),
        os.getpriority(os.PRIO_PROCESS, 0),
        frozenset(os.sched_getaffinity(0)),
    )


@pytest.fixture(autouse=True)
def _scheduling_kept() -> Iterator[None]:
    """No test may leave the test process at another priority or on other
    CPUs (code run in-process that places its own process, as a back office
    started here does): everything after it, and every daemon it starts,
    would inherit it, and run starved under load."""
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    before = _scheduling()
    yield
    after = _scheduling()
    assert after == before, (
        f"the test left the test process's scheduling (policy, nice, CPUs) at {after}, not {before}"
    )


def _stale_extensions() -> list[str]:
    """Sources edited since they were compiled (setup.py builds them in
    place), or no longer compiled: Python would go on importing the old
    compiled module."""
    listed = set(compiled_sources())
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    stale = []
    for package in PACKAGES:
        for ext in (ROOT / package).rglob("*"):
            suffix = next((s for s in suffixes if ext.name.endswith(s)), None)
            if suffix is None:
                continue
            source = ext.with_name(ext.name.removesuffix(suffix) + ".py")
            stale_source = not source.exists() or source.stat().st_mtime > ext.stat().st_mtime
            if stale_source or str(source.relative_to(ROOT)) not in listed:
                stale.append(str(source.relative_to(ROOT)))
    return sorted(stale)


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = _stale_extensions()
    if stale:
        pytest.exit(
            "compiled modules older than their sources or no longer listed in setup.py; "
            "delete them and run `pip install -e .` again: " + ", ".join(stale),
            returncode=2,
        )


@dataclass
class Daemon:
    """A ``fixgw run`` process."""

    args: list[str]
    fix_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    drop_copy_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> Daemon:
        """Start the daemon and return once it has logged ``gateway_started``
        (so the port answering is this daemon's).  A port taken by another
        process between choosing it and binding it (the daemon then exits
        saying so) is chosen again, twice at most."""
        for attempt in range(3):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            self._log = log
            cmd = [
                sys.executable,
                "-m",
                "gateway",
                "run",
                *self.args,
                "--fix-port",
                str(self.fix_port),
                "--http-port",
                str(self.http_port),
                "--drop-copy-port",
                str(self.drop_copy_port),
                "--data-dir",
                str(self.data_dir),
            ]
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + DAEMON_START_S
            # polling, with the deadline above: until this run logs its start
            while self.proc.poll() is None and time.monotonic() < deadline:
                if b"gateway_started" in self._log_bytes(offset):
                    return self
                time.sleep(0.02)  # polling, see above
            said = self._log_bytes(offset)
            if self.proc.poll() is None:
                raise TimeoutError(
                    f"the daemon did not start in {DAEMON_START_S:.0f} s: {said[-2000:]!r}"
                )
            self._close_log()
            if b"cannot listen" not in said or attempt == 2:
                raise RuntimeError(
                    f"the daemon exited with {self.proc.returncode}: {said[-2000:]!r}"
                )
            self.fix_port = free_port()
            self.http_port = free_port() if self.http_port else 0
            self.drop_copy_port = free_port()
        raise AssertionError("unreachable")

    def _log_bytes(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read()

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DAEMON_STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Daemon] = []

    def make(*args: str, data_dir: Path | None = None, http: bool = True) -> Daemon:
        d = Daemon(
            args=list(args),
            fix_port=free_port(),
            http_port=free_port() if http else 0,
            drop_copy_port=free_port(),
            data_dir=data_dir or tmp_path / "data",
            log_path=tmp_path / f"daemon-{len(started)}.log",
        )
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()
