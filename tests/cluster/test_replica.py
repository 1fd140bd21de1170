"""The sessions' copy: records that rebuild a store, bytes held until the
copy is acknowledged, and another instance following it (real JetStream)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
import pytest
import structlog
from clusterkit import Member, running, settings, stopping, take
from hypothesis import given
from hypothesis import strategies as st

from config import ClusterSettings, SessionSettings
from gateway.cluster import replica, session_key
from gateway.cluster.replica import (
    ORDERS_ALL,
    PART,
    Op,
    ReplicatedStore,
    SessionLog,
    _chunks,
    apply,
    order_ops,
)
from gateway.fix.acceptor import SessionRegistry
from gateway.fix.application import EchoApplication
from gateway.fix.events import CloseConnection
from gateway.fix.session import Session
from gateway.fix.store import RESET, SENT, SET_SENDER, MemoryStore
from gateway.net.client import FixClient
from gateway.net.server import FixServer
from gateway.net.transport import Outbox
from gateway.sim.nats_cluster import NatsCluster


class Recorded:
    """What a store hands to the log, kept in order."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def record(self, key: str, ops: list[Op]) -> None:
        self.ops.extend(ops)


def state(store: MemoryStore) -> tuple[int, int, float, list[tuple[int, bytes]]]:
    return (
        store.next_sender_seq,
        store.next_target_seq,
        store.creation_time,
        store.get_sent(1, 10**6),
    )


async def written(member: Member, client: str = "C1") -> None:
    """Flush ``client``'s store at ``member`` and wait until its copy is
    acknowledged."""
    member.sessions[client].store.flush()
    sealed = member.cluster.seal()
    assert sealed is not None
    await asyncio.wait_for(sealed, 5)


changes = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 40), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("sender"), st.integers(1, 60), st.just(b"")),
        st.tuples(st.just("target"), st.integers(1, 60), st.just(b"")),
        st.tuples(st.just("reset"), st.integers(0, 10**6), st.just(b"")),
        st.tuples(st.just("flush"), st.just(0), st.just(b"")),
    ),
    max_size=60,
)


@given(changes, changes)
def test_the_records_rebuild_the_store_from_any_state(
    before: list[tuple[str, int, bytes]], after: list[tuple[str, int, bytes]]
) -> None:
    """What a store recorded, applied in order to a store that had only the
    first part of its history (or none of it), gives the same store."""

    def run(store: ReplicatedStore, steps: list[tuple[str, int, bytes]]) -> None:
        for kind, number, data in steps:
            if kind == "send":
                store.append_sent(number, data)
            elif kind == "sender":
                store.set_next_sender_seq(number)
            elif kind == "target":
                store.set_next_target_seq(number)
            elif kind == "reset":
                store.reset(number / 1000)
            else:
                store.flush()
        store.flush()

    log = Recorded()
    live = ReplicatedStore(MemoryStore(), "k", cast(SessionLog, log))
    run(live, before)
    follower = MemoryStore()
    apply(follower, log.ops)
    assert state(follower) == state(cast(MemoryStore, live.inner))
    # a follower that had the first part already applies the rest
    log.ops.clear()
    run(live, after)
    apply(follower, log.ops)
    assert state(follower) == state(cast(MemoryStore, live.inner))
    # and records applied twice change nothing
    apply(follower, log.ops)
    assert state(follower) == state(cast(MemoryStore, live.inner))


class Copies:
    """A session log whose acknowledgements the test gives: what the
    store recorded is sealed into a batch, as :class:`SessionLog` does."""

    def __init__(self) -> None:
        self.sealed: list[asyncio.Future[None]] = []
        self.more = asyncio.Event()
        self.recorded: list[Op] = []

    def record(self, key: str, ops: list[Op]) -> None:
        self.recorded.extend(ops)

    def seal(self) -> asyncio.Future[None] | None:
        if not self.recorded:
            return None
        self.recorded = []
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sealed.append(future)
        self.more.set()
        return future

    def may_send(self, session: Session) -> bool:
        return True

    async def until(self, count: int) -> None:
        """Until ``count`` batches were sealed (within 5 s)."""
        async with asyncio.timeout(5):
            while len(self.sealed) < count:
                self.more.clear()
                await self.more.wait()


async def echo_server(copies: Copies) -> tuple[FixServer, int]:
    store = ReplicatedStore(MemoryStore(), "k", cast(SessionLog, copies))
    session = Session(SessionSettings(SenderCompID="GW", TargetCompID="C1"), store)
    server = FixServer(
        SessionRegistry([session]),
        {session.session_id: EchoApplication()},
        outbox=Outbox(replica=copies),
    )
    return server, await server.start("127.0.0.1", 0)


def order(cl_ord_id: bytes) -> bytes:
    return b"11=%b\x0121=1\x0155=X\x0154=1\x0160=20261204-10:00:00\x0138=1\x0140=1\x01" % cl_ord_id


@pytest.mark.asyncio
async def test_bytes_leave_only_once_their_copy_and_every_earlier_one_is_acknowledged() -> None:
    copies = Copies()
    server, port = await echo_server(copies)
    client = FixClient(SessionSettings(SenderCompID="C1", TargetCompID="GW"))
    try:
        logon = asyncio.ensure_future(client.connect("127.0.0.1", port))
        await copies.until(1)
        assert not client.logged_on  # the Logon's answer waits for its copy
        copies.sealed[0].set_result(None)
        await logon
        client.send(b"D", order(b"first"))
        await copies.until(2)
        client.send(b"D", order(b"second"))
        await copies.until(3)
        # the second batch's copy first: it still waits for the first
        copies.sealed[2].set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)  # its callbacks run
        assert len(server.outbox._waiting) == 2
        copies.sealed[1].set_result(None)
        echoed = [await client.receive(5) for _ in range(2)]
        assert [m.get(11) for m in echoed] == [b"first", b"second"]
    finally:
        for future in copies.sealed:
            if not future.done():
                future.set_result(None)
        client.abort()
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_a_batch_whose_copy_failed_never_leaves_and_its_connection_is_dropped() -> None:
    copies = Copies()
    server, port = await echo_server(copies)
    client = FixClient(SessionSettings(SenderCompID="C1", TargetCompID="GW"))
    try:
        logon = asyncio.ensure_future(client.connect("127.0.0.1", port))
        await copies.until(1)
        copies.sealed[0].set_result(None)
        await logon
        client.send(b"D", order(b"lost"))
        await copies.until(2)
        copies.sealed[1].set_exception(ConnectionError("no quorum"))
        await client.wait_closed(5)
        assert client.messages.empty()
    finally:
        for future in copies.sealed:
            if not future.done():
                future.set_result(None)
        await server.stop(grace=0.5)


