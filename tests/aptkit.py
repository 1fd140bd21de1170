"""Debian packages a test needs, installed with apt-get when they are missing
and the tests run as root (once: the next run finds them); otherwise
:class:`PackageUnavailable` says what to install.

A package that ships a service (``prometheus``, whose ``promtool`` the
tests use) is installed without it being started: while apt-get runs, a
``policy-rc.d`` that refuses every start is put in place if the machine
has none (a container's usually refuses already), and the service is then
disabled, so that the machine does not start it at its next boot either.
The tests need the package's programs, never its server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PackageUnavailable", "install"]

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class PackageUnavailable(Exception):
    """A package can be neither found nor installed here; the message says why
    and what to do."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, timeout=900, check=False
    )


@contextmanager
def _no_service_starts() -> Iterator[None]:
    """While inside: invoke-rc.d and deb-systemd-invoke start nothing (101:
    "action not allowed"), unless the machine has a policy of its own."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text(
        "#!/bin/sh\n# fixgw's tests: install packages, start nothing\nexit 101\n"
    )
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _disable(service: str) -> None:
    """Keep ``service`` from starting at boot, by Debian's own helpers (each
    where it is installed; a machine without systemd or sysvinit links has
    nothing to undo)."""
    if shutil.which("deb-systemd-helper"):
        _run("deb-systemd-helper", "disable", f"{service}.service")
    if shutil.which("update-rc.d") and Path("/etc/init.d", service).exists():
        _run("update-rc.d", service, "disable")


def install(package: str, find: Callable[[], str | None], *, services: tuple[str, ...] = ()) -> str:
    """What ``find`` finds (a program's path); Debian's ``package`` is
    installed with apt-get first when it finds nothing and this runs as
    root, with its ``services`` neither started nor left enabled.
    PackageUnavailable when it can be neither found nor installed."""
    found = find()
    if found is not None:
        return found
    command = f"apt-get install --no-install-recommends {package}"
    if os.geteuid() != 0:
        raise PackageUnavailable(
            f"{package} is not installed and the tests do not run as root, so it cannot be "
            f"installed here: run `{command}` (Debian)"
        )
    if shutil.which("apt-get") is None:
        raise PackageUnavailable(
            f"{package} is not installed and there is no apt-get to install it with"
        )
    with _no_service_starts():
        result = _run("apt-get", "install", "-y", "--no-install-recommends", package)
        if result.returncode != 0:  # most often stale or missing package lists
            update = _run("apt-get", "update")
            if update.returncode != 0:
                raise PackageUnavailable(
                    f"apt-get update failed, cannot install {package}:\n{update.stderr[-2000:]}"
                )
            result = _run("apt-get", "install", "-y", "--no-install-recommends", package)
    for service in services:
        _disable(service)
    found = find()
    if result.returncode != 0 or found is None:
        raise PackageUnavailable(
            f"`{command}` failed (exit {result.returncode}):\n"
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return found
