"""The LP adapter contract.

An LP adapter is the one place where a liquidity provider's wire format and
connection live.  Everything on the gateway side of it speaks the domain
values of :mod:`router.model`: child orders go in through :meth:`LpAdapter.send`,
and quotes, acks, fills, rejects, cancels and link status come back as
:data:`~router.model.LpEvent` values through the ``sink`` callable the adapter
was built with.

Adding an LP means writing a subclass of :class:`LpAdapter` and a settings
Struct for it, registering the two under a kind (:mod:`lp_adapters.registry`),
and naming that kind in the config.  The composition root builds adapters
through the registry and never imports an adapter module by hand.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from mypy_extensions import mypyc_attr

from router.model import (
    ChildCanceled,
    ChildOrder,
    EndedChild,
    Instrument,
    LpEvent,
    RecoveredOrder,
)

__all__ = [
    "DISCONNECTED_REASON",
    "UNKNOWN_AFTER_RESTART_REASON",
    "EventSink",
    "LpAdapter",
]

EventSink = Callable[[LpEvent], None]
"""Where an adapter delivers every event: called on the event loop thread,
synchronously, and expected to return quickly without blocking."""

DISCONNECTED_REASON: Final = "lp disconnected"
"""``ChildCanceled.reason`` for a child order resolved because the link dropped."""

UNKNOWN_AFTER_RESTART_REASON: Final = "not known to the LP after a gateway restart"
"""``ChildCanceled.reason`` for a child order from before a restart that the
LP no longer has (or, for an adapter that cannot ask, no longer reports on)."""


# what every adapter implements (the abstract methods below)
_ABSTRACT: Final = ("connect", "disconnect", "up", "send")


# compiled with the order path; adapters written in Python subclass it as well
@mypyc_attr(allow_interpreted_subclasses=True)
class LpAdapter(ABC):
    """One connection to one liquidity provider.

    Construction
        ``Adapter(name, instruments, sink, settings)``.  ``name`` is the LP's
        name as the router knows it (``ChildOrder.lp``, ``Quote.lp``,
        ``LpStatus.lp``); ``instruments`` maps every symbol the gateway
        trades to its :class:`~router.model.Instrument`; ``sink`` receives
        every event; ``settings`` is the adapter's own section of the config
        as the settings type its kind is registered with, already checked
        (type, limits and the kind's check against the instruments: see
        :mod:`lp_adapters.registry`).  The constructor does no I/O.

    Required methods
        ``async connect()``
            Open the link.  When it is up, emit ``LpStatus(up=True)`` and
            start streaming quotes.  Calling it while up does nothing.
        ``async disconnect()``
            Close the link and stop every background task the adapter owns
            (the call returns once they are finished).  Open child orders are
            resolved exactly as for a drop (see below).  Calling it while
            down does nothing.
        ``up`` (property)
            True while orders can be sent to the LP.
        ``send(child)``
            Hand one immediate-or-cancel child order to the LP.  Never blocks
            and never calls ``sink`` before it returns: every answer arrives
            later, through ``sink``.  Raising is reserved for the caller's own
            mistakes (a child id that is already open); anything the LP or the
            link says is an event.

    Optional methods
        ``cancel(child_id)``
            Ask the LP to cancel an open child order.  The default does
            nothing: IOC children end on their own.  An adapter that
            implements it answers through ``sink`` like ``send`` does, and an
            unknown or already finished ``child_id`` is ignored.
        ``recover(children)``
            Called once, before ``connect``, after the gateway restarted:
            ``(child, open_lots, exec_ids)`` for each child order sent in
            an earlier run that had not ended.  The adapter finds out what
            became of each and ends it with the usual events (fills it had
            not reported, then the terminal outcome); ``open_lots`` is what
            the gateway has not seen filled, ``exec_ids`` the ExecIDs of the
            fills it has (one the LP reports again is not counted twice).
            The default ends each one with ``ChildCanceled(open_lots,
            UNKNOWN_AFTER_RESTART_REASON)`` on the next loop iteration:
            right for an LP whose state does not outlive the gateway (the
            in-process simulator); an adapter to a real LP asks it instead.
            A child the gateway had given up on (the link dropped, or the
            LP did not answer) comes back at each restart until such an
            end (other than a drop's) or a fill leaving nothing open is
            emitted for it, or its trading day is over.
        ``recover_ended(ended)``
            Called once, before ``connect``, after the gateway restarted:
            ``(EndedChild, filled_in_full)`` for each child the LP ended in
            an earlier run that the gateway still watches for a fill
            reported after the end.  An adapter that drops reports about
            children it does not know keeps these, and passes such a fill on
            (once per ExecID).  The default does nothing.

    Events for a child order
        For each child passed to ``send`` the adapter emits, in this order:
        at most one ``ChildAck``; zero or more ``ChildFill`` (each with an
        ``exec_id`` that is unique for this LP, and ``leaves`` counting the
        lots still open after it); and it ends with exactly one terminal
        outcome:

        * fully filled: the last ``ChildFill`` has ``leaves == 0``;
        * rejected: ``ChildReject``, with nothing filled;
        * remainder canceled: ``ChildCanceled`` whose ``canceled_qty`` is the
          lots left after the fills (the whole quantity if nothing filled).

        Nothing is emitted for a child after its terminal outcome, and the
        filled lots plus ``canceled_qty`` always equal ``ChildOrder.qty``.

    Quotes
        For every symbol it streams the adapter emits :class:`~router.model.Quote`
        events holding the LP's book of up to N levels a side, bids best
        (highest) first and asks best (lowest) first.

    Link status
        ``LpStatus`` is emitted on every change of ``up``, and only then.

    When the link drops
        Whether the drop is asked for (``disconnect``) or not, the adapter
        first emits ``LpStatus(up=False)`` and then, for every child order
        still open, in the order they were sent, a
        ``ChildCanceled(canceled_qty=<lots still open>, reason="lp disconnected")``
        (:data:`DISCONNECTED_REASON`).  A cancel, not a reject, because part of
        the child may already have been filled; the cancel then covers the
        remainder and the child's totals still add up.  No child is left
        waiting for an answer that will never come.  A child sent while the
        link is down is answered with ``ChildReject``.  The one event allowed
        after that cancel: a ``ChildFill`` the LP made before it saw the
        drop and reports once the link is back (the gateway books it as a
        late fill, to the house).

    An LP that breaks its word
        A ``ChildFill`` the LP reports for a child after it canceled or
        rejected it is passed on all the same, once per ``exec_id``: the
        position is the LP's whatever it said before, and the gateway books
        the fill as a late fill, to the house.

    Threading
        Every method is called on the event loop thread, and ``sink`` is
        called only from that thread.
    """

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: object,
    ) -> None:
        if not name:
            raise ValueError("an LP adapter needs a non-empty name")
        # compiled, the class does not refuse instances the way ABCMeta does
        cls = type(self)
        missing = [m for m in _ABSTRACT if getattr(cls, m) is getattr(LpAdapter, m)]
        if missing:
            raise TypeError(
                f"Can't instantiate abstract class {cls.__name__} "
                f"without an implementation of: {', '.join(missing)}"
            )
        self.name = name
        self.instruments: Mapping[str, Instrument] = dict(instruments)
        self.sink = sink
        self.settings = settings
        self.data_dir = Path("var/data")
        """Where an adapter that keeps state on disk (a FIX session store)
        puts it unless its settings say otherwise: the gateway's data
        directory, set by :func:`create_adapter`."""
        self.clock: Callable[[], float] = time.time
        """The gateway's clock (epoch seconds), for the times an adapter
        stamps on what it sends."""
        self.write_barrier: Callable[[], None] | None = None
        """What an adapter with a wire calls before bytes leave for the LP
        (and before its own store is flushed): the gateway's order journal
        flush, so that a child order is on disk before the LP can see it."""

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    @abstractmethod
    async def connect(self) -> None:
        """Open the link; emit ``LpStatus(up=True)`` once it is up."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the link, resolve open children, stop owned tasks."""

    @property
    @abstractmethod
    def up(self) -> bool:
        """True while child orders can be sent."""

    @abstractmethod
    def send(self, child: ChildOrder) -> None:
        """Hand one IOC child order to the LP; answers come through ``sink``."""

    @property
    def answers_next_turn(self) -> bool:
        """True when every child sent is answered from this process on the
        next loop turn (a simulated LP without latency): the gateway then
        writes what it sent meanwhile together with those answers, in one
        write instead of two.  Default: False (answers come from the network)."""
        return False

    def cancel(self, child_id: str) -> None:
        """Ask the LP to cancel an open child order.  Default: nothing."""
        return None

    def recover_ended(self, ended: Sequence[tuple[EndedChild, bool]]) -> None:
        """Children an earlier run saw the LP end, that the gateway still
        watches for a fill reported after the end (each with whether the
        LP had filled it in full): an adapter that keeps its own record of
        them, to pass such a fill on, takes them back here.  Default:
        nothing."""
        return None

    def recover(self, children: Sequence[RecoveredOrder]) -> None:
        """Resolve child orders left open by an earlier run (see the class
        documentation).  Default: each ends as canceled, unknown to the LP."""
        if not children:
            return
        loop = asyncio.get_running_loop()
        for child, open_lots, _ in children:
            loop.call_soon(
                self.sink,
                ChildCanceled(child.child_id, open_lots, UNKNOWN_AFTER_RESTART_REASON),
            )
