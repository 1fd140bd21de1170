"""The sessions' stores, copied to a JetStream stream before bytes leave.

Every change a session's store takes (a sequence number set, a message
stored for resend, a reset) is recorded by its :class:`ReplicatedStore`.
When the outbox writes a batch, it flushes the stores to disk and then
seals the batch (:meth:`SessionLog.seal`): one message per session changed,
on the subject ``<prefix>.slog.<session key>`` of the stream
``<prefix>_session_log``, published without waiting for the one before.
The batch's bytes leave once JetStream has acknowledged every one of them
(stored by a quorum of the stream's replicas), and in the order the
batches were sealed.

A record holds absolute values (``next sender seq = N``, ``message N is
these bytes``), so records applied in order rebuild the store whatever
state it started from, and a record applied twice changes nothing.  Each
carries its writer and the revision of the lease the writer held (its
*epoch*): a reader ignores a record from an epoch older than one it has
already applied for that session, which fences out a late writer.

Every instance follows the whole stream and applies the records of the
sessions it does not serve to their local stores (its own records from
before a restart included: what its files had beyond the copy was never
sent), so that taking a session over only has to wait for the records not
yet applied (:meth:`caught_up`).

The records of one batch are published as one JetStream atomic batch
(all stored, contiguous, or none: a fill crossed between two clients is in
both their copies or in neither) when the stream allows it (nats-server
2.12 and later; otherwise each record is acknowledged on its own, and a
batch is acknowledged when all of them are).

A batch not acknowledged within ``ACK_TIMEOUT`` (the node this gateway
talks to died, a leader is being elected) is published again, with every
batch after it, in the same order, once the connection is back: records
applied twice in order change nothing, and no batch's bytes leave before
its own acknowledgement and those of every batch before it.  Only a batch
not acknowledged for ``GIVE_UP`` seconds fails: its bytes never leave and
its connections are dropped.  What it held stays in the sessions' stores
here, though, and would be resent from them: until the copy has it again
(:meth:`SessionLog.recopy`, before the session is served here again), no
byte of those sessions leaves (:meth:`SessionLog.copied`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from gateway.fix.store import (
    MAX_SEQ,
    RESET,
    SENT,
    SET_SENDER,
    SET_TARGET,
    RecordingStore,
    SessionStore,
    StoreOp,
    apply_ops,
)

_log = structlog.get_logger("gateway.cluster.replica")

Op = StoreOp

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[str, int, list[tuple[int, int, bytes]]]).decode

_Batch = tuple[list[tuple[str, bytes, list[Op]]], "asyncio.Future[None]"]

CLIENT: Final = 100
"""The kind of op that carries the state of the session's client, whole
(its positions and margin holdings, encoded by the gateway).  Not a
store's: a store's ``apply_ops`` passes over it."""

ORDER: Final = 101
"""The kind of op that carries one order of the session's client as it is
now (encoded by the gateway, after its id and a NUL byte); its number is 1
when the order is final (it is open no more: what follows its id is not
read), else 0.  Not a store's."""

PART: Final = 104
"""The last op of a record that a session's round continues in the next
record (a round too big for one message): a reader holds such records and
applies the round once its closing record comes; a round never closed (its
writer died between them, or lost the session) is not applied: its bytes
never left.  Not a store's."""

DAY_OVER: Final = 103
"""The kind of op that says the order named (its id) is open but its
trading day has ended (it was out at an LP then: it expires when its lots
come back).  Follows the order's ``ORDER`` op in a record; a reader that
does not know it passes over it.  Not a store's."""

ORDERS_ALL: Final = 102
"""The kind of op that says the client's whole open set follows (the
``ORDER`` ops after it in the record): what a reader holds of the client's
orders is complete from then on (:attr:`CopiedOrders.complete`).  Carried
by the first record under a lease just granted and by a reset's."""

RECORD_MAX: Final = 256 * 1024
"""Bytes a record may hold (NATS takes messages of 1 MiB by default): a
session's changes of one write round that encode to more go as several
consecutive records."""

ATOMIC_MAX: Final = 1000
"""Records one JetStream atomic batch may hold (the server's limit): a batch
with more is published as several."""

ACK_TIMEOUT: Final = 1.0
"""Seconds a batch may wait for its acknowledgement before it is sent again
(with every batch after it, in order)."""

RESEND_AFTER: Final = 0.05
"""Seconds between a failure and the resend (a reconnection under way)."""

GIVE_UP: Final = 10.0
"""Seconds after which a batch still not acknowledged fails: its bytes never
leave and its connections are dropped (its sessions' leases have lapsed
long before: their clients were logged out)."""


