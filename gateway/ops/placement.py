"""Which cores a process of the appliance runs on.

The order path is the one part whose every microsecond is a client's: on a
machine it shares with the drop copy and the back office, giving it a core
of its own keeps their bursts (a back office catching up, DuckDB's
threads, the kernel's work for their sockets and files) off the core the
orders are served on (``[gateway] cpus``, ``drop_copy_cpus``,
``[backoffice] cpus``; docs/operations.md).  Linux only; elsewhere a
setting is refused with a line saying so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from config import ConfigError

__all__ = ["available_cpus", "check_cpus", "other_cpus", "pin_to_cpus"]


def available_cpus() -> set[int]:
    """The CPUs this process may run on now (none known off Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return set()
    return set(os.sched_getaffinity(0))


def other_cpus(cpus: Sequence[int], allowed: set[int] | None = None) -> list[int]:
    """The allowed CPUs not in ``cpus`` (all of them when ``cpus`` takes
    them all, or is empty: nothing is left to keep away from)."""
    allowed = available_cpus() if allowed is None else allowed
    rest = sorted(allowed - set(cpus))
    return rest if cpus and rest else sorted(allowed)


def check_cpus(cpus: Sequence[int], setting: str, allowed: set[int] | None = None) -> None:
    """A :class:`ConfigError` naming ``setting`` if this process may not
    run on one of ``cpus`` (nothing to check when empty)."""
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError([f"{setting}: CPU placement needs Linux (sched_setaffinity)"])
    allowed = available_cpus() if allowed is None else allowed
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise ConfigError(
            [
                f"{setting}: CPU {', '.join(map(str, missing))} not available to this "
                f"process (it may use {_ranges(sorted(allowed))})"
            ]
        )


def pin_to_cpus(cpus: Sequence[int], setting: str, allowed: set[int] | None = None) -> None:
    """Run the calling thread, and every thread it starts from now on, on
    ``cpus`` (nothing when empty); :func:`check_cpus` first."""
    check_cpus(cpus, setting, allowed)
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def _ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    parts: list[str] = []
    start = prev = None
    for cpu in cpus:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(parts) or "none"
