"""Each LP's hard limit shared by the gateways of a cluster, in slices.

An LP's hard limit (``hard_limit_usd``) bounds the gross notional of the
house at that LP, whichever gateway routed it.  Each gateway routes against
its own exposure at the LP (what it routed), so the limit is cut into
*slices*: a key per LP in the bucket ``<prefix>_headroom`` holds the limit
and every gateway's slice, and a gateway changes only its own slice, by a
compare-and-set on the key's revision, never taking more than the limit
minus the other slices.  A gateway routes to an LP only within its slice:
its hard limit for routing is ``min(configured hard limit, slice)``.  The
sum of the gateways' exposures at an LP is so at most the sum of their
slices, at most the limit: **the largest possible overshoot is zero**, in
the sense the single gateway gives it (no child takes the gross notional
past the limit at the prices of the moment it is routed).

A gateway asks for more when what it holds above its exposure falls below
half a *chunk* (a tenth of the limit), up to its exposure plus a chunk; it
gives back what it holds beyond its exposure plus two chunks.  It lowers
its own cap before it publishes a smaller slice, and raises it only once a
larger one is stored.

A slice is not given back by the clock: the exposure behind it stays at
the LP when its gateway dies (positions do not close by themselves), so a
dead gateway's slice stays reserved until it starts again (its journal
brings its exposure back and it trims its slice) or an operator removes it
from the key (docs/cluster.md).  For the same reason a gateway that cannot
reach the cluster keeps routing within the slices it holds, and once its
exposure reaches a slice it routes to that LP only what reduces its
position (reduce-only), which ``/readyz``, a metric and the log say.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js.kv import KeyValue

_log = structlog.get_logger("gateway.cluster.headroom")

CHUNK: Decimal = Decimal("0.1")
"""A chunk, as a fraction of the LP's hard limit."""


class Slices(msgspec.Struct):
    """What an LP's key holds (USD, as decimal strings): the limit in force
    (the smallest configured), every gateway's slice, and the limit each
    gateway has configured."""

    limit_usd: str
    slices: dict[str, str] = {}
    limits: dict[str, str] = {}


_KEY_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def _amount(text: str) -> Decimal:
    """A USD amount of an LP's key: a finite number, not below zero (a key
    edited by hand may hold another: it is then not read)."""
    value = Decimal(text)
    if not value.is_finite() or value < 0:
        raise ArithmeticError(f"{text!r} is not an amount of USD")
    return value


def _others_limits(current: Slices, name: str) -> dict[str, Decimal]:
    """The limits the other gateways holding a slice have configured.  A
    gateway that died keeps its slice reserved, and its limit binds like
    it, until it starts again or an operator removes its entry from the
    key.  A key written before the limits were kept per gateway names one
    limit, taken as that of every other holder."""
    holders = [k for k in current.slices if k != name]
    theirs = {k: _amount(current.limits[k]) for k in holders if k in current.limits}
    if len(theirs) < len(holders):
        shared = _amount(current.limit_usd)
        for k in holders:
            theirs.setdefault(k, shared)
    return theirs


def lp_key(lp: str) -> str:
    """An LP's key: its name, each byte a key may not hold written ``=HH``."""
    return _KEY_SAFE.sub(lambda m: "".join(f"={b:02X}" for b in m.group().encode()), lp)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Slices).decode


class _Unreadable(ValueError):
    """An LP's key holds what this gateway cannot read (written by hand):
    its slice is not grown (trimmed here only) until the key is put right."""


@dataclass(slots=True)
class HeadroomStats:
    grants: int = 0
    """Slices grown."""
    returns: int = 0
    """Slices trimmed (headroom given back)."""
    conflicts: int = 0
    """Compare-and-sets that lost a race (tried again)."""
    errors: int = 0
    reduce_only: set[str] = field(default_factory=set)
    """LPs whose slice this gateway's exposure has (all but half a chunk)
    used while the cluster could not be reached to grow it."""


