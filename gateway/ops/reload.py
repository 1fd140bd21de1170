"""Reloading the configuration while the daemon runs (SIGHUP, POST /admin/reload).

A reload reads the file, validates it completely (schema, LP adapter kinds
and their settings, in one pass), and compares it with the config in force.
Settings the running daemon can take on the fly are the routing policy and
traffic shares, LP limits (and disabling an LP), client risk limits, the
other ``[routing]`` and ``[orders]`` settings, the log level and the admin
token.  Anything else (listeners, the store, sessions, instruments, the set
of LPs and their adapters) needs a restart: a file changing any of it is
refused as a whole, with the list of those settings, and nothing is
applied.  A file that fails validation changes nothing either.

Reading and validating take a few milliseconds of pure Python (TOML, the
schema, the LP adapters' settings; no adapter is built).  They run in a
worker process started with the daemon (its imports are paid at start-up,
not during a reload under load); the event loop only receives the validated
config, compares it and puts the new rules in force by one assignment,
between two events.  A worker thread would be worse than none: while it
holds the interpreter lock, every system call the loop makes waits up to the
5 ms switch interval to get it back.  Without a worker (it could not start,
or died), the work runs on the event loop in steps of about two milliseconds
with other events handled in between.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog

from config import Config, ConfigError, SettingsSchema, with_overrides
from config.loader import parse_toml, read_config_text, validate_raw
from gateway.ops.tokens import Tokens
from lp_adapters.registry import adapter_settings

_log = structlog.get_logger("gateway.ops.reload")

APPLIED = "applied"
UNCHANGED = "unchanged"
INVALID = "invalid"
RESTART_REQUIRED = "restart_required"
STATUSES = (APPLIED, UNCHANGED, INVALID, RESTART_REQUIRED)

_LP_ENABLED = re.compile(r"lps\[(\d+)\]\.enabled")

# Settings that may change without a restart; "*" matches one path element.
_HOT = (
    ("gateway", "log_level"),
    ("gateway", "admin_token"),
    ("gateway", "read_token"),
    ("routing",),
    ("orders",),
    ("risk",),
    ("margin",),
    ("accounts",),
    ("lps", "*", "soft_limit_usd"),
    ("lps", "*", "hard_limit_usd"),
    ("lps", "*", "soft_penalty_ticks"),
    # read by the back office only (its own process reads the file at its start)
    ("backoffice",),
    ("instruments", "*", "settlement_days"),
)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line settings that take precedence over the file, at start
    and on every reload alike."""

    fix_host: str | None = None
    fix_port: int | None = None
    http_host: str | None = None
    http_port: int | None = None
    drop_copy_port: int | None = None
    data_dir: str | None = None
    cluster: tuple[str, ...] | None = None
    """``[cluster] servers`` (``--cluster``)."""

    def apply(self, config: Config) -> Config:
        return with_overrides(
            config,
            fix_host=self.fix_host,
            fix_port=self.fix_port,
            http_host=self.http_host,
            http_port=self.http_port,
            drop_copy_port=self.drop_copy_port,
            data_dir=self.data_dir,
            cluster_servers=self.cluster,
        )

    def apply_raw(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The same, on a parsed document not yet validated."""
        changes = {
            key: value
            for key, value in (
                ("fix_host", self.fix_host),
                ("fix_port", self.fix_port),
                ("http_host", self.http_host),
                ("http_port", self.http_port),
                ("drop_copy_port", self.drop_copy_port),
                ("data_dir", self.data_dir),
            )
            if value is not None
        }
        gateway = raw.get("gateway", {})
        if changes and isinstance(gateway, dict):
            raw = {**raw, "gateway": {**gateway, **changes}}
        cluster = raw.get("cluster", {})
        if self.cluster is not None and isinstance(cluster, dict):
            raw = {**raw, "cluster": {**cluster, "servers": list(self.cluster)}}
        return raw


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    status: str
    """One of STATUSES."""
    version: str
    """The config version in force afterwards."""
    details: tuple[str, ...] = ()
    """The validation errors, the settings needing a restart, or the
    settings changed."""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "version": self.version, "details": list(self.details)}


@dataclass(slots=True)
class ReloadStats:
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    last: ReloadOutcome | None = None
    last_at: float = 0.0
    last_success_at: float = 0.0


def _adapter_settings(current: Config) -> dict[str, SettingsSchema]:
    """The settings schema of every registered LP adapter kind.  A kind the
    config in force uses that this process does not know (registered in the
    daemon at run time, not in the worker) is accepted with any settings:
    changing an LP's settings needs a restart anyway."""
    schemas = adapter_settings()
    for lp in current.lps:
        schemas.setdefault(lp.adapter, SettingsSchema(settings_type=dict))
    return schemas


def _load_in_worker(path: Path, overrides: Overrides, current: Config) -> Config:
    """:func:`_load` without the pauses, for the worker process."""
    raw = overrides.apply_raw(parse_toml(read_config_text(path)))
    config, errors = validate_raw(raw, _adapter_settings(current))
    if config is None:
        raise ConfigError(errors, source=str(path))
    _refuse_bad_tokens(config, str(path))
    return config


def _warm_up() -> None:
    """Run in the worker once, so that its imports are done before a reload."""
    adapter_settings()


def _worker_init(parent: int) -> None:
    """In the worker: end when the daemon does, even if it was killed; leave
    Ctrl-C to the daemon; and give way to the daemon's event loop when both
    want a core (checking a config is never urgent, answering orders is)."""
    # Ctrl-C in the terminal of `fixgw run` sends SIGINT to the whole process
    # group: the daemon stops on it and ends this worker itself, which would
    # otherwise die of a KeyboardInterrupt with a traceback on stderr.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(10)
    except OSError:  # pragma: no cover - not allowed here: run as is
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _load(path: Path, overrides: Overrides, current: Config) -> Config:
    """Read and validate the file completely, in steps of about two
    milliseconds with the event loop running in between."""
    source = str(path)
    raw = parse_toml(read_config_text(path), source=source)
    await asyncio.sleep(0)
    config, errors = validate_raw(overrides.apply_raw(raw), _adapter_settings(current))
    if config is None:
        raise ConfigError(errors, source=source)
    _refuse_bad_tokens(config, source)
    return config


def _refuse_bad_tokens(config: Config, source: str) -> None:
    """A config whose read token the environment makes the admin token (or
    the reverse), or with a token from the environment that is not visible
    ASCII, is refused, as at start."""
    problem = Tokens.problem(config.gateway)
    if problem is not None:
        raise ConfigError([problem], source=source)


def changed_settings(
    old: Config, new: Config, connected: frozenset[str] = frozenset()
) -> list[tuple[str, bool]]:
    """Every setting that differs, as ``(path, hot)``; ``hot`` tells whether
    it can be applied without a restart.  ``connected`` names the LPs that
    have an adapter (enabled at start): only those can be enabled again."""
    out: list[tuple[str, bool]] = []
    _diff(msgspec.to_builtins(old), msgspec.to_builtins(new), (), out)
    for i, (path, hot) in enumerate(out):
        match = _LP_ENABLED.fullmatch(path)
        if match is not None and not hot:
            lp = new.lps[int(match.group(1))]
            out[i] = (path, lp.enabled and lp.name in connected)
    return out


def _diff(old: Any, new: Any, path: tuple[str, ...], out: list[tuple[str, bool]]) -> None:
    if old == new:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), (*path, str(key)), out)
        return
    if (
        isinstance(old, Sequence)
        and isinstance(new, Sequence)
        and not isinstance(old, str)
        and not isinstance(new, str)
        and len(old) == len(new)
        and path[:1] in (("lps",), ("sessions",), ("instruments",))
    ):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, (*path, str(i)), out)
        return
    out.append((_show(path), _is_hot(path, old, new)))


