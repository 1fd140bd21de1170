"""A throwaway PostgreSQL server for the tests (and the benchmarks): a fresh
cluster in a temporary folder, a server on a free loopback port, stopped and
removed at the end.  It can be stopped and started again in between (a test
of the database going away under its client).

The server binaries are PostgreSQL's own (``initdb``, ``postgres``): those
of the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's packages), or
on the PATH.  :func:`install` installs Debian's ``postgresql`` package with
apt-get when they are missing and the tests run as root.

PostgreSQL refuses to run as root: run as root, the cluster belongs to, and
the server runs as, an unprivileged user (``postgres`` when the package made
it, else ``nobody``)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from netkit import free_port

__all__ = ["PgServer", "PostgresUnavailable", "find_bin_dir", "install"]

SUPERUSER = "postgres"

# A test cluster keeps nothing it could not lose: no waiting on the disk.
_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=50",
    "shared_buffers=256MB",
    "max_wal_size=4GB",
    "checkpoint_timeout=30min",
    "dynamic_shared_memory_type=mmap",
    "log_min_messages=warning",
)


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be had here; the message says why and what to do."""


def find_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``postgres``, or None."""
    versions = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        try:
            versions.append((int(initdb.parent.parent.name.split(".")[0]), initdb.parent))
        except ValueError:
            continue
    if versions:
        return max(versions)[1]
    found = shutil.which("initdb")
    if found is not None:
        folder = Path(found).resolve().parent
        if (folder / "postgres").exists():
            return folder
    return None


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


def install() -> Path:
    """The server binaries' folder; Debian's ``postgresql`` package is
    installed with apt-get first when they are missing and this runs as
    root.  PostgresUnavailable when they can be neither found nor installed."""
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise PostgresUnavailable(
            "postgresql is not installed and the tests do not run as root, so it cannot be "
            "installed here: run `apt-get install postgresql` (Debian)"
        )
    if shutil.which("apt-get") is None:
        raise PostgresUnavailable(
            "postgresql is not installed and there is no apt-get to install it with"
        )
    update = _apt("update")
    if update.returncode != 0:
        raise PostgresUnavailable(
            f"apt-get update failed, cannot install postgresql:\n{update.stderr[-2000:]}"
        )
    result = _apt("install", "-y", "--no-install-recommends", "postgresql")
    found = find_bin_dir()
    if result.returncode != 0 or found is None:
        raise PostgresUnavailable(
            f"`apt-get install postgresql` failed (exit {result.returncode}):\n"
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return found


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster belongs to when this runs as root (None: this
    process's own user)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(
        "running as root, and neither a `postgres` nor a `nobody` user exists "
        "to run PostgreSQL as (it refuses to run as root)"
    )


class PgServer:
    """One cluster in a temporary folder and its server on ``port``."""

    def __init__(self, bin_dir: Path, *, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.owner = _owner()
        # under the system's temporary folder, not pytest's: the unprivileged
        # owner must be able to reach it, and pytest's folders are root's alone
        self.root = Path(tempfile.mkdtemp(prefix="fixgw-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        env = dict(os.environ, LC_ALL="C", LANG="C", TZ="UTC")
        if self.owner is None:
            return {"env": env}
        env.update(HOME=str(self.root), USER=self.owner.pw_name, LOGNAME=self.owner.pw_name)
        return {
            "env": env,
            "user": self.owner.pw_uid,
            "group": self.owner.pw_gid,
            "extra_groups": [],
            "cwd": self.root,
        }

    def init(self) -> None:
        """Create the cluster (superuser ``postgres``, trusted on loopback)."""
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            **self._as_owner(),
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {result.returncode}):\n"
                f"{(result.stderr or result.stdout)[-3000:]}"
            )

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.root),
                    *(arg for setting in _SETTINGS for arg in ("-c", setting)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),
            )
        self._wait_ready(self.proc, timeout)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Until the server says it is ready (its postmaster.pid's status
        line) and its port answers."""
        pid_file = self.data / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with {proc.returncode} before accepting connections:\n"
                    f"{self.log()[-3000:]}"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            time.sleep(0.05)  # polling, with the deadline above
        raise PostgresUnavailable(
            f"postgres did not accept connections within {timeout}s:\n{self.log()[-3000:]}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server (a fast shutdown: clients are disconnected, their
        open transactions rolled back)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def create(cls, *, port: int | None = None) -> PgServer:
        """A new cluster with its server started (binaries installed first
        if need be); PostgresUnavailable otherwise."""
        server = cls(install(), port=port)
        try:
            server.init()
            server.start()
        except BaseException:
            server.remove()
            raise
        return server
