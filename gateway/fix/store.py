"""Per-session FIX message store: sequence numbers and sent messages for resend.

A FIX session needs two counters that must never go backwards by accident --
the MsgSeqNum of our next outgoing message and the MsgSeqNum we expect next
from the peer -- plus a copy of every application message it has sent, so
that it can answer a ResendRequest.  A store keeps that state per session.

This module holds the interface every backend derives from,
:class:`SessionStore`, and :class:`MemoryStore`, which keeps everything in
process memory: nothing survives a restart, so it is meant for tests and for
sessions that reset every logon.  The store on disk that production sessions
use, and the factory that opens a store by backend name, live in
:mod:`gateway.storage.session_store`.

Nothing here reads the clock: a store's creation time (which names its
session day) is given by whoever creates or resets it.

The store is synchronous and not thread-safe.  It is driven from the event
loop, so a backend keeps system calls to a minimum: changes are buffered in
memory and :meth:`SessionStore.flush` turns each batch into a single
``write(2)``.

Session semantics (every backend)
---------------------------------
* ``append_sent(seq, msg)`` stores the complete wire bytes of an outgoing
  message.  It also moves ``next_sender_seq`` to ``seq + 1`` if it is not
  already past ``seq``, so a stored message never shares its number with the
  next one to be sent.
* ``set_next_sender_seq`` may jump forward (sequence numbers consumed by
  messages that are not stored, e.g. session-level messages that a resend
  replaces with a SequenceReset-GapFill).  The skipped numbers simply have no
  stored message; ``get_sent`` returns only what is stored.
* Sequence numbers are appended in ascending order.  If a number is reused
  (an operator moved ``next_sender_seq`` backwards), the new message
  supersedes every stored message with the same or a higher number.
* ``get_sent(begin, end)`` also returns messages that are appended but not
  yet flushed.
* ``reset(now)`` starts a new session day created at ``now``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from types import TracebackType
from typing import Final, Protocol, Self

__all__ = [
    "MAX_SEQ",
    "MemoryStore",
    "SessionStore",
    "StoreError",
    "check_seq",
]

MAX_SEQ: Final = 2**64 - 1
"""The highest sequence number a store keeps (it is written as a u64)."""


class StoreError(Exception):
    """A session store cannot be opened or used."""


def check_seq(seq: int, limit: int = MAX_SEQ) -> int:
    """Return ``seq`` if ``1 <= seq <= limit``; raise ValueError otherwise."""
    if not 1 <= seq <= limit:
        raise ValueError(f"sequence number out of range: {seq}")
    return seq


class SessionStore:
    """Persistent state of one FIX session: the base of every backend.

    Mutating calls only change memory; :meth:`flush` makes them durable (the
    durability policy is the backend's).  A base class rather than a
    protocol, so that compiled callers reach a backend's methods directly.
    """

    @property
    def next_sender_seq(self) -> int:
        """The MsgSeqNum our next outgoing message will carry."""
        raise NotImplementedError

    @property
    def next_target_seq(self) -> int:
        """The MsgSeqNum we expect on the next message from the peer."""
        raise NotImplementedError

    @property
    def creation_time(self) -> float:
        """Epoch seconds at which the store (the session day) was created or reset."""
        raise NotImplementedError

    def set_next_sender_seq(self, seq: int) -> None:
        """Set the MsgSeqNum of our next outgoing message.

        Jumping forward is allowed; the skipped numbers have no stored message.
        """
        raise NotImplementedError

    def set_next_target_seq(self, seq: int) -> None:
        """Set the MsgSeqNum we expect next from the peer."""
        raise NotImplementedError

    def append_sent(self, seq: int, message: bytes) -> None:
        """Store the whole wire bytes of an outgoing message with MsgSeqNum ``seq``.

        Numbers are expected in ascending order; reusing a number supersedes
        the stored messages with that number and above.  ``next_sender_seq``
        moves to ``seq + 1`` unless it is already higher.  The message is
        buffered until :meth:`flush`.
        """
        raise NotImplementedError

    def get_sent(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Return the stored messages with ``begin <= seq <= end`` in ascending order.

        Messages appended but not flushed yet are included.
        """
        raise NotImplementedError

    def reset(self, now: float | None = None) -> None:
        """Start a new session day.

        Both sequence numbers go back to 1, all messages are dropped and
        ``creation_time`` becomes ``now`` (epoch seconds).  Without ``now`` a
        backend that may read the clock takes the current time, and one that
        may not (:class:`MemoryStore`) keeps its creation time.  Durable when
        the call returns.
        """
        raise NotImplementedError

    def flush(self) -> None:
        """Make every change since the last flush durable, with one write at most."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release all resources.  Calling it again does nothing."""
        raise NotImplementedError

    def discard(self) -> None:
        """Release all resources without flushing: the changes since the
        last flush are not made durable (none of them left the process, and
        what they answer was not written to the order journal).  Calling it,
        or :meth:`close`, again does nothing."""
        raise NotImplementedError


class MemoryStore(SessionStore):
    """A :class:`SessionStore` that keeps everything in process memory.

    ``created`` is the creation time of the session day (epoch seconds);
    :meth:`reset` replaces it with the time it is given.
    """

    def __init__(self, *, created: float = 0.0) -> None:
        self._sender = 1
        self._target = 1
        self._created = created
        self._seqs: list[int] = []
        self._msgs: list[bytes] = []
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def next_sender_seq(self) -> int:
        return self._sender

    @property
    def next_target_seq(self) -> int:
        return self._target

    @property
    def creation_time(self) -> float:
        return self._created

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("operation on a closed store")

    def set_next_sender_seq(self, seq: int) -> None:
        self._check_open()
        self._sender = check_seq(seq)

    def set_next_target_seq(self, seq: int) -> None:
        self._check_open()
        self._target = check_seq(seq)

    def append_sent(self, seq: int, message: bytes) -> None:
        self._check_open()
        check_seq(seq, MAX_SEQ - 1)  # next_sender_seq moves to seq + 1
        seqs = self._seqs
        if seqs and seq <= seqs[-1]:
            cut = bisect_left(seqs, seq)
            del seqs[cut:]
            del self._msgs[cut:]
        seqs.append(seq)
        self._msgs.append(bytes(message))
        if self._sender <= seq:
            self._sender = seq + 1

    def get_sent(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        self._check_open()
        lo = bisect_left(self._seqs, begin)
        hi = bisect_right(self._seqs, end)
        return list(zip(self._seqs[lo:hi], self._msgs[lo:hi], strict=True))

    def reset(self, now: float | None = None) -> None:
        self._check_open()
        self._sender = 1
        self._target = 1
        if now is not None:
            self._created = now
        self._seqs.clear()
        self._msgs.clear()

    def flush(self) -> None:
        self._check_open()

    def close(self) -> None:
        self._closed = True

    def discard(self) -> None:
        self._closed = True


# -- recorded changes (a cluster of gateways copies them) -----------------------------

SET_SENDER: Final = 1
SET_TARGET: Final = 2
SENT: Final = 3
RESET: Final = 4

StoreOp = tuple[int, int, bytes]
"""(kind, number, bytes): a sequence number set (SET_SENDER, SET_TARGET),
a message stored with its number (SENT), or a reset with the new creation
time in milliseconds (RESET).  Absolute values: applied in order they
rebuild a store from any state, and applied twice they change nothing."""


class Recorder(Protocol):
    """Takes what a :class:`RecordingStore` flushed."""

    def record(self, key: str, ops: list[StoreOp]) -> None: ...


class RecordingStore(SessionStore):
    """A store whose every change is also recorded, and handed to
    ``recorder`` at each flush (after the store's own)."""

    def __init__(self, inner: SessionStore, key: str, recorder: Recorder) -> None:
        self.inner = inner
        """The store itself (changes applied to it directly are not recorded)."""
        self.key = key
        self._recorder = recorder
        self._ops: list[StoreOp] = []

    @property
    def next_sender_seq(self) -> int:
        return self.inner.next_sender_seq

    @property
    def next_target_seq(self) -> int:
        return self.inner.next_target_seq

    @property
    def creation_time(self) -> float:
        return self.inner.creation_time

    def set_next_sender_seq(self, seq: int) -> None:
        self.inner.set_next_sender_seq(seq)
        self._ops.append((SET_SENDER, seq, b""))

    def set_next_target_seq(self, seq: int) -> None:
        self.inner.set_next_target_seq(seq)
        self._ops.append((SET_TARGET, seq, b""))

    def append_sent(self, seq: int, message: bytes) -> None:
        self.inner.append_sent(seq, message)
        self._ops.append((SENT, seq, message))

    def get_sent(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        return self.inner.get_sent(begin, end)

    def reset(self, now: float | None = None) -> None:
        self.inner.reset(now)
        self._ops.append((RESET, round(self.inner.creation_time * 1000), b""))

    def flush(self) -> None:
        self.inner.flush()
        if self._ops:
            ops = self._ops
            self._ops = []
            self._recorder.record(self.key, ops)

    def close(self) -> None:
        self.flush()
        self.inner.close()

    def discard(self) -> None:
        self._ops = []
        self.inner.discard()


def apply_ops(store: SessionStore, ops: list[StoreOp]) -> None:
    """Apply recorded changes to ``store``, in order (not flushed)."""
    for kind, number, data in ops:
        if kind == SENT:
            store.append_sent(number, data)
        elif kind == SET_SENDER:
            store.set_next_sender_seq(number)
        elif kind == SET_TARGET:
            store.set_next_target_seq(number)
        elif kind == RESET:
            store.reset(number / 1000)
