"""``fixgw backoffice``: the back-office process.

It logs on to the gateway's drop-copy session with the project's own FIX
client (to each gateway's, for the gateways of a cluster:
``[[backoffice.gateways]]``) and keeps, in one ledger, every trade the drop
copies report: the
clients' fills (copies of their ExecutionReports) and the house's bookings
of LP fills (TradeCaptureReports).  It reads the LPs' statements from a
folder as they grow, reconciles the three records as they arrive, compares
positions with the gateway's, exports each trading day when it ends, and
serves breaks, treasury, status and metrics over HTTP.

Nothing is lost across an outage of either side.  The ledger keeps, in the
same transaction as the trades, the sequence number of the last drop-copy
message they came from; at start the session expects the message after it,
so the gateway resends everything the ledger does not hold yet (a trade
resent twice is stored once).  The gateway never waits for the back office:
what it sends while the back office is away waits in its own store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import aiohttp
import msgspec
import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from backoffice.duck import DuckLedger
from backoffice.ledger import (
    BREAK_KINDS,
    Break,
    Covers,
    Ledger,
    LedgerError,
    LedgerLost,
    Position,
    PositionBook,
    ReconRun,
    SettlementBook,
    booked_as_of,
    restated,
)
from backoffice.records import (
    ClientTrade,
    HouseTrade,
    TradeDay,
    client_trade,
    day_stamp,
    house_trade,
    ledger_number,
)
from backoffice.settlement import LEDGER_DECIMALS, Settlement
from backoffice.statements import StatementChange, StatementFolder
from config import Config, ConfigError, SessionSettings, StatementColumns, load_config
from config.redact import url_without_secrets
from gateway.fix.codec import FixMessage
from gateway.fix.store import SessionStore, StoreError
from gateway.net.client import FixClient, LogonError
from gateway.ops.connections import HttpConnections
from gateway.ops.direct import http_base
from gateway.ops.placement import pin_to_cpus
from gateway.ops.tokens import Tokens
from gateway.storage.session_store import open_store

__all__ = ["BackOffice", "BackofficeError", "Feed", "open_ledger"]

T = TypeVar("T")

_log = structlog.get_logger("backoffice")
_DASHBOARD: Final = Path(__file__).with_name("dashboard.html")
_BATCH: Final = 20_000
_HOLD_AT: Final = 2 * _BATCH
"""Messages read ahead of the ledger before the drop copy's reading is held
(the intake is no slower than with twice as many, and holds less: see
bench/RESULTS.md)."""
_DEFER_RECON_S: Final = 5.0
"""How long incremental runs may wait while the drop copy has more than a
batch waiting."""
_EXPORT_RETRY_MAX: Final = 600.0
"""The longest wait between two tries of a day's export that keeps failing."""


class _ExportFailure(NamedTuple):
    """A day whose files could not be written, until they are."""

    tries: int
    due: float  # when it is tried again (monotonic seconds)
    error: str


class _Batch(NamedTuple):
    """A batch of the drop copy made into trades, to be written."""

    last: int  # the highest sequence number it takes the ledger to
    clients: list[ClientTrade]
    houses: list[HouseTrade]
    received: float  # when it was taken in


class Feed:
    """One gateway's drop copy as the back office follows it."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        http_port: int,
        session_key: str,
        http_host: str = "",
    ) -> None:
        self.name = name
        self.host = _reachable(host)
        self.port = port
        self.http_host = _reachable(http_host or host)
        self.http_port = http_port
        self.session_key = session_key
        """Its session's files, and its place in the ledger (the MsgSeqNum
        of the last message stored)."""
        self.client: FixClient | None = None
        self.store: SessionStore | None = None
        """Its session's store, opened at the start, until its follower takes it."""
        self.last_seq = 0
        self.taken: deque[float] = deque()
        """When each batch taken from it and not yet written was taken."""
        self.positions_error = ""
        """Why its positions could not be had at the last look ("": they were)."""
        self.positions_failing_since: float | None = None
        """Since when (wall clock) they cannot be had."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def caught_up(self) -> bool:
        """Logged on, nothing waiting and no gap open."""
        client = self.client
        return (
            client is not None
            and client.logged_on
            and client.messages.empty()
            and not self.taken
            and not client.session.awaiting_resend
        )


BAD_LINES_KEPT: Final = 100
"""The latest bad statement lines the status lists."""

LOGGED_BAD_LINES: Final = 20
"""Bad lines of one file read logged each on a line of its own."""


def _reachable(host: str) -> str:
    """Where to reach a server listening on ``host`` (all interfaces: here)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class BackofficeError(Exception):
    """The back office cannot start; the message names the cause."""


def open_ledger(config: Config, settlement: Settlement) -> Ledger:
    """The ledger ``[backoffice] ledger`` names."""
    url = config.backoffice.ledger or "duckdb:backoffice/ledger.duckdb"
    if url.startswith(("postgresql://", "postgres://")):
        from backoffice.pg import PgLedger

        return PgLedger(url, settlement)
    if url.startswith("duckdb:"):
        path = Path(url.removeprefix("duckdb:"))
        if not path.is_absolute():
            path = Path(config.gateway.data_dir) / path
        elif not path.exists() and not path.parent.exists():
            # a typo in the path would begin an empty ledger
            raise BackofficeError(
                f"backoffice.ledger: {path} does not exist, nor does its folder "
                f"{path.parent}: create the folder first if the path is meant"
            )
        return DuckLedger(path, settlement, memory_mb=config.backoffice.duckdb_memory_mb)
    raise BackofficeError(
        f"backoffice.ledger: {url_without_secrets(url)!r} is neither duckdb:<file> nor "
        "postgresql://..."
    )


def drop_copy_session(config: Config) -> SessionSettings:
    """Our side of the drop-copy session ``[backoffice] session`` names."""
    name = config.backoffice.session
    for session in config.sessions:
        if session.TargetCompID == name:
            if session.Application != "dropcopy":
                raise BackofficeError(
                    f"backoffice.session: the session with TargetCompID {name} has "
                    f'Application = "{session.Application}", not "dropcopy"'
                )
            if session.DropCopyFor is not None:
                raise BackofficeError(
                    f"backoffice.session: the drop copy {name} covers only "
                    f"{', '.join(session.DropCopyFor)}; the back office reconciles every "
                    "client's fills against the LPs, so it needs one that covers all "
                    "(no DropCopyFor)"
                )
            return msgspec.structs.replace(
                session,
                SenderCompID=session.TargetCompID,
                TargetCompID=session.SenderCompID,
            )
    raise BackofficeError(
        f"backoffice.session: no [[sessions]] entry has TargetCompID {name} "
        '(the gateway\'s drop-copy session, Application = "dropcopy")'
    )


def _followed_unreachable(config: Config) -> str | None:
    """Why the gateway the back office follows (this config's) cannot be
    reached: a drop-copy port of 0 is any free port, none it can know."""
    if not config.backoffice.gateways and not config.gateway.drop_copy_port:
        return (
            "gateway.drop_copy_port: 0 (any free port) cannot be followed: give the"
            " gateway a drop-copy port of its own, or list it in [[backoffice.gateways]]"
        )
    return None


def _beyond_ledger(config: Config) -> str | None:
    """The instruments the ledger cannot hold the trades of: a tick or lot
    size with more decimals than it keeps of a price or quantity (their
    trades would be stored rounded, and settle at amounts the fills do not
    give), or a largest order of more units than it holds (their trades
    would be refused)."""
    finer = [
        f"{i.symbol} {what} {size:f}"
        for i in config.instruments
        for what, size in (("tick_size", i.tick_size), ("lot_size", i.lot_size))
        if -int(size.normalize().as_tuple().exponent) > LEDGER_DECIMALS
    ]
    larger = [
        f"{i.symbol} max_qty {i.max_qty:f}"
        for i in config.instruments
        if not ledger_number(i.max_qty)
    ]
    problems = []
    if finer:
        problems.append(
            f"instruments: {', '.join(finer)}: more decimals than the ledger keeps of a price"
            f" or quantity ({LEDGER_DECIMALS})"
        )
    if larger:
        problems.append(
            f"instruments: {', '.join(larger)}: more than the ledger holds of a quantity"
            " (under 10,000,000,000 units)"
        )
    if not problems:
        return None
    return "; ".join(problems) + "; the back office cannot follow a gateway trading them"


