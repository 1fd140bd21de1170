"""The LP adapter contract and the registry that names adapter kinds.

An LP adapter is the one place where a liquidity provider's wire format and
connection live.  Everything on the gateway side of it speaks the domain
values of :mod:`router.model`: child orders go in through :meth:`LpAdapter.send`,
and quotes, acks, fills, rejects, cancels and link status come back as
:data:`~router.model.LpEvent` values through the ``sink`` callable the adapter
was built with.

Adding an LP means writing one module with a subclass of :class:`LpAdapter`,
decorating it with :func:`register`, and naming its kind in the config.  The
composition root builds adapters with :func:`create_adapter` and never imports
an adapter module by hand.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from mypy_extensions import mypyc_attr

from router.model import ChildCanceled, ChildOrder, Instrument, LpEvent

__all__ = [
    "DISCONNECTED_REASON",
    "UNKNOWN_AFTER_RESTART_REASON",
    "EventSink",
    "LpAdapter",
    "adapter_class",
    "create_adapter",
    "register",
    "registered_kinds",
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
        every event; ``settings`` is the adapter's own section of the config.
        The constructor validates ``settings`` and raises ``ValueError`` with
        a message naming the LP and the offending key; it does no I/O.

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
            ``(child, open_lots)`` for each child order sent in an earlier
            run that had not ended.  The adapter finds out what became of
            each and ends it with the usual events (fills it had not
            reported, then the terminal outcome); ``open_lots`` is what the
            gateway has not seen filled.  The default ends each one with
            ``ChildCanceled(open_lots, UNKNOWN_AFTER_RESTART_REASON)`` on
            the next loop iteration: right for an LP whose state does not
            outlive the gateway (the in-process simulator); an adapter to
            a real LP asks it instead.

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

    Threading
        Every method is called on the event loop thread, and ``sink`` is
        called only from that thread.
    """

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: Mapping[str, Any],
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
        self.settings: Mapping[str, Any] = dict(settings)
        self.data_dir = Path("var/data")
        """Where an adapter that keeps state on disk (a FIX session store)
        puts it unless its settings say otherwise: the gateway's data
        directory, set by :func:`create_adapter`."""
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

    def cancel(self, child_id: str) -> None:
        """Ask the LP to cancel an open child order.  Default: nothing."""
        return None

    def recover(self, children: Sequence[tuple[ChildOrder, int]]) -> None:
        """Resolve child orders left open by an earlier run (see the class
        documentation).  Default: each ends as canceled, unknown to the LP."""
        if not children:
            return
        loop = asyncio.get_running_loop()
        for child, open_lots in children:
            loop.call_soon(
                self.sink,
                ChildCanceled(child.child_id, open_lots, UNKNOWN_AFTER_RESTART_REASON),
            )


# --- registry ------------------------------------------------------------------

_REGISTRY: dict[str, type[LpAdapter]] = {}

# Adapter kinds shipped with the appliance, imported on first use so that the
# config can name them without the composition root importing each module.
_BUILTIN_MODULES: Final[Mapping[str, str]] = {
    "simulated": "lp_adapters.simulated.adapter",
    "fix": "lp_adapters.fix.adapter",
}

_A = TypeVar("_A", bound=type[LpAdapter])


def register(kind: str) -> Callable[[_A], _A]:
    """Class decorator: make an adapter class available under ``kind``.

    Raises ``ValueError`` if ``kind`` is empty or already taken, and
    ``TypeError`` if the decorated class is not an :class:`LpAdapter`.
    """
    if not kind:
        raise ValueError("an adapter kind needs a non-empty name")

    def decorate(cls: _A) -> _A:
        if not (isinstance(cls, type) and issubclass(cls, LpAdapter)):
            raise TypeError(f"{cls!r} is not an LpAdapter subclass")
        existing: Any = _REGISTRY.get(kind)  # a class object: its names read untyped
        if existing is not None:
            raise ValueError(
                f"adapter kind {kind!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[kind] = cls
        return cls

    return decorate


def registered_kinds() -> tuple[str, ...]:
    """Every kind that :func:`adapter_class` can resolve, sorted."""
    return tuple(sorted(set(_REGISTRY) | set(_BUILTIN_MODULES)))


def adapter_class(kind: str) -> type[LpAdapter]:
    """The adapter class registered under ``kind``.

    Raises ``KeyError`` naming the known kinds when there is none.
    """
    cls = _REGISTRY.get(kind)
    if cls is None and kind in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[kind])
        cls = _REGISTRY.get(kind)
    if cls is None:
        known = ", ".join(repr(k) for k in registered_kinds()) or "none"
        raise KeyError(f"unknown LP adapter kind {kind!r}; known kinds: {known}")
    return cls


def create_adapter(
    kind: str,
    name: str,
    instruments: Mapping[str, Instrument],
    sink: EventSink,
    settings: Mapping[str, Any],
    data_dir: Path | None = None,
) -> LpAdapter:
    """Build the adapter named ``name`` of the given ``kind``; ``data_dir``
    is where an adapter that keeps state on disk puts it by default."""
    adapter = adapter_class(kind)(name, instruments, sink, settings)
    if data_dir is not None:
        adapter.data_dir = data_dir
    return adapter
