"""The sessions' copy: records that rebuild a store, bytes held until the
copy is acknowledged, and another instance following it (real JetStream)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from clusterkit import Member, settings
from hypothesis import given
from hypothesis import strategies as st

from config import SessionSettings
from gateway.cluster.replica import Op, ReplicatedStore, SessionLog, apply
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import FixTransportProtocol, Outbox
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


class Peer(FixTransportProtocol):
    """A protocol whose writes are collected (no socket)."""

    class _Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.aborted = False
            self.closed = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return self.aborted or self.closed

        def get_write_buffer_size(self) -> int:
            return 0

        def abort(self) -> None:
            self.aborted = True

        def close(self) -> None:
            self.closed = True

    def __init__(self, outbox: Outbox, session: Session) -> None:
        super().__init__(lambda: 0.0, 1 << 20, outbox)
        self.wire = Peer._Transport()
        self._transport = cast(Any, self.wire)
        self._conn = session
        self.session = session

    def abort(self) -> None:
        self.wire.abort()


class Copies:
    """A replica whose acknowledgements the test gives."""

    def __init__(self) -> None:
        self.sealed: list[asyncio.Future[None]] = []

    def seal(self) -> asyncio.Future[None] | None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sealed.append(future)
        return future


def logged_on(name: str) -> Session:
    session = Session(SessionSettings(SenderCompID="GW", TargetCompID=name), MemoryStore())
    session.connection_made(0.0)
    session._machine.move(session._machine.state.__class__.ACTIVE)
    return session


@pytest.mark.asyncio
async def test_bytes_leave_only_once_their_copy_and_every_earlier_one_is_acknowledged() -> None:
    copies = Copies()
    outbox = Outbox(replica=copies)
    one, two = logged_on("C1"), logged_on("C2")
    p1, p2 = Peer(outbox, one), Peer(outbox, two)
    outbox.bind(one, p1)
    outbox.bind(two, p2)
    outbox.send(one, b"8", b"11=a\x01", 0.0)
    outbox.write_pending()
    outbox.send(two, b"8", b"11=b\x01", 0.0)
    outbox.write_pending()
    assert len(copies.sealed) == 2
    assert p1.wire.written == []
    assert p2.wire.written == []
    # the second batch's copy first: it still waits for the first
    copies.sealed[1].set_result(None)
    await asyncio.sleep(0)
    assert p2.wire.written == []
    copies.sealed[0].set_result(None)
    await asyncio.sleep(0)
    assert [b"11=a\x01" in w for w in p1.wire.written] == [True]
    assert [b"11=b\x01" in w for w in p2.wire.written] == [True]


@pytest.mark.asyncio
async def test_a_batch_whose_copy_failed_never_leaves_and_its_connections_are_dropped() -> None:
    copies = Copies()
    outbox = Outbox(replica=copies)
    one = logged_on("C1")
    peer = Peer(outbox, one)
    outbox.bind(one, peer)
    outbox.send(one, b"8", b"11=a\x01", 0.0)
    outbox.write_pending()
    outbox.send(one, b"8", b"11=b\x01", 0.0)
    outbox.write_pending()
    copies.sealed[0].set_exception(ConnectionError("no quorum"))
    copies.sealed[1].set_result(None)
    await asyncio.sleep(0)
    assert peer.wire.aborted
    assert peer.wire.written == []


@pytest.mark.asyncio
async def test_another_instance_follows_the_copy_and_ignores_a_fenced_writer(
    nats_cluster: NatsCluster,
) -> None:
    config = settings(nats_cluster)
    a = await Member(config, "a", ["C1"]).start()
    b = await Member(config, "b", ["C1"]).start()
    try:
        assert await a.claim("C1") is None
        session = a.sessions["C1"]
        store = session.store
        for seq in range(1, 6):
            store.append_sent(seq, b"message %d" % seq)
        store.set_next_target_seq(4)
        store.flush()
        sealed = a.cluster.seal()
        assert sealed is not None
        await asyncio.wait_for(sealed, 5)
        log = b.cluster.log
        assert log is not None
        key = "FIX=2E4=2E4.GW.C1"
        assert await log.caught_up(key, 5)
        assert b.store("C1").next_sender_seq == 6
        assert b.store("C1").next_target_seq == 4
        assert b.store("C1").get_sent(1, 5) == [(s, b"message %d" % s) for s in range(1, 6)]
        # a record of an older epoch than one applied (a writer fenced out)
        # changes nothing
        a_log = a.cluster.log
        assert a_log is not None
        old_epoch = a.cluster.epoch(key)
        log.claimed(key, old_epoch + 1000)
        store.append_sent(6, b"late")
        store.flush()
        sealed = a.cluster.seal()
        assert sealed is not None
        await asyncio.wait_for(sealed, 5)
        assert await log.caught_up(key, 5)
        assert log.stats.fenced == 1
        assert b.store("C1").next_sender_seq == 6
    finally:
        for m in (a, b):
            await m.cluster.stop()