def follow_problems(config: Config) -> list[str]:
    """What ``fixgw backoffice run`` on ``config`` would refuse to start
    on, or listen where the gateway does (for ``fixgw check-config``)."""
    problems: list[str] = []
    try:
        drop_copy_session(config)
    except BackofficeError as exc:
        problems.append(str(exc))
    found = (_followed_unreachable(config), _beyond_ledger(config))
    problems.extend(problem for problem in found if problem is not None)
    office, gw = config.backoffice, config.gateway
    if office.http_port:
        for name, port, host in (
            ("fix_port", gw.fix_port, gw.fix_host),
            ("drop_copy_port", gw.drop_copy_port, gw.fix_host),
            ("http_port", gw.http_port, gw.http_host),
        ):
            any_address = {"0.0.0.0", "::", ""} & {host, office.http_host}
            if port == office.http_port and (host == office.http_host or any_address):
                problems.append(f"backoffice.http_port: {port} is gateway.{name} too")
    return problems


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.breaks = Gauge(
            "fixgw_recon_breaks", "Reconciliation breaks open, by type", ["type"], registry=r
        )
        self.pending = Gauge(
            "fixgw_recon_pending",
            "Records waiting within the grace for their counterpart",
            registry=r,
        )
        self.lag = Gauge(
            "fixgw_recon_lag_seconds",
            "Age of the oldest trade received and not yet reconciled (0: none)",
            registry=r,
        )
        self.runs = Counter(
            "fixgw_recon_runs", "Reconciliation runs, by mode", ["mode"], registry=r
        )
        self.run_seconds = Gauge(
            "fixgw_recon_last_run_seconds",
            "Duration of the last run, by mode",
            ["mode"],
            registry=r,
        )
        self.trades = Counter(
            "fixgw_backoffice_trades",
            "Trade records received, by record (client, house, lp)",
            ["record"],
            registry=r,
        )
        self.feed_up = Gauge(
            "fixgw_backoffice_feed_logged_on",
            "1 when logged on to the gateway's drop copy, by gateway",
            ["gateway"],
            registry=r,
        )
        self.last_seq = Gauge(
            "fixgw_backoffice_feed_last_seq",
            "MsgSeqNum of the last drop-copy message stored in the ledger, by gateway",
            ["gateway"],
            registry=r,
        )
        self.positions_unavailable = Gauge(
            "fixgw_backoffice_positions_unavailable",
            "1 while a gateway's positions cannot be had (refused, unreachable): the "
            "comparison of positions with the ledger is not made; by gateway",
            ["gateway"],
            registry=r,
        )
        self.exports_failing = Gauge(
            "fixgw_backoffice_exports_failing",
            "Trading days whose export failed and has not been written since (tried again, "
            "later each time)",
            registry=r,
        )
        self.bad = Counter(
            "fixgw_backoffice_bad_records",
            "Drop-copy messages or statement lines that could not be read",
            ["source"],
            registry=r,
        )
        # every series an alert watches is served from 0, so that its first
        # increase is seen (a counter that appears at 1 shows no increase)
        for kind in BREAK_KINDS:
            self.breaks.labels(kind).set(0)
        for mode in ("incremental", "full"):
            self.runs.labels(mode)
        for source in ("drop_copy", "statement"):
            self.bad.labels(source)


