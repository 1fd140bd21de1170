"""Session ownership across gateways, by leases in NATS JetStream KV.

Several gateways (instances) serve one set of sessions; each session is
served by one instance at a time.  Two key-value buckets, replicated by
JetStream's Raft groups (``replicas`` copies):

- ``<prefix>_sessions``: a key per session (:func:`session_key`) holding its
  owner and lease length.  The owner renews it every ``renew_ms`` with a
  compare-and-set on the key's revision; it is deleted when the owner
  stops cleanly (a lease is kept while the gateway runs, its client
  connected or not).
- ``<prefix>_instances``: a key per instance name, renewed the same way:
  a second process refuses to start under a name whose key is live, and
  one that lost its name (it was taken after its key lapsed) takes and
  serves nothing more.  Leases also carry a number of the owning process's
  own: a restart under the same name waits for them as any taker does.

**Taking a session.**  A Logon at an instance first claims the session
(:meth:`Cluster.claim`): a key that is absent is created; a key this
instance owns is renewed; a key another instance owns is taken only once
its lease has lapsed, by an update conditional on the revision that was
seen unchanged for the whole lease.  Otherwise the Logon is turned away
with a Logout naming the owner.

**Why two owners never serve at once.**  A lease lapses by what the
*taker* observed: the revision it saw has stayed the latest for
``lease_ms`` of its own monotonic clock since it first saw it, which is
after the owner wrote it.  The owner lets no byte of a session leave once
``lease_ms - renew_ms`` have passed since it *sent* its last renewal that
succeeded (:meth:`Cluster.may_send`, checked as the bytes are written), and
drops the session's connection (without a Logout: its number would be
missing from the session's copy) when a timer every ``renew_ms / 4`` finds
it so: before the taker can possibly take it.  A renewal that lost a race
(the key's revision moved: another instance took it) is refused by the
bucket, and the owner drops the connection at once.  The one assumption
is that the two monotonic clocks run at the same rate within
``renew_ms / lease_ms`` (27% by default), not that they agree.

Nothing here is on the order path: a claim is one or two round trips at a
Logon, and renewals run on their own timer, a few small writes per
``renew_ms`` for every session held.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from config.redact import url_without_secrets
from config.schema import ClusterSettings, SessionSettings
from gateway.cluster.headroom import Headroom
from gateway.cluster.replica import CopiedOrders, ReplicatedStore, SessionLog, wait_for_leader
from gateway.fix.session import Session
from gateway.fix.store import SessionStore

_log = structlog.get_logger("gateway.cluster")

_GIVER: Final = b"\x00"
"""Between a session's key and the name of the gateway handing it over, in
the request to take it."""

_KEY_SAFE = re.compile(rb"[^A-Za-z0-9_-]")
_WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a write conditional on a revision that moved
(a key's delete reports it as a plain BadRequestError)."""
_STATUS_TIMEOUT = 0.3
"""Seconds an instance's figures are waited for (a dashboard's poll)."""

LostSession = Callable[[Session, str], object]
"""Called when this instance must stop serving a session: log its client
out with the given Text."""


class ClusterError(Exception):
    """The cluster cannot be joined (unreachable, or the name is taken)."""


def session_key(session: Session | SessionSettings) -> str:
    """A session's key in the sessions bucket: BeginString, SenderCompID and
    TargetCompID joined by dots, each byte a key may not hold written ``=HH``."""
    if isinstance(session, Session):
        parts = [session.begin_string, session.sender_comp_id, session.target_comp_id]
    else:
        parts = [
            p.encode() for p in (session.BeginString, session.SenderCompID, session.TargetCompID)
        ]

    def part(raw: bytes) -> str:
        return _KEY_SAFE.sub(lambda m: b"=%02X" % m.group()[0], raw).decode("ascii")

    return ".".join(part(p) for p in parts)