class Headroom:
    """This gateway's slices of every LP's hard limit."""

    def __init__(
        self,
        kv: KeyValue,
        name: str,
        limits: Mapping[str, Decimal],
        gross: Callable[[str], Decimal | None],
        apply: Callable[[Mapping[str, Decimal]], None],
        interval: float = 0.2,
        timeout: float = 1.0,
        live: Callable[[str], bool] | None = None,
        absent_after: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limits``: each LP's configured hard limit; ``gross(lp)``: this
        gateway's gross notional at the LP (None: not valued); ``apply``:
        puts the caps in force for routing; ``live(name)``: whether a
        gateway of that name runs now (its instance key renewed): a holder
        seen not running for ``absent_after`` seconds is named once."""
        self._kv = kv
        self.name = name
        self.limits = dict(limits)
        self._gross = gross
        self._apply = apply
        self.interval = interval
        self._timeout = timeout
        self.held: dict[str, Decimal] = dict.fromkeys(limits, Decimal(0))
        """This gateway's slice of each LP, as stored."""
        self.caps: dict[str, Decimal] = dict.fromkeys(limits, Decimal(0))
        """What routing may use: the slice, or less while a trim is stored."""
        self.stats = HeadroomStats()
        self.reachable = True
        self._task: asyncio.Task[None] | None = None
        self._unreadable: set[str] = set()  # LPs whose key cannot be read, said once
        self._lowered: set[str] = set()
        self.in_force: dict[str, Decimal] = dict(limits)
        """Each LP's limit in force over the cluster, as last stored: the
        smallest that a gateway holding a slice has configured."""
        self._differing: dict[str, dict[str, Decimal]] = {}  # said in the log
        self._live = live
        self._absent_after = absent_after
        self._clock = clock
        self._missing: dict[str, dict[str, float]] = {}
        # per LP: the holders seen not running, since when (monotonic)
        self.absent: dict[str, dict[str, Decimal]] = {}
        """Per LP: the slices held by gateways not running for longer than
        ``absent_after`` (named in the log), as last read."""

    def start(self) -> None:
        self._apply(dict(self.caps))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.adjust_all()
            await asyncio.sleep(self.interval)

    async def adjust_all(self) -> None:
        for lp in self.limits:
            await self.adjust(lp)

    async def adjust(self, lp: str) -> None:
        """Grow or trim this gateway's slice of ``lp`` (see the module)."""
        limit = self.limits[lp]
        used = self._gross(lp)
        if used is None:
            return  # not valued now: what is held stays, neither grown nor trimmed
        chunk = limit * CHUNK
        held = self.held[lp]
        spare = held - used
        if (
            chunk / 2 <= spare <= 2 * chunk
            and self.reachable
            and lp not in self._lowered
            and await self._fits(lp, limit, held)
        ):
            self._mark_reduce_only(lp, used)
            return
        # short of spare (more), or holding too much (given back); when the
        # cluster was out of reach, each pass tries again
        want = used + chunk
        if want < held and want < self.caps[lp]:
            # trimmed here first: routing never uses what is being given back
            self.caps[lp] = want
            self._apply(dict(self.caps))
        try:
            async with asyncio.timeout(self._timeout):
                stored = await self._store(lp, want, limit)
        except _Unreadable as exc:
            # this LP's key only: the cluster is in reach, the other LPs' slices move
            self.stats.errors += 1
            if not self.reachable:  # it answered
                self.reachable = True
                _log.info("headroom_reachable_again")
            if lp not in self._unreadable:
                self._unreadable.add(lp)
                _log.error(
                    "headroom_key_unreadable",
                    lp=lp,
                    error=str(exc),
                    hint="put the key right (nats kv put) or delete it",
                )
            self._mark_reduce_only(lp, used)
            return
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self.stats.errors += 1
            if self.reachable:
                self.reachable = False
                _log.warning("headroom_unreachable", error=repr(exc), lp=lp)
            self._mark_reduce_only(lp, used)
            return
        if not self.reachable:
            self.reachable = True
            _log.info("headroom_reachable_again")
        if lp in self._unreadable:
            self._unreadable.discard(lp)
            _log.info("headroom_key_readable_again", lp=lp)
        cap = stored
        if self.limits[lp] != limit:
            # a reload changed the limit while this pass stored a slice of
            # the one before: routing is not raised to it, and the next
            # pass stores a slice of the new one
            cap = min(stored, self.caps[lp])
        else:
            self._lowered.discard(lp)
        if stored > held:
            self.stats.grants += 1
        elif stored < held:
            self.stats.returns += 1
        self.held[lp] = stored
        if self.caps[lp] != cap:
            self.caps[lp] = cap
            self._apply(dict(self.caps))
        self._mark_reduce_only(lp, used)

    async def _fits(self, lp: str, limit: Decimal, held: Decimal) -> bool:
        """Whether the key holds this gateway's slice and limit as they are,
        and the slice still fits the limit in force with the others' slices
        as the key holds them now (a gateway configured lower may have
        joined); read without a write.  False (the pass stores) when the
        key lost this gateway's entry (deleted, put back by hand) or its
        limit changed (a reload raised it); True when the key cannot be
        read now: a pass that stores says why."""
        try:
            async with asyncio.timeout(self._timeout):
                entry = await self._kv.get(lp_key(lp))
            if not entry.revision:
                return not held
            current = _decode(entry.value or b"")
            self._note_holders(lp, current)
            mine = current.slices.get(self.name)
            said = current.limits.get(self.name)
            if mine is None or _amount(mine) != held or said is None or _amount(said) != limit:
                return False
            others = sum(
                (_amount(v) for k, v in current.slices.items() if k != self.name), Decimal(0)
            )
            theirs = _others_limits(current, self.name)
        except nats.js.errors.KeyNotFoundError:
            return not held
        except (TimeoutError, OSError, nats.errors.Error, msgspec.DecodeError, ArithmeticError):
            return True
        in_force = min(limit, *theirs.values()) if theirs else limit
        self._say_limits(lp, limit, in_force, theirs)
        return held + others <= in_force

    async def _store(self, lp: str, want: Decimal, limit: Decimal) -> Decimal:
        """Set this gateway's slice to ``want``, or to what the others leave
        of the limit; the slice stored."""
        kv = self._kv
        while True:
            try:
                entry = await kv.get(lp_key(lp))
                value, revision = entry.value or b"", entry.revision or 0
            except nats.js.errors.KeyNotFoundError:
                value, revision = b"", 0
            try:
                current = _decode(value) if revision else Slices(limit_usd=str(limit))
                others = sum(
                    (_amount(v) for k, v in current.slices.items() if k != self.name), Decimal(0)
                )
                theirs = _others_limits(current, self.name)
                self._note_holders(lp, current)
            except (msgspec.DecodeError, ArithmeticError) as exc:
                raise _Unreadable(f"the key of LP {lp} cannot be read: {exc}") from None
            # every gateway holding a slice keeps within the smallest limit
            # any of them has configured: a config that differs (a reload
            # not yet made everywhere, or a typo) never lets the house past
            # the lower one
            in_force = min(limit, *theirs.values()) if theirs else limit
            mine = max(Decimal(0), min(want, in_force - others))
            slices = dict(current.slices)
            slices[self.name] = str(mine)
            limits = {k: v for k, v in current.limits.items() if k in slices}
            limits[self.name] = str(limit)
            value = _encode(Slices(limit_usd=str(in_force), slices=slices, limits=limits))
            if mine < self.caps[lp]:
                # smaller than routing may use (a lower limit in force): cut
                # here before the key says so, as the others may take the
                # rest as soon as it is stored, answered here or not
                self.caps[lp] = mine
                self._apply(dict(self.caps))
            try:
                if revision:
                    await kv.update(lp_key(lp), value, last=revision)
                else:
                    await kv.create(lp_key(lp), value)
            except nats.js.errors.KeyWrongLastSequenceError:
                self.stats.conflicts += 1  # another gateway changed it: again
                continue
            self._say_limits(lp, limit, in_force, theirs)
            return mine

    def _say_limits(
        self, lp: str, limit: Decimal, in_force: Decimal, theirs: Mapping[str, Decimal]
    ) -> None:
        """Log once when the gateways' limits of ``lp`` come to differ, and
        once when they agree again."""
        differing = {k: v for k, v in theirs.items() if v != limit}
        self.in_force[lp] = in_force
        said = self._differing.get(lp)
        if differing and said != differing:
            self._differing[lp] = differing
            _log.warning(
                "headroom_limit_differs",
                lp=lp,
                limit_usd=str(limit),
                others={k: str(v) for k, v in sorted(differing.items())},
                in_force_usd=str(in_force),
                hint="set the same hard_limit_usd on every gateway of the cluster (a dead"
                " one's entry binds until it starts again or is removed from the key);"
                " the smallest is kept meanwhile",
            )
        elif not differing and said:
            del self._differing[lp]
            _log.info("headroom_limit_agrees", lp=lp, limit_usd=str(limit))

    def _note_holders(self, lp: str, current: Slices) -> None:
        """Name once each gateway holding a slice of ``lp`` that has not
        run for ``absent_after`` (renamed, decommissioned, or down): its
        slice stays reserved and its limit binds until it starts again or
        its entry is removed; and once more when that ends."""
        live = self._live
        if live is None:
            return
        now = self._clock()
        missing = self._missing.setdefault(lp, {})
        absent = self.absent.setdefault(lp, {})
        held = {k: v for k, v in current.slices.items() if k != self.name}
        for name in list(missing):
            if name not in held or live(name):
                del missing[name]
                if absent.pop(name, None) is not None:
                    _log.info(
                        "headroom_absent_gateway_ended",
                        lp=lp,
                        gateway=name,
                        why="running again" if name in held else "its entry was removed",
                    )
        for name, value in held.items():
            if live(name):
                continue
            since = missing.setdefault(name, now)
            if now - since < self._absent_after:
                continue
            slice_usd = _amount(value)
            if name not in absent:
                _log.warning(
                    "headroom_slice_held_by_absent_gateway",
                    lp=lp,
                    gateway=name,
                    slice_usd=str(slice_usd),
                    limit_usd=current.limits.get(name, current.limit_usd),
                    hint="its slice stays reserved and its limit binds: start it again"
                    " under its name, or remove its entry from the LP's key once its"
                    " positions at the LP are closed (docs/cluster.md)",
                )
            absent[name] = slice_usd

    def set_limits(self, limits: Mapping[str, Decimal]) -> None:
        """The LPs' hard limits after a reload: a lower one trims the slice
        (and the cap at once), a higher one lets it grow, at the next pass."""
        for lp, limit in limits.items():
            if lp not in self.limits:
                continue  # an LP added needs a restart, as without a cluster
            old, self.limits[lp] = self.limits[lp], limit
            if limit >= old:
                continue
            # the slices stored add up to the old limit at most: each cut in
            # the same proportion, they add up to the new one at most until
            # each gateway stores its own again, within what the others leave
            self._lowered.add(lp)
            cap = min(self.caps[lp], self.held[lp] * limit / old, limit)
            if cap < self.caps[lp]:
                self.caps[lp] = cap
                self._apply(dict(self.caps))

    def _mark_reduce_only(self, lp: str, used: Decimal) -> None:
        # what is left of the slice is under half a chunk, and cannot grow
        stuck = not self.reachable or lp in self._unreadable
        full = stuck and self.caps[lp] - used < self.limits[lp] * CHUNK / 2
        if full and lp not in self.stats.reduce_only:
            self.stats.reduce_only.add(lp)
            _log.warning(
                "lp_reduce_only",
                lp=lp,
                reason="the cluster cannot be reached (or the LP's key read) and this"
                " gateway's slice of the LP's hard limit is used",
                slice_usd=str(self.caps[lp]),
            )
        elif not full and lp in self.stats.reduce_only:
            self.stats.reduce_only.discard(lp)
            _log.info("lp_reduce_only_ended", lp=lp)

    def limits_differ(self, lp: str) -> bool:
        """Whether another gateway holding a slice of ``lp`` has configured
        a different hard limit (as last stored)."""
        return lp in self._differing

    def snapshot(self) -> dict[str, object]:
        return {
            "reachable": self.reachable,
            "reduce_only": sorted(self.stats.reduce_only),
            "lps": {
                lp: {
                    "limit_usd": str(self.limits[lp]),
                    "limit_in_force_usd": str(self.in_force[lp]),
                    "limits_differ": self.limits_differ(lp),
                    "slice_usd": str(self.held[lp]),
                    "cap_usd": str(self.caps[lp]),
                    "absent_holders": {
                        k: str(v) for k, v in sorted(self.absent.get(lp, {}).items())
                    },
                }
                for lp in self.limits
            },
            "at": time.time(),
        }