@dataclass(slots=True)
class _Flight:
    """A batch published, waiting for its acknowledgement."""

    batch: list[tuple[str, bytes, list[Op]]]
    done: asyncio.Future[None]
    started: float
    waiting: asyncio.Future[Any] | None = None
    covers: list[int] = field(default_factory=list)
    """How many records each acknowledgement waited for covers (1, or an
    atomic batch's size), in order."""
    acks: list[asyncio.Future[int]] = field(default_factory=list)
    """The acknowledgements waited for (cancelled when the batch goes
    again or is given up: an answer that never comes leaves nothing)."""


@dataclass(slots=True)
class _Uncopied:
    """What a session's store holds that its copy may lack (a batch of it
    was given up)."""

    first: int = MAX_SEQ
    """The lowest sequence number of a message given up."""
    sent: dict[int, bytes] = field(default_factory=dict)
    """The messages given up, by sequence number."""
    reset: bool = False
    """Whether a reset (a new session day) was given up."""
    version: int = 0
    """How many batches given up it covers."""
    copying: asyncio.Future[None] | None = None
    """The record copying the store again, while not acknowledged."""


class _Refused(ConnectionError):
    """The stream answered with an error: published again after a pause."""


ReplicatedStore = RecordingStore
"""A session store whose changes are recorded for the copy."""


@dataclass(slots=True)
class CopiedClient:
    """A state of a session's client read from the copy (as the gateway
    encoded it), who wrote it, and where it is in the stream."""

    writer: str
    data: bytes
    seq: int = 0

    @property
    def instance(self) -> str:
        """The name of the gateway that wrote it (its writer is
        ``<instance>/<process>``)."""
        return self.writer.partition("/")[0]


@dataclass(slots=True)
class CopiedOrders:
    """The open orders of a session's client read from the copy (each as
    the gateway encoded it, by order id), and who wrote the last record
    of the session read."""

    writer: str
    open: dict[str, bytes]
    complete: bool = False
    """Whether a whole open set was read (:data:`ORDERS_ALL`) since the
    copy began or was reset: until then it may lack orders (a gateway of an
    earlier version, one that ran alone, copied none), and the gateway
    claiming the session keeps its own."""
    at: dict[str, float] = field(default_factory=dict)
    """Per open order, when the record that last carried it was stored
    (epoch seconds, by the stream): a DAY order copied before a trading day
    that has ended since is expired by the gateway that takes it."""
    day_over: set[str] = field(default_factory=set)
    """Open orders whose trading day had ended where they were copied (out
    at an LP at its end): expired by the gateway that takes them."""


def order_ops(order_id: str, final: bool, data: bytes, day_over: bool = False) -> list[Op]:
    """The ops that carry one order (:data:`ORDER`, and :data:`DAY_OVER`)."""
    key = order_id.encode()
    op: Op = (ORDER, 1 if final else 0, key + b"\x00" + data)
    return [op, (DAY_OVER, 0, key)] if day_over and not final else [op]


def apply(store: SessionStore, ops: Iterable[Op]) -> None:
    """Apply a record's changes to ``store`` (not flushed)."""
    apply_ops(store, list(ops))


@dataclass(slots=True)
class LogStats:
    batches: int = 0
    records: int = 0
    bytes: int = 0
    failures: int = 0
    """Batches given up: their bytes never left."""
    retries: int = 0
    """Resends of the batches not acknowledged in time."""
    atomic: int = 0
    """Batches of several records published as one atomic batch."""
    purges: int = 0
    """Sessions' earlier records purged after a reset (a new session day)."""
    applied: int = 0
    """Records of other instances applied to the stores here."""
    unreadable: int = 0
    """Records that could not be decoded: skipped (logged)."""
    fenced: int = 0
    """Records ignored: from an epoch older than one already applied."""
    unowned: int = 0
    """Changes to a store of a session not served here, not copied."""
    lag: float = 0.0
    """Seconds the last batch waited for its acknowledgement."""
    recopies: int = 0
    """Sessions' stores copied again (a batch of theirs was given up) before
    they were served here again."""