INSTANCE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What an instance name may be."""


def instance_name(settings: ClusterSettings, fix_port: int, remembered: str = "") -> str:
    """The configured name; else the one this gateway's data directory
    remembers from its last start in the cluster (``remembered``), so that
    a gateway started again on another host or port (a container made
    anew) is the same instance, with the same slices; else
    ``<host name>-<FIX port>``."""
    if settings.instance:
        return settings.instance
    return remembered or f"{_host()}-{fix_port}"


def id_namespace(settings: ClusterSettings, fix_port: int, remembered: str = "") -> str:
    """What starts the OrderIDs and ExecIDs of a gateway in a cluster, known
    before its port is bound: seven letters and digits made from its name
    (short, as LPs limit the ClOrdIDs of the child orders built on them),
    or, with neither a name configured nor remembered nor a port configured
    (``fix_port = 0``), from ``<host name>-p<process id>`` (unique among the
    gateways running at once).  The journal's run number that follows it
    keeps IDs unique across restarts."""
    known = settings.instance or remembered or fix_port
    name = instance_name(settings, fix_port, remembered) if known else ""
    name = name or f"{_host()}-p{os.getpid()}"
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:48] or "gateway"


class Lease(msgspec.Struct, frozen=True):
    """What a key holds: who owns it, for how long past each renewal."""

    owner: str
    lease_ms: int
    process: str = ""
    """A number of the owning process's own: a restart under the same name
    is another process, which waits for the lease as any other gateway."""
    fix: str = ""
    http: str = ""
    at_ms: int = 0  # the writer's wall clock, for people reading the bucket


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Lease).decode


@dataclass(slots=True)
class LeaseView:
    """A key as this instance last saw it, and since when (monotonic)."""

    lease: Lease
    revision: int
    seen: float

    def left(self, now: float) -> float:
        """Seconds before it lapses, as seen here (negative: lapsed)."""
        return self.seen + self.lease.lease_ms / 1000 - now


@dataclass(slots=True)
class _Held:
    session: Session
    revision: int
    renewed: float  # monotonic time the last renewal that succeeded was sent
    epoch: int  # the revision the lease was granted with: the copy's fence


@dataclass(slots=True)
class ClusterStats:
    grants: int = 0
    """Sessions taken (a free key, or this instance's own)."""
    takeovers: int = 0
    """Sessions taken from another instance whose lease had lapsed."""
    renewals: int = 0
    refusals: int = 0
    """Logons turned away: another instance serves the session."""
    losses: int = 0
    """Sessions this instance had to stop serving (lease lost or not renewed)."""
    releases: int = 0
    handovers: int = 0
    """Sessions handed to another gateway on an operator's word."""
    unattended: int = 0
    """Sessions taken with no Logon: no gateway had held them for
    ``take_unattended_ms`` (their client's orders are worked here)."""
    errors: int = 0
    """Bucket operations that failed (unreachable, timed out)."""
    reasons: dict[str, int] = field(default_factory=dict)


class Cluster:
    """This gateway's membership of a cluster: its name, its leases."""

    def __init__(
        self,
        settings: ClusterSettings,
        name: str = "",
        *,
        fix_address: str = "",
        http_address: str = "",
        on_lost: LostSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        grid: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """``name`` and the addresses may also be given to :meth:`start`
        (the FIX port may be known only then).  ``grid``: each instrument's
        tick size and lot size, which every running gateway of the cluster
        must share (checked at :meth:`start`)."""
        self.settings = settings
        self.grid: dict[str, tuple[str, str]] = dict(grid or {})
        self.name = name
        self.process = secrets.token_hex(6)
        self._name_lost = False
        self.lease_s = settings.lease_ms / 1000
        self.renew_s = settings.renew_ms / 1000
        self._fix = fix_address
        self._http = http_address
        self._on_lost = on_lost
        self._clock = clock
        self.stats = ClusterStats()
        self.sessions: dict[str, LeaseView] = {}
        """Every session key as last seen (the bucket's watcher and our writes)."""
        self.instances: dict[str, LeaseView] = {}
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._nc: NatsClient | None = None
        self._sessions_kv: KeyValue | None = None
        self._instances_kv: KeyValue | None = None
        self._instance_revision = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Any] = []
        self.stores: dict[str, ReplicatedStore] = {}
        """The session stores copied to the cluster, by session key."""
        self.log: SessionLog | None = None
        self.client_state: Callable[[str], bytes | None] | None = None
        """Set by the gateway before :meth:`start`: the state of a session's
        client now, by session key (see :attr:`SessionLog.client_state`)."""
        self._fenced_at = 0.0
        self._adopting: set[str] = set()
        # sessions granted here whose client's state is still to be taken
        # from the copy (once caught up; kept across a failed attempt)
        self.on_taken: Callable[[Session, bytes], None] | None = None
        """Set by the gateway: called when a session is taken here and its
        client's state, as the gateway that served it last left it, is to
        replace what this one holds (before the Logon is read)."""
        self.open_orders: Callable[[str], list[tuple[str, bytes, bool]]] | None = None
        """Set by the gateway before :meth:`start`: every open order of a
        session's client now, by session key (see :attr:`SessionLog.open_orders`)."""
        self.on_claimed: Callable[[Session, CopiedOrders | None], None] | None = None
        """Set by the gateway: called each time a session is granted here
        and its copy read (after :attr:`on_taken`), with the open orders of
        its client as the copy holds them (None when no record of it
        carried any state of the client), before the Logon is read."""
        self.headroom_kv: KeyValue | None = None
        """The bucket of the LPs' hard limits in slices (gateway.cluster.headroom)."""
        self.headroom: Headroom | None = None
        self._closing = False
        self._unreachable_logged = False
        self._attendable: dict[str, Session] = {}
        self._attending = False
        # per session just handed over: to whom, until when (monotonic)
        self._handed: dict[str, tuple[str, float]] = {}
        # per session held by no gateway: since when, as seen here
        self._unattended: dict[str, float] = {}

    # -- joining and leaving -----------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def held(self) -> list[str]:
        """Keys of the sessions this instance holds."""
        return list(self._held)

    def replicated(self, session_store: SessionStore, session: SessionSettings) -> ReplicatedStore:
        """``session_store`` wrapped so that its changes are copied to the
        cluster (:mod:`gateway.cluster.replica`) while the session is served
        here; the session must be built with the wrapper."""
        key = session_key(session)
        store = ReplicatedStore(session_store, key, _Deferred(self))
        self.stores[key] = store
        return store

    def copy_order(
        self, key: str, order_id: str, final: bool, data: bytes, day_over: bool = False
    ) -> None:
        """An order of ``key``'s client changed: it goes with the session's
        next record (:meth:`SessionLog.order`)."""
        if self.log is not None:
            self.log.order(key, order_id, final, data, day_over)

    @property
    def writer(self) -> str:
        """How this process signs the records it writes to the copy."""
        return f"{self.name}/{self.process}"

    def seal(self) -> asyncio.Future[None] | None:
        """The outbox's replica (see :class:`~gateway.net.transport.Replica`)."""
        return self.log.seal() if self.log is not None else None

    def may_send(self, session: Session) -> bool:
        """Whether ``session``'s bytes may leave now: this gateway holds its
        lease, renewed recently enough that no other gateway can have taken
        it (checked when the bytes are written, whatever the timers did),
        and no batch of its copy was given up since it was last copied
        whole (what its store holds here would be resent, and not by the
        next owner: copied again when its client logs on again)."""
        key = session_key(session)
        held = self._held.get(key)
        if held is None:
            return False
        if self.log is not None and not self.log.copied(key):
            return False
        return self._clock() - held.renewed <= self.lease_s - self.renew_s

    def epoch(self, key: str) -> int:
        """The revision of the lease this instance holds on ``key`` (0: none)."""
        held = self._held.get(key)
        return held.epoch if held is not None else 0

    async def start(self, name: str = "", fix_address: str = "", http_address: str = "") -> None:
        """Connect, make the buckets, take this instance's name, start
        watching and renewing.  :class:`ClusterError` when the cluster
        cannot be reached within ``connect_timeout_ms`` or the name is held
        by a live instance."""
        self.name = name or self.name
        self._fix = fix_address or self._fix
        self._http = http_address or self._http
        settings = self.settings
        servers = list(settings.servers)
        shown = ", ".join(url_without_secrets(url) for url in servers)
        try:
            async with asyncio.timeout(settings.connect_timeout_ms / 1000):
                self._nc = await nats.connect(
                    servers=servers,
                    name=f"fixgw {self.name}",
                    connect_timeout=max(1, settings.connect_timeout_ms // 1000),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    error_cb=self._nats_error,
                    disconnected_cb=self._nats_disconnected,
                    reconnected_cb=self._nats_reconnected,
                )
                js = self._nc.jetstream(timeout=max(0.5, self.lease_s / 2))
                prefix = settings.bucket_prefix
                self._sessions_kv = await js.create_key_value(
                    bucket=f"{prefix}_sessions", history=1, replicas=settings.replicas
                )
                self._instances_kv = await js.create_key_value(
                    bucket=f"{prefix}_instances", history=1, replicas=settings.replicas
                )
                self.headroom_kv = await js.create_key_value(
                    bucket=f"{prefix}_headroom", history=1, replicas=settings.replicas
                )
                for bucket in ("sessions", "instances", "headroom"):
                    await wait_for_leader(js, f"KV_{prefix}_{bucket}")
                await self._watch(self._sessions_kv, self.sessions)
                await self._watch(self._instances_kv, self.instances)
                self.log = SessionLog(
                    js,
                    prefix,
                    self.name,
                    settings.replicas,
                    self.epoch,
                    self.stores,
                    writer=self.writer,
                )
                self.log.client_state = self.client_state
                self.log.open_orders = self.open_orders
                await self.log.start()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await self._abandon_start()
            raise ClusterError(_refusal(exc, shown, settings)) from None
        # a bucket just made has no Raft leader for a moment: its first
        # writes find no responder, and are tried again until the deadline
        deadline = self._clock() + settings.connect_timeout_ms / 1000
        while True:
            try:
                await self._take_name()
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                if self._clock() < deadline:
                    await asyncio.sleep(0.1)
                    continue
                await self._abandon_start()
                raise ClusterError(
                    f"the cluster at {shown} did not take this gateway's name"
                    f" within {settings.connect_timeout_ms} ms: {_why(exc)}"
                ) from None
            except BaseException:
                await self._abandon_start()
                raise
        assert self._nc is not None
        try:
            await self._nc.subscribe(
                f"{settings.bucket_prefix}.reserve.{self.name}", cb=self._on_reserve
            )
            await self._nc.subscribe(
                f"{settings.bucket_prefix}.status.{self.name}", cb=self._on_status
            )
            await self._nc.subscribe(f"{settings.bucket_prefix}.take.{self.name}", cb=self._on_take)
            # answered before this gateway asks the others: of two starting
            # at once, the later one to ask finds the other
            await self._nc.subscribe(f"{settings.bucket_prefix}.grid.{self.name}", cb=self._on_grid)
        except BaseException as exc:
            await self._abandon_start()
            if isinstance(exc, (OSError, nats.errors.Error)):
                raise ClusterError(
                    f"the cluster at {shown} refused this gateway's subscriptions: {_why(exc)}"
                ) from None
            raise
        differing = await self._grids_differing()
        if differing:
            # the name is let go at once: a start on the mended config
            # need not wait for it to lapse
            await self._free_name()
            await self._abandon_start()
            raise ClusterError(
                f"this gateway's instruments are not on the grid of the running gateway"
                f" {differing[0]}: {'; '.join(differing[1:])}; the gateways of a cluster"
                f" share one tick and lot size per instrument (docs/cluster.md)"
            )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._renew_forever()))
        self._tasks.append(loop.create_task(self._fence_forever()))
        _log.info(
            "cluster_joined",
            instance=self.name,
            servers=shown,
            lease_ms=settings.lease_ms,
            instances=sorted(self.instances),
        )

    async def _take_name(self) -> None:
        """Hold this instance's key: create it, or take it once a previous
        holder's lease has lapsed (a restart after a crash waits one
        lease); a key renewed meanwhile belongs to a live process."""
        kv = self._instances_kv
        assert kv is not None
        while True:
            try:
                self._instance_revision = await kv.create(self.name, self._value())
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(self.name)
            except nats.js.errors.KeyNotFoundError:
                continue  # deleted meanwhile: create again
            holder = _decode(entry.value or b"")
            _log.info("cluster_name_waiting", instance=self.name, seconds=self.lease_s)
            await asyncio.sleep(holder.lease_ms / 1000 + 0.01)
            try:
                again = await kv.get(self.name)
            except nats.js.errors.KeyNotFoundError:
                continue
            if again.revision != entry.revision:
                raise ClusterError(
                    f"the instance name {self.name!r} is in use by a live gateway"
                    f" (FIX at {holder.fix or '?'}); give this one another [cluster] instance"
                )
            try:
                self._instance_revision = await kv.update(
                    self.name, self._value(), last=entry.revision
                )
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # it moved: look again

    async def stop(self) -> None:
        """Let every session go and leave (the name is freed at once).
        Every copy sealed so far is acknowledged first, the leases still
        renewed meanwhile: whoever takes a session next has all of it.  A
        lease whose copy is not acknowledged in time is not released: it
        lapses, and the next owner reads what was stored."""
        self._closing = True
        drained = True
        if self.log is not None:
            # what the last writes recorded goes before the leases do
            self.log.seal()
            drained = await self.log.drain(self.lease_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if drained:
            await asyncio.gather(*(self._release(key) for key in list(self._held)))
        else:
            _log.warning("cluster_leaving_with_copies_unacknowledged", sessions=len(self._held))
            self._held.clear()
        if self.log is not None:
            await self.log.stop()
            self.log = None  # what is written from now on is this instance's alone
        await self._free_name()
        await self._close_connection()
        _log.info("cluster_left", instance=self.name)

    async def _free_name(self) -> None:
        """Delete this instance's key, if still as written here."""
        kv = self._instances_kv
        if kv is not None and self._instance_revision:
            with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                async with asyncio.timeout(self.lease_s):
                    await kv.delete(self.name, last=self._instance_revision)

    async def _abandon_start(self) -> None:
        if self.log is not None:
            await self.log.stop()
            self.log = None
        await self._close_connection()

    async def _close_connection(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        self._watchers.clear()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    # -- watching ----------------------------------------------------------------

    async def _watch(self, kv: KeyValue, views: dict[str, LeaseView]) -> None:
        watcher = await kv.watchall()
        self._watchers.append(watcher)
        self._tasks.append(asyncio.get_running_loop().create_task(self._follow(watcher, views)))

    async def _follow(self, watcher: Any, views: dict[str, LeaseView]) -> None:
        async for entry in watcher:
            try:
                self._seen(entry, views)
            except Exception:
                _log.exception("cluster_watch_error")

    def _seen(self, entry: Any, views: dict[str, LeaseView]) -> None:
        if entry is None:
            return  # the end of what was there when the watch began
        key, revision = entry.key, entry.revision or 0
        if entry.operation in ("DEL", "PURGE"):
            seen = views.get(key)
            if seen is not None and seen.revision < revision:
                del views[key]
            return
        seen = views.get(key)
        if seen is not None and seen.revision >= revision:
            return
        try:
            lease = _decode(entry.value or b"")
        except msgspec.DecodeError:
            return  # not ours to read
        views[key] = LeaseView(lease, revision, self._clock())

    # -- claiming ----------------------------------------------------------------

    def _value(self) -> bytes:
        return _encode(
            Lease(
                owner=self.name,
                lease_ms=self.settings.lease_ms,
                process=self.process,
                fix=self._fix,
                http=self._http,
                at_ms=int(time.time() * 1000),
            )
        )

    async def claim(self, session: Session) -> tuple[str, int | None] | None:
        """Make ``session`` this instance's; None when it is, else the Text
        of the Logout that turns its Logon away and the MsgSeqNum the
        session's owner set aside for it (None: closed without a Logout).

        The peer counts a Logout as a message received whatever its
        number, so a Logout sent here must take a number from the owner's
        sequence, or the owner's next message would be "too low" for the
        peer.  The owner is asked for one (:meth:`_on_reserve`); when it
        does not answer (it is gone, its lease not lapsed yet), the
        connection is closed without a Logout."""
        key = session_key(session)
        async with self._lock(key):
            to = self.handed_to(key)
            if to:
                refusal: str | None = _handed_to(session, to, self.instances.get(to))
            else:
                refusal = await self._claim(session, key)
            if refusal is None:
                return None
            owner = self._owner_of(key)
            seq = await self._reserve(owner, key) if owner and owner != self.name else None
        self.stats.refusals += 1
        _log.info("session_claim_refused", session=session.session_id, reason=refusal)
        return refusal, seq

    def _owner_of(self, key: str) -> str:
        view = self.sessions.get(key)
        return view.lease.owner if view is not None else ""

    async def _reserve(self, owner: str, key: str) -> int | None:
        """A MsgSeqNum set aside by ``owner`` for a Logout sent here."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return None
        subject = f"{self.settings.bucket_prefix}.reserve.{owner}"
        try:
            reply = await nc.request(subject, key.encode(), timeout=min(0.5, self.lease_s / 2))
        except (TimeoutError, OSError, nats.errors.Error):
            return None
        return int(reply.data) if reply.data.isdigit() else None

    async def _on_reserve(self, msg: Any) -> None:
        """Another instance turns a Logon for one of our sessions away: set
        a MsgSeqNum aside for its Logout (skipped here: a resend fills it
        with a gap fill), copied before it is given.  None while the
        session's copy is still being read here: the store is not yet at
        the client's numbers."""
        key = msg.data.decode("ascii", "replace")
        answer = b""
        store = self.stores.get(key)
        log = self.log
        held = self._held.get(key)
        if self.serving(key) and store is not None and log is not None and held is not None:
            seq = store.next_sender_seq
            store.set_next_sender_seq(seq + 1)
            store.flush()
            sealed = log.seal()
            try:
                if sealed is not None:
                    await asyncio.wait_for(sealed, self.lease_s)
                # given only if copied while the lease was still this
                # gateway's and no other could have taken it yet: a gateway
                # that took it meanwhile reads no record of ours stored
                # after, and would send this number itself
                if self._held.get(key) is held and self.may_send(held.session):
                    answer = b"%d" % seq
            except (TimeoutError, ConnectionError):
                answer = b""
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(answer)

    async def _claim(
        self, session: Session, key: str, given_by: tuple[str, ...] | None = None
    ) -> str | None:
        """Take the session's lease (a compare-and-set on its key); None, or
        why not.  ``given_by``: the name, process and lease revision of the
        gateway handing the session here: that lease, given up, is taken
        over as a lapsed one would be (a later one of the same gateway is
        not)."""
        if self._closing:
            return "this gateway is shutting down"
        if self._name_lost:
            return "this gateway lost its place in its cluster"
        kv = self._sessions_kv
        if kv is None or not self.connected:
            return "this gateway cannot reach its cluster to take the session"
        value = self._value()
        try:
            async with asyncio.timeout(self.lease_s):
                sent = self._clock()
                try:
                    entry = await kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    entry = None
                if entry is None:
                    try:
                        revision = await kv.create(key, value)
                    except nats.js.errors.KeyWrongLastSequenceError:
                        return await self._served_elsewhere(session, key)
                    self._granted(session, key, revision, sent, takeover=False)
                    return await self._caught_up(session, key)
                lease = _decode(entry.value or b"")
                revision = entry.revision or 0
                ours = lease.owner == self.name and lease.process == self.process
                given_up = given_by is not None and given_by == (
                    lease.owner,
                    lease.process,
                    str(revision),
                )
                if not ours and not given_up:
                    seen = self.sessions.get(key)
                    if seen is None or seen.revision != revision:
                        # not seen before (or the watcher is behind): from now
                        seen = self.sessions[key] = LeaseView(lease, revision, self._clock())
                    if seen.left(self._clock()) > 0:
                        return _served_by(session, seen.lease)
                try:
                    revision = await kv.update(key, value, last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    if ours:
                        return await self._claim(session, key)  # raced our own renewal
                    return await self._served_elsewhere(session, key)
                self._granted(session, key, revision, sent, takeover=not ours)
                if not ours:
                    _log.info(
                        "session_taken_over",
                        session=session.session_id,
                        previous_owner=lease.owner,
                    )
                return await self._caught_up(session, key)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._failed("claim", exc)
            return "this gateway cannot reach its cluster to take the session"

    async def _caught_up(self, session: Session, key: str) -> str | None:
        """Before the Logon is read: every copy of the session's store
        written so far (by whoever served it) is applied here."""
        log = self.log
        if log is None:
            return None
        held = self._held.get(key)
        if await log.caught_up(key, self.lease_s):
            if held is None or self._held.get(key) is not held:
                # lost while the copy was read (not renewed in time, or
                # taken): the Logon is not this gateway's to read
                return "this gateway lost the session's lease while reading its copy; log on again"
            if key in self._adopting:
                # once per lease granted (a Logon at the owner changes
                # nothing): the client as the copy held it when the session
                # was taken here, in force before the Logon is read; the
                # copy is what the client was told (the store ends as it
                # does), unless this process wrote it last (what it holds
                # is then its own, and newer)
                self._adopting.discard(key)
                copied = log.taken_state(key)
                if copied is not None and copied.writer != log.writer and self.on_taken:
                    self.on_taken(session, copied.data)
                if self.on_claimed is not None:
                    self.on_claimed(session, log.orders.get(key))
            if not await self._recopied(log, key):
                # the lease stays: the next Logon here tries again
                return "this gateway could not copy the session's state to its cluster in time"
            if self._held.get(key) is not held:
                return "this gateway lost the session's lease while copying its state; log on again"
            return None
        # the lease stays: the next Logon here tries again
        return "this gateway could not read the session's state from its cluster in time"

    async def _recopied(self, log: SessionLog, key: str) -> bool:
        """Before the session is served here again: what its store holds
        that its copy lacks (a batch given up) is copied again, and
        acknowledged (see :meth:`SessionLog.recopy`); False when it could
        not be within half a lease (a claim waits a lease at most, all told)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_s / 2
        while (copying := log.recopy(key)) is not None:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(copying), left)
            except (TimeoutError, ConnectionError) as exc:
                _log.warning("session_copy_not_recopied", key=key, error=repr(exc))
                return False
        return True

    def _granted(
        self, session: Session, key: str, revision: int, sent: float, *, takeover: bool
    ) -> None:
        held = self._held.get(key)
        if held is not None:
            # renewed by a Logon here: the same lease, the same epoch
            held.revision, held.renewed = revision, sent
            self.sessions[key] = LeaseView(_decode(self._value()), revision, sent)
            return
        if self.log is not None:
            self.log.taking(key)
        self._adopting.add(key)
        self._held[key] = _Held(session, revision, sent, revision)
        self.sessions[key] = LeaseView(_decode(self._value()), revision, sent)
        if takeover:
            self.stats.takeovers += 1
        else:
            self.stats.grants += 1

    async def _served_elsewhere(self, session: Session, key: str) -> str:
        """The key moved under a claim: name whoever has it now."""
        kv = self._sessions_kv
        assert kv is not None
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return "another gateway took the session at the same moment; log on again"
        return _served_by(session, _decode(entry.value or b""))

    def disconnected(self, session: Session) -> None:
        """A connection that held ``session`` has closed.  The lease stays:
        what the session's orders still send it (fills after the client
        left) is stored and copied here, and its client logs on here again
        (or, once this instance is gone, wherever it is taken over)."""

    async def _release(self, key: str) -> None:
        held = self._held.pop(key, None)
        kv = self._sessions_kv
        if held is None or kv is None:
            return
        try:
            async with asyncio.timeout(self.lease_s):
                revision = held.revision
                for _ in range(3):
                    try:
                        await kv.delete(key, last=revision)
                        break
                    except nats.js.errors.BadRequestError as exc:
                        # KeyWrongLastSequenceError, or the same as a delete
                        # reports it: a renewal of ours written meanwhile, or
                        # someone took it
                        if exc.err_code != _WRONG_LAST_SEQUENCE and not isinstance(
                            exc, nats.js.errors.KeyWrongLastSequenceError
                        ):
                            raise
                        own = await self._own_revision(kv, key)
                        if not own:
                            return  # someone took it: nothing of ours to delete
                        revision = own
                else:
                    return
            self.stats.releases += 1
            _log.info("session_released", session=held.session.session_id)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._failed("release", exc)  # it lapses by itself

    # -- handing a session over ---------------------------------------------------

    def session_of(self, name: str) -> Session | None:
        """A session this gateway may serve, by its key or its client's CompID."""
        found = self._attendable.get(name)
        if found is not None:
            return found
        for session in self._attendable.values():
            if session.settings.TargetCompID == name:
                return session
        return None

    async def hand_over(self, session: Session, to: str) -> str | None:
        """Hand ``session``, served here, to the live gateway ``to`` (after
        a failover, to give a gateway back its clients): what was written
        for it is copied, its connection dropped (the client logs on again
        and is told where it is served), its client's orders parked here,
        its lease let go, and ``to`` asked to take it at once, with the
        orders, as an unattended session is taken.  None when ``to`` took
        it, else why not (the session is then free: whichever gateway the
        client logs on to, or the first to find it unattended, takes it)."""
        key = session_key(session)
        held = self._held.get(key)
        if held is None:
            return f"session {session.session_id} is not served by this gateway"
        if to == self.name:
            return f"session {session.session_id} is served by {to} already"
        peer = self.instances.get(to)
        now = self._clock()
        if peer is None or peer.left(now) <= 0:
            others = sorted(
                name
                for name, view in self.instances.items()
                if name != self.name and view.left(now) > 0
            )
            live = ", ".join(others) if others else "none"
            return f"gateway {to} is not a live member of the cluster (the others live: {live})"
        log = self.log
        nc = self._nc
        if log is None or nc is None or not self.connected:
            return "this gateway cannot reach its cluster"
        subject = f"{self.settings.bucket_prefix}.take.{to}"
        try:
            # ready to take it (started, serving that session) before
            # anything is changed here
            ready = await nc.request(subject, b"?" + key.encode(), timeout=self.lease_s)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            return f"gateway {to} did not answer ({_why(exc)}); nothing changed"
        if ready.data:
            return f"gateway {to} cannot take it: {ready.data.decode('utf-8', 'replace')}"
        async with self._lock(key):
            # everything written for it so far is in the copy first
            log.seal()
            if not await log.drain(self.lease_s):
                return "the session's copy could not be written in time; nothing changed"
            if self._held.get(key) is not held:
                return f"session {session.session_id} is not served by this gateway"
            self._adopting.discard(key)
            log.taken_state(key)
            # a Logon here meanwhile is told where the session goes
            self._handed[key] = (to, self._clock() + self.lease_s)
            if self._on_lost is not None:
                self._on_lost(session, f"the session was handed over to gateway {to}")
            # and what was written while the first copy was waited for
            log.seal()
            if not await log.drain(self.lease_s):
                # not let go: its lease lapses, as at a stop whose copy failed
                self._held.pop(key, None)
                return (
                    "the session's last writes could not be copied in time: it was let go"
                    " without its lease, which lapses"
                )
            await self._release(key)
        _log.warning("session_handed_over", session=session.session_id, to=to)
        try:
            # named as the giver: should the lease let go here not have been
            # deleted in the cluster in time, ``to`` takes it over that lease
            # (this process and the revision of the lease let go: that
            # lease, and no later one, is what the taker may take over)
            given = _GIVER.join(
                (key.encode(), self.name.encode(), self.process.encode(), b"%d" % held.revision)
            )
            reply = await nc.request(subject, given, timeout=3 * self.lease_s)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._handed.pop(key, None)
            return f"gateway {to} did not answer ({_why(exc)}) once the session was let go"
        if reply.data:
            self._handed.pop(key, None)
            return f"gateway {to} did not take it: {reply.data.decode('utf-8', 'replace')}"
        self.stats.handovers += 1
        return None

    def _lock(self, key: str) -> asyncio.Lock:
        """The lock a session's claim, hand-over and take are done under."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def handed_to(self, key: str) -> str:
        """The gateway a session was just handed to ("" when none): a Logon
        for it here is turned away naming that gateway for a moment."""
        handed = self._handed.get(key)
        if handed is None:
            return ""
        to, until = handed
        if self._clock() > until:
            del self._handed[key]
            return ""
        return to

    async def _on_take(self, msg: Any) -> None:
        """Another gateway hands a session to this one: asked first whether
        it can ("?" before the key: started, and serving that session), then
        to take it, which it does as an unattended session is taken."""
        data = msg.data.decode("ascii", "replace")
        asking = data.startswith("?")
        key, *given = data.removeprefix("?").split(_GIVER.decode())
        giver = tuple(given) if len(given) == 3 else None
        session = self._attendable.get(key)
        if session is None:
            answer = "it does not serve that session"
        elif not self._attending:
            answer = "it is starting"
        elif asking:
            answer = ""
        else:
            async with self._lock(key):
                held = key in self._held
                refusal = None if held else await self._claim(session, key, giver)
            answer = refusal or ""
            if refusal is None:
                _log.warning("session_taken_on_handover", session=session.session_id)
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(answer.encode())

    # -- sessions no gateway holds -------------------------------------------------

    def attend(self, session: Session) -> None:
        """``session`` may be taken here without a Logon when no gateway has
        held it for ``take_unattended_ms`` and the copy holds its client's
        state or orders (:meth:`attend_once`, every ``renew_ms`` once
        :meth:`start_attending` was called)."""
        self._attendable[session_key(session)] = session

    def start_attending(self) -> None:
        """Take the sessions no gateway holds from now on (called once what
        serves them is ready: the gateway's order flow started)."""
        if self.settings.take_unattended_ms and not self._attending:
            self._attending = True
            loop = asyncio.get_running_loop()
            self._tasks.append(loop.create_task(self._attend_forever()))

    async def _attend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.attend_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("cluster_attend_error")

    async def attend_once(self) -> None:
        """Take every session served before that no gateway has held for
        ``take_unattended_ms`` as seen here (its owner died and no Logon
        took it elsewhere, or its owner stopped and let it go): its client's
        orders are to be worked, its margin judged, while it is away.  The
        claim is the one a Logon makes (a compare-and-set on the key: of
        several gateways trying, one takes it), without a connection."""
        after = self.settings.take_unattended_ms / 1000
        log = self.log
        if not after or log is None or self._closing or self._name_lost or not self.connected:
            return
        await self._catch_up_taken()
        now = self._clock()
        due = []
        for key, session in self._attendable.items():
            view = self.sessions.get(key)
            lock = self._locks.get(key)
            if (
                key in self._held
                or (view is not None and view.left(now) > 0)
                or (lock is not None and lock.locked())
                or self.handed_to(key)
                or (key not in log.clients and key not in log.orders)
            ):
                # held (here, elsewhere), being claimed, or nothing to attend
                self._unattended.pop(key, None)
                continue
            since = self._unattended.setdefault(key, now)
            if now - since >= after:
                due.append((key, session, since))
        for key, session, since in due:
            async with self._lock(key):
                if key in self._held:
                    continue
                refusal = await self._claim(session, key)
            self._unattended.pop(key, None)
            if refusal is None:
                self.stats.unattended += 1
                copied = log.orders.get(key)
                _log.warning(
                    "session_taken_unattended",
                    session=session.session_id,
                    unattended_s=round(now - since, 3),
                    open_orders=len(copied.open) if copied is not None else 0,
                )
            else:
                _log.info(
                    "session_unattended_not_taken", session=session.session_id, reason=refusal
                )

    async def _catch_up_taken(self) -> None:
        """Sessions taken here (by a Logon or unattended) whose copy could
        not be read in time: tried again, so that one taken with no client
        to log on again is not held with nothing worked."""
        for key, session in list(self._attendable.items()):
            lock = self._locks.get(key)
            if key not in self._adopting or key not in self._held or lock is None:
                continue
            if lock.locked():
                continue
            async with lock:
                if key in self._adopting and key in self._held:
                    refusal = await self._caught_up(session, key)
                    _log.info(
                        "session_copy_read_again",
                        session=session.session_id,
                        caught_up=refusal is None,
                    )

    # -- renewing ----------------------------------------------------------------

    async def _renew_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            # on fixed ticks: a slow round does not push the next one back
            due += self.renew_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due, loop.time() - self.renew_s)
            try:
                await self.renew_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("cluster_renewal_error")

    async def renew_once(self) -> None:
        """Renew this instance's name and every lease held."""
        await asyncio.gather(
            self._renew_name(),
            *(self._renew(key, held) for key, held in list(self._held.items())),
        )

    async def _fence_forever(self) -> None:
        # often enough that a session is let go well inside the margin
        # (renew_ms) between its owner's deadline and any taker's
        while True:
            await asyncio.sleep(self.renew_s / 4)
            try:
                self.fence()
            except Exception:
                _log.exception("cluster_fence_error")

    def fence_if_late(self) -> None:
        """:meth:`fence`, if the last one is older than its own period (the
        loop was held: a stall, SIGSTOP): called before the order flow acts
        on anything, so that what woke up first is not worked for a
        session that lapsed meanwhile.  One clock read otherwise."""
        if self._clock() - self._fenced_at > self.renew_s / 4:
            self.fence()

    def serving(self, key: str) -> bool:
        """Whether this gateway serves ``key`` now: its lease is held and
        the client's state was taken from the copy."""
        return key in self._held and key not in self._adopting

    def copy_all(self, key: str) -> None:
        """The next record of ``key`` carries its client's whole state and
        every open order (a session just claimed: the copy is complete
        under this lease from then on)."""
        if self.log is not None:
            self.log.publish_all(key)

    def fence(self) -> None:
        """Stop serving every session whose last successful renewal was
        sent more than ``lease_ms - renew_ms`` ago."""
        now = self._clock()
        self._fenced_at = now
        limit = self.lease_s - self.renew_s
        for key, held in list(self._held.items()):
            if now - held.renewed > limit:
                self._lose(key, "this gateway lost its cluster and its lease on the session lapsed")

    async def _renew_name(self) -> None:
        kv = self._instances_kv
        if kv is None:
            return
        try:
            async with asyncio.timeout(self.renew_s):
                self._instance_revision = await kv.update(
                    self.name, self._value(), last=self._instance_revision
                )
            self._reachable()
        except nats.js.errors.KeyWrongLastSequenceError:
            own = await self._own_revision(kv, self.name)
            if own is None:
                self._lose_name()
            elif own > 0:
                # an earlier renewal was written after all (its answer came
                # too late): the name is still this process's
                self._instance_revision = own
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._failed("renew", exc)

    def _lose_name(self) -> None:
        """Another process took this name (ours had lapsed): this one
        serves nothing and takes nothing from now on."""
        if not self._name_lost:
            _log.error(
                "cluster_name_lost",
                instance=self.name,
                hint="another gateway runs under this name: restart this one under its own",
            )
        self._name_lost = True
        for key in list(self._held):
            self._lose(key, "this gateway lost its place in the cluster")

    async def _renew(self, key: str, held: _Held) -> None:
        kv = self._sessions_kv
        if kv is None:
            return
        sent = self._clock()
        try:
            async with asyncio.timeout(self.renew_s):
                revision = await kv.update(key, self._value(), last=held.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            own = await self._own_revision(kv, key)
            if self._held.get(key) is not held:
                return
            if own is None:
                self._lose(key, "another gateway took the session over")
            elif own > 0:
                # an earlier renewal was written after all: its time is not
                # known here, so the lease still runs from the last one known
                held.revision = own
            return
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._failed("renew", exc)
            return
        if self._held.get(key) is held:
            held.revision = revision
            held.renewed = sent
            self.sessions[key] = LeaseView(_decode(self._value()), revision, sent)
            self.stats.renewals += 1
            self._reachable()

    async def _own_revision(self, kv: KeyValue, key: str) -> int | None:
        """The key's revision if this instance still owns it (a renewal
        that timed out here may have been written all the same), None when
        it does not, 0 when that could not be read."""
        try:
            async with asyncio.timeout(self.renew_s):
                entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self._failed("renew", exc)
            return 0
        lease = _decode(entry.value or b"")
        if lease.owner != self.name or lease.process != self.process:
            return None  # another gateway's, or a process before this one under this name
        return entry.revision or 0

    def _lose(self, key: str, text: str) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        self._adopting.discard(key)
        if self.log is not None:
            self.log.taken_state(key)  # no longer being taken here
        self.stats.losses += 1
        _log.warning("session_lease_lost", session=held.session.session_id, reason=text)
        if self._on_lost is not None:
            self._on_lost(held.session, text)

    # -- reporting ---------------------------------------------------------------

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        self.stats.reasons[what] = self.stats.reasons.get(what, 0) + 1
        if not self._unreachable_logged:
            self._unreachable_logged = True
            _log.warning("cluster_unreachable", operation=what, error=_why(exc))

    def _reachable(self) -> None:
        if self._unreachable_logged:
            self._unreachable_logged = False
            _log.info("cluster_reachable_again")

    async def _nats_error(self, exc: Exception) -> None:
        _log.debug("nats_error", error=_why(exc))

    async def _nats_disconnected(self) -> None:
        if not self._closing:
            _log.warning("cluster_disconnected")

    async def _nats_reconnected(self) -> None:
        _log.info("cluster_reconnected")

    async def _on_status(self, msg: Any) -> None:
        """Another instance asks for this one's own figures (its dashboard
        shows every gateway's)."""
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(msgspec.json.encode(self.figures()))

    async def _on_grid(self, msg: Any) -> None:
        """Another instance, starting, asks for this one's grid."""
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.respond(_encode_grid(self.grid))

    async def _grids_differing(self) -> list[str]:
        """The first running instance (one that answers) whose grid is not
        this one's, then each instrument that differs, said; empty when
        every instance that answers shares it.  An instance of an earlier
        version (no answer) is not checked."""
        nc, kv = self._nc, self._instances_kv
        if nc is None or kv is None:
            return []
        try:
            names = sorted(await kv.keys())
        except nats.js.errors.NoKeysError:
            return []
        except (TimeoutError, OSError, nats.errors.Error):
            return []  # leased as before: the start goes on, as with an old peer
        prefix = self.settings.bucket_prefix

        # a running gateway's loop may be busy for a moment; all are asked
        # at once, within one wait (this name is not renewed until the
        # start ends)
        wait = min(self.lease_s / 2, 1.0)
        unanswered: list[str] = []

        async def ask(name: str) -> dict[str, tuple[str, str]] | None:
            try:
                reply = await nc.request(f"{prefix}.grid.{name}", b"", timeout=wait)
                return _decode_grid(reply.data)
            except nats.errors.NoRespondersError:
                return None  # not running, or of a version that is not asked this
            except (TimeoutError, OSError, nats.errors.Error, msgspec.DecodeError):
                unanswered.append(name)
                return None

        others = [name for name in names if name != self.name]
        for name, theirs in zip(others, await asyncio.gather(*map(ask, others)), strict=True):
            said = [] if theirs is None else _grid_differences(self.grid, theirs)
            if said:
                return [name, *said]
        if unanswered:
            _log.warning(
                "cluster_grid_not_checked",
                instances=sorted(unanswered),
                hint="these gateways did not say their instruments in time: check that"
                " their tick and lot sizes are this gateway's",
            )
        return []

    def is_live(self, name: str) -> bool:
        """Whether an instance of that name runs now: its key, as last
        seen here, has not lapsed."""
        view = self.instances.get(name)
        return view is not None and view.left(self._clock()) > 0

    async def peers(self) -> list[dict[str, object]]:
        """Every other live instance's own figures, asked over the cluster
        at once (``error`` for one that does not answer in time)."""
        nc = self._nc
        now = self._clock()
        names = [
            name
            for name, view in sorted(self.instances.items())
            if name != self.name and view.left(now) > 0
        ]
        if nc is None or not nc.is_connected or not names:
            return [{"instance": name, "error": "cluster unreachable"} for name in names]
        prefix = self.settings.bucket_prefix

        async def ask(name: str) -> dict[str, object]:
            try:
                reply = await nc.request(f"{prefix}.status.{name}", b"", timeout=_STATUS_TIMEOUT)
                answer = msgspec.json.decode(reply.data, type=dict[str, object])
                answer["instance"] = name  # whatever it said: the row is that gateway's
                return answer
            except (TimeoutError, OSError, nats.errors.Error, msgspec.DecodeError) as exc:
                return {"instance": name, "error": _why(exc)}

        return list(await asyncio.gather(*(ask(name) for name in names)))

    def figures(self) -> dict[str, object]:
        """This instance's own figures: its connection, its leases, its
        copy, the sessions it serves."""
        copy = self.log.stats if self.log is not None else None
        nc = self._nc
        server = nc.connected_url if nc is not None and nc.is_connected else None
        return {
            "instance": self.name,
            "connected": self.connected,
            # as configured, but never its credentials (the read token sees this)
            "server": (
                url_without_secrets(f"nats://{server.netloc}") if server is not None else None
            ),
            "serving": len(self._held),
            "leases": {
                "granted": self.stats.grants,
                "takeovers": self.stats.takeovers,
                "renewed": self.stats.renewals,
                "refused": self.stats.refusals,
                "lost": self.stats.losses,
                "released": self.stats.releases,
                "taken_unattended": self.stats.unattended,
                "handed_over": self.stats.handovers,
            },
            "copy": None
            if copy is None
            else {
                "batches": copy.batches,
                "atomic_batches": copy.atomic,
                "records": copy.records,
                "bytes": copy.bytes,
                "failures": copy.failures,
                "retries": copy.retries,
                "lag_ms": round(copy.lag * 1000, 3),
                "applied": copy.applied,
                "fenced": copy.fenced,
                "unreadable": copy.unreadable,
                "not_copied": copy.unowned,
                "recopied": copy.recopies,
            },
        }

    def snapshot(self) -> dict[str, object]:
        """What ``GET /admin/cluster`` shows (with :meth:`peers`, the other
        instances' own figures)."""
        now = self._clock()
        return {
            **self.figures(),
            "lease_ms": self.settings.lease_ms,
            "instances": [
                {
                    "name": name,
                    "fix": view.lease.fix,
                    "http": view.lease.http,
                    "live": view.left(now) > 0,
                    "seen_ms_ago": round((now - view.seen) * 1000),
                    "this": name == self.name,
                }
                for name, view in sorted(self.instances.items())
            ],
            "headroom": self.headroom.snapshot() if self.headroom is not None else None,
            "sessions": [
                {
                    "key": key,
                    "owner": view.lease.owner,
                    "revision": view.revision,
                    "lease_left_ms": round(view.left(now) * 1000),
                    "held_here": key in self._held,
                }
                for key, view in sorted(self.sessions.items())
            ],
        }


_encode_grid = msgspec.json.Encoder().encode
_decode_grid = msgspec.json.Decoder(dict[str, tuple[str, str]]).decode

_GRID_SHOWN: Final = 5
"""Instruments named in the refusal of a start on another grid."""


def _grid_differences(
    mine: Mapping[str, tuple[str, str]], theirs: Mapping[str, tuple[str, str]]
) -> list[str]:
    """Each instrument whose tick or lot size differs between two grids
    (compared as numbers), or that one configures and the other does not,
    said; at most :data:`_GRID_SHOWN`, then how many more."""
    said: list[str] = []
    for symbol in sorted(set(mine) | set(theirs)):
        here, there = mine.get(symbol), theirs.get(symbol)
        if here is None or there is None:
            said.append(f"{symbol} configured {'there' if here is None else 'here'} only")
            continue
        for what, a, b in (("tick_size", here[0], there[0]), ("lot_size", here[1], there[1])):
            if Decimal(a) != Decimal(b):
                said.append(f"{symbol} {what} {a} here, {b} there")
    if len(said) > _GRID_SHOWN:
        said[_GRID_SHOWN:] = [f"{len(said) - _GRID_SHOWN} more"]
    return said


def _served_by(session: Session, lease: Lease) -> str:
    where = f" (FIX at {lease.fix})" if lease.fix else ""
    return (
        f"session {session.session_id} is served by gateway {lease.owner}{where};"
        " log on there, or here once its lease lapses"
    )


def _handed_to(session: Session, to: str, view: LeaseView | None) -> str:
    where = f" (FIX at {view.lease.fix})" if view is not None and view.lease.fix else ""
    return f"session {session.session_id} was just handed over to gateway {to}{where}; log on there"


_STREAM_IN_USE: Final = 10058
"""JetStream's error code for a stream made again with another configuration."""

_TOO_FEW_NODES: Final = frozenset({10005, 10074})
"""JetStream's error codes for a stream of more replicas than the cluster can
place ("no suitable peers for placement"; "replicas > 1 not supported in
non-clustered mode")."""


def _refusal(exc: BaseException, shown: str, settings: ClusterSettings) -> str:
    """Why the start could not join the cluster, naming what to change
    when the cluster answered."""
    if isinstance(exc, nats.js.errors.BadRequestError) and exc.err_code == _STREAM_IN_USE:
        return (
            f"the cluster at {shown} already holds buckets of prefix"
            f" '{settings.bucket_prefix}' made with another configuration ({exc.description});"
            f" the gateways sharing a prefix must have the same [cluster] replicas (here"
            f" {settings.replicas}): set it as on the others, or use another bucket_prefix"
        )
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code in _TOO_FEW_NODES:
        return (
            f"the NATS servers at {shown} answer but cannot keep [cluster] replicas (here"
            f" {settings.replicas}) copies of the buckets ({exc.description}): fewer JetStream"
            f" nodes are up; start the others, or give replicas no more than the cluster's"
            f" nodes (1 for a server alone)"
        )
    if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return (
            f"the NATS servers at {shown} answer but JetStream does not: start them with"
            f" JetStream enabled (nats-server --jetstream, or a jetstream block in their"
            f" config; `fixgw nats-cluster` does)"
        )
    within = f"within {settings.connect_timeout_ms} ms"
    return f"cannot reach the cluster at {shown} {within}: {_why(exc)}"


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Deferred:
    """The session log before the cluster is joined (stores are wrapped
    when the sessions are built, the log exists once connected)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def record(self, key: str, ops: list[tuple[int, int, bytes]]) -> None:
        log = self._cluster.log
        if log is not None:
            log.record(key, ops)