def _is_hot(path: tuple[str, ...], old: Any, new: Any) -> bool:
    if path[:1] == ("lps",) and len(path) == 3 and path[2] == "enabled":
        # an LP can be taken out of routing, and brought back if it was
        # connected at start (see changed_settings); one that was not has no
        # adapter to bring in
        return new is False
    for pattern in _HOT:
        if len(path) >= len(pattern) and all(
            p == "*" or p == e for p, e in zip(pattern, path, strict=False)
        ):
            return True
    return False


def _show(path: tuple[str, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "(whole file)"


class Reloader:
    """Reloads the config file into the running daemon.  ``apply`` puts a
    validated config whose changes are all hot in force; it is called on the
    event loop and must not fail on a config that validated."""

    def __init__(
        self,
        path: Path | None,
        overrides: Overrides,
        current: Callable[[], Config],
        version: Callable[[], str],
        apply: Callable[[Config], None],
        connected: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self._connected = connected
        self.path = path
        self.overrides = overrides
        self._current = current
        self._version = version
        self._apply = apply
        self.stats = ReloadStats()
        self._lock = asyncio.Lock()
        self._worker: ProcessPoolExecutor | None = None

    async def start_worker(self) -> None:
        """Start the process that reads and validates config files, and wait
        until it is ready (its start-up re-imports the program: better paid
        at the daemon's start than during a reload under load)."""
        if self.path is None or self._worker is not None:
            return
        self._worker = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._worker, _warm_up)
        except (BrokenProcessPool, OSError) as exc:
            _log.warning("config_worker_unavailable", error=repr(exc))
            self.close()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None

    async def aclose(self) -> None:
        """Stop the worker and wait for it, beside the loop: a pool left to
        wind down while the interpreter exits races its own wake-up pipe
        (an "Exception ignored" line on stderr after the last log line)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.shutdown, True, cancel_futures=True)

    async def reload(self, trigger: str) -> ReloadOutcome:
        async with self._lock:  # one reload at a time, in the order asked
            outcome = await self._reload()
        stats = self.stats
        stats.by_status[outcome.status] += 1
        stats.last = outcome
        stats.last_at = time.time()
        if outcome.status in (APPLIED, UNCHANGED):
            stats.last_success_at = stats.last_at
        event = {
            APPLIED: "config_reloaded",
            UNCHANGED: "config_reload_unchanged",
            INVALID: "config_reload_refused",
            RESTART_REQUIRED: "config_reload_needs_restart",
        }[outcome.status]
        log = _log.info if outcome.status in (APPLIED, UNCHANGED) else _log.error
        log(
            event,
            trigger=trigger,
            path=str(self.path),
            version=outcome.version,
            details=list(outcome.details),
        )
        return outcome

    async def _read(self, path: Path) -> Config:
        """The new config, read and validated in the worker process if there
        is one, else on the loop in short steps."""
        if self._worker is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(
                    self._worker, _load_in_worker, path, self.overrides, self._current()
                )
            except BrokenProcessPool:
                _log.warning("config_worker_died")
                self.close()
        return await _load(path, self.overrides, self._current())

    async def _reload(self) -> ReloadOutcome:
        if self.path is None:
            return ReloadOutcome(
                INVALID, self._version(), ("the daemon was started without a config file",)
            )
        try:
            new = await self._read(self.path)
        except ConfigError as exc:
            return ReloadOutcome(INVALID, self._version(), tuple(exc.errors))
        changes = changed_settings(self._current(), new, self._connected())
        cold = [path for path, hot in changes if not hot]
        if cold:
            return ReloadOutcome(RESTART_REQUIRED, self._version(), tuple(cold))
        if not changes:
            return ReloadOutcome(UNCHANGED, self._version())
        self._apply(new)
        return ReloadOutcome(APPLIED, self._version(), tuple(path for path, _ in changes))
