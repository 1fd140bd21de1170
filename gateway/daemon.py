"""The daemon: builds every piece from the config and runs it on one loop.

This is the composition root: stores, sessions, application profiles, the
order journal, the outbox, the order flow with every piece behind it
(matcher, book, exposure ledger, market data, LP adapters), the FIX
acceptor and the HTTP server are created here and nowhere else, and the one
clock is handed to each.

The listening ports are bound first (:func:`bind_listeners`), the TLS files
loaded next: a port that is taken or a certificate that cannot be read stops
the start before a store, the journal or an LP exists.  Paths in the config
are used as resolved against its file's folder (:func:`config.config_base`).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from config import Config, ConfigError, config_base, resolve_paths
from gateway.cluster import (
    INSTANCE_NAME,
    Cluster,
    CopiedOrders,
    Headroom,
    id_namespace,
    instance_name,
    session_key,
)
from gateway.dropcopy.process import DropCopyProcess, read_cursor, read_sessions
from gateway.dropcopy.service import drop_copy_sessions
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import Application, EchoApplication
from gateway.fix.session import Session
from gateway.fix.store import SessionStore
from gateway.net.server import FixServer, ListenError, bind_listening, server_tls
from gateway.net.transport import BusyPoll, Outbox
from gateway.ops.connections import HttpConnections
from gateway.ops.http import SessionCollector, build_app
from gateway.ops.logs import set_log_level
from gateway.ops.metrics import ClusterCollector, DropCopyCollector, LoopLag, OperationsCollector
from gateway.ops.placement import available_cpus, check_cpus, other_cpus, pin_to_cpus
from gateway.ops.reload import Overrides, Reloader
from gateway.ops.tokens import Tokens
from gateway.orderflow.entry import OrderEntry
from gateway.orderflow.flow import OrderFlow
from gateway.orderflow.journal import SEGMENTS_NAME, OrderJournal
from gateway.orderflow.mapping import excerpt
from gateway.orderflow.margin_watch import MarginWatch
from gateway.orderflow.market_data import HOLD_BYTES, MarketDataService
from gateway.orderflow.publish import Reports
from gateway.orderflow.recovery import Recovery
from gateway.orderflow.restore import grid_of
from gateway.orderflow.routing import ChildRouting
from gateway.orderflow.rules import Rules, build_rules, capped, config_digest
from gateway.orderflow.stats import FlowStats
from gateway.storage.durable import make_dir, write_file
from gateway.storage.session_store import open_store
from gateway.storage.writeback import Writeback, start_writeback
from lp_adapters.base import LpAdapter
from lp_adapters.registry import adapter_settings, create_adapter
from matcher.engine import Matcher
from matcher.orders import Order
from risk.accounts import Accounts
from router.book import AggregatedBook
from router.exposure import ExposureLedger

_log = structlog.get_logger("gateway.daemon")

DEV_ADMIN_TOKEN = "dev-admin-token"
"""The token config/default.toml ships with, for trying the daemon out."""

STOPPED_UNWRITTEN: Final = 3
"""The exit status of a run whose stop could not write what the order
journal or a session store still held (a full disk): everything it had
acknowledged was written before, and the next start recovers it."""


class Listeners:
    """The daemon's listening sockets, bound before anything else is built:
    the FIX acceptor's and, with HTTP on, the HTTP server's."""

    def __init__(
        self,
        fix: list[socket.socket],
        http: list[socket.socket],
        drop_copy: list[socket.socket] | None = None,
    ) -> None:
        self.fix = fix
        self.http = http
        self.drop_copy = drop_copy or []

    def close(self) -> None:
        """Close them (a start that failed before its servers took them)."""
        for sock in (*self.fix, *self.http, *self.drop_copy):
            sock.close()


def bind_listeners(config: Config, overrides: Overrides | None = None) -> Listeners:
    """Bind the FIX port, the drop-copy port when the config has a drop-copy
    session, and the HTTP port when HTTP is on; a
    :class:`~gateway.net.server.ListenError` names the first that cannot be
    had and the setting it comes from (the command line's flag when it
    overrides the file)."""
    gw = config.gateway
    given = overrides or Overrides()
    fix_setting = "--fix-port" if given.fix_port is not None else "gateway.fix_port"
    listeners = Listeners(bind_listening(gw.fix_host, gw.fix_port, fix_setting), [])
    try:
        if drop_copy_sessions(config):
            setting = (
                "--drop-copy-port" if given.drop_copy_port is not None else "gateway.drop_copy_port"
            )
            listeners.drop_copy = bind_listening(gw.fix_host, gw.drop_copy_port, setting)
        if gw.http_port:
            setting = "--http-port" if given.http_port is not None else "gateway.http_port"
            listeners.http = bind_listening(gw.http_host, gw.http_port, setting)
    except ListenError:
        listeners.close()
        raise
    return listeners


class Gateway:
    """Everything the daemon runs, started and stopped as one."""

    def __init__(
        self,
        config: Config,
        config_path: str | Path | None = None,
        overrides: Overrides | None = None,
        clock: Callable[[], float] = time.time,
        listeners: Listeners | None = None,
    ) -> None:
        """``clock`` (epoch seconds) is the one clock of the sessions and
        the order flow.  ``listeners`` are the ports bound beforehand
        (:func:`bind_listeners`); without them :meth:`start` binds them.

        Relative paths of the config (the data directory, the TLS files, an
        LP's own directory) are used as resolved against the folder of
        ``config_path`` (against the working directory without one); the
        config in force keeps them as written, as a reloaded file has them."""
        self.config = config
        self.generation = 1
        self.digest = config_digest(config)
        self._overrides = overrides or Overrides()
        self._listeners = listeners
        if config_path is not None:
            # what is built from here on uses the paths resolved
            config = resolve_paths(config, config_base(config_path), adapter_settings())
        gw = config.gateway
        self.data_dir = Path(gw.data_dir).absolute()
        _refuse_moved_data(self.config.gateway.data_dir, self.data_dir)
        _refuse_missing_parent(self.config.gateway.data_dir, self.data_dir)
        if config.store.backend == "file":
            _writable_data_dir(self.data_dir)
        problem = Tokens.problem(gw)
        if problem is not None:
            raise ConfigError([problem])
        self._tls_context = server_tls(gw)
        _log.info(
            "gateway_starting",
            config=str(config_path) if config_path is not None else None,
            data_dir=str(self.data_dir),
        )
        self.stores: list[SessionStore] = []
        self.sessions: list[Session] = []
        applications: dict[str, Application] = {}
        echo = EchoApplication()
        order_sessions: dict[str, Session] = {}
        # served by the drop-copy process, from the journal
        copying = bool(drop_copy_sessions(config))
        self._resolved = config
        self.drop_copy: DropCopyProcess | None = None
        self.drop_copy_cpus: tuple[int, ...] = ()
        """Where the drop-copy process runs (set by :func:`run` from the
        config; empty: not placed)."""
        # several gateways live at once: a session's store is copied to the
        # cluster while the session is served here
        self.cluster: Cluster | None = None
        self._remembered = ""  # the instance name the data directory keeps
        if config.cluster.servers:
            self.cluster = Cluster(
                config.cluster,
                on_lost=self._lost_session,
                # the grid as the journal records it (restore.grid_of)
                grid=grid_of({i.symbol: i.to_instrument() for i in config.instruments}).sizes,
            )
            if config.store.backend == "file":
                self._remembered = remembered_instance(self.data_dir)
        for settings in config.sessions:
            if settings.Application == "dropcopy":
                continue
            store: SessionStore = open_store(
                config.store.backend,
                self.data_dir / "sessions",
                settings.session_id,
                fsync=config.store.fsync == "batch",
            )
            if self.cluster is not None:
                store = self.cluster.replicated(store, settings)
            self.stores.append(store)
            session = Session(settings, store, max_message_size=gw.max_message_size)
            self.sessions.append(session)
            if settings.Application == "echo":
                applications[settings.session_id] = echo
            else:
                order_sessions[settings.TargetCompID] = session
        self.order_flow: OrderFlow | None = None
        self.journal: OrderJournal | None = None
        if order_sessions and config.store.backend == "file":
            self.journal = OrderJournal(
                self.data_dir / "orders",
                fsync=config.store.fsync == "batch",
                keep_segments=copying,
            )
            if not copying:
                # kept for a drop copy no longer configured: nothing will read them
                shutil.rmtree(self.data_dir / "orders" / SEGMENTS_NAME, ignore_errors=True)
        # nothing leaves a session before the journal has what it says
        self.outbox = Outbox(
            self.journal.flush if self.journal is not None else None, replica=self.cluster
        )
        if gw.busy_poll_us:
            if not gw.cpus and len(available_cpus()) == 1:
                # the loop would keep everything else (the drop copy, at idle
                # priority, first) off the only core while orders keep coming
                _log.warning(
                    "busy_poll_off",
                    reason="one CPU only: set gateway.cpus to poll on it anyway",
                    busy_poll_us=gw.busy_poll_us,
                )
            else:
                self.outbox.busy_poll = BusyPoll(gw.busy_poll_us / 1e6)
        if order_sessions:
            self.order_flow = build_order_flow(
                config,
                order_sessions,
                self.journal,
                self.outbox,
                clock,
                copying,
                self._remembered,
                # the last batch the drop copy has copied: new ones come
                # after it (and after the segments it has yet to read: the
                # journal's own)
                read_cursor(self.data_dir) if copying and self.journal is not None else 0,
                written=self.config,
            )
            for session in order_sessions.values():
                applications[session.session_id] = self.order_flow
            if self.cluster is not None:
                carry_clients(self.cluster, self.order_flow, order_sessions)
                # each client's orders are worked once its session is
                # claimed here (and its copy read): another gateway may
                # serve it now
                self.order_flow.park_all()
        self.registry = SessionRegistry(self.sessions)
        self.fix_server = FixServer(
            self.registry,
            applications,
            max_message_size=gw.max_message_size,
            max_outbound_buffer=gw.max_outbound_buffer,
            logon_timeout=max(s.LogonTimeout for s in config.sessions),
            clock=clock,
            outbox=self.outbox,
        )
        self.fix_server.measure_waits = config.orders.shed_after_ms > 0
        self.reloader = Reloader(
            Path(config_path) if config_path is not None else None,
            overrides or Overrides(),
            current=lambda: self.config,
            version=lambda: self.config_version()[0],
            apply=self.apply_config,
            connected=lambda: frozenset(self.order_flow.adapters if self.order_flow else ()),
        )
        self.loop_lag = LoopLag()
        self.metrics = CollectorRegistry()
        self.metrics.register(SessionCollector(lambda: self.sessions))
        self.metrics.register(
            OperationsCollector(
                lambda: self.order_flow,
                lambda: self.reloader.stats,
                self.config_version,
                self.loop_lag,
                self.outbox.busy_poll,
            )
        )
        self.metrics.register(ClusterCollector(lambda: self.cluster))
        self.metrics.register(DropCopyCollector(self.drop_copy_state, self.drop_copy_sessions))
        self._clock = clock
        # in a cluster: the rules as configured, and this gateway's slices
        self._base_rules: Rules | None = None
        self._lp_caps: dict[str, Decimal] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._writeback: Writeback | None = None
        self._http_runner: web.AppRunner | None = None
        self._http_servers: list[asyncio.AbstractServer] = []
        self.fix_port = 0
        self.http_port = 0

    def drop_copy_state(self) -> tuple[bool, int, int] | None:
        """Whether the drop-copy process runs, its restarts, and the journal
        batches it is behind; None without a drop copy."""
        process = self.drop_copy
        if process is None:
            return None
        serial = self.journal.serial if self.journal is not None else 0
        return process.up, process.restarts, max(0, serial - read_cursor(self.data_dir))

    def drop_copy_sessions(self) -> list[dict[str, Any]]:
        process = self.drop_copy
        if process is None:
            return []
        return read_sessions(self.data_dir, process.up)

    def config_version(self) -> tuple[str, int]:
        """``(version, generation)`` of the config in force."""
        return f"{self.generation}-{self.digest}", self.generation

    def admin_tokens(self) -> Tokens:
        return Tokens.of(self.config.gateway)

    def apply_config(self, config: Config) -> None:
        """Put a reloaded config in force (its changes were checked to be
        ones that need no restart).  The new rules are built before anything
        changes: a config they cannot be built from leaves every part on the
        version in force."""
        generation = self.generation + 1
        flow = self.order_flow
        rules = (
            build_rules(config, flow.instruments, list(flow.sessions), generation)
            if flow is not None
            else None
        )
        self.generation = generation
        self.config = config
        self.digest = config_digest(config)
        set_log_level(config.gateway.log_level)
        self.fix_server.measure_waits = config.orders.shed_after_ms > 0
        if self.drop_copy is not None:
            # started again, it names the trading days as the gateway ends them
            self.drop_copy.reconfigure(config.orders)
        if flow is not None and rules is not None:
            if self._base_rules is not None:
                self._base_rules = rules
                headroom = self.cluster.headroom if self.cluster is not None else None
                if headroom is not None:
                    headroom.set_limits({lp.name: lp.hard_limit_usd for lp in config.lps})
                rules = capped(rules, self._lp_caps)
            flow.apply_rules(rules)

    def reload_soon(self, trigger: str) -> None:
        """Start a reload (the SIGHUP handler); the outcome is logged."""
        self._spawn(self.reloader.reload(trigger))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ready(self) -> tuple[bool, str]:
        if not self.fix_server.listening:
            return False, "FIX port not listening"
        flow = self.order_flow
        if flow is not None:
            # an LP taken out of routing by a reload takes no order, up or not
            linked = flow.lps_up()
            enabled = flow.rules.limits.enabled_lps
            up = [lp for lp in linked if lp in enabled]
            if not up:
                return False, "no enabled LP is up" if linked else "no LP is up"
            lps = f"LPs up: {', '.join(up)}"
            return True, f"FIX port {self.fix_port} listening; {lps}{self._cluster_state()}"
        return True, f"FIX port {self.fix_port} listening{self._cluster_state()}"

    def _cluster_state(self) -> str:
        cluster = self.cluster
        if cluster is None:
            return ""
        reduce_only = cluster.headroom.stats.reduce_only if cluster.headroom is not None else ()
        limited = (
            f"; reduce-only at {', '.join(sorted(reduce_only))} (slice of the hard limit used,"
            " the cluster out of reach)"
            if reduce_only
            else ""
        )
        if not cluster.connected:
            return (
                f"; cluster unreachable (instance {cluster.name}: no new session can be taken)"
                + limited
            )
        return f"; cluster instance {cluster.name}, {len(cluster.held())} session(s) held{limited}"

    async def start(self) -> None:
        gw = self.config.gateway
        listeners = self._listeners
        if listeners is None:
            listeners = bind_listeners(self.config, self._overrides)
        self._listeners = None  # the servers own the sockets from here on
        if self.cluster is not None:
            await self._join_cluster(self.cluster, listeners)
        if self.order_flow is not None:
            await self.order_flow.start()
        if self.cluster is not None:
            # sessions no gateway holds are taken once the order flow works
            self.cluster.start_attending()
        if listeners.drop_copy:
            # the journal is recovered: the copies follow it from here
            resolved = self._resolved
            self.drop_copy = DropCopyProcess(
                msgspec.structs.replace(
                    resolved,
                    gateway=msgspec.structs.replace(
                        resolved.gateway,
                        data_dir=str(self.data_dir),
                        drop_copy_cpus=self.drop_copy_cpus,
                    ),
                ),
                listeners.drop_copy,
            )
            await self.drop_copy.start()
        self.fix_port = await self.fix_server.serve(listeners.fix, self._tls_context)
        self.loop_lag.start()
        self._writeback = start_writeback(self._files, self.config.store.writeback_ms)
        self._spawn(self.reloader.start_worker())
        if listeners.http:
            runner = web.AppRunner(build_app(self), access_log=None)
            await runner.setup()
            assert runner.server is not None
            # served as aiohttp's sites would, the connections of one address bounded
            connections = HttpConnections(runner.server)
            loop = asyncio.get_running_loop()
            for sock in listeners.http:
                server = await loop.create_server(connections, sock=sock, backlog=128)
                self._http_servers.append(server)
            self._http_runner = runner
            self.http_port = int(listeners.http[0].getsockname()[1])
        if not _is_loopback(gw.fix_host):
            # the drop-copy sessions listen on fix_host too
            for settings in self._resolved.sessions:
                if not settings.Password:
                    _log.warning(
                        "session_without_password_on_open_address",
                        session=settings.session_id,
                        fix_host=gw.fix_host,
                        hint="give the session a Password, or listen on 127.0.0.1",
                    )
        if self.admin_tokens().admin == DEV_ADMIN_TOKEN:
            _log.warning(
                "admin_token_is_the_development_default",
                hint="set gateway.admin_token or FIXGW_ADMIN_TOKEN before exposing the HTTP port",
            )
        # what exists now lives as long as the process: keep it out of the
        # cyclic collector's full passes, which would otherwise walk it all
        gc.freeze()
        _log.info(
            "gateway_started",
            fix_port=self.fix_port,
            drop_copy_port=self.drop_copy.port if self.drop_copy is not None else None,
            http_port=self.http_port or None,
            data_dir=str(self.data_dir),
            sessions=[s.session_id for s in self.sessions],
            order_path_compiled=order_path_compiled(),
        )

    async def _join_cluster(self, cluster: Cluster, listeners: Listeners) -> None:
        """Take this gateway's place in its cluster before any Logon is
        read: from then on a Logon is served only once its session's lease
        is this gateway's (:class:`~gateway.cluster.Cluster`)."""
        gw = self.config.gateway
        fix_port = int(listeners.fix[0].getsockname()[1])
        http = f"{gw.http_host}:{listeners.http[0].getsockname()[1]}" if listeners.http else ""
        name = instance_name(self.config.cluster, fix_port, self._remembered)
        await cluster.start(name, f"{gw.fix_host}:{fix_port}", http)
        if self.config.store.backend == "file" and name != self._remembered:
            # the name goes with the data directory: the next start takes
            # it again, whatever its host or port (the slices it holds of
            # the LPs' limits are its own)
            write_file(self.data_dir / INSTANCE_FILE, name.encode("ascii") + b"\n")
            self._remembered = name
        self.fix_server.logon_gate = cluster
        flow, kv = self.order_flow, cluster.headroom_kv
        if flow is not None and kv is not None:
            # each LP's hard limit is the cluster's: routed within this
            # gateway's slice of it, taken before the first order
            self._base_rules = flow.rules
            clock = self._clock
            cluster.headroom = Headroom(
                kv,
                cluster.name,
                {lp.name: lp.hard_limit_usd for lp in self.config.lps if lp.enabled},
                gross=lambda lp: flow.routing.exposure(clock()).gross_usd(lp),
                apply=self._cap_lps,
                live=cluster.is_live,
                # a gateway restarting takes its name again within a lease
                absent_after=3 * cluster.lease_s,
            )
            await cluster.headroom.adjust_all()
            cluster.headroom.start()

    def _cap_lps(self, caps: Mapping[str, Decimal]) -> None:
        """Route within this gateway's slices of the LPs' hard limits."""
        self._lp_caps = dict(caps)
        if self.order_flow is not None and self._base_rules is not None:
            self.order_flow.apply_rules(capped(self._base_rules, self._lp_caps))

    def _lost_session(self, session: Session, text: str) -> None:
        """This gateway may serve ``session`` no longer: its connection is
        dropped without a word (a Logout would take a sequence number the
        session's copy would never have); the client logs on where the
        session is served now.  Its client's open orders are worked here
        no more (parked): the gateway that takes the session takes them."""
        self.fix_server.abort(session)
        flow = self.order_flow
        if flow is not None:
            for client, served in flow.sessions.items():
                if served is session:
                    flow.park_client(client)

    def _files(self) -> list[int]:
        """The descriptors of the journal and the session stores' files."""
        files = [self.journal.fileno()] if self.journal is not None else []
        for store in self.stores:
            fileno = getattr(store, "fileno", None)
            if fileno is not None:
                files.append(fileno())
        return files

    async def stop(self) -> bool:
        """Stop every piece started, in order; False when the order journal
        or a session store could not write what it held (see
        :meth:`_close_files`): the rest is stopped all the same."""
        await self.loop_lag.stop()
        if self._writeback is not None:
            self._writeback.stop()
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        await self.reloader.aclose()
        await self.fix_server.stop()
        if self.order_flow is not None:
            await self.order_flow.stop()
        for server in self._http_servers:
            server.close()  # no new connection; the runner closes those open
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        for server in self._http_servers:
            await server.wait_closed()
        self._http_servers.clear()
        # what the last events sent (cancels of open children) is stored
        # before the stores close
        self.outbox.write_pending()
        if self.cluster is not None:
            if self.cluster.headroom is not None:
                await self.cluster.headroom.stop()
            # copied before the leases go: whoever takes a session next has it
            await self.cluster.stop()
        self.outbox.stop()
        written = self._close_files()
        if self.drop_copy is not None:
            # after the journal's last batch: it is copied before the process ends
            await self.drop_copy.stop()
        _log.info("gateway_stopped")
        return written

    def _close_files(self) -> bool:
        """Close the order journal, then the session stores, each writing
        what it holds first.  One that cannot (a full disk) is closed all
        the same, what it held left unwritten (nothing of it had left the
        process), and the others after it are closed too; said in one
        line naming the data directory and the cause.  When the journal
        could not write what it held, the stores close without writing
        theirs either: their messages report what the journal lost, and
        would reach their clients after the restart (by a resend) for
        orders the gateway no longer knows.  Whether all was written."""
        unwritten: list[str] = []
        cause = ""
        journal_written = True
        if self.journal is not None:
            try:
                self.journal.close()
            except OSError as exc:
                unwritten.append(str(self.journal.path))
                cause = exc.strerror or repr(exc)
                journal_written = False
        for store in self.stores:
            # a store of a cluster's session has no folder here: itself named
            name = str(getattr(store, "path", "") or store)
            try:
                if journal_written:
                    store.close()
                else:
                    store.discard()
            except OSError as exc:
                unwritten.append(name)
                cause = cause or exc.strerror or repr(exc)
        if unwritten:
            _log.critical(
                "journal_not_closed",
                data_dir=str(self.data_dir),
                error=cause,
                unwritten=unwritten,
                hint="what was not written had not been acknowledged; "
                "free space and start again: the journal is recovered",
            )
        return not unwritten


def run_name(journal: OrderJournal | None, clock: Callable[[], float]) -> str:
    """What this run's ids start with: the journal's count of runs (read
    back), else, without a journal, the start's time in ms (two starts
    within one second must not hand out the same ids)."""
    if journal is not None:
        return str(journal.run + 1)
    return format(int(clock() * 1000), "x")


def build_order_flow(
    config: Config,
    sessions: Mapping[str, Session],
    journal: OrderJournal | None,
    outbox: Outbox,
    clock: Callable[[], float],
    copying: bool = False,
    instance: str = "",
    serial_floor: int = 0,
    written: Config | None = None,
) -> OrderFlow:
    """The order flow and every piece behind it, for the client ``sessions``
    (by client CompID): the matcher, the aggregated book, the exposure
    ledger, market data, the LP adapters, and the flow's parts.  With a
    ``journal``, what an earlier run left in it is taken back first.
    ``written`` is ``config`` with its paths as the file has them: the
    rules, and the version they name (the margin figures' by default), are
    the config in force's, as a reload's are."""
    instruments = {i.symbol: i.to_instrument() for i in config.instruments}
    ledger = ExposureLedger(instruments)
    rules = build_rules(written or config, instruments, list(sessions), generation=1)
    accounts = Accounts(rules.margin, rules.accounts, instruments)
    recovery = Recovery(ledger, accounts, config.orders.retain_finished)
    recovery.floors = {
        s.session_id: (s.store.creation_time, s.store.next_sender_seq) for s in sessions.values()
    }
    if journal is not None:
        for recorded in journal.replay():
            recovery.apply(recorded)
        # refused here, before anything is written, if the config dropped an
        # instrument the journal holds open orders in, or changed the grid of
        # one it holds anything open in
        for change in recovery.regrid(instruments):
            _log.warning(
                "instrument_grid_changed",
                symbol=change.symbol,
                tick_size=list(change.tick_size),
                lot_size=list(change.lot_size),
                final_orders_forgotten=change.final_orders,
                children_forgotten=change.children,
            )
        seeded = recovery.finish(instruments)
        if seeded:
            _log.warning("margin_accounts_seeded_from_positions", clients=seeded)
    run = run_name(journal, clock)
    if journal is not None:
        journal.mark_run(int(run))
        if journal.serial < serial_floor:
            # the drop copy has copied batches past the journal's last: the
            # journal was restored from an older copy; batches written now
            # are numbered after what it has, or it would pass them over
            _log.warning(
                "order_journal_behind_its_drop_copy",
                journal_serial=journal.serial,
                copied_up_to=serial_floor,
            )
            journal.serial = serial_floor
    # OrderIDs, ExecIDs and child order ids never repeat across runs, nor
    # across the gateways of a cluster (a client taken over by another
    # gateway goes on receiving IDs it has not seen)
    # across gateways not in a cluster that one back office follows, with
    # gateway.id_prefix (their ExecIDs would otherwise meet in its ledger;
    # the config refuses one with [cluster])
    prefix = run
    own = config.gateway.id_prefix
    if config.cluster.servers:
        prefix = f"{id_namespace(config.cluster, config.gateway.fix_port, instance)}.{run}"
    elif own:
        prefix = f"{own}.{run}"
    if prefix != run:
        _log.info("order_ids_prefixed", prefix=prefix)
    matcher = Matcher(
        instruments,
        internal_crossing=config.routing.internal_crossing,
        retain_finished=config.orders.retain_finished,
        id_prefix=prefix,
    )
    book = AggregatedBook()
    stats = FlowStats()
    reports = Reports(
        sessions,
        instruments,
        matcher,
        stats,
        outbox,
        journal,
        clock,
        accounts,
        ledger,
        copying,
        prefix,
    )
    market_data = MarketDataService(
        instruments,
        book,
        reports.send,
        outbox,
        clock,
        max_subscriptions=config.market_data.max_subscriptions,
        # a client behind is held well before it is dropped as a slow consumer
        hold_bytes=min(HOLD_BYTES, config.gateway.max_outbound_buffer // 4),
        refresh_interval=config.market_data.refresh_interval_ms / 1000,
    )
    routing = ChildRouting(
        instruments, matcher, book, ledger, market_data, reports, stats, journal, rules, clock, run
    )
    entry = OrderEntry(
        instruments, matcher, book, ledger, market_data, reports, routing, stats, rules
    )
    adapters: dict[str, LpAdapter] = {}
    for lp in config.lps:
        if not lp.enabled:
            continue
        adapter = create_adapter(
            lp.adapter,
            lp.name,
            instruments,
            routing.on_lp_event,
            lp.settings,
            Path(config.gateway.data_dir),
            clock=clock,
            # a child order is on disk before its LP can see it
            write_barrier=journal.flush if journal is not None else None,
        )
        adapters[lp.name] = adapter
    routing.attach(adapters)
    watch = MarginWatch(
        accounts, matcher, reports, routing, stats, entry.mark_accounts, clock, prefix
    )
    watch.on_call = lambda standing, now: entry.collateral_update(standing.client, now)
    flow = OrderFlow(rules, reports, routing, entry, journal, clock, watch)
    if journal is not None:
        journal.on_dirty = flow.flush_soon
        flow.recover(recovery, int(run))
    return flow


class DataDirError(Exception):
    """A file of the data directory cannot be opened, or written, at the start."""


def _cannot_open(exc: OSError, data_dir: str) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is None:
        # no one file named: a write to a file it has open (a full disk)
        return f"cannot use the data directory {data_dir}: {what}"
    where = f"{exc.filename}: "
    hint = ""
    if isinstance(exc, PermissionError):
        hint = " (the data directory's files must be the gateway's user's)"
    return f"cannot open {where}{what}{hint}"


INSTANCE_FILE: Final = "cluster_instance"
"""The file in the data directory that keeps the gateway's name in its
cluster (without ``[cluster] instance``, the name of its first start)."""


def remembered_instance(data_dir: Path) -> str:
    """The instance name ``data_dir`` keeps ('' when none yet); a clear
    :class:`ConfigError` when its file cannot be read or holds no name."""
    path = data_dir / INSTANCE_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        why = f"{path}: cannot read the gateway's name in its cluster: {exc}"
        raise ConfigError([why]) from None
    if not INSTANCE_NAME.fullmatch(text):
        raise ConfigError(
            [
                f"{path} holds {excerpt(text)!r}, not a cluster instance name (1 to 64"
                " letters, digits, '_' or '-'): put it right or delete it"
            ]
        )
    return text


def _refuse_moved_data(written: str, resolved: Path) -> None:
    """A relative data directory is its config file's folder's; it used to
    be the working directory's.  A start that would find nothing where the
    file now points, while the working directory holds a data directory of
    that name, would begin with fresh sequence numbers and no positions
    without a word: it is refused, naming both."""
    if Path(written).is_absolute() or resolved.exists():
        return
    before = Path(written).absolute()
    if before != resolved and before.is_dir():
        raise ConfigError(
            [
                f'gateway.data_dir "{written}" is {resolved} (relative to the config file), '
                f"which does not exist, while {before} (relative to the working directory) "
                "does: set data_dir to the directory meant, or move it"
            ]
        )


def _refuse_missing_parent(written: str, resolved: Path) -> None:
    """An absolute data directory whose parent does not exist is refused
    rather than made: a typo in the path (``/var/lib/fixgw`` for
    ``/var/lib/fixgw-prod``) would otherwise start on empty stores, with
    fresh sequence numbers and no open orders, without a word.  A relative
    one (the packaged default's ``../var/data`` of a fresh checkout) is made
    with its parents."""
    if not Path(written).is_absolute() or resolved.exists() or resolved.parent.exists():
        return
    raise ConfigError(
        [
            f"gateway.data_dir: {resolved} does not exist, nor does its parent "
            f"{resolved.parent}: create the parent first if the path is meant "
            "(an absolute data directory is made only where its parent exists)"
        ]
    )


def _writable_data_dir(data_dir: Path) -> None:
    """Make the data directory if need be; one that cannot be made or
    written stops the start with one line naming it, before any store is
    opened."""
    if os.path.lexists(data_dir) and not data_dir.is_dir():
        # making it would fail with "File exists", which says nothing of why
        raise ConfigError([f"gateway.data_dir: {data_dir} is not a folder"])
    try:
        make_dir(data_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([f"gateway.data_dir: cannot create {data_dir}: {reason}"]) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ConfigError([f"gateway.data_dir: cannot write to {data_dir}: {_why_not(data_dir)}"])
    for name in _DATA_FOLDERS:
        folder = data_dir / name
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(
                    [f"gateway.data_dir: cannot write to {folder}: {_why_not(folder)}"]
                )
        elif os.path.lexists(folder):
            raise ConfigError(
                [
                    f"gateway.data_dir: {folder} is not a folder "
                    f"(move it away: the gateway keeps its {name} there)"
                ]
            )


def _why_not(folder: Path) -> str:
    """Why a folder ``os.access`` refuses to write to cannot be written:
    on a file system mounted read-only, or for want of permission."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    except OSError:
        pass
    return "permission denied"


_DATA_FOLDERS: Final = ("orders", "orders/segments", "sessions", "dropcopy")
"""The folders the gateway and its drop copy keep under the data directory."""


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def carry_clients(cluster: Cluster, flow: OrderFlow, sessions: Mapping[str, Session]) -> None:
    """A client's positions, margin holdings and open orders go with its
    session's copy in the cluster, and are taken over with the session."""
    clients = {session_key(session): client for client, session in sessions.items()}
    keys = {client: key for key, client in clients.items()}

    def client_state(key: str) -> bytes | None:
        client = clients.get(key)
        return None if client is None else flow.client_state(client)

    def open_orders(key: str) -> list[tuple[str, bytes, bool]]:
        client = clients.get(key)
        if client is None:
            return []
        matcher = flow.matcher
        return [
            (o.order_id, flow.order_state(o), matcher.is_expiring(o.order_id))
            for o in matcher.open_of(client)
        ]

    def copy_order(order: Order) -> None:
        key = keys.get(order.client)
        if key is not None:
            # a final order leaves the copy's open set: its id says enough
            final = order.is_final
            order_id = order.order_id
            if final:
                cluster.copy_order(key, order_id, True, b"")
            else:
                over = flow.matcher.is_expiring(order_id)
                cluster.copy_order(key, order_id, False, flow.order_state(order), over)

    def taken(session: Session, data: bytes) -> None:
        client = clients.get(session_key(session))
        if client is None:
            return
        try:
            flow.adopt_client(client, data)
        except Exception as exc:
            # a state this gateway cannot read (another version's): the
            # session is served with what this gateway holds, said loudly
            _log.error("client_state_unreadable", client=client, error=repr(exc)[:300])

    def claimed(session: Session, copied: CopiedOrders | None) -> None:
        client = clients.get(session_key(session))
        if client is None:
            return
        if copied is None or not copied.complete or copied.writer == cluster.writer:
            # the copy does not hold the client's whole open set (a cluster
            # just formed, a gateway of an earlier version served it), or
            # this process wrote it last (its lease was lost, no other
            # gateway served the client since): the orders held here are
            # the client's, as its positions are
            flow.unpark_client(client)
        else:
            # served elsewhere, or by this gateway before a restart: what
            # the client was told is in the copy
            try:
                flow.adopt_orders(
                    client,
                    [
                        (data, copied.at.get(oid, 0.0), oid in copied.day_over)
                        for oid, data in copied.open.items()
                    ],
                )
            except Exception as exc:
                # orders this gateway cannot read (another version's): it
                # works its own rather than none, said loudly
                _log.error("client_orders_unreadable", client=client, error=repr(exc)[:300])
                flow.unpark_client(client)
        # from now on the copy holds the client whole, under this lease
        cluster.copy_all(session_key(session))

    cluster.client_state = client_state
    cluster.open_orders = open_orders
    cluster.on_taken = taken

    def serves(client: str) -> bool:
        key = keys.get(client)
        return key is not None and cluster.serving(key)

    cluster.on_claimed = claimed
    for session in sessions.values():
        # a client away while no gateway holds its session: its orders
        # are worked, its margin judged, by whichever gateway takes it
        cluster.attend(session)
    flow.reports.copy_order = copy_order
    # only the gateway serving a client calls its margin or stops it out
    flow.watch.serves = serves
    # a gateway stalled past its leases lets them go before it acts
    flow.routing.guard = cluster.fence_if_late


def place(config: Config) -> tuple[int, ...]:
    """Put the gateway on ``gateway.cpus`` (its threads follow); the CPUs
    its drop-copy process is to run on: ``gateway.drop_copy_cpus``, else the
    others when ``cpus`` is set, else none named.  ConfigError for a CPU
    this process may not use."""
    gw = config.gateway
    if not gw.cpus and not gw.drop_copy_cpus:
        return ()
    allowed = available_cpus()
    check_cpus(gw.drop_copy_cpus, "gateway.drop_copy_cpus", allowed)
    pin_to_cpus(gw.cpus, "gateway.cpus", allowed)
    if gw.cpus:
        _log.info("gateway_placed", cpus=sorted(set(gw.cpus)))
    return tuple(gw.drop_copy_cpus or other_cpus(gw.cpus, allowed))


def order_path_compiled() -> bool:
    """Whether the order path runs as compiled modules (built by setup.py)
    or from the Python sources (``FIXGW_PURE_PYTHON=1`` at install)."""
    source = getattr(sys.modules[OrderFlow.__module__], "__file__", None) or ""
    return not source.endswith(".py")


async def run(
    config: Config, config_path: str | Path | None = None, overrides: Overrides | None = None
) -> int:
    """Run until SIGTERM or SIGINT, reloading the config file on SIGHUP; log
    sessions out cleanly on the way down.  The ports are bound before
    anything else: a :class:`~gateway.net.server.ListenError` raised for a
    taken one leaves nothing behind."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # before anything is built: a signal during start-up must not take the
    # default action (SIGHUP would end the process, SIGINT interrupt the
    # reading of the journal)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hangups: list[str] = []
    loop.add_signal_handler(signal.SIGHUP, hangups.append, "SIGHUP")
    drop_copy_cpus = place(config)
    listeners = bind_listeners(config, overrides)
    try:
        gateway = Gateway(config, config_path, overrides, listeners=listeners)
        gateway.drop_copy_cpus = drop_copy_cpus
    except OSError as exc:
        # a file of the data directory it cannot open (another user's, a
        # folder where a file should be): one line naming it
        listeners.close()
        raise DataDirError(_cannot_open(exc, config.gateway.data_dir)) from None
    except BaseException:
        listeners.close()
        raise
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_soon, "SIGHUP")
    if hangups:
        # asked for while the gateway was built from the file read before
        gateway.reload_soon("SIGHUP")
    try:
        await gateway.start()
    except BaseException:
        # what did start is stopped, the sockets not yet served are closed
        try:
            await gateway.stop()
        finally:
            listeners.close()
        raise
    try:
        await stop.wait()
    finally:
        _log.info("gateway_stopping")
        written = await gateway.stop()
    return 0 if written else STOPPED_UNWRITTEN