@pytest.mark.asyncio
async def test_another_instance_follows_the_copy_and_ignores_a_fenced_writer(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    async with stopping(a, b):
        assert await a.claim("C1") is None
        session = a.sessions["C1"]
        store = session.store
        for seq in range(1, 6):
            store.append_sent(seq, b"message %d" % seq)
        store.set_next_target_seq(4)
        await written(a)
        log = b.cluster.log
        assert log is not None
        key = "FIX=2E4=2E4.GW.C1"
        assert await log.caught_up(key, 5)
        assert b.store("C1").next_sender_seq == 6
        assert b.store("C1").next_target_seq == 4
        assert b.store("C1").get_sent(1, 5) == [(s, b"message %d" % s) for s in range(1, 6)]
        # a writer whose lease was taken (an older epoch than a record
        # already in the copy) is ignored
        a_log = a.cluster.log
        assert a_log is not None
        newer = a.cluster.epoch(key) + 1000
        await a_log._js.publish(
            f"{config.bucket_prefix}.slog.{key}",
            msgspec.msgpack.encode(("c", newer, [(SET_SENDER, 40, b"")])),
        )
        store.append_sent(6, b"late")
        await written(a)
        assert await log.caught_up(key, 5)
        assert log.stats.fenced == 1
        assert b.store("C1").next_sender_seq == 40
        assert b.store("C1").get_sent(6, 6) == []


@pytest.mark.asyncio
async def test_an_unreadable_record_is_skipped_and_counted_and_a_takeover_does_not_wait_for_it(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    async with stopping(a, b):
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store
        store.append_sent(1, b"message 1")
        await written(a)
        key = "FIX=2E4=2E4.GW.C1"
        a_log = a.cluster.log
        assert a_log is not None
        # the last record of the session is garbage
        await a_log._js.publish(f"{config.bucket_prefix}.slog.{key}", b"\xc1 not msgpack")
        log = b.cluster.log
        assert log is not None
        assert await log.caught_up(key, 5)
        assert log.stats.unreadable == 1
        assert b.store("C1").get_sent(1, 1) == [(1, b"message 1")]
        assert b.cluster.snapshot()["copy"]["unreadable"] == 1  # type: ignore[index]


async def read_up_to(log: SessionLog, key: str, seq: int) -> None:
    """Until ``log`` has read ``key``'s record ``seq`` (not :meth:`caught_up`:
    called by the owner, it would count that record as stored before the
    session was taken)."""
    async with asyncio.timeout(5):
        while log.applied.get(key, 0) < seq:
            log._progress.clear()
            await log._progress.wait()


@pytest.mark.asyncio
async def test_the_clients_state_goes_with_its_sessions_copy_and_is_handed_over_when_taken(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = Member(config, "a", ["C1"])
    b = Member(config, "b", ["C1"])
    now = {"state": b"state 1"}
    a.cluster.client_state = lambda key: now["state"]
    b.cluster.client_state = lambda key: b"b's own"
    taken: list[tuple[str, bytes]] = []
    b.cluster.on_taken = lambda session, data: taken.append((session.session_id, data))
    a.cluster.on_taken = lambda session, data: taken.append(("at a", data))
    key = "FIX=2E4=2E4.GW.C1"
    async with running(a, b):
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store

        # a record storing a message (a fill told) carries the state as it is then
        store.append_sent(1, b"fill 1")
        await written(a)
        now["state"] = b"state 2"
        store.append_sent(2, b"fill 2")
        await written(a)
        # one that only moves a sequence number carries none
        now["state"] = b"never carried"
        store.set_next_target_seq(5)
        await written(a)
        b_log, a_log = b.cluster.log, a.cluster.log
        assert b_log is not None
        assert a_log is not None
        assert await b_log.caught_up(key, 5)
        assert (b_log.clients[key].writer, b_log.clients[key].data) == (a_log.writer, b"state 2")
        assert key not in b_log.orders  # a client's state says nothing of its orders
        # the writer reads its own too: a later takeover elsewhere and back
        # starts from the last state, whoever wrote it
        assert await a_log.caught_up(key, 5)
        assert a_log.clients[key].data == b"state 2"

        # a is gone (its lease lapses): b takes the session, and is handed
        # the state before the Logon would be read
        a_renewals = a.cluster._tasks
        for task in a_renewals:
            task.cancel()
        await take(b, "C1")
        assert taken == [("FIX.4.4:GW->C1", b"state 2")]
        # a Logon at the gateway that holds the session changes nothing
        assert await b.claim("C1") is None
        assert taken == [("FIX.4.4:GW->C1", b"state 2")]
        # a late record of a's (its lease taken) does not change what b holds
        late = await a_log._js.publish(
            f"{config.bucket_prefix}.slog.{key}",
            msgspec.msgpack.encode(
                (a_log.writer, a.cluster.epoch(key) or 1, [(100, 0, b"late state")])
            ),
        )
        await read_up_to(b_log, key, late.seq)
        assert b_log.clients[key].data == b"state 2"


@pytest.mark.asyncio
async def test_a_gateway_restarted_takes_the_state_its_previous_process_left_in_the_copy(
    nats_cluster: NatsCluster,
) -> None:
    """The copy is what the client was told: the session's store ends as
    it does, and so does the client's state, whoever wrote it (the process
    before a restart included); a Logon at the owner takes nothing again."""
    config = settings(nats_cluster)
    first = Member(config, "a", ["C1"])
    first.cluster.client_state = lambda key: b"a before its restart"
    await first.start()
    async with stopping(first):
        assert await first.claim("C1") is None
        first.sessions["C1"].store.append_sent(1, b"fill 1")
        await written(first)
    again = Member(config, "a", ["C1"])  # the same name, another process
    taken: list[bytes] = []
    again.cluster.on_taken = lambda session, data: taken.append(data)
    await again.start()
    async with stopping(again):
        await take(again, "C1")
        assert taken == [b"a before its restart"]
        assert await again.claim("C1") is None
        assert taken == [b"a before its restart"]


@pytest.mark.asyncio
async def test_the_clients_open_orders_go_with_its_sessions_copy_and_a_reset_carries_them_all(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = Member(config, "a", ["C1"])
    b = Member(config, "b", ["C1"])
    open_at_a = {"O1": b"o1 v2", "O3": b"o3 v1"}
    # O3's trading day has ended (it was out at an LP then)
    a.cluster.open_orders = lambda key: [(i, d, i == "O3") for i, d in sorted(open_at_a.items())]
    claimed: list[tuple[str, dict[str, bytes] | None]] = []
    b.cluster.on_claimed = lambda session, copied: claimed.append(
        (session.session_id, None if copied is None else dict(copied.open))
    )
    key = "FIX=2E4=2E4.GW.C1"
    async with running(a, b):
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store
        a_log, b_log = a.cluster.log, b.cluster.log
        assert a_log is not None
        assert b_log is not None

        # changes alone make no record (an order's lots sent to an LP,
        # nothing told): they wait for the session's next one, which
        # carries the latest state of each order only
        assert await a_log.drain(5)
        records = a_log.stats.records
        a.cluster.copy_order(key, "O1", False, b"o1 v1")
        a.cluster.copy_order(key, "O1", False, b"o1 v2")
        a.cluster.copy_order(key, "O2", False, b"o2 v1")
        assert a.cluster.seal() is None  # nothing to publish
        store.append_sent(1, b"O1 and O2 new")
        await written(a)
        assert a_log.stats.records == records + 1
        assert await b_log.caught_up(key, 5)
        assert b_log.orders[key].open == {"O1": b"o1 v2", "O2": b"o2 v1"}
        # when each was copied (the stream's time): a DAY order copied
        # before a day end that has passed is expired by its taker
        stored = b_log.orders[key].at
        assert set(stored) == {"O1", "O2"}
        assert all(abs(at - time.time()) < 300 for at in stored.values())
        assert b_log.orders[key].writer == a_log.writer
        # changes alone do not make the set whole: a claim would keep its own
        assert not b_log.orders[key].complete
        # a final state removes the order
        store.append_sent(2, b"O2 filled")
        a.cluster.copy_order(key, "O2", True, b"o2 filled")
        a.cluster.copy_order(key, "O3", False, b"o3 v1")
        await written(a)
        assert await b_log.caught_up(key, 5)
        assert b_log.orders[key].open == {"O1": b"o1 v2", "O3": b"o3 v1"}
        assert set(b_log.orders[key].at) == {"O1", "O3"}
        # a reset's record carries every open order (the ones before it are
        # purged): what a late reader has is whole
        store.reset(1_000.0)
        a.cluster.copy_order(key, "O4", False, b"never open at a")
        await written(a)
        await asyncio.wait_for(asyncio.gather(*a_log._purges), 5)
        late = await Member(config, "late", ["C1"]).start()
        async with stopping(late):
            late_log = late.cluster.log
            assert late_log is not None
            assert await late_log.caught_up(key, 5)
            assert late_log.orders[key].open == {"O1": b"o1 v2", "O3": b"o3 v1"}
            assert late_log.orders[key].day_over == {"O3"}
            assert late_log.orders[key].complete
        assert await b_log.caught_up(key, 5)
        assert b_log.orders[key].open == {"O1": b"o1 v2", "O3": b"o3 v1"}

        # a session claimed: its next record carries the whole set
        open_at_a["O5"] = b"o5 v1"
        a.cluster.copy_all(key)
        await written(a)
        assert await b_log.caught_up(key, 5)
        assert b_log.orders[key].open == {"O1": b"o1 v2", "O3": b"o3 v1", "O5": b"o5 v1"}
        assert b_log.orders[key].complete

        # a is gone: b takes the session and is handed the open orders
        for task in a.cluster._tasks:
            task.cancel()
        await take(b, "C1")
        assert claimed == [("FIX.4.4:GW->C1", {"O1": b"o1 v2", "O3": b"o3 v1", "O5": b"o5 v1"})]
        # a late record of a's (its lease taken) changes nothing at b
        late_end = await a_log._js.publish(
            f"{config.bucket_prefix}.slog.{key}",
            msgspec.msgpack.encode(
                (a_log.writer, a.cluster.epoch(key) or 1, [(101, 1, b"O1\x00late end")])
            ),
        )
        await read_up_to(b_log, key, late_end.seq)
        assert b_log.orders[key].open == {"O1": b"o1 v2", "O3": b"o3 v1", "O5": b"o5 v1"}
        assert b_log.orders[key].writer == a_log.writer


@pytest.mark.asyncio
async def test_a_session_with_nothing_of_its_client_copied_is_claimed_with_none(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = Member(config, "a", ["C1"])
    claimed: list[object] = []
    a.cluster.on_claimed = lambda session, copied: claimed.append(copied)
    await a.start()
    async with stopping(a):
        assert await a.claim("C1") is None
        assert claimed == [None]


@pytest.mark.asyncio
async def test_a_session_reset_purges_what_came_before_and_a_late_reader_rebuilds_it(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    async with stopping(a):
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store
        for seq in range(1, 50):
            store.append_sent(seq, b"yesterday %d" % seq)
        store.flush()
        first = a.cluster.seal()
        assert first is not None
        await asyncio.wait_for(first, 5)
        store.reset(1_000.0)  # a new session day
        store.append_sent(1, b"today 1")
        store.flush()
        second = a.cluster.seal()
        assert second is not None
        await asyncio.wait_for(second, 5)
        log = a.cluster.log
        assert log is not None
        # the purge follows the acknowledgement of the reset
        await asyncio.wait_for(asyncio.gather(*log._purges), 5)
        assert log.stats.purges == 1
        key = "FIX=2E4=2E4.GW.C1"
        info = await log._js.stream_info(log.stream, subjects_filter=f"{config.bucket_prefix}.>")
        assert info.state.subjects == {f"{config.bucket_prefix}.slog.{key}": 1}
        # a gateway joining now reads one record, and has the session as it is
        late = await Member(config, "late", ["C1"]).start()
        async with stopping(late):
            late_log = late.cluster.log
            assert late_log is not None
            assert await late_log.caught_up(key, 5)
            assert late.store("C1").get_sent(1, 100) == [(1, b"today 1")]
            assert late.store("C1").creation_time == 1_000.0
            assert late.store("C1").next_sender_seq == 2


@pytest.mark.asyncio
async def test_the_records_of_one_batch_are_stored_as_one_atomic_batch(
    nats_cluster: NatsCluster,
) -> None:
    """Two sessions changed in one write round (a fill crossed between two
    clients): their records are stored together or not at all, next to
    each other; a reset in such a batch purges what came before it in its
    own session only (each record's place worked out from the batch's one
    acknowledgement)."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1", "C2"]).start()
    async with stopping(a):
        log = a.cluster.log
        assert log is not None
        assert log.atomic  # nats-server 2.12 and later
        for client in ("C1", "C2"):
            assert await a.claim(client) is None
        stores = [a.sessions[c].store for c in ("C1", "C2")]
        for store in stores:
            for seq in range(1, 4):
                store.append_sent(seq, b"yesterday %d" % seq)
            store.flush()
        first = a.cluster.seal()
        assert first is not None
        await asyncio.wait_for(first, 5)
        atomic = log.stats.atomic
        assert atomic >= 1
        for n, store in enumerate(stores):
            store.reset(1_000.0 + n)
            store.append_sent(1, b"today %d" % n)
            store.flush()
        second = a.cluster.seal()
        assert second is not None
        await asyncio.wait_for(second, 5)
        assert log.stats.atomic == atomic + 1
        await asyncio.wait_for(asyncio.gather(*log._purges), 5)
        assert log.stats.purges == 2
        subjects = [f"{config.bucket_prefix}.slog.FIX=2E4=2E4.GW.{c}" for c in ("C1", "C2")]
        info = await log._js.stream_info(log.stream, subjects_filter=f"{config.bucket_prefix}.>")
        assert info.state.subjects == dict.fromkeys(subjects, 1)
        kept = [await log._js.get_last_msg(log.stream, subject) for subject in subjects]
        # stored next to each other, as one batch
        assert kept[1].seq == kept[0].seq + 1
        assert [msgspec.msgpack.decode(m.data)[2][0][0] for m in kept] == [RESET, RESET]
        assert all((m.headers or {}).get("Nats-Batch-Id") for m in kept)


@pytest.mark.asyncio
async def test_a_stream_that_stops_taking_atomic_batches_gets_records_one_by_one(
    nats_cluster: NatsCluster,
) -> None:
    """The stream's atomic batches turned off under a running gateway (a
    gateway of an earlier version updated it): the refused batch is
    published again record by record at once, not given up."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1", "C2"]).start()
    async with stopping(a):
        log = a.cluster.log
        assert log is not None
        assert log.atomic
        for client in ("C1", "C2"):
            assert await a.claim(client) is None
        info = await log._js.stream_info(log.stream)
        await log._js.update_stream(dataclasses.replace(info.config, allow_atomic=False))
        for n, client in enumerate(("C1", "C2")):
            a.sessions[client].store.append_sent(1, b"fill %d" % n)
            a.sessions[client].store.flush()
        sealed = a.cluster.seal()
        assert sealed is not None
        await asyncio.wait_for(sealed, 5)  # well before a give-up (10 s)
        assert not log.atomic
        assert log.stats.failures == 0
        for client in ("C1", "C2"):
            assert await last_op(log, config, client) == SENT


async def last_op(log: SessionLog, config: ClusterSettings, client: str) -> int:
    """The kind of the last op of the client's last record in the stream."""
    last = await log._js.get_last_msg(
        log.stream, f"{config.bucket_prefix}.slog.FIX=2E4=2E4.GW.{client}"
    )
    return int(msgspec.msgpack.decode(last.data)[2][-1][0])


async def retried_then_stored(
    member: Member, payload: bytes, mend: Callable[[], Awaitable[object]]
) -> list[dict[str, Any]]:
    """Write ``payload`` to C1's copy, wait until the copy publishes it
    again, ``mend`` what kept it from being stored, and wait until it is:
    the retries logged meanwhile."""
    loop = asyncio.get_running_loop()
    with structlog.testing.capture_logs() as logs:
        member.sessions["C1"].store.append_sent(1, payload)
        member.sessions["C1"].store.flush()
        sealed = member.cluster.seal()
        assert sealed is not None
        deadline = loop.time() + 10
        while not any(e["event"] == "session_copy_retried" for e in logs):
            assert loop.time() < deadline, "never retried"
            await asyncio.sleep(0.01)  # polling, with the deadline above
        await mend()
        await asyncio.wait_for(sealed, 8)
    return [e for e in logs if e["event"] == "session_copy_retried"]


@pytest.mark.asyncio
async def test_a_record_the_stream_refuses_is_published_again_with_the_servers_reason(
    nats_cluster: NatsCluster,
) -> None:
    """A record published alone that the server refuses (here: larger than
    the stream takes) fails at once with the server's own reason, not as an
    acknowledgement that never came; once the stream takes it, it is
    stored and the bytes waiting for it may leave."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    async with stopping(a):
        log = a.cluster.log
        assert log is not None
        assert await a.claim("C1") is None
        info = await log._js.stream_info(log.stream)
        await log._js.update_stream(dataclasses.replace(info.config, max_msg_size=64))
        retried = await retried_then_stored(
            a, b"x" * 200, lambda: log._js.update_stream(info.config)
        )
        assert "record refused" in retried[0]["error"], retried
        assert log.stats.failures == 0
        assert await last_op(log, config, "C1") == SENT


@pytest.mark.asyncio
async def test_an_acknowledgement_that_never_comes_is_told_as_a_timeout(
    nats_cluster: NatsCluster,
) -> None:
    """Answers that do not come (here: the copy stopped reading them) are
    a timeout in the warning, and the record goes again until they do."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    async with stopping(a):
        log = a.cluster.log
        assert log is not None
        assert await a.claim("C1") is None
        answers = log._tasks_subs.pop()  # the subscription to the answers
        await answers.unsubscribe()

        async def read_answers_again() -> None:
            nc = log._js._nc
            log._tasks_subs.append(await nc.subscribe(f"{log._inbox}.*", cb=log._on_answer))

        retried = await retried_then_stored(a, b"fill", read_answers_again)
        assert retried[0]["error"] == repr(TimeoutError("no acknowledgement in 1 s"))
        assert log.stats.failures == 0


def attending_pair(config: Any) -> tuple[Member, Member]:
    """Gateways a and b of one cluster, each ready to take C1 unattended."""
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    for m in (a, b):
        m.cluster.attend(m.sessions["C1"])
    return a, b


@pytest.mark.asyncio
async def test_a_session_is_handed_over_to_another_gateway_with_its_orders(
    nats_cluster: NatsCluster,
) -> None:
    """After a failover, an operator gives a gateway back its client: the
    holder copies what it wrote, drops the client, lets the lease go; the
    other takes the session at once, with the copy's orders."""
    config = settings(nats_cluster)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    claimed: list[tuple[str, dict[str, bytes] | None]] = []
    b.cluster.on_claimed = lambda session, copied: claimed.append(
        (session.session_id, None if copied is None else dict(copied.open))
    )
    for m in (a, b):
        m.cluster.attend(m.sessions["C1"])
    a.cluster.client_state = lambda key: b"positions"
    a.cluster.open_orders = lambda key: [("O1", b"o1 resting", False)]
    async with running(a, b):
        assert await a.claim("C1") is None
        key = session_key(a.sessions["C1"])
        a.cluster.copy_all(key)
        a.sessions["C1"].store.append_sent(1, b"an execution report")
        a.sessions["C1"].store.flush()  # written, not yet copied
        assert await a.cluster.hand_over(a.sessions["C1"], "nobody") == (
            "gateway nobody is not a live member of the cluster (the others live: b)"
        )
        # b not ready yet (its order flow not started): nothing changes
        assert await a.cluster.hand_over(a.sessions["C1"], "b") == (
            "gateway b cannot take it: it is starting"
        )
        assert key in a.cluster.held()
        assert a.lost == []
        b.cluster.start_attending()
        assert await a.cluster.hand_over(a.sessions["C1"], "b") is None
        assert key not in a.cluster.held()
        assert key in b.cluster.held()
        assert [(s, text) for s, text, _at in a.lost] == [
            ("FIX.4.4:GW->C1", "the session was handed over to gateway b")
        ]
        assert claimed == [("FIX.4.4:GW->C1", {"O1": b"o1 resting"})]
        # what a wrote last went with it
        assert b.store("C1").get_sent(1, 1) == [(1, b"an execution report")]
        assert b.cluster.serving(key)
        assert (a.cluster.stats.handovers, b.cluster.stats.handovers) == (1, 0)
        assert await a.cluster.hand_over(a.sessions["C1"], "b") == (
            "session FIX.4.4:GW->C1 is not served by this gateway"
        )
        # the client logging on again at a is told where its session is
        refused = await a.claim("C1")
        assert refused is not None
        assert "gateway b" in refused[0]
        assert await b.cluster.hand_over(b.sessions["C1"], "b") == (
            "session FIX.4.4:GW->C1 is served by b already"
        )


@pytest.mark.asyncio
async def test_a_handover_whose_release_was_not_written_is_taken_all_the_same(
    nats_cluster: NatsCluster,
) -> None:
    """The holder lets the lease go but its delete does not reach the
    cluster in time (a loaded machine: it would lapse by itself): the
    gateway it hands the session to takes it over the holder's lease,
    which the holder gave up, rather than refusing it as served."""
    config = settings(nats_cluster)
    a, b = attending_pair(config)
    async with running(a, b):
        assert await a.claim("C1") is None
        key = session_key(a.sessions["C1"])
        b.cluster.start_attending()

        async def release_lost(key: str) -> None:
            a.cluster._held.pop(key, None)  # let go here; the delete never written

        a.cluster._release = release_lost  # type: ignore[method-assign]
        assert await a.cluster.hand_over(a.sessions["C1"], "b") is None
        assert key not in a.cluster.held()
        assert key in b.cluster.held()
        assert b.cluster.serving(key)


@pytest.mark.asyncio
async def test_a_handover_request_takes_over_only_the_lease_let_go(
    nats_cluster: NatsCluster,
) -> None:
    """A take request that comes late, after the giver claimed the session
    again (its client logged on there once more), does not take over the
    giver's new lease: only the one it let go."""
    config = settings(nats_cluster)
    a, b = attending_pair(config)
    async with running(a, b):
        assert await a.claim("C1") is None
        key = session_key(a.sessions["C1"])
        b.cluster.start_attending()
        let_go = a.cluster._held.pop(key).revision  # let go here, not deleted
        assert await a.claim("C1") is None  # the client logs on at a again
        nc = a.cluster._nc
        assert nc is not None
        subject = f"{config.bucket_prefix}.take.b"

        def request(revision: int) -> bytes:
            parts = (key, "a", a.cluster.process, str(revision))
            return "\x00".join(parts).encode()

        late = await nc.request(subject, request(let_go), timeout=5)
        assert b"is served by gateway a" in late.data
        assert key in a.cluster.held()
        assert key not in b.cluster.held()


@pytest.mark.asyncio
async def test_a_burst_too_big_for_one_message_goes_as_consecutive_records(
    nats_cluster: NatsCluster,
) -> None:
    """Thousands of reports to one client in one write round (a day end
    expiring its orders) encode to more than NATS takes in one message:
    they go as several records of one batch, and a reader rebuilds them
    all, in order."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    async with stopping(a):
        log = a.cluster.log
        assert log is not None
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store
        report = b"8=FIX.4.4|35=8|150=C|" + b"x" * 300
        for seq in range(1, 4001):  # about 1.3 MB
            store.append_sent(seq, report + b"%d" % seq)
        store.flush()
        records = log.stats.records
        sealed = a.cluster.seal()
        assert sealed is not None
        await asyncio.wait_for(sealed, 10)
        assert log.stats.records - records >= 5
        late = await Member(config, "late", ["C1"]).start()
        async with stopping(late):
            late_log = late.cluster.log
            assert late_log is not None
            assert await late_log.caught_up("FIX=2E4=2E4.GW.C1", 10)
            sent = late.store("C1").get_sent(1, 5000)
            assert [seq for seq, _raw in sent] == list(range(1, 4001))
            assert sent[-1][1] == report + b"4000"
            assert late.store("C1").next_sender_seq == 4001


@pytest.mark.asyncio
async def test_a_round_in_parts_is_applied_once_closed_and_never_when_left_open(
    nats_cluster: NatsCluster,
) -> None:
    """A round split in parts is applied when its closing part is read, all
    of it at once; one whose writer died between parts is never applied
    (its bytes never left), not even its first part's whole-set mark."""
    config = settings(nats_cluster)
    a = Member(config, "a", ["C1"])
    b = Member(config, "b", ["C1"])
    a.cluster.open_orders = lambda key: [("O1", b"o1", False)]
    async with running(a, b):
        assert await a.claim("C1") is None
        key = session_key(a.sessions["C1"])
        a.cluster.copy_all(key)
        a.sessions["C1"].store.set_next_sender_seq(2)
        await written(a)
        a_log, b_log = a.cluster.log, b.cluster.log
        assert a_log is not None
        assert b_log is not None
        assert await b_log.caught_up(key, 5)
        assert b_log.orders[key].open == {"O1": b"o1"}
        epoch = a.cluster.epoch(key)
        subject = f"{config.bucket_prefix}.slog.{key}"

        async def record(writer: str, ops: list[tuple[int, int, bytes]]) -> int:
            ack = await a_log._js.publish(subject, msgspec.msgpack.encode((writer, epoch, ops)))
            await read_up_to(b_log, key, ack.seq)
            return int(ack.seq)

        first = [(ORDERS_ALL, 0, b""), order_ops("O2", False, b"o2")[0], (PART, 0, b"")]
        await record(a_log.writer, first)
        assert b_log.orders[key].open == {"O1": b"o1"}  # held: the round is not closed
        await record(a_log.writer, [order_ops("O3", False, b"o3")[0]])
        assert b_log.orders[key].open == {"O2": b"o2", "O3": b"o3"}
        assert b_log.orders[key].complete
        # a round left open (its writer died), then another writer's record
        await record(a_log.writer, [(ORDERS_ALL, 0, b""), (PART, 0, b"")])
        await record("another/1", [order_ops("O4", False, b"o4")[0]])
        assert b_log.orders[key].open == {"O2": b"o2", "O3": b"o3", "O4": b"o4"}


def test_a_batch_is_cut_in_atomic_batches_between_sessions_only() -> None:
    records = [(key, b"", []) for key in ("A", "A", "A", "B", "B", "C", "D", "D", "D", "D", "D")]
    chunks = _chunks(records, limit=4)  # type: ignore[arg-type]
    assert [[k for k, _p, _o in chunk] for chunk in chunks] == [
        ["A", "A", "A"],
        ["B", "B", "C"],
        ["D", "D", "D", "D", "D"],  # one session's parts are never cut
    ]


async def member_server(member: Member, client: str) -> tuple[FixServer, int]:
    """A FIX server for ``member``'s session with ``client``, its bytes
    copied to the cluster, its Logons claimed there."""
    session = member.sessions[client]
    server = FixServer(
        SessionRegistry([session]),
        {session.session_id: EchoApplication()},
        outbox=Outbox(replica=member.cluster),
        logon_gate=member.cluster,
    )
    member.drop = server.abort
    return server, await server.start("127.0.0.1", 0)


@pytest.mark.asyncio
async def test_bursts_at_one_gateway_keep_their_sequence(nats_cluster: NatsCluster) -> None:
    """The gateway's own records, read back from the stream, never touch
    the store of the session it serves."""
    a = await Member(settings(nats_cluster), "a", ["C1"]).start()
    server, port = await member_server(a, "C1")
    client = FixClient(SessionSettings(SenderCompID="C1", TargetCompID="GW"), MemoryStore())
    try:
        await client.connect("127.0.0.1", port)
        for burst in range(100):
            for j in range(10):
                client.send(b"D", order(b"o%d" % (burst * 10 + j)))
            await asyncio.sleep(0.003)  # bursts, as a client sends them
        echoed = [await client.receive(10) for _ in range(1000)]
        assert [m.get(11) for m in echoed] == [b"o%d" % i for i in range(1000)]
        assert client.logged_on
        assert a.store("C1").next_sender_seq == client.session.store.next_target_seq
    finally:
        client.abort()
        await server.stop(grace=0.5)
        await a.cluster.stop()


@pytest.mark.asyncio
async def test_a_gateway_that_lost_its_lease_drops_the_client_unwritten_and_the_next_goes_on(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    server_a, port_a = await member_server(a, "C1")
    server_b, port_b = await member_server(b, "C1")
    client = FixClient(SessionSettings(SenderCompID="C1", TargetCompID="GW"), MemoryStore())
    try:
        await client.connect("127.0.0.1", port_a)
        client.send(b"D", order(b"at-a"))
        assert (await client.receive(5)).get(11) == b"at-a"
        # a can no longer reach the cluster: it stops serving the session
        # before b can take it, and drops the client without a Logout (its
        # number would be missing from the copy)
        nc = a.cluster._nc
        assert nc is not None
        await nc.close()
        await client.wait_closed(5)
        assert client.session.peer_logout_text is None
        await take(b, "C1")
        await b.cluster.renew_once()
        # b goes on with the numbers the client expects
        await client.connect("127.0.0.1", port_b)
        closes = [e.reason for e in client.events if isinstance(e, CloseConnection)]
        assert not [r for r in closes if "too low" in r], closes
        client.send(b"D", order(b"at-b"))
        assert (await client.receive(5)).get(11) == b"at-b"
        assert b.store("C1").next_sender_seq == client.session.store.next_target_seq
    finally:
        client.abort()
        for server in (server_a, server_b):
            await server.stop(grace=0.5)
        for m in (a, b):
            await m.cluster.stop()


async def held_by(member: Member, client: str, timeout: float = 10.0) -> float:
    """Until ``member`` holds ``client``'s session: when it did."""
    key = session_key(member.sessions[client])
    deadline = time.monotonic() + timeout
    while key not in member.cluster.held():
        assert time.monotonic() < deadline, f"{client} not taken in {timeout:g} s"
        await asyncio.sleep(0.02)  # polling, with the deadline above
    return time.monotonic()


@pytest.mark.asyncio
async def test_a_session_no_gateway_holds_is_taken_without_a_logon_once_unattended(
    nats_cluster: NatsCluster,
) -> None:
    """Its owner died (C1) or stopped and let it go (C2), its client is
    away: another gateway takes it, and its client's orders, once no one
    has held it for ``take_unattended_ms``; a session the copy knows
    nothing of (C3) is left alone."""
    config = settings(nats_cluster, take_unattended_ms=300)
    clients = ["C1", "C2", "C3"]
    a, c = Member(config, "a", clients), Member(config, "c", clients)
    b = Member(config, "b", clients)
    claimed: list[tuple[str, dict[str, bytes] | None]] = []
    b.cluster.on_claimed = lambda session, copied: claimed.append(
        (session.session_id, None if copied is None else dict(copied.open))
    )
    for session in b.sessions.values():
        b.cluster.attend(session)
    for m in (a, c):
        m.cluster.client_state = lambda key: b"positions"
        m.cluster.open_orders = lambda key: [("O1", b"o1 resting", False)]
    await a.start()
    await c.start()
    await b.start()
    b.cluster.start_attending()
    async with stopping(a, b):
        assert await a.claim("C1") is None
        assert await c.claim("C2") is None
        for m, client in ((a, "C1"), (c, "C2")):
            m.cluster.copy_all(session_key(m.sessions[client]))
            m.sessions[client].store.set_next_sender_seq(2)
            await written(m, client)
        b_log = b.cluster.log
        assert b_log is not None
        for client in ("C1", "C2"):
            assert await b_log.caught_up(session_key(b.sessions[client]), 5)
        # held by live gateways: not b's to take, however long it looks
        await b.cluster.attend_once()
        assert b.cluster.held() == []

        for task in a.cluster._tasks:
            task.cancel()  # a dies: its lease lapses
        # when each lease was last renewed (the renewal sent then, written
        # after), as it was and not as it should have been: on a loaded
        # machine a renewal comes late, its lease lapsing that much sooner
        a_renewed = a.cluster._held[session_key(a.sessions["C1"])].renewed
        c_renewed = c.cluster._held[session_key(c.sessions["C2"])].renewed
        c_stopping = time.monotonic()
        await c.cluster.stop()  # c stops: its lease is let go at once
        taken = {client: await held_by(b, client) for client in ("C1", "C2")}
        lease, unattended = config.lease_ms / 1000, config.take_unattended_ms / 1000
        # no sooner than the lease's lapse (counted by b from when it saw
        # a's last renewal) and the time unattended after it
        assert taken["C1"] - a_renewed >= lease + unattended
        # no sooner than c let it go (or its lease lapsed, had it come late)
        assert taken["C2"] - min(c_stopping, c_renewed + lease) >= unattended
        # handed over once each copy is read (on a loaded machine perhaps at
        # a later pass: the lease is held meanwhile)
        deadline = time.monotonic() + 10
        while len(claimed) < 2:
            assert time.monotonic() < deadline, f"not handed over: {claimed}"
            await asyncio.sleep(0.02)  # polling, with the deadline above
        assert sorted(claimed) == [
            ("FIX.4.4:GW->C1", {"O1": b"o1 resting"}),
            ("FIX.4.4:GW->C2", {"O1": b"o1 resting"}),
        ]
        assert b.cluster.stats.unattended == 2
        assert b.cluster.figures()["leases"]["taken_unattended"] == 2  # type: ignore[index]
        # taken as a Logon would: the store as the copy left it
        assert b.store("C1").next_sender_seq == 2
        # the client logs on where its session now is: nothing taken again
        assert await b.claim("C1") is None
        assert len(claimed) == 2
        await b.cluster.attend_once()
        assert session_key(b.sessions["C3"]) not in b.cluster.held()
        # the dead one's release, at its end, finds the key taken: no error
        await a.cluster.stop()
        assert a.cluster.stats.reasons == {}


@pytest.mark.asyncio
async def test_a_session_taken_unattended_whose_copy_was_late_is_read_again(
    nats_cluster: NatsCluster,
) -> None:
    """Taken, but its copy not read in time (a node just died): the lease
    is held, and the copy is read again at the next pass, with no client
    to log on and try again."""
    config = settings(nats_cluster, take_unattended_ms=200)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    claimed: list[str] = []
    b.cluster.on_claimed = lambda session, copied: claimed.append(session.session_id)
    b.cluster.attend(b.sessions["C1"])
    a.cluster.client_state = lambda key: b"positions"
    async with running(a, b):
        assert await a.claim("C1") is None
        a.cluster.copy_all(session_key(a.sessions["C1"]))  # the client's state goes too
        a.sessions["C1"].store.set_next_sender_seq(2)
        await written(a)
        for task in a.cluster._tasks:
            task.cancel()
        b_log = b.cluster.log
        assert b_log is not None
        real = b_log.caught_up
        late = [True]

        async def caught_up(key: str, timeout: float) -> bool:
            if late:
                late.clear()
                return False  # as if the copy could not be read in time
            return await real(key, timeout)

        b_log.caught_up = caught_up  # type: ignore[method-assign]
        b.cluster.start_attending()
        key = session_key(b.sessions["C1"])
        await held_by(b, "C1")
        deadline = time.monotonic() + 10
        while not claimed:
            assert time.monotonic() < deadline, "the copy was never read again"
            await asyncio.sleep(0.02)  # polling, with the deadline above
        assert claimed == ["FIX.4.4:GW->C1"]
        assert not late  # the first reading failed
        assert b.cluster.serving(key)


@pytest.mark.asyncio
async def test_a_logout_number_is_not_set_aside_by_a_gateway_still_reading_the_sessions_copy(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a, b, c = (Member(config, name, ["C1"]) for name in ("a", "b", "c"))
    async with running(a, b, c):
        # b reads the copy late (its records wait here until let through)
        b_log = b.cluster.log
        assert b_log is not None
        sub = b_log._sub._sub
        follow = sub._cb
        let_through = asyncio.Event()

        async def late(msg: Any) -> None:
            await let_through.wait()
            await follow(msg)

        sub._cb = late
        assert await a.claim("C1") is None
        a.sessions["C1"].store.set_next_sender_seq(50)  # a sent 49 messages
        await written(a)
        key = session_key(a.sessions["C1"])
        await a.cluster._release(key)  # a lets it go
        # b takes it: granted, waiting for the copy to be read
        claiming = b.claim("C1")
        await held_by(b, "C1")
        # the client logs on at c meanwhile: turned away, b asked for a number
        refusal = await c.claim("C1")
        assert refusal is not None
        _text, seq = refusal
        let_through.set()
        assert await claiming is None
        # none given (the connection is closed without a Logout), or one
        # after every number the client was sent
        assert seq is None or seq >= 50
        assert await b_log.drain(5)
        c_log = c.cluster.log
        assert c_log is not None
        assert await c_log.caught_up(key, 5)
        # and the copy never goes back to numbers the client was sent
        assert b.store("C1").next_sender_seq >= 50
        assert c.store("C1").next_sender_seq >= 50


class _Request:
    """A NATS request as a subscription callback sees it, its answer kept."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def respond(self, data: bytes) -> None:
        self.answer.set_result(data)


@pytest.mark.asyncio
async def test_a_logout_number_set_aside_as_the_lease_goes_is_given_only_if_the_next_owner_has_it(
    nats_cluster: NatsCluster,
) -> None:
    """The client logs on at c while a hands its session to b: c asks a
    for a number for its Logout, a sets one aside and copies that, but the
    copy is stored only after b took the session (a loaded machine: b's
    take overtook it).  b ignores a record of a's stored after it took the
    session, so it will send that number itself: a must not give it."""
    config = settings(nats_cluster, lease_ms=3000, renew_ms=500)
    a, b = attending_pair(config)
    async with running(a, b):
        assert await a.claim("C1") is None
        a.sessions["C1"].store.set_next_sender_seq(50)  # a sent 49 messages
        await written(a)
        key = session_key(a.sessions["C1"])
        b.cluster.start_attending()
        a_log = a.cluster.log
        assert a_log is not None
        # a's copy of the number set aside waits until b holds the session
        publish = a_log._publish
        taken = asyncio.Event()

        async def late_publish(flight: Any) -> None:
            if any(op[:2] == (SET_SENDER, 51) for _k, _p, ops in flight.batch for op in ops):
                await taken.wait()
            await publish(flight)

        a_log._publish = late_publish  # type: ignore[method-assign]
        release = a.cluster._release
        asked: list[_Request] = []
        answering: list[asyncio.Future[None]] = []

        async def release_while_asked(key: str) -> None:
            # c turns the client's Logon away and asks a for a number
            request = _Request(key.encode())
            asked.append(request)
            answering.append(asyncio.ensure_future(a.cluster._on_reserve(request)))
            async with asyncio.timeout(10):
                while a.store("C1").next_sender_seq != 51:  # noqa: ASYNC110
                    await asyncio.sleep(0)  # set aside and sealed, not yet copied
            await release(key)

        a.cluster._release = release_while_asked  # type: ignore[method-assign]
        assert await a.cluster.hand_over(a.sessions["C1"], "b") is None
        assert b.cluster.serving(key)
        taken.set()
        await asyncio.wait_for(answering[0], 10)
        given = await asked[0].answer
        # b goes on from the copy as it was when it took the session
        assert b.store("C1").next_sender_seq == 50
        # so a number a gives for c's Logout is one b will send again
        assert given == b"", f"a gave {given!r} for a Logout; b sends 50 next"


@pytest.mark.asyncio
async def test_a_claim_whose_lease_was_lost_while_its_copy_was_read_is_not_granted(
    nats_cluster: NatsCluster,
) -> None:
    """b takes C1 and waits for the copy to be read (its follower is
    behind); meanwhile its lease is lost (its renewals do not get through).
    The claim must not say the session is b's: its Logon would be read and
    the client served by a gateway that does not hold the session."""
    # lost (lease_ms - renew_ms after its grant) well before the reading
    # of the copy gives up (lease_ms)
    config = settings(nats_cluster, lease_ms=3000, renew_ms=1000)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    async with running(a, b):
        b_log = b.cluster.log
        assert b_log is not None
        sub = b_log._sub._sub
        follow = sub._cb
        let_through = asyncio.Event()

        async def late(msg: Any) -> None:
            await let_through.wait()
            await follow(msg)

        sub._cb = late
        assert await a.claim("C1") is None
        a.sessions["C1"].store.set_next_sender_seq(50)
        await written(a)
        key = session_key(a.sessions["C1"])
        await a.cluster._release(key)
        # b's renewals stop getting through (its fence goes on)
        for task in b.cluster._tasks:
            if task.get_coro().__name__ == "_renew_forever":  # type: ignore[union-attr]
                task.cancel()
        claiming = b.claim("C1")
        await held_by(b, "C1")
        deadline = time.monotonic() + 10
        while not b.lost:
            assert time.monotonic() < deadline, "b never let the lease go"
            await asyncio.sleep(0.02)  # polling, with the deadline above
        assert key not in b.cluster.held()
        let_through.set()
        granted = await asyncio.wait_for(claiming, 10)
        assert granted is not None, "the claim said C1 is b's, though b lost its lease"


@pytest.mark.asyncio
async def test_a_message_whose_copy_was_given_up_is_resent_by_the_next_owner_too(
    nats_cluster: NatsCluster,
) -> None:
    """docs/cluster.md: a batch not acknowledged in 10 s is given up, its
    bytes never leave; a ResendRequest is answered with everything the
    session was sent, whichever gateway sent it."""
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    async with stopping(a, b):
        log = a.cluster.log
        assert log is not None
        assert await a.claim("C1") is None
        store = a.sessions["C1"].store
        store.append_sent(1, b"message 1")
        await written(a)
        # the stream refuses the next record (a limit lowered, a full disk)
        # until its copy is given up: the bytes of message 2 never leave then
        info = await log._js.stream_info(log.stream)
        await log._js.update_stream(dataclasses.replace(info.config, max_msg_size=256))
        store.append_sent(2, b"2" * 1000)
        store.flush()
        sealed = a.cluster.seal()
        assert sealed is not None
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(sealed, 20)
        # what a holds would be resent from its store: nothing leaves until
        # the copy has it too
        assert not a.cluster.may_send(a.sessions["C1"])
        await log._js.update_stream(info.config)
        # the client logs on again where it was served: what a holds for
        # its resend is what it has sent or will send now
        assert await a.claim("C1") is None
        assert a.cluster.may_send(a.sessions["C1"])
        sent_by_a = a.store("C1").get_sent(1, 10)
        store.append_sent(3, b"message 3")
        await written(a)
        # a dies; b takes the session over, and is asked to resend it all
        for task in a.cluster._tasks:
            task.cancel()
        await a.cluster._close_connection()
        await take(b, "C1")
        assert b.store("C1").get_sent(1, 10) == [*sent_by_a, (3, b"message 3")]


async def give_up(member: Member, change: Callable[[ReplicatedStore], None]) -> None:
    """``change`` ``member``'s store of C1 in a batch the stream refuses
    until its copy is given up (a limit lowered, a full disk), and then
    takes records again."""
    log = member.cluster.log
    assert log is not None
    info = await log._js.stream_info(log.stream)
    await log._js.update_stream(dataclasses.replace(info.config, max_msg_size=256))
    store = member.sessions["C1"].store
    assert isinstance(store, ReplicatedStore)
    change(store)
    store.flush()
    sealed = member.cluster.seal()
    assert sealed is not None
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(sealed, 15)
    await log._js.update_stream(info.config)


def big_message(store: ReplicatedStore) -> None:
    store.append_sent(2, b"2" * 1000)


@pytest.mark.asyncio
async def test_a_store_whose_copy_cannot_be_made_again_is_not_served_until_it_is(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy made again carries the client's state and every open order
    too (the records given up carried them); a Logon meanwhile is turned
    away, and nothing of the session leaves."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    a.cluster.client_state = lambda key: b"after fill 2"
    a.cluster.open_orders = lambda key: [("O1", b"O1 partly filled", False)]
    async with running(a, b):
        session = a.sessions["C1"]
        key = session_key(session)
        assert await a.claim("C1") is None
        session.store.append_sent(1, b"message 1")
        await written(a)
        await give_up(a, big_message)
        log = a.cluster.log
        assert log is not None
        info = await log._js.stream_info(log.stream)
        await log._js.update_stream(dataclasses.replace(info.config, max_msg_size=256))
        refused = await a.claim("C1")
        assert refused is not None
        assert "could not copy the session's state" in refused[0]
        assert not a.cluster.may_send(session)
        assert a.cluster.epoch(key)  # the lease stays: the next Logon tries again
        await log._js.update_stream(info.config)
        await take(a, "C1")
        assert a.cluster.may_send(session)
        b_log = b.cluster.log
        assert b_log is not None
        assert await b_log.caught_up(key, 5)
        assert b.store("C1").get_sent(1, 10) == [(1, b"message 1"), (2, b"2" * 1000)]
        assert b_log.clients[key].data == b"after fill 2"
        copied = b_log.orders[key]
        assert copied.complete
        assert copied.open == {"O1": b"O1 partly filled"}


@pytest.mark.asyncio
async def test_a_new_session_day_whose_copy_was_given_up_is_copied_again_whole(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reset given up: the copy made again starts the new day (its
    creation time, its messages) and purges the day before."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    async with running(a, b):
        session = a.sessions["C1"]
        key = session_key(session)
        assert await a.claim("C1") is None
        for seq in range(1, 4):
            session.store.append_sent(seq, b"day 1 message %d" % seq)
        await written(a)

        def new_day(store: ReplicatedStore) -> None:
            store.reset(86_400.0)
            store.append_sent(1, b"1" * 1000)
            store.set_next_target_seq(2)

        await give_up(a, new_day)
        assert await a.claim("C1") is None
        log = a.cluster.log
        assert log is not None
        deadline = time.monotonic() + 10
        while log.stats.purges < 1:
            assert time.monotonic() < deadline, "the day before was not purged"
            await asyncio.sleep(0.02)  # polling, with the deadline above
        # a dies; b takes the session over
        for task in a.cluster._tasks:
            task.cancel()
        await a.cluster._close_connection()
        await take(b, "C1")
        store = b.store("C1")
        assert store.creation_time == 86_400.0
        assert store.get_sent(1, 10) == [(1, b"1" * 1000)]
        assert (store.next_sender_seq, store.next_target_seq) == (2, 2)
        c = await Member(config, "c", ["C1"]).start()  # reads the copy from its start
        async with stopping(c):
            c_log = c.cluster.log
            assert c_log is not None
            assert await c_log.caught_up(key, 5)
            assert c.store("C1").get_sent(1, 10) == [(1, b"1" * 1000)]


@pytest.mark.asyncio
async def test_what_was_given_up_is_not_copied_again_once_another_gateway_wrote_the_copy(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A given up, then lost the session: the gateway that served it next
    went on from the copy (its own number 2), and what a holds of the
    batch given up never left: taking the session back, a must neither
    copy it over the other's records under its newer lease nor resend it."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    async with running(a, b):
        session = a.sessions["C1"]
        key = session_key(session)
        assert await a.claim("C1") is None
        session.store.append_sent(1, b"message 1")
        await written(a)
        await give_up(a, big_message)
        await a.cluster._release(key)
        await take(b, "C1")
        assert b.store("C1").next_sender_seq == 2
        b.sessions["C1"].store.set_next_sender_seq(3)  # b's Logon took 2
        b.sessions["C1"].store.set_next_target_seq(2)
        await written(b, "C1")
        await b.cluster._release(key)
        await take(a, "C1")
        log = a.cluster.log
        assert log is not None
        assert log.stats.recopies == 0
        assert a.cluster.may_send(session)
        # and a's store ends as the copy does: its message 2 is not resent
        assert a.store("C1").get_sent(1, 10) == [(1, b"message 1")]
        assert (a.store("C1").next_sender_seq, a.store("C1").next_target_seq) == (3, 2)
        session.store.append_sent(3, b"message 3")
        await written(a)
        await a.cluster._release(key)
        await take(b, "C1")
        assert b.store("C1").get_sent(1, 10) == [(1, b"message 1"), (3, b"message 3")]


@pytest.mark.asyncio
async def test_a_gateway_restarted_after_a_copy_given_up_cuts_its_store_back_to_the_copy(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/cluster.md: a restarted gateway's files end as the copy does,
    what they had beyond it was never sent."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    first = Member(config, "a", ["C1"])
    await first.start()
    async with stopping(first):
        assert await first.claim("C1") is None
        first.sessions["C1"].store.append_sent(1, b"message 1")
        await written(first)
        await give_up(first, big_message)
        files = first.store("C1")
        for task in first.cluster._tasks:
            task.cancel()
        await first.cluster._close_connection()
    again = Member(config, "a", ["C1"])  # the same name and files, another process
    kept = again.store("C1")
    for seq, message in files.get_sent(1, 10):
        kept.append_sent(seq, message)
    assert kept.get_sent(2, 2) != []
    await again.start()
    async with stopping(again):
        await take(again, "C1")
        assert kept.get_sent(1, 10) == [(1, b"message 1")]
        log = again.cluster.log
        assert log is not None
        assert log.stats.recopies == 0


@pytest.mark.asyncio
async def test_a_message_given_up_is_dropped_once_another_gateway_took_the_session_unattended(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other gateway took the session with no Logon (its record carries
    only the client's state and orders, the copy's): handed back, a answers
    a ResendRequest for its message 2 with a gap fill, as the copy would,
    not with a fill the client's state taken from the copy does not hold."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    a, b = Member(config, "a", ["C1"]), Member(config, "b", ["C1"])
    async with running(a, b):
        session = a.sessions["C1"]
        key = session_key(session)
        assert await a.claim("C1") is None
        for seq in range(1, 4):
            session.store.append_sent(seq, b"message %d" % seq)
        await written(a)

        def fill(store: ReplicatedStore) -> None:
            store.append_sent(4, b"4" * 1000)
            store.append_sent(5, b"5" * 1000)

        await give_up(a, fill)
        await a.cluster._release(key)
        await take(b, "C1")
        b.cluster.copy_all(key)
        sealed = b.cluster.seal()
        assert sealed is not None
        await asyncio.wait_for(sealed, 5)
        await b.cluster._release(key)
        await take(a, "C1")
        assert a.store("C1").get_sent(1, 10) == [(s, b"message %d" % s) for s in range(1, 4)]


@pytest.mark.asyncio
async def test_a_client_whose_report_was_given_up_gets_it_at_its_gateway_and_then_anywhere(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the FIX server: the report whose copy was given up never
    leaves; the client logs on again at the same gateway and gets it (its
    Logon read once the copy has it); that gateway dies, and the next
    resends the report with the same number."""
    monkeypatch.setattr(replica, "GIVE_UP", 2.0)
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    server_a, port_a = await member_server(a, "C1")
    server_b, port_b = await member_server(b, "C1")
    client = FixClient(SessionSettings(SenderCompID="C1", TargetCompID="GW"), MemoryStore())
    try:
        await client.connect("127.0.0.1", port_a)
        client.send(b"D", order(b"first"))
        assert (await client.receive(5)).get(11) == b"first"
        log = a.cluster.log
        assert log is not None
        info = await log._js.stream_info(log.stream)
        await log._js.update_stream(dataclasses.replace(info.config, max_msg_size=512))
        client.send(b"D", order(b"L" * 600))
        await client.wait_closed(15)
        assert client.messages.empty()
        await log._js.update_stream(info.config)
        await client.connect("127.0.0.1", port_a)
        resent = await client.receive(5)
        assert resent.get(11) == b"L" * 600
        seq = int(resent.get(34) or b"0")
        nc = a.cluster._nc
        assert nc is not None
        await nc.close()  # a is gone for the cluster: its client is dropped
        await client.wait_closed(5)
        await take(b, "C1")
        assert [n for n, m in b.store("C1").get_sent(seq, seq) if b"L" * 600 in m] == [seq]
        await client.connect("127.0.0.1", port_b)
        client.send(b"D", order(b"at-b"))
        assert (await client.receive(5)).get(11) == b"at-b"
    finally:
        client.abort()
        for server in (server_a, server_b):
            await server.stop(grace=0.5)
        for m in (a, b):
            await m.cluster.stop()


def test_what_was_given_up_is_cut_from_a_store_and_nothing_else() -> None:
    log = SessionLog(cast(Any, None), "t", "a", 3, lambda key: 0, {})
    # the first message given up: nothing below it to keep
    store = MemoryStore(created=7.0)
    for seq in (1, 2, 3):
        store.append_sent(seq, b"m%d" % seq)
    store.set_next_target_seq(9)
    log._cut_back("k", store, replica._Uncopied(sent={1: b"m1", 2: b"other's"}))
    assert state(store) == (4, 9, 7.0, [(2, b"m2"), (3, b"m3")])
    # given up in the middle, one of them since stored again by another
    store = MemoryStore(created=7.0)
    for seq in range(1, 7):
        store.append_sent(seq, b"m%d" % seq)
    store.set_next_sender_seq(12)
    log._cut_back("k", store, replica._Uncopied(sent={3: b"m3", 5: b"m5", 6: b"old 6"}))
    assert state(store) == (12, 1, 7.0, [(1, b"m1"), (2, b"m2"), (4, b"m4"), (6, b"m6")])
    # nothing given up is still there: nothing changes
    log._cut_back("k", store, replica._Uncopied(sent={3: b"m3", 7: b"m7"}))
    assert state(store) == (12, 1, 7.0, [(1, b"m1"), (2, b"m2"), (4, b"m4"), (6, b"m6")])