class SessionLog:
    """The publishing and the following of the sessions' copy."""

    def __init__(
        self,
        js: JetStreamContext,
        prefix: str,
        name: str,
        replicas: int,
        epoch: Callable[[str], int],
        stores: dict[str, ReplicatedStore],
        writer: str = "",
    ) -> None:
        """``epoch(key)``: the revision of this instance's lease on the
        session, 0 when it does not serve it; ``writer``: this process's
        name in its records (its instance name and a number of its own, so
        that a restart under the same name reads what it wrote before)."""
        self.stream = f"{prefix}_session_log"
        self._subject = f"{prefix}.slog."
        self._js = js
        self._replicas = replicas
        self.name = name
        self.writer = writer or name
        self._epoch = epoch
        self.stores = stores
        self.stats = LogStats()
        self._pending: dict[str, list[Op]] = {}
        self._sending: asyncio.Queue[_Batch] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._flights: deque[_Flight] = deque()
        self._purges: set[asyncio.Task[None]] = set()
        self._resend = self._resend_due = False
        self._seal_soon = False
        self._last: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._tasks_subs: list[Any] = []
        self.atomic = False
        """Whether the stream takes atomic batches (known once started; off
        for good after the server refuses one as not allowed)."""
        self._inbox = ""
        # per publish waiting for its answer (an atomic batch, or a record
        # alone): the stream sequence to come, and the batch's size (0 for a
        # record alone)
        self._awaited: dict[str, tuple[asyncio.Future[int], int]] = {}
        self._records_alone = 0  # published so far: the ids of their answers
        self.applied: dict[str, int] = {}
        """Per session key, the stream sequence of the last record read."""
        self._epochs: dict[str, int] = {}
        # per session taken here: the last record stored when it was taken
        self._taken_at: dict[str, int] = {}
        self._progress = asyncio.Event()
        # per session: the parts of a round read so far (its writer, epoch)
        self._parts: dict[str, tuple[tuple[str, int], list[Op]]] = {}
        self.client_state: Callable[[str], bytes | None] | None = None
        """Set by the gateway: the state of a session's client now (None
        when it has none), carried by each record of a session that stored
        a message (each fill, each margin change, is told to the client)."""
        self.clients: dict[str, CopiedClient] = {}
        """Per session key, the last client state read from the copy (this
        gateway's own records too); while a session is being taken here,
        the last one stored before it was taken (:meth:`taken_state`)."""
        self._taking: set[str] = set()
        # per session being taken: the last state stored after the moment
        # it was taken (this gateway's own), kept aside until then
        self._after_take: dict[str, CopiedClient] = {}
        self.open_orders: Callable[[str], list[tuple[str, bytes, bool]]] | None = None
        """Set by the gateway: every open order of a session's client now
        (id, encoded, whether its trading day has ended), carried by a
        record that resets the session (the records before it are purged)."""
        self._orders: dict[str, dict[str, list[Op]]] = {}
        self._full: set[str] = set()
        self.orders: dict[str, CopiedOrders] = {}
        """Per session key, the open orders of its client read from the
        copy (this gateway's own records too); no entry while no record of
        the session carried its client's state or orders."""
        self._uncopied: dict[str, _Uncopied] = {}

    async def start(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self._subject}>"],
            storage=StorageType.FILE,
            num_replicas=self._replicas,
            # kept until a session's reset purges them: a session may go
            # longer than any age without one (a weekly session)
            max_age=0,
            allow_atomic=True,
        )
        try:
            info = await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            info = await self._js.update_stream(config)
        # a server before 2.12 passes over the setting: records one by one
        self.atomic = bool(info.config.allow_atomic)
        _log.info("session_copy_stream", stream=self.stream, atomic_batches=self.atomic)
        nc = self._js._nc
        self._inbox = nc.new_inbox()
        self._tasks_subs.append(await nc.subscribe(f"{self._inbox}.*", cb=self._on_answer))
        await wait_for_leader(self._js, self.stream)
        self._sub = await self._js.subscribe(
            f"{self._subject}>", ordered_consumer=True, cb=self._on_record
        )
        self._tasks.append(asyncio.get_running_loop().create_task(self._send_forever()))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._purges]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in [self._sub, *self._tasks_subs]:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    # -- publishing --------------------------------------------------------------

    def record(self, key: str, ops: list[Op]) -> None:
        """A store flushed ``ops``: they go with the next seal (the
        outbox's, in this turn; or one of their own, the next)."""
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = ops
        else:
            pending.extend(ops)
        self._seal_next_turn()

    def publish_all(self, key: str) -> None:
        """The next record of ``key`` carries its client's state and every
        open order, whole (see :data:`ORDERS_ALL`)."""
        self._full.add(key)
        self._seal_next_turn()

    def order(
        self, key: str, order_id: str, final: bool, data: bytes, day_over: bool = False
    ) -> None:
        """An order of ``key``'s client changed (``data``: its state, as the
        gateway encodes it): its latest state goes with the session's next
        record.  No record is made for it alone: a change the client is
        told of comes with a message stored in the same turn, which makes
        one; a change it is not told of (lots sent to an LP or back) waits
        for the next, as a takeover gives those lots back anyway."""
        orders = self._orders.get(key)
        if orders is None:
            orders = self._orders[key] = {}
        orders[order_id] = order_ops(order_id, final, data, day_over)

    def _seal_next_turn(self) -> None:
        """A seal of its own next turn, for what no write of this turn
        seals (the outbox's, when it writes this turn, takes it first)."""
        if not self._seal_soon:
            self._seal_soon = True
            asyncio.get_running_loop().call_soon(self._seal_again)

    def seal(self) -> asyncio.Future[None] | None:
        """Publish what was recorded since the last seal (see the module);
        with nothing new, the last batch still waiting for its
        acknowledgement (whatever is written next may depend on it: a
        record flushed outside the outbox's turn), or None."""
        pending = self._pending
        full = self._full
        if not pending and not full:
            last = self._last
            return last if last is not None and not last.done() else None
        self._pending = {}
        orders = self._orders
        if full:
            self._full = set()
            for key in full:
                if key not in pending:
                    pending[key] = []
        batch = []
        client_state = self.client_state
        for key, ops in pending.items():
            epoch = self._epoch(key)
            changed = orders.pop(key, None) if orders else None
            if not epoch:
                self.stats.unowned += len(ops) + (len(changed) if changed else 0)
                continue
            whole = key in full
            reset = whole or any(k == RESET for k, _n, _d in ops)
            if client_state is not None and (reset or any(k == SENT for k, _n, _d in ops)):
                # whole, so that the last record of a session (after a
                # reset purged the ones before, too) holds all of it
                state = client_state(key)
                if state is not None:
                    ops.append((CLIENT, 0, state))
            if reset and self.open_orders is not None:
                # the records before are purged (or the copy is to be whole
                # under this lease): every open order goes with it
                ops.append((ORDERS_ALL, 0, b""))
                for i, data, over in self.open_orders(key):
                    ops.extend(order_ops(i, False, data, over))
            elif changed:
                for order in changed.values():
                    ops.extend(order)
            payload = _encode((self.writer, epoch, ops))
            if len(payload) <= RECORD_MAX:
                batch.append((key, payload, ops))
            else:
                # a burst too big for one message (a mass cancel, a day end
                # expiring thousands of a client's orders): consecutive
                # records, applied in order, in the same (atomic) batch
                parts = _split(ops)
                for n, part in enumerate(parts[:-1]):
                    part.append((PART, n, b""))
                batch.extend((key, _encode((self.writer, epoch, p)), p) for p in parts)
        if not batch:
            last = self._last
            return last if last is not None and not last.done() else None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sending.put_nowait((batch, done))
        self._wake.set()
        self._last = done
        return done

    async def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every batch sealed so far is
        acknowledged; False when some is not."""
        last = self._last
        if last is None or last.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(last), timeout)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def _send_forever(self) -> None:
        """Publish the sealed batches in order, without waiting for the
        one before; after a failure, publish every batch not yet
        acknowledged again, in order, before anything new."""
        while True:
            try:
                await self._send_some()
            except asyncio.CancelledError:
                raise
            except Exception:
                # a bug here would stall every session's bytes: logged, and on
                _log.exception("session_copy_sender_error")
                await asyncio.sleep(0.05)

    async def _send_some(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._resend:
                self._resend = False
                for flight in list(self._flights):
                    if flight.waiting is not None:
                        flight.waiting.remove_done_callback(self._check)
                        flight.waiting.cancel()
                    await self._publish(flight)
                continue
            self._wake.clear()
            if self._sending.empty():
                await self._wake.wait()
                continue
            batch, done = self._sending.get_nowait()
            flight = _Flight(batch, done, loop.time())
            self._flights.append(flight)
            self.stats.batches += 1
            self.stats.records += len(batch)
            self.stats.bytes += sum(len(p) for _k, p, _o in batch)
            await self._publish(flight)

    async def _publish(self, flight: _Flight) -> None:
        loop = asyncio.get_running_loop()
        for ack in flight.acks:
            ack.cancel()  # published again: the last answers are not waited for
        acks: list[asyncio.Future[int]] = []
        flight.acks = acks
        batch = flight.batch
        covers: list[int] = []
        try:
            if self.atomic and len(batch) > 1:
                for part in _chunks(batch):
                    acks.append(await self._publish_atomic(part))
                    covers.append(len(part))
                self.stats.atomic += 1
            else:
                for key, payload, _ops in batch:
                    acks.append(await self._publish_one(key, payload))
                    covers.append(1)
        except (nats.errors.Error, OSError) as exc:
            for ack in acks:
                ack.cancel()
            # not connected: tried again once the resend is due
            waiting: asyncio.Future[Any] = loop.create_future()
            waiting.set_exception(exc)
        else:
            waiting = asyncio.gather(*acks)
            timer = loop.call_later(ACK_TIMEOUT, waiting.cancel)
            waiting.add_done_callback(lambda _w: timer.cancel())
        # together: what is waited for and what each part covers
        flight.covers = covers
        flight.waiting = waiting
        waiting.add_done_callback(self._check)

    async def _publish_one(self, key: str, payload: bytes) -> asyncio.Future[int]:
        """Publish one record, its answer read by the copy itself as an
        atomic batch's is: a record the server refuses fails at once with
        the server's reason.  (The client library's own acknowledged publish
        raises inside its reply handler on an error answer instead of
        failing the wait, which then looks like a timeout.)"""
        self._records_alone += 1
        return await self._publish_answered(
            self._subject + key, payload, f"r{self._records_alone}", 0
        )

    async def _publish_answered(
        self,
        subject: str,
        payload: bytes,
        answer_id: str,
        size: int,
        headers: dict[str, str] | None = None,
    ) -> asyncio.Future[int]:
        """Publish with a reply subject of the copy's own; the future the
        answer settles (:meth:`_on_answer`; ``size``: the records of the
        atomic batch it commits, 0 for a record alone)."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._awaited[answer_id] = (done, size)
        done.add_done_callback(lambda _d: self._awaited.pop(answer_id, None))
        try:
            await self._js._nc.publish(
                subject, payload, reply=f"{self._inbox}.{answer_id}", headers=headers
            )
        except BaseException:
            done.cancel()
            raise
        return done

    async def _publish_atomic(
        self, records: list[tuple[str, bytes, list[Op]]]
    ) -> asyncio.Future[int]:
        """Publish ``records`` as one atomic batch: every record but the last
        without an answer, the last committing the batch (its
        acknowledgement covers them all, stored contiguously).  A batch
        published again (its acknowledgement did not come) has an id of its
        own: what the server staged of the first is dropped."""
        nc = self._js._nc
        batch_id = secrets.token_hex(8)
        subject = self._subject
        for n, (key, payload, _ops) in enumerate(records[:-1], 1):
            await nc.publish(
                subject + key, payload, headers={_BATCH_ID: batch_id, _BATCH_SEQ: str(n)}
            )
        key, payload, _ops = records[-1]
        headers = {_BATCH_ID: batch_id, _BATCH_SEQ: str(len(records)), _BATCH_COMMIT: "1"}
        return await self._publish_answered(subject + key, payload, batch_id, len(records), headers)

    async def _on_answer(self, msg: Any) -> None:
        """The server's answer to a record published alone (its stream
        sequence, or its refusal) or to an atomic batch's commit: the stream
        sequence of its last record, once it says the whole batch is stored;
        otherwise the batch failed (it is published again).  A server that
        refuses atomic batches (not allowed on the stream any more: an
        earlier gateway updated it; too large for its limits), or stored the
        records one by one (it passed over the batch headers), has the
        records published one by one from then on."""
        batch_id = msg.subject.rpartition(".")[2]
        waiting = self._awaited.pop(batch_id, None)
        if waiting is None:
            return
        done, size = waiting
        if done.done():
            return
        if not msg.data:
            # a status, no answer: no responders (a stream between leaders)
            status = (msg.headers or {}).get("Status", "")
            done.set_exception(ConnectionError(f"no answer from the stream (status {status})"))
            return
        try:
            answer = _answer(msg.data)
        except msgspec.DecodeError:
            answer = {}
        error = answer.get("error")
        what = "atomic batch" if size else "record"
        if isinstance(error, dict):
            code = int(error.get("err_code") or 0)
            if size and code in _ATOMIC_REFUSED:
                self._atomic_off(f"{code}: {error.get('description', '')}")
            done.set_exception(_Refused(f"{what} refused: {code} {error.get('description', '')}"))
            return
        seq = answer.get("seq")
        if not size:
            if isinstance(seq, int) and seq > 0:
                done.set_result(seq)
            else:
                done.set_exception(ConnectionError(f"record not acknowledged: {msg.data[:200]!r}"))
            return
        if answer.get("batch") != batch_id or answer.get("count") != size or not seq:
            # stored, if at all, as records of their own: where is not known
            self._atomic_off("the server passed over the batch")
            done.set_exception(ConnectionError("atomic batch not acknowledged as one"))
            return
        done.set_result(int(seq))

    def _atomic_off(self, why: str) -> None:
        if self.atomic:
            self.atomic = False
            _log.warning("session_copy_atomic_batches_off", stream=self.stream, reason=why)

    def _check(self, _: object = None) -> None:
        """Settle the batches acknowledged, oldest first; a failure starts
        the resend of everything from it (or, past ``GIVE_UP``, fails it)."""
        flights = self._flights
        loop = asyncio.get_running_loop()
        while flights:
            flight = flights[0]
            waiting = flight.waiting
            if waiting is None or not waiting.done():
                return
            problem: BaseException | None
            if waiting.cancelled():
                problem = TimeoutError(f"no acknowledgement in {ACK_TIMEOUT:g} s")
            else:
                problem = waiting.exception()
                if isinstance(problem, asyncio.CancelledError):
                    # a gather cancelled (by the timer) ends with this exception
                    problem = TimeoutError(f"no acknowledgement in {ACK_TIMEOUT:g} s")
            if problem is None:
                flights.popleft()
                self.stats.lag = loop.time() - flight.started
                if not flight.done.done():
                    flight.done.set_result(None)
                self._compact(flight, _stream_seqs(flight.covers, waiting.result()))
                continue
            if loop.time() - flight.started > GIVE_UP:
                self.stats.failures += 1
                flights.popleft()
                for ack in flight.acks:
                    ack.cancel()
                for key, _payload, ops in flight.batch:
                    self._not_copied(key, ops)
                _log.error("session_copy_given_up", sessions=len(flight.batch), error=repr(problem))
                if not flight.done.done():
                    flight.done.set_exception(
                        ConnectionError(f"the sessions' copy failed: {problem!r}")
                    )
                continue
            if not self._resend_due:
                self._resend_due = True
                self.stats.retries += 1
                _log.warning("session_copy_retried", batches=len(flights), error=repr(problem))
                # a refusal may last (a limit lowered, a full disk): not
                # published again faster than an acknowledgement times out
                pause = ACK_TIMEOUT if isinstance(problem, _Refused) else RESEND_AFTER
                loop.call_later(pause, self._start_resend)
            return

    def _not_copied(self, key: str, ops: list[Op]) -> None:
        """A record of ``key`` was given up: its store here holds what the
        copy lacks."""
        lost = self._uncopied.get(key)
        if lost is None:
            lost = self._uncopied[key] = _Uncopied()
        lost.version += 1
        for kind, n, data in ops:
            if kind == SENT:
                lost.first = min(lost.first, n)
                lost.sent[n] = data
            elif kind == RESET:
                lost.reset = True

    def copied(self, key: str) -> bool:
        """Whether the copy of ``key`` holds everything its store here was
        changed by (no batch of it given up since it was last copied whole):
        until it does, none of its bytes may leave, as a later owner would
        not resend them."""
        return key not in self._uncopied

    def recopy(self, key: str) -> asyncio.Future[None] | None:
        """Once ``key`` is granted here again (before its Logon is read):
        when a batch of it was given up, a record that makes its copy what
        its store is here (every message from the first one given up, the
        sequence numbers; the whole session day after a reset given up;
        the client's state and open orders, whole), published under the
        lease held now; the future of its acknowledgement (None when
        nothing is to be copied).  Wait for it, then call again: a batch
        sealed before it and given up after needs another.  (Once another
        gateway has written the copy since, nothing is to be copied: see
        :meth:`_cut_back`.)"""
        lost = self._uncopied.get(key)
        if lost is None:
            return None
        if lost.copying is not None:
            return lost.copying
        store = self.stores.get(key)
        if store is None or not self._epoch(key):
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("the session is not held here"))
            return failed
        store.flush()  # what it holds unrecorded goes first
        inner = store.inner
        ops: list[Op] = []
        first = lost.first
        if lost.reset:
            ops.append((RESET, round(inner.creation_time * 1000), b""))
            first = 1
        if first < MAX_SEQ:
            ops.extend((SENT, seq, message) for seq, message in inner.get_sent(first, MAX_SEQ))
        ops.append((SET_SENDER, inner.next_sender_seq, b""))
        ops.append((SET_TARGET, inner.next_target_seq, b""))
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = ops
        else:
            pending.extend(ops)
        self._full.add(key)  # the client's state and every open order, whole
        sealed = self.seal()
        assert sealed is not None
        lost.copying = sealed
        version = lost.version
        self.stats.recopies += 1
        _log.warning(
            "session_copy_recopied",
            key=key,
            from_seq=1 if lost.reset else (first if first < MAX_SEQ else None),
            reset=lost.reset,
        )

        def done(sealed: asyncio.Future[None]) -> None:
            lost.copying = None
            if sealed.cancelled() or sealed.exception() is not None:
                return  # still to be copied: the next grant tries again
            if self._uncopied.get(key) is lost and lost.version == version:
                del self._uncopied[key]

        sealed.add_done_callback(done)
        return sealed

    def _cut_back(self, key: str, store: SessionStore, lost: _Uncopied) -> None:
        """Another gateway served ``key`` from the copy since a batch of it
        was given up here: what was given up never left, and is dropped
        from the store here (not flushed), which ends as the copy does (the
        other's records replace only the numbers they store: a message
        given up at a number the other gave its Logon, or none, would be
        resent from here)."""
        stale = {n for n, data in lost.sent.items() if store.get_sent(n, n) == [(n, data)]}
        if not stale:
            return
        low = min(stale)
        kept = [(n, data) for n, data in store.get_sent(low, MAX_SEQ) if n not in stale]
        sender, target = store.next_sender_seq, store.next_target_seq
        below: list[tuple[int, bytes]] = []
        span = 64
        while low > 1:
            start = max(1, low - span)
            below = store.get_sent(start, low - 1)
            if below or start == 1:
                break
            span *= 16
        if below:
            store.append_sent(*below[-1])  # the messages after it go
        else:
            store.reset(store.creation_time)
        for n, data in kept:
            store.append_sent(n, data)
        store.set_next_sender_seq(sender)
        store.set_next_target_seq(target)
        _log.warning("session_copy_given_up_dropped", key=key, messages=len(stale), from_seq=low)

    def _compact(self, flight: _Flight, seqs: list[int]) -> None:
        """A session reset (a new session day) makes every record of the
        session before it useless: they are purged from the stream, so
        that what a gateway reads at start stays one session day long."""
        for (key, payload, ops), seq in zip(flight.batch, seqs, strict=False):
            if not any(kind == RESET for kind, _n, _d in ops):
                continue
            if _decode(payload)[1] == self._epoch(key):  # still this gateway's
                task = asyncio.get_running_loop().create_task(
                    self._purge_before(self._subject + key, seq)
                )
                self._purges.add(task)
                task.add_done_callback(self._purges.discard)

    async def _purge_before(self, subject: str, seq: int) -> None:
        try:
            await self._js.purge_stream(self.stream, seq=seq, subject=subject)
            self.stats.purges += 1
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            _log.info("session_copy_purge_failed", subject=subject, error=repr(exc))

    def _start_resend(self) -> None:
        self._resend_due = False
        self._resend = True
        self._wake.set()

    def _seal_again(self) -> None:
        self._seal_soon = False
        sealed = self.seal()
        if sealed is not None:
            # nobody waits for it: no bytes depend on it
            sealed.add_done_callback(_ignore)

    # -- following ---------------------------------------------------------------

    async def _on_record(self, msg: Any) -> None:
        key = msg.subject[len(self._subject) :]
        seq = msg.metadata.sequence.stream
        # read, whatever it holds: a takeover waits for this sequence
        self.applied[key] = seq
        try:
            writer, epoch, ops = _decode(msg.data)
        except msgspec.DecodeError:
            self.stats.unreadable += 1
            _log.error("session_copy_unreadable", key=key, seq=seq)
            return
        finally:
            self._progress.set()
        newest = self._epochs.get(key, 0)
        if epoch < newest:
            # after a record of a newer lease: a writer that lost its lease
            self.stats.fenced += 1
            return
        self._epochs[key] = epoch
        parts = self._parts.get(key)
        if ops and ops[-1][0] == PART:
            # the round goes on in the next record: held until it closes
            if parts is None or parts[0] != (writer, epoch):
                parts = self._parts[key] = ((writer, epoch), [])
            parts[1].extend(ops[:-1])
            return
        if parts is not None:
            del self._parts[key]
            if parts[0] == (writer, epoch):
                ops = parts[1] + ops
            # else: a round its writer never closed, not applied
        held = self._epoch(key)
        taken = self._taken_at.get(key)
        if (
            held
            and taken is not None
            and seq > taken
            and not (writer == self.writer and epoch == held)
        ):
            # from an older lease, stored after this gateway took the
            # session (a late writer): not applied
            return
        after_take = bool(held and key in self._taking and taken is not None and seq > taken)
        self._follow_client(key, writer, ops, seq, after_take, msg.metadata.timestamp.timestamp())
        if held and writer == self.writer and epoch == held:
            return  # written here under the lease held now: the store had it first
        # another gateway's (up to the moment the session was taken here),
        # or this one's from before a restart: the store ends as the copy
        # does, what was never acknowledged dropped
        # a batch given up here, and another gateway wrote the copy since
        lost = self._uncopied.pop(key, None) if writer != self.writer else None
        store = self.stores.get(key)
        if store is None:
            return
        try:
            if lost is not None:
                self._cut_back(key, store.inner, lost)
            apply(store.inner, ops)
            store.inner.flush()
        except Exception:
            _log.exception("session_copy_apply_failed", key=key, seq=seq)
            return
        self.stats.applied += 1

    def _follow_client(
        self, key: str, writer: str, ops: list[Op], seq: int, after_take: bool, at: float
    ) -> None:
        """What a record carries of the session's client: its last state
        (``after_take``: stored after the session was taken here, kept
        aside until :meth:`taken_state`), its orders (a reset starts them
        again: its record carries them all)."""
        orders = self.orders.get(key)
        for kind, n, data in ops:
            if kind == CLIENT:
                copied = CopiedClient(writer, data, seq)
                if after_take:
                    self._after_take[key] = copied
                else:
                    self.clients[key] = copied
            elif kind == ORDERS_ALL:
                if orders is None:
                    orders = self.orders[key] = CopiedOrders(writer, {})
                orders.open.clear()
                orders.at.clear()
                orders.day_over.clear()
                orders.complete = True
            elif kind == ORDER:
                if orders is None:
                    orders = self.orders[key] = CopiedOrders(writer, {})
                order_id, _nul, state = data.partition(b"\x00")
                oid = order_id.decode()
                if n:
                    orders.open.pop(oid, None)
                    orders.at.pop(oid, None)
                else:
                    orders.open[oid] = state
                    orders.at[oid] = at
                orders.day_over.discard(oid)
            elif kind == DAY_OVER and orders is not None:
                oid = data.decode()
                if oid in orders.open:
                    orders.day_over.add(oid)
            elif kind == RESET and orders is not None:
                orders.open.clear()
                orders.at.clear()
                orders.day_over.clear()
                orders.complete = False  # until the whole set that follows
        if orders is not None:
            orders.writer = writer

    def taking(self, key: str) -> None:
        """``key``'s lease was just granted here: until :meth:`caught_up`
        has fixed where its copy stood, every record of it is applied."""
        self._taken_at.pop(key, None)
        self._taking.add(key)

    async def caught_up(self, key: str, timeout: float) -> bool:
        """Wait until every record of ``key`` stored so far is applied here
        (called once the session's lease is this gateway's: records stored
        after this moment are not applied, whoever wrote them)."""
        try:
            last = await self._js.get_last_msg(self.stream, self._subject + key)
        except nats.js.errors.NotFoundError:
            self._taken_at[key] = 0  # nothing stored yet: nothing to apply
            return True
        target = last.seq or 0
        self._taken_at[key] = target
        after = self._after_take.get(key)
        if after is not None and after.seq <= target:
            # a later attempt: the moment of taking moved past it
            self.clients[key] = self._after_take.pop(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.applied.get(key, 0) < target:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._progress.wait()
        return True

    def taken_state(self, key: str) -> CopiedClient | None:
        """Once :meth:`caught_up` said yes for a session just taken here: its
        client's state as the copy held it at that moment (None if it holds
        none).  From then on the last one read is kept again."""
        state = self.clients.get(key)
        self._taking.discard(key)
        after = self._after_take.pop(key, None)
        if after is not None:
            self.clients[key] = after
        return state


_BATCH_ID: Final = "Nats-Batch-Id"
_BATCH_SEQ: Final = "Nats-Batch-Sequence"
_BATCH_COMMIT: Final = "Nats-Batch-Commit"


_ATOMIC_REFUSED: Final = frozenset({10174, 10199, 10210})
"""JetStream's errors for an atomic batch the stream does not take: not
enabled on it, larger than allowed, and the like."""

_answer = msgspec.json.Decoder(dict[str, Any]).decode


def _split(ops: list[Op], limit: int = RECORD_MAX) -> list[list[Op]]:
    """``ops`` in consecutive parts of about ``limit`` bytes encoded each (an
    op larger than that alone in its part)."""
    parts: list[list[Op]] = [[]]
    size = 0
    for op in ops:
        cost = len(op[2]) + 16
        # a DAY_OVER stays with the ORDER it follows
        if parts[-1] and size + cost > limit and op[0] != DAY_OVER:
            parts.append([])
            size = 0
        parts[-1].append(op)
        size += cost
    return parts


def _chunks(
    batch: list[tuple[str, bytes, list[Op]]], limit: int = ATOMIC_MAX
) -> list[list[tuple[str, bytes, list[Op]]]]:
    """A batch in atomic batches of at most ``limit`` records, cut between
    sessions only (a session's parts of one round stay in one)."""
    chunks: list[list[tuple[str, bytes, list[Op]]]] = [[]]
    i = 0
    while i < len(batch):
        j = i + 1
        while j < len(batch) and batch[j][0] == batch[i][0]:
            j += 1
        group = batch[i:j]
        if chunks[-1] and len(chunks[-1]) + len(group) > limit:
            chunks.append([])
        chunks[-1].extend(group)
        i = j
    return chunks


def _stream_seqs(covers: list[int], acks: list[int]) -> list[int]:
    """The stream sequence of each record of a batch, from its
    acknowledgements (one per record, or the last sequence of an atomic
    batch of ``covers[i]`` records, stored contiguously)."""
    seqs: list[int] = []
    for count, ack in zip(covers, acks, strict=True):
        seqs.extend(range(ack - count + 1, ack + 1))
    return seqs


def _ignore(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # taken: not reported as never retrieved


async def wait_for_leader(js: JetStreamContext, stream: str, timeout: float = 10.0) -> None:
    """Until ``stream`` (just made) has elected a leader among its replicas:
    until then its writes find no responder."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
        except (nats.errors.Error, TimeoutError):
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"stream {stream} has no leader after {timeout:g} s")
        await asyncio.sleep(0.05)