class BackOffice:
    """The back-office process over one configuration (paths resolved)."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.config_path = config_path
        """The file the config was read from: its tokens are read again
        (:meth:`reload_tokens`)."""
        # the config file and environment as the tokens were last read from
        self._tokens_stamp: tuple[object, ...] | None = None
        self.settings = config.backoffice
        self.clock = clock
        self.monotonic = monotonic
        self.session_settings = drop_copy_session(config)
        problem = (
            Tokens.problem(config.gateway)
            or _followed_unreachable(config)
            or _beyond_ledger(config)
        )
        if problem is not None:
            raise BackofficeError(problem)
        self.tokens = Tokens.of(config.gateway)
        """The tokens in force: the HTTP API's, and those it asks the
        gateways' positions with."""
        key = f"{self.session_settings.SenderCompID}-{self.session_settings.TargetCompID}"
        gw = config.gateway
        self.feeds = [
            Feed(g.name, g.host, g.drop_copy_port, g.http_port, f"{key}.{g.name}", g.http_host)
            for g in config.backoffice.gateways
        ] or [Feed("gateway", gw.fix_host, gw.drop_copy_port, gw.http_port, key, gw.http_host)]
        data_dir = Path(config.gateway.data_dir)
        self.state_dir = data_dir / "backoffice"
        self.settlement = Settlement(config.instruments, config.backoffice.minor_units)
        self._unlisted: set[str] = set()  # symbols not configured, named in the log
        self.ledger = open_ledger(config, self.settlement)
        hh, mm = config.orders.trading_day_end.split(":")
        self.days = TradeDay(dt.time(int(hh), int(mm)))
        # the simulated LPs write their statements as they trade; of any other
        # LP only a statement up to its latest line is taken as complete
        simulated = {lp.name for lp in config.lps if lp.adapter == "simulated"}
        layouts = {lp.name: StatementColumns() for lp in config.lps}
        layouts.update(self.settings.lps)
        layouts = {
            lp: layout
            if layout.delivery is not None
            else msgspec.structs.replace(
                layout, delivery="live" if lp in simulated else "end_of_day"
            )
            for lp, layout in layouts.items()
        }
        statements_dir = self.settings.statements_dir or str(data_dir / "statements")
        self.statements = StatementFolder(statements_dir, layouts, self.days, self.clock)
        self.export_dir = Path(self.settings.export_dir or self.state_dir / "exports")
        self.grace = float(self.settings.grace_seconds)
        self.metrics = _Metrics()
        self.metrics.lag.set_function(self.lag_seconds)
        self.last_run: ReconRun | None = None
        self.last_full: ReconRun | None = None
        self.counts: dict[str, int] = {}
        self.exports: list[str] = []
        self._late_days: set[str] = set()
        """Ended trading days (``YYYY-MM-DD``) that trades were taken in for
        after the day ended: exported again once the drop copy is caught up."""
        self._late = asyncio.Event()  # set when a day is added to them
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one ledger job at a time: writes, statements, recon
        self._exporting = asyncio.Lock()  # one day's export at a time
        self.export_retry = 30.0
        """Seconds before an export that failed is first tried again."""
        self._export_failures: dict[str, _ExportFailure] = {}  # by trading day
        self._listing_due: float | None = None  # the days without files, listed again then
        self._retry: asyncio.TimerHandle | None = None
        self._settled: SettlementBook | None = None
        self._held: PositionBook | None = None
        # the amounts to settle and the positions, brought up to the last
        # batch stored at each look (None: to be read whole, at the next)
        self._batches: deque[tuple[int, float]] = deque()  # ingest id, when received
        self._position_seen: tuple[Any, ...] | None = None
        self.positions_compared = 0
        """Comparisons of the gateways' positions with the ledger's so far."""
        self.clients_not_compared: list[str] = []
        """Clients left out of the last comparison: served by no gateway
        of a cluster at that moment, or by two."""
        self._http: web.AppRunner | None = None
        self._http_server: asyncio.Server | None = None
        self.http_port = 0
        self.failed = ""
        self._deferred: float | None = None  # since when runs wait (monotonic clock)
        self._unapplied: list[StatementChange] = []
        # the statement lines that could not be read or stood for another,
        # latest last, as (file, what is wrong): in the status until the
        # file is read again whole without them
        self.bad_lines: deque[tuple[str, str]] = deque(maxlen=BAD_LINES_KEPT)
        self._refusals: dict[str, int] = {}  # file -> its change refused alone, times
        self._statements_read: float | None = None  # when the last scan was taken in
        self._folder_error = ""  # why the statements folder could not be listed, last time

    # -- life ------------------------------------------------------------------------

    def _lower_priority(self) -> None:
        """Before the ledger opens: the threads started later (DuckDB's, the
        resolver's) take the calling thread's policy, nice level and CPUs;
        any started before are put under the idle policy here too."""
        pin_to_cpus(self.settings.cpus, "backoffice.cpus")
        if self.settings.cpus:
            for thread in _own_threads():
                with contextlib.suppress(OSError):  # ended meanwhile
                    os.sched_setaffinity(thread, self.settings.cpus)
        if self.settings.nice:
            try:
                os.nice(self.settings.nice)
            except OSError as exc:
                _log.warning("nice_refused", nice=self.settings.nice, error=str(exc))
        if self.settings.idle_priority:
            idle = getattr(os, "SCHED_IDLE", None)
            if idle is None:
                _log.warning("idle_priority_unavailable", platform=sys.platform)
                return
            try:
                os.sched_setscheduler(0, idle, os.sched_param(0))
            except OSError as exc:
                _log.warning("idle_priority_refused", error=str(exc))
                return
            for thread in _own_threads():
                try:
                    os.sched_setscheduler(thread, idle, os.sched_param(0))
                except OSError:
                    continue  # ended meanwhile

    async def start(self) -> None:
        """Open the ledger, the drop copies' session stores and the HTTP
        server; LedgerError, BackofficeError, OSError otherwise."""
        self._lower_priority()
        await self.ledger.open()
        # the trades not settled yet settle on the terms of this config (a
        # symbol listed, or its settlement days changed, since they came);
        # the ended days among theirs are exported again
        today = self._today()
        revised = await self.ledger.revalue(today)
        if revised:
            days = [day.isoformat() for day in revised]
            _log.info("value_dates_revised", trade_dates=days)
            self._late_days.update(day for day in days if day < today.isoformat())
            self._late.set()
        await self._settlement_kept(today)
        await self._positions_kept()
        for feed in self.feeds:
            feed.last_seq = await self.ledger.last_seq(feed.session_key)
            self.metrics.last_seq.labels(feed.name).set(feed.last_seq)
            self.metrics.feed_up.labels(feed.name).set(0)
            self.metrics.positions_unavailable.labels(feed.name).set(0)
        # an LP declared since to send no statement misses nothing from
        # one: what was found missing from its statement, or waits for it,
        # goes now (a run would not look at it again before a full one)
        layouts = self.statements.layouts
        silent = [lp for lp, layout in layouts.items() if layout.delivery == "none"]
        if silent:
            breaks, pending = await self.ledger.without_statements(silent)
            if breaks or pending:
                _log.info("statement_breaks_cleared", lps=silent, breaks=breaks, pending=pending)
        self.counts = await self.ledger.counts()
        # the files read before: one taken out of the folder meanwhile is
        # found gone at the first scan
        self.statements.known(await self.ledger.statement_files())
        await self._refresh_breaks()
        self._open_stores()
        try:
            await self._start_http()
        except BaseException:
            self._close_stores()
            raise
        _log.info(
            "backoffice_started",
            ledger=self.ledger.url,
            statements=str(self.statements.folder),
            resume_after_seq={feed.name: feed.last_seq for feed in self.feeds},
            http_port=self.http_port,
            **self.counts,
        )

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        await self.start()
        tasks = [
            *(
                asyncio.create_task(self._follow(feed), name=f"feed {feed.name}")
                for feed in self.feeds
            ),
            asyncio.create_task(self._every(self._statements, 500), name="statements"),
            asyncio.create_task(
                self._every(self._recon, self.settings.recon_interval_ms), name="recon"
            ),
            asyncio.create_task(self._day_ends(), name="day_ends"),
        ]
        if self.settings.positions_interval_ms:
            tasks.append(
                asyncio.create_task(
                    self._every(self._positions, self.settings.positions_interval_ms),
                    name="positions",
                )
            )
        for task in tasks:
            task.add_done_callback(self._task_ended)
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for feed in self.feeds:
                if feed.client is not None:
                    feed.client.abort()
            if self._retry is not None:
                self._retry.cancel()
            self._close_stores()  # any its follower never took
            await self._stop_http()
            await self.ledger.close()
            _log.info(
                "backoffice_stopped", last_seq={feed.name: feed.last_seq for feed in self.feeds}
            )

    def stop(self) -> None:
        self._stop.set()

    def _open_stores(self) -> None:
        """Open each drop copy's session store before the start is said: one
        that cannot be (another back office on the data directory, a folder
        it cannot make there) refuses the start, named."""
        for feed in self.feeds:
            try:
                feed.store = open_store("file", self.state_dir / "session", feed.session_key)
            except (OSError, StoreError) as exc:
                self._close_stores()
                if isinstance(exc, OSError) and exc.filename is not None:
                    cause = f"cannot open {exc.filename}: {exc.strerror}"
                else:
                    cause = str(exc)
                raise BackofficeError(f"the drop copy's session: {cause}") from exc

    def _close_stores(self) -> None:
        for feed in self.feeds:
            store, feed.store = feed.store, None
            if store is not None:
                store.close()

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A part of the process ended by itself: it failed; say so and stop."""
        if task.cancelled() or self._stop.is_set():
            return
        error = task.exception()
        part = task.get_name()
        cause: BaseException | None = error
        # a part made of tasks (the intake's reader and writer) fails with
        # a group around the one error that stopped it: name that error
        while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
            cause = cause.exceptions[0]
        _log.error("backoffice_part_failed", part=part, error=repr(cause), exc_info=error)
        self.failed = f"{part}: {cause!r}"
        self.stop()

    def _ledger_lost(self, exc: LedgerLost) -> None:
        """The ledger's file went while open (deleted, or another moved
        over it): nothing written from now on would be kept, so the process
        says so once and stops.  Started again (by its supervisor), it
        opens the file now at the path, and the drop copy resends what
        that file does not hold."""
        if self._stop.is_set():
            return
        _log.error(
            "ledger_file_lost",
            file=exc.file,
            error=str(exc),
            hint="the back office stops; started again, it fills the ledger at the path "
            "from the drop copy",
        )
        self.failed = f"ledger: {exc}"
        self.stop()

    async def _every(self, job: Callable[[], Awaitable[None]], interval_ms: int) -> None:
        """``job`` every ``interval_ms``.  A ledger that fails it (a database
        away) is said once, with the cause, then once a minute with how many
        runs failed meanwhile, and once more when a run succeeds again."""
        failed = 0
        said = 0.0
        while True:
            try:
                await job()
            except LedgerLost as exc:
                self._ledger_lost(exc)
                return
            except LedgerError as exc:
                failed += 1
                now = time.monotonic()
                if failed == 1 or now - said >= _REPEAT_ERROR_S:
                    said = now
                    _log.error("ledger_error", job=job.__name__, error=str(exc), failed_runs=failed)
            except Exception:
                _log.exception("backoffice_job_failed", job=job.__name__)
            else:
                if failed:
                    _log.info("ledger_job_resumed", job=job.__name__, failed_runs=failed)
                    failed = 0
            await asyncio.sleep(interval_ms / 1000)

    # -- the drop copy -----------------------------------------------------------------

    async def _follow(self, feed: Feed) -> None:
        """Log on to a gateway's drop copy, store what it sends; log on again
        after a disconnect, every second until it answers."""
        store, feed.store = feed.store, None
        if store is None:  # not opened by the start
            store = open_store("file", self.state_dir / "session", feed.session_key)
        # the ledger, not the session store, says what has been kept
        store.set_next_target_seq(feed.last_seq + 1)
        client = feed.client = FixClient(self.session_settings, store, clock=self.clock)
        host, port = feed.host, feed.port
        intake = asyncio.create_task(self._take_in(feed, client), name="intake")
        # one that fails stops the process, said why (nothing would read
        # the drop copy any more)
        intake.add_done_callback(self._task_ended)
        refused = ""
        try:
            while True:
                try:
                    await client.connect(host, port, timeout=10)
                except (LogonError, OSError) as exc:
                    if str(exc) != refused:
                        refused = str(exc)
                        _log.warning(
                            "drop_copy_unavailable",
                            gateway=feed.name,
                            address=f"{host}:{port}",
                            error=refused,
                        )
                    await asyncio.sleep(1)
                    continue
                refused = ""
                self.metrics.feed_up.labels(feed.name).set(1)
                _log.info(
                    "drop_copy_logged_on",
                    gateway=feed.name,
                    address=f"{host}:{port}",
                    session=feed.session_key,
                )
                while True:
                    try:
                        await client.wait_closed(timeout=3600.0)
                        break
                    except TimeoutError:
                        continue
                self.metrics.feed_up.labels(feed.name).set(0)
                _log.warning("drop_copy_disconnected", gateway=feed.name, session=feed.session_key)
                await asyncio.sleep(0.2)
        finally:
            try:
                intake.cancel()
                await asyncio.gather(intake, return_exceptions=True)
                if client.connected:
                    client.abort()
                    # the connection's end writes the store a last time
                    with contextlib.suppress(TimeoutError):
                        await client.wait_closed(timeout=2.0)
            finally:
                store.close()

    async def _take_in(self, feed: Feed, client: FixClient) -> None:
        """Store what a drop copy sends: one batch made into trades while
        the one before is written (the ledger writes in its own thread)."""
        parsed: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._reader(feed, client, parsed), name="reader")
                group.create_task(self._writer(feed, parsed), name="writer")
        finally:
            feed.taken.clear()

    async def _reader(self, feed: Feed, client: FixClient, parsed: asyncio.Queue[_Batch]) -> None:
        """Take the drop copy in batches and make them into trades."""
        queue = client.messages
        days = self.days
        held = False
        last = feed.last_seq
        while True:
            first = await queue.get()
            received = self.clock()
            feed.taken.append(received)
            batch = [first]
            while len(batch) < _BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            # a long resend: read no more than a few batches ahead of the ledger
            waiting = queue.qsize()
            if not held and waiting > _HOLD_AT:
                held = True
                client.hold_reading(True)
            elif held and waiting < _BATCH:
                held = False
                client.hold_reading(False)
            clients: list[ClientTrade] = []
            houses: list[HouseTrade] = []
            for msg in batch:
                seq = _seq(msg)
                last = max(last, seq)
                try:
                    if msg.msg_type == b"8":
                        trade = client_trade(msg, seq, days)
                        if trade is not None:
                            clients.append(trade)
                    elif msg.msg_type == b"AE":
                        houses.append(house_trade(msg, seq, days))
                except (ValueError, ArithmeticError) as exc:
                    self.metrics.bad.labels("drop_copy").inc()
                    _log.error(
                        "drop_copy_message_unreadable",
                        gateway=feed.name,
                        seq=seq,
                        msg_type=msg.msg_type.decode("latin-1"),
                        error=str(exc)[:200],
                    )
            del batch, first  # not held while waiting for the writer
            await parsed.put(_Batch(last, clients, houses, received))

    async def _writer(self, feed: Feed, parsed: asyncio.Queue[_Batch]) -> None:
        """Write the batches the reader made, in their order."""
        while True:
            batch = await parsed.get()
            self._name_unlisted(batch.clients)
            self._name_unlisted(batch.houses)
            if any(h.restates for h in batch.houses):
                # busted or corrected on a later day: reversed as of its own
                batch = batch._replace(houses=await self._as_of(batch.houses))
            ingest = await self._write(feed, batch.last, batch.clients, batch.houses)
            self._batches.append((ingest, batch.received))
            self._note_late(batch.clients, batch.houses)
            feed.taken.popleft()
            feed.last_seq = batch.last
            self.metrics.last_seq.labels(feed.name).set(batch.last)
            if batch.clients:
                self.metrics.trades.labels("client").inc(len(batch.clients))
            if batch.houses:
                self.metrics.trades.labels("house").inc(len(batch.houses))

    def _note_late(self, clients: Sequence[ClientTrade], houses: Sequence[HouseTrade]) -> None:
        """Mark the ended trading days the trades just stored belong to (a
        drop copy resent after an outage, a day end passed before it caught
        up): their exports no longer hold every trade of the day."""
        if not clients and not houses:
            return
        today = self.days.of(_utcnow(self.clock).isoformat(sep=" "))
        late = {t.trade_date for t in clients if t.trade_date < today}
        late.update(t.trade_date for t in houses if t.trade_date < today)
        if late - self._late_days:
            self._late_days |= late
            self._late.set()

    def _name_unlisted(self, trades: Sequence[ClientTrade | HouseTrade]) -> None:
        """Say once per symbol that trades come in a symbol the config does
        not list: they settle on their trade date, in the currencies of the
        symbol's name, until it is listed."""
        terms = self.settlement.terms
        named = self._unlisted
        for trade in trades:
            symbol = trade.symbol
            if symbol not in terms and symbol not in named:
                named.add(symbol)
                base, quote = self.settlement.currencies(symbol)
                _log.warning(
                    "trade_in_unlisted_instrument",
                    symbol=symbol,
                    settles="on its trade date",
                    currencies=[base, quote],
                    hint="add it to [[instruments]] in the back office's config, and restart it",
                )

    async def _as_of(self, houses: list[HouseTrade]) -> list[HouseTrade]:
        """``houses`` with the bookings of LP Trade Cancels and Corrects
        dated as of the bookings they restate (:func:`booked_as_of`)."""
        wanted = restated(houses)
        return booked_as_of(
            houses, await self._retrying(lambda: self.ledger.booked_on(wanted)) if wanted else {}
        )

    async def _write(
        self, feed: Feed, last: int, clients: list[ClientTrade], houses: list[HouseTrade]
    ) -> int:
        """Store one batch; while the ledger fails, say so and try again
        every second (the drop copy waits in memory meanwhile)."""
        return await self._retrying(
            lambda: self.ledger.write(feed.session_key, last, clients, houses)
        )

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` on the ledger, under its lock; while it fails, say so and
        try again every second."""
        failures = 0
        while True:
            try:
                async with self._lock:
                    done = await call()
            except LedgerLost as exc:
                self._ledger_lost(exc)
                raise
            except Exception as exc:
                if failures == 0:
                    _log.error("ledger_write_failed", error=str(exc)[:300], retry_s=1)
                failures += 1
                await asyncio.sleep(1)
                continue
            if failures:
                _log.info("ledger_write_resumed", failed_attempts=failures)
            return done

    async def _settlement_kept(self, today: dt.date) -> SettlementBook:
        """The amounts to settle, brought up to the last batch stored: the
        batches stored since the book's last are added (a batch stored by a
        write reported as failed among them); read whole from the ledger
        the first time.  The caller holds the ledger's lock (no batch is
        being stored)."""
        book, upto = self._settled, self.ledger.last_ingest
        if book is None:
            book = SettlementBook(await self.ledger.settlement_sums(today), upto)
            self._settled = book
        elif book.upto < upto:
            book.add(await self.ledger.batch_settlement_sums(book.upto, upto))
            book.upto = upto
        return book

    async def _positions_kept(self) -> PositionBook:
        """The positions, brought up to the last batch stored as above; read
        whole the first time, and once a statement file read again whole has
        removed lines the book holds."""
        book, upto = self._held, self.ledger.last_ingest
        if book is None or self.ledger.lines_removed_at > book.upto:
            book = PositionBook(await self.ledger.positions(), upto)
            self._held = book
        elif book.upto < upto:
            book.add(await self.ledger.batch_positions(book.upto, upto))
            book.upto = upto
        return book

    # -- statements, recon, positions ----------------------------------------------------

    async def _statements(self) -> None:
        loop = asyncio.get_running_loop()
        scanned = self.clock()
        try:
            found = await loop.run_in_executor(None, self.statements.scan)
        except OSError as exc:
            # the folder itself cannot be listed (a file, another user's):
            # said once while it lasts; its lines are not taken as read
            error = f"{exc.filename or self.statements.folder}: {exc.strerror or exc}"
            if error != self._folder_error:
                self._folder_error = error
                _log.error("statements_folder_unreadable", error=error)
            return
        self._folder_error = ""
        # what the ledger could not take last time goes first (idempotent)
        changes, self._unapplied = self._unapplied + found, []
        if not changes:
            self._statements_read = scanned
            return
        for change in found:  # those kept from before were counted then
            if change.replace:
                self._forget_bad_lines(change.source)
            self._bad_lines(change.source, change.errors)
            if change.rows:
                self.metrics.trades.labels("lp").inc(len(change.rows))
            if change.replace and change.rows:
                _log.info(
                    "statement_read", file=change.source, lp=change.lp, lines=len(change.rows)
                )
        try:
            await self._apply_statements(changes)
        except LedgerLost:
            raise  # no file is at fault
        except Exception:
            self._unapplied = await self._alone(changes)
            if self._unapplied:
                raise
        else:
            for change in changes:  # taken: a refusal before does not count on
                self._refusals.pop(change.source, None)
        self._statements_read = scanned

    async def _apply_statements(self, changes: list[StatementChange]) -> None:
        async with self._lock:
            ingest = await self.ledger.apply_statements(changes)
            differing = self.ledger.differing_lines
        self._batches.append((ingest, self.clock()))
        by_file: dict[str, list[str]] = {}
        for error in differing:
            by_file.setdefault(error.split(": ", 1)[0], []).append(error)
        for source, errors in by_file.items():
            self._bad_lines(source, errors)

    def _bad_lines(self, source: str, errors: Sequence[str]) -> None:
        """Name the bad lines of one file read: the first 20 each in the
        log line of its own, the rest counted in one; all of them in the
        metric, and the latest in the status."""
        if not errors:
            return
        for error in errors[:LOGGED_BAD_LINES]:
            _log.error("statement_line_unreadable", error=error[:300])
        if len(errors) > LOGGED_BAD_LINES:
            _log.error(
                "statement_lines_unreadable_more",
                file=source,
                more=len(errors) - LOGGED_BAD_LINES,
                hint="GET /backoffice/status lists the latest",
            )
        self.metrics.bad.labels("statement").inc(len(errors))
        self.bad_lines.extend((source, error[:300]) for error in errors)

    def _forget_bad_lines(self, source: str) -> None:
        """``source`` is read again whole: what was wrong with it before is
        named again if it still is."""
        if any(file == source for file, _ in self.bad_lines):
            kept = [(file, error) for file, error in self.bad_lines if file != source]
            self.bad_lines.clear()
            self.bad_lines.extend(kept)

    async def _alone(self, changes: list[StatementChange]) -> list[StatementChange]:
        """After the ledger refused ``changes`` together: each tried alone,
        in order, so that one the ledger will never take does not hold the
        others.  A change refused in a round in which the ledger took
        another (so it takes writes) counts against its file; refused so in
        :data:`_REFUSALS_BEFORE_ASIDE` rounds with no round between in which
        the file was taken, it is set aside,
        named, and its file read again whole once it changes (or after
        :data:`backoffice.statements.ASIDE_SECONDS`).  A ledger that takes
        nothing counts against no file.  Returns what is to be tried again
        (a file's later changes wait behind its first one kept)."""
        kept: list[StatementChange] = []
        refused: list[tuple[StatementChange, Exception]] = []
        took = False
        for change in changes:
            if not (change.rows or change.replace or change.gone):
                continue
            if any(k.source == change.source for k in kept):
                kept.append(change)
                continue
            try:
                await self._apply_statements([change])
            except Exception as exc:  # any refusal: told below
                kept.append(change)
                refused.append((change, exc))
            else:
                took = True
                self._refusals.pop(change.source, None)
        if not took:
            return kept
        for change, cause in refused:
            times = self._refusals[change.source] = self._refusals.get(change.source, 0) + 1
            if times < _REFUSALS_BEFORE_ASIDE:
                continue
            del self._refusals[change.source]
            self.statements.set_aside(change.source)
            kept = [k for k in kept if k.source != change.source]
            self.metrics.bad.labels("statement").inc(max(1, len(change.rows)))
            _log.error(
                "statement_change_refused",
                file=change.source,
                lp=change.lp,
                lines=len(change.rows),
                whole=change.replace,
                error=str(cause)[:300],
                times=times,
                hint="the ledger refuses these lines while it takes others: the file is "
                "read again whole once it changes, or in 10 minutes",
            )
        return kept

    def lag_seconds(self) -> float:
        """Age of the oldest trade taken in (from a drop copy or a
        statement) and not yet reconciled; 0 when there is none."""
        oldest = self._batches[0][1] if self._batches else None
        for feed in self.feeds:
            taking = feed.taken[0] if feed.taken else None
            if taking is not None and (oldest is None or taking < oldest):
                oldest = taking
        return max(0.0, self.clock() - oldest) if oldest is not None else 0.0

    async def _recon(self) -> None:
        # a drop copy more than a batch behind is taken in first (a run
        # would hold the ledger while the writer waits), for a while: the
        # lag stays bounded when the backlog lasts
        now = self.monotonic()
        if any(f.client is not None and f.client.messages.qsize() > _BATCH for f in self.feeds):
            if self._deferred is None:
                self._deferred = now
            if now - self._deferred < _DEFER_RECON_S:
                return
        self._deferred = None
        await self.recon(full=False)

    async def recon(self, full: bool) -> ReconRun:
        """One reconciliation run: of what arrived since the last, or (``full``) of everything."""
        mode = "full" if full else "incremental"
        started = time.perf_counter()
        now = _utcnow(self.clock)
        grace = dt.timedelta(seconds=self.grace)
        # each drop copy has come as far as its latest trade, or (caught up)
        # to now: a record waits for the one that has come least far
        feeds = {f.session_key: now - grace if f.caught_up() else None for f in self.feeds}
        # a live statement is known complete up to the last scan whose lines
        # the ledger took (none yet: its lines say how far it has come, as an
        # end-of-day statement's do); an LP that sends none misses nothing
        read = self._statements_read
        statement_cover = None if read is None else _utc(read) - grace
        lps: dict[str, dt.datetime | None] = {}
        for lp, layout in self.statements.layouts.items():
            if layout.delivery == "none":
                lps[lp] = None
            elif layout.delivery == "live" and statement_cover is not None:
                lps[lp] = statement_cover
        covers = Covers(feeds=feeds, lps=lps)
        async with self._lock:
            run = await self.ledger.recon(full, self.grace, now, covers)
            self.counts = await self.ledger.counts()
            # the treasury's books follow the ledger a run at a time: a look
            # after a long time with nobody looking adds the last second's
            # batches, not every batch since, while it holds the ledger
            await self._settlement_kept(self._today())
            await self._positions_kept()
        elapsed = time.perf_counter() - started
        self.metrics.runs.labels(mode).inc()
        self.metrics.run_seconds.labels(mode).set(elapsed)
        self.last_run = run
        if full:
            self.last_full = run
            _log.info("recon_full", seconds=round(elapsed, 3), keys=run.keys, breaks=run.breaks)
        batches = self._batches
        while batches and batches[0][0] <= run.upto:
            batches.popleft()
        self.metrics.pending.set(run.pending)
        await self._refresh_breaks()
        return run

    async def _refresh_breaks(self) -> list[Break]:
        breaks = await self.ledger.breaks()
        by_kind = dict.fromkeys(BREAK_KINDS, 0)
        for b in breaks:
            by_kind[b.kind] = by_kind.get(b.kind, 0) + 1
        for kind, count in by_kind.items():
            self.metrics.breaks.labels(kind).set(count)
        return breaks

    def _caught_up(self) -> bool:
        """Logged on to every drop copy, nothing waiting and no gap open."""
        return all(feed.caught_up() for feed in self.feeds)

    async def _positions(self) -> None:
        """Compare the gateway's positions with the sums of the fills. A
        difference seen twice in comparisons made while the drop copy is
        caught up, with the fills unchanged in between, is a break; a break
        listed is cleared by the first comparison in which its holder and
        symbol agree, caught up or not (under steady trading some fill is
        always in flight)."""
        caught_up = self._caught_up()
        gateway = await self._gateway_exposures()
        if gateway is None:
            return
        async with self._lock:
            counts = await self.ledger.counts()
            ours = (await self._positions_kept()).positions()
        caught_up = caught_up and self._caught_up()
        unknown = list(gateway.get("unknown", ()))
        found = _position_differences(gateway, ours, unknown)
        key = (counts["client_trades"], counts["house_trades"], tuple(sorted(b.key for b in found)))
        if caught_up:
            self.positions_compared += 1
            self.clients_not_compared = unknown
        if caught_up and found and key == self._position_seen:
            await self.ledger.set_position_breaks(found, _utcnow(self.clock))
        else:
            # a listed break whose holder and symbol agree now is resolved,
            # whatever else differs; one that still differs stays as listed
            differing = {(b.kind, b.key) for b in found}
            listed = [b for b in await self.ledger.breaks() if b.records == "gateway/ledger"]
            kept = [b for b in listed if (b.kind, b.key) in differing]
            if len(kept) < len(listed):
                await self.ledger.set_position_breaks(kept, _utcnow(self.clock))
        self._position_seen = key if caught_up else None
        await self._refresh_breaks()

    async def _gateway_exposures(self) -> dict[str, Any] | None:
        """The positions of the gateways followed, as one (:func:`_merged`);
        None when one of them cannot say (no HTTP port, unreachable)."""
        if not all(feed.http_port for feed in self.feeds):
            return None
        views = await asyncio.gather(*(self._exposures_of(feed) for feed in self.feeds))
        if any(view is None for view in views):
            return None
        return _merged([view for view in views if view is not None])

    async def _exposures_of(self, feed: Feed) -> dict[str, Any] | None:
        """The gateway's ``/admin/exposures``; None when it cannot say.
        Refused (401), the tokens are read again from the config file and,
        when they changed there (rotated: the gateway reloaded them), asked
        with once more."""
        url = http_base(feed.http_host, feed.http_port) + "/admin/exposures"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                status, data = await self._ask_exposures(http, url)
                if status == 401 and self.reload_tokens(
                    f"HTTP 401 from {feed.name}", if_changed=True
                ):
                    status, data = await self._ask_exposures(http, url)
                if status != 200:
                    raise aiohttp.ClientError(f"HTTP {status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = str(exc) or repr(exc)
            if not feed.positions_error:
                feed.positions_failing_since = self.clock()
                _log.warning(
                    "gateway_positions_unavailable", gateway=feed.name, url=url, error=error
                )
            feed.positions_error = error
            self.metrics.positions_unavailable.labels(feed.name).set(1)
            return None
        if feed.positions_error:
            _log.info("gateway_positions_available", gateway=feed.name, url=url)
        feed.positions_error = ""
        feed.positions_failing_since = None
        self.metrics.positions_unavailable.labels(feed.name).set(0)
        return data

    async def _ask_exposures(
        self, http: aiohttp.ClientSession, url: str
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the JSON when 200), asked with the read token
        first, which is all this needs, then the admin token when that
        gateway does not know it (a config of its own)."""
        tokens = self.tokens
        tried = [token for token in (tokens.read, tokens.admin) if token] or [""]
        status = 0
        for token in tried:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.get(url, headers=headers) as response:
                status = response.status
                if status == 200:
                    data: dict[str, Any] = await response.json()
                    return status, data
                if status != 401:
                    break
        return status, {}

    def reload_tokens(self, why: str, if_changed: bool = False) -> bool:
        """Read the tokens again from the config file (and the environment,
        whose variables still override it): on SIGHUP, and when a gateway
        refuses the ones in force (``if_changed``: only when the file or
        the environment changed since the last read, so that a gateway
        that goes on refusing does not have the file parsed again at each
        look).  True when they changed.  A file that cannot be read or
        validated, or whose tokens cannot be used, leaves the tokens in
        force, and is logged."""
        if self.config_path is None:
            return False
        try:
            stat = os.stat(self.config_path)
            stamp: tuple[object, ...] | None = (
                stat.st_ino,
                stat.st_mtime_ns,
                stat.st_size,
                os.environ.get("FIXGW_ADMIN_TOKEN"),
                os.environ.get("FIXGW_READ_TOKEN"),
            )
        except OSError:
            stamp = None
        if if_changed and stamp is not None and stamp == self._tokens_stamp:
            return False
        self._tokens_stamp = stamp
        try:
            settings = load_config(self.config_path).gateway
        except ConfigError as exc:
            _log.warning(
                "tokens_reload_refused", why=why, path=self.config_path, errors=list(exc.errors)
            )
            return False
        problem = Tokens.problem(settings)
        if problem is not None:
            _log.warning("tokens_reload_refused", why=why, path=self.config_path, errors=[problem])
            return False
        tokens = Tokens.of(settings)
        if tokens == self.tokens:
            return False
        # which changed, never their values
        changed = [n for n in ("admin", "read") if getattr(tokens, n) != getattr(self.tokens, n)]
        self.tokens = tokens
        _log.info("tokens_reloaded", why=why, path=self.config_path, changed=changed)
        return True

    # -- the trading day ---------------------------------------------------------------

    async def _day_ends(self) -> None:
        """At each trading day's end (and the grace after it, and once the
        drop copy has caught up, a minute at most), a full reconciliation
        and the day's export; at start (once the drop copy has caught up, a
        minute at most), the export of every ended day that has none (a day
        end passed while the back office was down); and whenever trades of
        an ended day come in after it was exported (resent after an outage),
        that day's export again."""
        await self._until_caught_up()
        missing_done = await self._export_missing_once()
        while True:
            today = self._today()
            _, end = self.days.bounds(today)
            due = end + dt.timedelta(seconds=self.grace + 1)
            while True:
                wait = (due - _utcnow(self.clock)).total_seconds()
                if wait <= 0:
                    break
                try:
                    async with asyncio.timeout(max(wait, 0.5)):
                        await self._late.wait()
                except TimeoutError:
                    break
                self._late.clear()
                await self._until_caught_up()
                if not missing_done:
                    missing_done = await self._export_missing_once()
                await self._export_late(before=today)
            if not await self._until_caught_up():
                _log.warning("day_end_before_caught_up", trade_date=today.isoformat())
            try:
                await self.recon(full=True)
            except LedgerLost as exc:
                self._ledger_lost(exc)
                return
            except Exception:
                _log.exception("day_end_recon_failed", trade_date=today.isoformat())
            with contextlib.suppress(Exception):  # logged, and tried again (export)
                await self.export(today)
            await self._export_late(before=today)

    async def _export_missing_once(self) -> bool:
        """:meth:`export_missing`; False, and tried again in
        ``export_retry`` seconds, when the ledger could not list its days
        (a day it could not export is tried again by :meth:`export`)."""
        try:
            await self.export_missing()
        except LedgerError as exc:
            _log.warning(
                "day_exports_at_start_failed", error=str(exc)[:300], retry_in_s=self.export_retry
            )
            self._listing_due = time.monotonic() + self.export_retry
            self._wake_for_retries()
            return False
        except Exception:
            _log.exception("day_exports_at_start_failed")
        self._listing_due = None
        return True

    async def _until_caught_up(self) -> bool:
        """Wait for the drop copy to catch up, a minute at most; whether it did."""
        for _ in range(60):
            if self._caught_up():
                return True
            await asyncio.sleep(1)
        return self._caught_up()

    async def _export_late(self, before: dt.date) -> None:
        """Export again the ended days before ``before`` that trades came in
        for after they ended, or whose export failed and is due again."""
        now = time.monotonic()
        for text in sorted(d for d in self._late_days if d < before.isoformat()):
            failed = self._export_failures.get(text)
            if failed is not None and failed.due > now:
                continue  # failed a moment ago: tried again when due
            with contextlib.suppress(Exception):  # logged, and tried again (export)
                await self.export(dt.date.fromisoformat(text))
        self._wake_for_retries()

    async def export_missing(self) -> list[dt.date]:
        """Export every ended trading day of the ledger whose files are not
        in the export folder, or do not hold every trade of the day the
        ledger has (a trade stored after they were written: a late trade
        before a stop, a day exported by hand before its end); the days
        exported.  A day whose export fails is left to its retries
        (:meth:`export`) and the next one tried; a ledger that cannot list
        its days is a LedgerError."""
        today = self._today()
        async with self._lock:
            days = await self.ledger.trading_days()
        ended = [(day, latest) for day, latest in days.items() if day < today]
        written = await asyncio.get_running_loop().run_in_executor(
            None, lambda: [self._exported_upto(day) for day, _ in ended]
        )
        missing = [day for (day, latest), upto in zip(ended, written, strict=True) if upto < latest]
        exported = []
        for day in missing:
            with contextlib.suppress(Exception):  # logged, and tried again (export)
                await self.export(day)
                exported.append(day)
        return exported

    async def export(self, day: dt.date) -> list[str]:
        """Write ``day``'s files.  An export that fails (the ledger away,
        the folder not writable) is logged and tried again, after
        ``export_retry`` seconds and then twice as long each time (10
        minutes at most), until it is written."""
        text = day.isoformat()
        pinned_upto = -1

        @contextlib.asynccontextmanager
        async def pinning() -> AsyncIterator[None]:
            nonlocal pinned_upto
            async with self._lock:
                # what is stored up to here is in the files (the ledger
                # pins it); what is stored later marks the day again
                self._late_days.discard(text)
                pinned_upto = self.ledger.last_ingest
                yield

        async with self._exporting:
            try:
                pinned = await self.ledger.pin_day(day, pinning)
                try:
                    # no manifest while the files are replaced
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._unwrite_manifest, day
                    )
                    # written beside the intake: the files are read from
                    # the pinned rows, the ledger is not held (a day of a
                    # million trades takes seconds)
                    files = await pinned.write(str(self.export_dir))
                finally:
                    await pinned.close()
                # last: the day's files are whole, and hold the batches up to here
                files.append(
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._write_manifest, day, pinned_upto, files
                    )
                )
            except Exception as exc:
                self._export_failed(text, exc)
                raise
            except BaseException:
                self._late_days.add(text)  # its files may be half written
                raise
        self.exports = files
        self._export_failures.pop(text, None)
        self.metrics.exports_failing.set(len(self._export_failures))
        _log.info("day_exported", trade_date=text, files=len(files))
        return files

    def _manifest(self, day: dt.date) -> Path:
        return self.export_dir / f"manifest-{day_stamp(day)}.json"

    def _unwrite_manifest(self, day: dt.date) -> None:
        """Take the day's manifest away before its files are written again:
        a reader must not take them as whole while some are replaced and
        others not (or the export fails half way); at start a day without
        one is written again."""
        try:
            self._manifest(day).unlink(missing_ok=True)
        except NotADirectoryError:
            pass  # no folder: the export names why
        except OSError as exc:
            raise LedgerError(f"cannot export {day} to {self.export_dir}: {exc}") from exc

    def _write_manifest(self, day: dt.date, upto: int, files: Sequence[str]) -> str:
        """The day's manifest, written once its files are: the files, and
        the last ingest batch of the ledger they hold (at start, a day whose
        trades were stored by a later batch is exported again)."""
        path = self._manifest(day)
        record = {
            "trade_date": day.isoformat(),
            "files": [Path(f).name for f in files],
            "ledger_ingest": upto,
            "written_at": _utcnow(self.clock).isoformat(timespec="seconds") + "Z",
        }
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
            os.replace(tmp, path)
        except OSError as exc:  # named as a file of the day's that cannot be written
            raise LedgerError(f"cannot export {day} to {self.export_dir}: {exc}") from exc
        return str(path)

    def _exported_upto(self, day: dt.date) -> int:
        """The last ingest batch the day's written files hold; -1 when they
        are not all written (no manifest, or one that cannot be read)."""
        try:
            record = orjson.loads(self._manifest(day).read_bytes())
            return int(record["ledger_ingest"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def _export_failed(self, day: str, exc: Exception) -> None:
        """The day's files are not written: the day is exported again (the
        day ends' task does it), later each time it fails."""
        self._late_days.add(day)
        before = self._export_failures.get(day)
        tries = 1 if before is None else before.tries + 1
        wait = self._export_wait(tries)
        error = str(exc)[:300] or repr(exc)
        self._export_failures[day] = _ExportFailure(tries, time.monotonic() + wait, error)
        self.metrics.exports_failing.set(len(self._export_failures))
        _log.warning(
            "day_export_failed", trade_date=day, error=error, tries=tries, retry_in_s=round(wait, 3)
        )
        self._wake_for_retries()

    def _export_wait(self, failures: int) -> float:
        return min(self.export_retry * float(2 ** min(failures - 1, 16)), _EXPORT_RETRY_MAX)

    def _wake_for_retries(self) -> None:
        """Wake the day ends' task when the next export to try again is due
        (one due already waits for its day's end, or is being tried)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        now = time.monotonic()
        dues = [failed.due for failed in self._export_failures.values()]
        if self._listing_due is not None:
            dues.append(self._listing_due)
        later = [due for due in dues if due > now]
        if later:
            self._retry = asyncio.get_running_loop().call_later(min(later) - now, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self._late.set()

    # -- views -------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        run = self.last_run
        feeds = [
            {
                "gateway": feed.name,
                "address": feed.address,
                "session": feed.session_key,
                "logged_on": bool(feed.client is not None and feed.client.logged_on),
                "last_seq_stored": feed.last_seq,
            }
            for feed in self.feeds
        ]
        return {
            "ledger": self.ledger.url,
            # the first gateway's (the only one, unless several are followed)
            "drop_copy": {
                **feeds[0],
                "logged_on": all(f["logged_on"] for f in feeds),
            },
            "drop_copies": feeds,
            "positions": {
                "compared": self.positions_compared,
                "clients_not_compared": self.clients_not_compared,
                # gateway -> why its positions cannot be had, and since when
                "unavailable": {
                    feed.name: {
                        "error": feed.positions_error,
                        "since": feed.positions_failing_since,
                    }
                    for feed in self.feeds
                    if feed.positions_error
                },
            },
            "statements": str(self.statements.folder),
            # the latest statement lines that could not be read, by file and line
            "statement_errors": [error for _, error in self.bad_lines],
            "records": self.counts,
            "last_run": None if run is None else msgspec.to_builtins(run),
            "last_full_run": None
            if self.last_full is None
            else msgspec.to_builtins(self.last_full),
            "lag_seconds": self.lag_seconds(),
            # trading day -> why its files could not be written (tried again)
            "export_failures": {day: f.error for day, f in self._export_failures.items()},
        }

    def _today(self) -> dt.date:
        """The trading day now (days end at ``orders.trading_day_end``)."""
        return dt.date.fromisoformat(self.days.of(_utcnow(self.clock).isoformat(sep=" ")))

    async def treasury(self) -> dict[str, Any]:
        today = self._today()
        async with self._lock:
            settled = await self._settlement_kept(today)
            positions = (await self._positions_kept()).positions()
        lines = settled.lines(today, self.settlement.minor_units)
        return {
            "trade_date": today.isoformat(),
            "positions": {
                name: [msgspec.to_builtins(p) for p in rows] for name, rows in positions.items()
            },
            "settlement": [msgspec.to_builtins(line) for line in lines],
        }

    # -- HTTP --------------------------------------------------------------------------

    async def _start_http(self) -> None:
        port = self.settings.http_port
        if not port:
            return
        app = self._app()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        assert runner.server is not None
        # served as aiohttp's site would, the connections of one address
        # bounded: a flood of idle ones cannot take the ledger's descriptors
        connections = HttpConnections(runner.server, clock=self.monotonic)
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                connections, self.settings.http_host, port, backlog=128
            )
        except OSError as exc:
            await runner.cleanup()
            raise BackofficeError(
                f"cannot listen for HTTP on {self.settings.http_host}:{port}: {exc.strerror}"
            ) from exc
        self._http = runner
        self._http_server = server
        sockets = server.sockets
        self.http_port = sockets[0].getsockname()[1] if sockets else port

    async def _stop_http(self) -> None:
        server, runner = self._http_server, self._http
        self._http_server = self._http = None
        if server is not None:
            server.close()  # no new connection; the runner closes those open
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()

    def _app(self) -> web.Application:
        @web.middleware
        async def auth(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            path = request.path
            if path.startswith("/backoffice/") and path != "/backoffice/":
                refusal = self.tokens.refusal(
                    request.headers.get("Authorization", ""), request.method
                )
                if refusal is not None:
                    return web.json_response({"error": refusal.error}, status=refusal.status)
            try:
                return await handler(request)
            except LedgerError as exc:  # the database or the export folder: named
                return web.json_response({"error": str(exc)}, status=503)

        def as_json(data: Any, status: int = 200) -> web.Response:
            return web.Response(
                body=orjson.dumps(data, default=str), status=status, content_type="application/json"
            )

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry),
                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )

        async def dashboard(_: web.Request) -> web.Response:
            return web.Response(body=_DASHBOARD.read_bytes(), content_type="text/html")

        async def status(_: web.Request) -> web.Response:
            return as_json(await self.status())

        async def breaks(request: web.Request) -> web.Response:
            kind = request.query.get("type")
            if kind is not None and kind not in BREAK_KINDS:
                known = ", ".join(BREAK_KINDS)
                return as_json({"error": f"no break type {kind!r} (known: {known})"}, status=400)
            found = await self._refresh_breaks()
            rows = [msgspec.to_builtins(b) for b in found if kind is None or b.kind == kind]
            by_type: dict[str, int] = {}
            for b in found:
                by_type[b.kind] = by_type.get(b.kind, 0) + 1
            return as_json({"count": len(rows), "by_type": by_type, "breaks": rows})

        async def recon(_: web.Request) -> web.Response:
            run = await self.recon(full=True)
            return as_json(msgspec.to_builtins(run))

        async def treasury(_: web.Request) -> web.Response:
            return as_json(await self.treasury())

        async def export(request: web.Request) -> web.Response:
            try:
                day = dt.date.fromisoformat(request.query["date"])
            except (KeyError, ValueError):
                return as_json({"error": "date=YYYY-MM-DD is required"}, status=400)
            return as_json({"trade_date": day.isoformat(), "files": await self.export(day)})

        app = web.Application(middlewares=[auth])
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/backoffice/", dashboard)
        app.router.add_get("/backoffice/status", status)
        app.router.add_get("/backoffice/breaks", breaks)
        app.router.add_post("/backoffice/recon", recon)
        app.router.add_get("/backoffice/treasury", treasury)
        app.router.add_post("/backoffice/export", export)
        return app


def _seq(msg: FixMessage) -> int:
    value = msg.get(34)
    return int(value) if value is not None and value.isdigit() else 0


_REPEAT_ERROR_S: Final = 60.0
"""How often a job the ledger keeps failing says so again."""

_REFUSALS_BEFORE_ASIDE: Final = 3
"""Rounds in which the ledger refuses a statement file's change alone while
it takes another's (the count starts again once the file is taken), before
that file is set aside."""


def _utcnow(clock: Callable[[], float]) -> dt.datetime:
    return _utc(clock())


def _utc(when: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(when, dt.UTC).replace(tzinfo=None)


def _merged(views: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The positions of several gateways (``/admin/exposures`` of each) as
    one: the house's at each LP summed (each gateway books its own LP
    fills); a client's from the gateway that serves it when the gateways
    are a cluster's (each says which it serves: the others show what they
    last knew), summed otherwise (gateways each serving their own clients).
    ``unknown``: clients served by no gateway of a cluster right now, or by
    two (a takeover under way), not compared."""

    def add(into: dict[str, dict[str, Decimal]], holder: str, by: Mapping[str, Any]) -> None:
        mine = into.setdefault(holder, {})
        for symbol, qty in by.items():
            mine[symbol] = mine.get(symbol, Decimal(0)) + Decimal(str(qty))

    lps: dict[str, dict[str, Decimal]] = {}
    clients: dict[str, dict[str, Decimal]] = {}
    servers: dict[str, int] = {}
    known: set[str] = set()
    for view in views:
        for lp, by in (view.get("lps") or {}).items():
            add(lps, lp, by)
        positions = view.get("clients") or {}
        known.update(positions)
        served = view.get("served")
        for client in positions if served is None else served:
            servers[client] = servers.get(client, 0) + (1 if served is not None else 0)
            if client in positions:
                add(clients, client, positions[client])
    clustered = any(view.get("served") is not None for view in views)
    unknown = sorted(c for c in known | set(servers) if servers.get(c, 0) != 1) if clustered else []
    for client in unknown:
        clients.pop(client, None)
    return {"lps": lps, "clients": clients, "unknown": unknown}


def _position_differences(
    gateway: Mapping[str, Any], ours: Mapping[str, Sequence[Position]], unknown: Iterable[str] = ()
) -> list[Break]:
    """Position breaks: where the gateways' positions (:func:`_merged`) and
    the sums of the fills in the ledger differ (``unknown``: clients not
    compared)."""
    skip = set(unknown)
    found: list[Break] = []
    for side, kind, holder_key in (
        ("clients", "client_position_mismatch", "client"),
        ("lps", "lp_position_mismatch", "lp"),
    ):
        theirs: dict[tuple[str, str], Decimal] = {}
        for holder, by_symbol in (gateway.get(side) or {}).items():
            for symbol, qty in by_symbol.items():
                theirs[(holder, symbol)] = Decimal(str(qty))
        mine = {
            (p.holder, p.symbol): Decimal(p.qty)
            for p in ours[side]
            if side != "clients" or p.holder not in skip
        }
        for key in sorted(set(theirs) | set(mine)):
            a, b = mine.get(key, Decimal(0)), theirs.get(key, Decimal(0))
            if a != b:
                holder, symbol = key
                found.append(
                    Break(
                        kind=kind,
                        lp=holder if holder_key == "lp" else "",
                        client=holder if holder_key == "client" else "",
                        records="gateway/ledger",
                        key=f"{holder}|{symbol}",
                        ref=f"{holder} {symbol}",
                        symbol=symbol,
                        ours=f"{a.normalize():f}",
                        theirs=f"{b.normalize():f}",
                        detail="the gateway's position and the sum of the fills "
                        "in the ledger differ",
                    )
                )
    return found


def _own_threads() -> list[int]:
    """This process's thread ids (Linux); none where /proc has no tasks."""
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return []
