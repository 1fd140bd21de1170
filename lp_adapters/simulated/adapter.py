"""An in-process liquidity provider for tests, demos and soak runs.

:class:`SimulatedLp` streams an N-level book per symbol around a mid price
taken from a :class:`MarketModel`, and answers child orders the way a
last-look LP does: after a configurable latency it either rejects the order
or fills it against its own current book, level by level, and cancels the
unfilled remainder.

Several simulated LPs can share one :class:`MarketModel` so that their prices
move together while each quotes its own spread and depth.

Everything the simulator decides comes from integer ticks and lots and from a
``random.Random`` seeded from the settings, never from the wall clock, so two
LPs built with the same settings and fed the same calls emit the same events.

Each LP keeps its own record of its fills, a statement file per UTC day in
``statement_dir`` (:mod:`lp_adapters.simulated.statement`; a relative
directory is taken in the gateway's ``data_dir``, ``""`` writes none).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec
import structlog

from lp_adapters.base import DISCONNECTED_REASON, EventSink, LpAdapter
from lp_adapters.simulated.settings import SimulatedLpSettings, check_settings
from lp_adapters.simulated.statement import StatementWriter
from router.members import BUY
from router.model import (
    AssetClass,
    ChildAck,
    ChildCanceled,
    ChildFill,
    ChildOrder,
    ChildReject,
    Instrument,
    Level,
    LpStatus,
    OffGrid,
    Quote,
)
from router.units import price_text, qty_text

__all__ = [
    "DEFAULT_START_MID",
    "MarketModel",
    "SimulatedLp",
    "SimulatedLpSettings",
]

_log = structlog.get_logger("lp_adapters.simulated.adapter")

DEFAULT_START_MID: Final[Mapping[AssetClass, Decimal]] = {
    AssetClass.FX: Decimal("1.1"),
    AssetClass.METAL: Decimal("2000"),
    AssetClass.CRYPTO: Decimal("30000"),
    AssetClass.INDEX: Decimal("15000"),
    AssetClass.COMMODITY: Decimal("75"),
}
"""Where a symbol's mid starts, in price units, when no ``start_mid`` names it
(rounded down to the instrument's tick grid)."""

# Reasons carried by the events the simulator emits.
LAST_LOOK_REASON: Final = "last look"
PRICE_MOVED_REASON: Final = "price moved"
REMAINDER_REASON: Final = "ioc remainder"
CANCELED_REASON: Final = "canceled"
LP_DOWN_REASON: Final = "lp down"


class MarketModel:
    """Mid prices, in ticks, for a set of symbols, moving as a random walk.

    Each :meth:`step` moves every symbol's mid by a whole number of ticks
    drawn uniformly from ``[-walk_ticks, +walk_ticks]`` (never below one
    tick).  The walk is driven only by ``seed`` and the number of steps.

    ``start_mids`` maps a symbol to its first mid in price units (a string
    or a ``Decimal``, on the tick grid); other symbols start at
    :data:`DEFAULT_START_MID` for their asset class.
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        seed: int = 0,
        start_mids: Mapping[str, str | Decimal] | None = None,
        walk_ticks: int = 1,
    ) -> None:
        if walk_ticks < 0:
            raise ValueError(f"walk_ticks must be >= 0, got {walk_ticks}")
        start_mids = start_mids or {}
        unknown = sorted(set(start_mids) - set(instruments))
        if unknown:
            raise ValueError(f"start mid given for symbols the market does not have: {unknown}")
        self.instruments: Mapping[str, Instrument] = dict(instruments)
        self.walk_ticks = walk_ticks
        self.steps = 0
        self._rng = random.Random(seed)
        # Stepped in symbol order so the walk does not depend on mapping order.
        self._order = tuple(sorted(self.instruments))
        self._mids = {
            symbol: _start_mid_ticks(self.instruments[symbol], start_mids.get(symbol))
            for symbol in self._order
        }

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._order

    def mid(self, symbol: str) -> int:
        """The current mid of ``symbol`` in ticks (``KeyError`` if unknown)."""
        return self._mids[symbol]

    def set_mid(self, symbol: str, ticks: int) -> None:
        """Move ``symbol``'s mid to ``ticks`` at once (a gap, for tests and drills)."""
        if symbol not in self._mids:
            raise KeyError(f"symbol {symbol!r} is not in this market")
        if ticks < 1:
            raise ValueError(f"a mid must be at least one tick, got {ticks}")
        self._mids[symbol] = ticks

    def step(self) -> None:
        """Advance every symbol's mid by one step of the random walk."""
        walk = self.walk_ticks
        randint = self._rng.randint
        mids = self._mids
        for symbol in self._order:
            mids[symbol] = max(1, mids[symbol] + randint(-walk, walk))
        self.steps += 1


def _start_mid_ticks(instrument: Instrument, price: str | Decimal | None) -> int:
    symbol = instrument.symbol
    if price is None:
        default = DEFAULT_START_MID[instrument.asset_class]
        return max(1, int(default // instrument.tick_size))
    if not isinstance(price, str | Decimal):
        raise TypeError(
            f"start mid of {symbol} must be a decimal string, got {type(price).__name__}"
        )
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise ValueError(f"start mid of {symbol} is not a decimal number: {price!r}") from None
    if not value.is_finite():
        raise ValueError(f"start mid of {symbol} must be finite, got {price!r}")
    try:
        ticks = instrument.price_to_ticks(value)
    except OffGrid as err:
        raise ValueError(f"start mid of {symbol}: {err}") from None
    if ticks < 1:
        raise ValueError(f"start mid of {symbol} must be positive, got {price!r}")
    return ticks


class _OpenChild:
    """A child order waiting for its answer (a plain class, not a dataclass:
    see "The compiled order path" in the README)."""

    def __init__(self, child: ChildOrder) -> None:
        self.child = child
        self.handle: asyncio.Handle | None = None


class SimulatedLp(LpAdapter):
    """A simulated last-look LP; see the module docstring and
    :class:`SimulatedLpSettings`.

    How a child order is answered, ``latency_ms`` after :meth:`send`:

    * with probability ``reject_probability``: ``ChildReject("last look")``;
    * otherwise ``ChildAck``, then one ``ChildFill`` per level of the LP's
      current book that is at or better than the child's limit, best level
      first, each for the lots of that level still needed (with probability
      ``partial_fill_probability`` only part of the top level is filled and
      the walk stops there); then ``ChildCanceled`` for the lots left
      (reason ``"ioc remainder"``).
    * When not even the best level is acceptable (the price moved beyond the
      limit) the child is acked and then canceled for its whole quantity with
      reason ``"price moved"``: an IOC order that finds no price is canceled,
      not rejected.

    The book a child is filled against is computed from the market's mid at
    the moment of the answer, so a market step during the latency is seen.
    Each child sees the full quoted depth; fills do not use up the book.

    :meth:`disconnect_now` and :meth:`reconnect_now` drop and restore the link
    on command (an admin hook and a test aid).

    ``market`` (keyword only) is a :class:`MarketModel` shared with other
    simulated LPs; without it the LP builds one of its own from its settings.
    ``clock`` (keyword only, default ``time.time``) stamps ``Quote.time`` and
    the fills of the statement; it never takes part in a decision.  Settings
    that do not suit the instruments or the shared market raise
    ``ValueError`` naming the LP.

    The statement: every ``ChildFill`` is also a line of the LP's statement
    (:class:`~lp_adapters.simulated.statement.StatementWriter`): ExecID the
    fill's ``exec_id``, ClOrdID the child id, OrderID the ``lp_order_id`` of
    its ``ChildAck``, quantity (units) and price as the gateway writes them
    for the instrument (:mod:`router.units`).  A relative ``statement_dir``
    is taken in ``data_dir`` at the first :meth:`connect` (the registry sets
    ``data_dir`` after construction); :meth:`disconnect` writes out what is
    buffered.
    """

    def __init__(
        self,
        name: str,
        instruments: Mapping[str, Instrument],
        sink: EventSink,
        settings: SimulatedLpSettings,
        *,
        market: MarketModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, instruments, sink, settings)
        self.config, self.market, steps_market = _parse_settings(
            name, self.instruments, settings, market
        )
        cfg = self.config
        self.symbols: tuple[str, ...] = cfg.symbols or tuple(self.instruments)
        self._steps_market = steps_market
        self.clock = clock
        self._rng = random.Random(cfg.seed)
        self._latency = cfg.latency_ms / 1000
        self._interval = cfg.quote_interval_ms / 1000
        self._reject_p = cfg.reject_probability
        self._partial_p = cfg.partial_fill_probability
        # Offsets of each level from the best price: precomputed once.
        self._level_offsets = tuple(i * cfg.level_step_ticks for i in range(cfg.depth_levels))
        self._up = False
        self._open: dict[str, _OpenChild] = {}
        # children to answer on the next loop turn (zero latency): one
        # callback answers them all, in the order they were sent
        self._due: list[str] = []
        # per symbol: the mid the cached levels were built at, bids, asks
        self._levels: dict[str, tuple[int, tuple[Level, ...], tuple[Level, ...]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._order_seq = 0
        self._exec_seq = 0
        self._statement: StatementWriter | None = None

    # --- link ------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    async def connect(self) -> None:
        if self._statement is None and self.config.statement_dir:
            # data_dir is the gateway's by now (set after construction)
            directory = self.data_dir / self.config.statement_dir
            self._statement = StatementWriter(directory, self.name)
        self._go_up("connected")

    async def disconnect(self) -> None:
        self._go_down("disconnected")
        pending = list(self._tasks)
        if pending:
            await asyncio.wait(pending)
        if self._statement is not None:
            self._statement.close()

    @property
    def statement(self) -> StatementWriter | None:
        """The writer of the LP's statement (None before the first
        :meth:`connect`, or when ``statement_dir`` is empty)."""
        return self._statement

    def disconnect_now(self, reason: str = "dropped on command") -> None:
        """Drop the link at once, as if the connection had been lost.

        Emits ``LpStatus(up=False, reason=reason)`` then a
        ``ChildCanceled(reason="lp disconnected")`` for every open child.
        Does nothing while down.
        """
        self._go_down(reason)

    def reconnect_now(self) -> None:
        """Bring the link back at once: ``LpStatus(up=True)``, then a fresh
        quote for every symbol.  Does nothing while up.  Needs a running loop."""
        self._go_up("reconnected")

    def _go_up(self, reason: str) -> None:
        if self._up:
            return
        loop = asyncio.get_running_loop()
        self._up = True
        self.sink(LpStatus(self.name, True, reason))
        self.publish_quotes()
        self._spawn(loop, self._stream_quotes(), "quotes")

    def _go_down(self, reason: str) -> None:
        if not self._up:
            return
        self._up = False
        for task in self._tasks:
            task.cancel()
        self.sink(LpStatus(self.name, False, reason))
        open_children, self._open = self._open, {}
        for entry in open_children.values():
            if entry.handle is not None:
                entry.handle.cancel()
            child = entry.child
            self.sink(ChildCanceled(child.child_id, child.qty, DISCONNECTED_REASON))

    # --- owned background tasks ------------------------------------------------

    def _spawn(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, None],
        what: str,
    ) -> None:
        task = loop.create_task(coro, name=f"lp:{self.name}:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        _log.error("lp_task_failed", lp=self.name, task=task.get_name(), exc_info=exc)
        # Without its quote stream the LP's prices go stale: take it down so the
        # router stops using them and open children are resolved.
        self._go_down(f"{task.get_name()} failed: {exc!r}")

    async def _stream_quotes(self) -> None:
        interval = self._interval
        while True:
            await asyncio.sleep(interval)
            if self._steps_market:
                self.market.step()
            self.publish_quotes()

    # --- quotes ----------------------------------------------------------------

    def quote(self, symbol: str) -> Quote:
        """The LP's current book for ``symbol``, built from the market's mid.

        Levels whose price would not be positive are left out."""
        bids, asks = self._book(symbol)
        return Quote(self.name, symbol, bids, asks, self.clock())

    def _book(self, symbol: str) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """``(bids, asks)`` at the market's current mid, built once per mid."""
        mid = self.market.mid(symbol)
        cached = self._levels.get(symbol)
        if cached is not None and cached[0] == mid:
            return cached[1], cached[2]
        spread = self.config.spread_ticks
        best_bid = mid - spread // 2
        best_ask = best_bid + spread
        qty = self.config.level_qty_lots
        offsets = self._level_offsets
        bids = tuple(Level(best_bid - off, qty) for off in offsets if best_bid - off > 0)
        asks = tuple(Level(best_ask + off, qty) for off in offsets)
        self._levels[symbol] = (mid, bids, asks)
        return bids, asks

    def publish_quotes(self) -> None:
        """Emit a quote for every symbol now (nothing while down)."""
        if not self._up:
            return
        sink = self.sink
        for symbol in self.symbols:
            sink(self.quote(symbol))

    # --- child orders ----------------------------------------------------------

    @property
    def open_child_ids(self) -> tuple[str, ...]:
        """Children sent and not yet answered, oldest first."""
        return tuple(self._open)

    @property
    def answers_next_turn(self) -> bool:
        return not self._latency

    def send(self, child: ChildOrder) -> None:
        child_id = child.child_id
        if child_id in self._open:
            raise ValueError(f"child order {child_id!r} is already open at LP {self.name!r}")
        loop = asyncio.get_running_loop()
        refusal = self._refusal(child)
        if refusal is not None:
            loop.call_soon(self.sink, ChildReject(child_id, refusal))
            return
        entry = _OpenChild(child)
        self._open[child_id] = entry
        if self._latency:
            entry.handle = loop.call_later(self._latency, self._answer, child_id)
            return
        if not self._due:
            loop.call_soon(self._answer_due)
        self._due.append(child_id)

    def cancel(self, child_id: str) -> None:
        """Cancel a child that has not been answered yet: its whole quantity
        is canceled (reason ``"canceled"``) on the next loop turn."""
        entry = self._open.pop(child_id, None)
        if entry is None:
            return
        if entry.handle is not None:
            entry.handle.cancel()
        loop = asyncio.get_running_loop()
        loop.call_soon(self.sink, ChildCanceled(child_id, entry.child.qty, CANCELED_REASON))

    def _refusal(self, child: ChildOrder) -> str | None:
        if not self._up:
            return LP_DOWN_REASON
        if child.lp != self.name:
            return f"child for LP {child.lp!r} sent to LP {self.name!r}"
        if child.symbol not in self.symbols:
            return f"symbol {child.symbol!r} not quoted"
        if child.qty < 1:
            return f"invalid quantity {child.qty}"
        if child.price < 1:
            return f"invalid price {child.price}"
        return None

    def _answer_due(self) -> None:
        due, self._due = self._due, []
        for child_id in due:
            self._answer(child_id)

    def _answer(self, child_id: str) -> None:
        entry = self._open.pop(child_id, None)
        if entry is None:
            return
        child = entry.child
        sink = self.sink
        rng = self._rng
        # Both draws are made for every child so that one child's outcome does
        # not shift the random sequence seen by the next.
        rejected = rng.random() < self._reject_p
        partial = rng.random() < self._partial_p
        if rejected:
            sink(ChildReject(child_id, LAST_LOOK_REASON))
            return
        self._order_seq += 1
        order_id = f"{self.name}-{self._order_seq}"
        sink(ChildAck(child_id, order_id))
        statement = self._statement
        now = self.clock() if statement is not None else 0.0

        bids, asks = self._book(child.symbol)
        limit = child.price
        if child.side is BUY:
            levels: Iterable[Level] = (lv for lv in asks if lv.price <= limit)
        else:
            levels = (lv for lv in bids if lv.price >= limit)
        leaves = child.qty
        for level in levels:
            take = min(level.qty, leaves)
            if partial and take > 1:
                take = rng.randint(1, take - 1)
            leaves -= take
            self._exec_seq += 1
            exec_id = f"{self.name}-x{self._exec_seq}"
            sink(ChildFill(child_id, exec_id, take, level.price, leaves))
            if statement is not None:
                instrument = self.instruments[child.symbol]
                statement.record(
                    now,
                    exec_id=exec_id,
                    cl_ord_id=child_id,
                    order_id=order_id,
                    symbol=child.symbol,
                    side=child.side,
                    qty=qty_text(instrument, take),
                    price=price_text(instrument, level.price),
                )
            if partial or not leaves:
                break
        if leaves:
            reason = PRICE_MOVED_REASON if leaves == child.qty else REMAINDER_REASON
            sink(ChildCanceled(child_id, leaves, reason))


_DEFAULTS: Final = SimulatedLpSettings()


def _parse_settings(
    name: str,
    instruments: Mapping[str, Instrument],
    settings: SimulatedLpSettings,
    market: MarketModel | None,
) -> tuple[SimulatedLpSettings, MarketModel, bool]:
    """Check a simulated LP's settings against its instruments and market;
    return them (with the symbols it quotes), its market, and whether the LP
    steps that market."""

    def fail(message: str) -> ValueError:
        return ValueError(f"LP {name!r}: invalid settings: {message}")

    # the registry checks these before building; an LP built directly is checked here
    problems = check_settings(settings, instruments)
    if problems:
        raise fail("; ".join(problems))
    if settings.symbols is not None:
        symbols = settings.symbols
    else:
        symbols = tuple(s for s in instruments if market is None or s in market.instruments)
        if not symbols:
            raise fail("no instrument to quote")

    if market is None:
        try:
            market = MarketModel(
                {s: instruments[s] for s in symbols},
                seed=settings.seed,
                start_mids=settings.start_mid,
                walk_ticks=settings.walk_ticks,
            )
        except (TypeError, ValueError) as err:
            raise fail(str(err)) from None
        steps_market = True if settings.steps_market is None else settings.steps_market
    else:
        own_only = [
            key
            for key in ("start_mid", "walk_ticks")
            if getattr(settings, key) != getattr(_DEFAULTS, key)
        ]
        if own_only:
            raise fail(f"{', '.join(own_only)} cannot be set with a shared market")
        missing = [s for s in symbols if s not in market.instruments]
        if missing:
            raise fail(f"the shared market has no mid for: {missing}")
        steps_market = bool(settings.steps_market)
    return msgspec.structs.replace(settings, symbols=symbols), market, steps_market
