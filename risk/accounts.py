"""Margin accounts: collateral, positions, P&L, equity and margin per client.

Pure, like the rest of :mod:`risk`: trades and marks are handed in, figures
come out; the order flow owns the one :class:`Accounts` and is its only
writer.

**Positions and P&L.**  A client's position per symbol is kept in lots with
its average entry price (the average-cost method: a trade that adds to a
position moves the average, one that reduces it realizes P&L against the
average and leaves it).  P&L is kept in each symbol's quote currency and
turned into USD at the current marks, so a JPY gain is worth what JPY is
worth now; P&L realized in USD needs no mark.  Equity = collateral +
realized + unrealized P&L.  A figure that cannot be valued yet (a position
in a symbol with no mark, P&L realized in a currency with no rate: after a
start, before the first quotes) is left out and the symbol named as
unpriced; a realized loss so left out would leave the equity above what it
is, and the pre-trade check then finds the margin unknown.

**Marks.**  :class:`Marks` holds, per symbol, the mid price and the USD value
of one unit; :meth:`Accounts.mark` installs new ones and counts a
generation.  An account is rescanned at the new marks when it is next read
(:meth:`Accounts.view`, the pre-trade check, a trade), or by
:meth:`Accounts.sweep`, which the caller runs over a bounded number of
accounts at a time; a quote tick never rescans every account.

**Open orders count.**  Orders accepted and not yet done hold margin too,
in every symbol: the check takes the worst of each symbol's open orders
none filled, all its buys filled or all its sells filled (or filled in
part as far as takes its group flat), in every combination
(:meth:`risk.margin.Portfolio.worst_open`), before and with the
new order, so that a client cannot send many orders that each fit alone.
The lots open per client, symbol and side are kept as the orders change
(:meth:`Accounts.order_open`), for every client, margined or not: the
pre-trade position limit reads them too (:meth:`Accounts.open_lots`).

**Figures are an estimate of risk** in binary floating point, reported in
USD rounded to cents; the trades of record are the back office's.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from typing import Final

from risk.limits import RiskBreach
from risk.margin import MarginParams, MarginResult, MissingMark, Portfolio
from router.members import BUY
from router.model import Instrument, Side

__all__ = [
    "AccountTerms",
    "AccountView",
    "Accounts",
    "Holding",
    "Marks",
    "Standing",
    "against_client",
]

MARGIN_LIMIT: Final = "margin"

# the digits of a figure kept before it is rounded against the client: a
# float sum's own error (a few units of its 16th digit) is not a cent owed
_FIGURE_DIGITS: Final = Context(prec=12)
# room for the places of any finite float (a level over a margin of a few
# ulps left by a spread offsetting its legs in full can pass 10**25)
_ANY_FLOAT: Final = Context(prec=400)
# places kept past those shown before a figure is rounded against the
# client: a difference of float figures (a P&L at an average price worked
# out in floats, a margin of offsetting legs) is off by its operands' error,
# however near zero it is, and that residue is not a cent either
_RESIDUE_PLACES: Final = 4


def against_client(amount: float, places: int, *, up: bool) -> Decimal:
    """``amount`` to ``places`` decimals, rounded against the client: ``up``
    for what it must hold (margin), down for what it has (equity, free
    margin, P&L, a margin level), never ``-0``.  The error of the binary
    arithmetic is taken off first (12 significant digits kept, and no more
    than four places past ``places``), so that 2,700 summed as
    2,700.0000000000005 is not asked as 2,700.01, nor a P&L of -2e-10 at
    an entry price of 1.2000000000000002 told as -0.01."""
    kept = _FIGURE_DIGITS.plus(Decimal(amount)).quantize(
        Decimal(1).scaleb(-places - _RESIDUE_PLACES), ROUND_HALF_EVEN, _ANY_FLOAT
    )
    out = kept.quantize(
        Decimal(1).scaleb(-places), ROUND_CEILING if up else ROUND_FLOOR, _ANY_FLOAT
    )
    return out if out else abs(out)


@dataclass(frozen=True, slots=True)
class AccountTerms:
    """A client's collateral (USD) and margin levels (equity / margin)."""

    collateral_usd: Decimal
    margin_call_level: Decimal = Decimal(1)
    stop_out_level: Decimal = Decimal("0.5")
    initial_factor: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Marks:
    """Per symbol: ``price`` (mid, in price units) and ``unit_usd`` (USD
    value of one unit of the instrument, >= 0)."""

    price: Mapping[str, float]
    unit_usd: Mapping[str, float]

    def quote_to_usd(self, symbol: str) -> float | None:
        """USD per unit of ``symbol``'s quote currency."""
        price = self.price.get(symbol)
        value = self.unit_usd.get(symbol)
        if not price or value is None:
            return None
        return value / price


class Holding:
    """A position in one symbol: ``lots`` (long positive), ``avg`` entry
    price in price units, and P&L realized in the quote currency."""

    __slots__ = ("avg", "lots", "realized")

    def __init__(self, lots: int = 0, avg: float = 0.0, realized: float = 0.0) -> None:
        self.lots = lots
        self.avg = avg
        self.realized = realized

    def trade(self, signed: int, price: float, lot_size: float) -> None:
        lots = self.lots
        after = lots + signed
        if lots == 0 or (lots > 0) == (signed > 0):
            self.avg = (self.avg * lots + price * signed) / after
        else:
            closed = min(abs(signed), abs(lots))
            direction = 1 if lots > 0 else -1
            self.realized += closed * lot_size * (price - self.avg) * direction
            if after == 0:
                self.avg = 0.0
            elif (after > 0) != (lots > 0):  # reversed: the rest opens at this price
                self.avg = price
        self.lots = after


@dataclass(frozen=True, slots=True)
class Standing:
    """Where an account stands: ``level`` = equity / margin (None with no
    margin), beside the account's margin call and stop-out levels.  With no
    margin (positions in no margin group, or fully offset by spreads) an
    equity below zero is below every level: called.  A ``flat`` account
    (no lots held) is never stopped out, whatever its figures: there is
    nothing to close, and called is all it is.  ``complete`` is False while
    some of its P&L cannot be valued (a position in a symbol with no mark,
    P&L realized in a currency with no rate yet: after a start, before the
    first quotes): its figures are partial, and it is neither called nor
    stopped out on them."""

    client: str
    equity_usd: float
    margin_usd: float
    level: float | None
    margin_call_level: float
    stop_out_level: float
    flat: bool = False
    complete: bool = True

    @property
    def called(self) -> bool:
        level = self.level
        if not self.complete:
            return False
        if level is None:
            return self.equity_usd < 0
        return level < self.margin_call_level

    @property
    def stopped_out(self) -> bool:
        level = self.level
        if not self.complete or self.flat:
            return False
        if level is None:
            return self.equity_usd < 0
        return level < self.stop_out_level


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account's figures at one moment, for reports (USD unless named)."""

    client: str
    collateral_usd: float
    realized_pnl_usd: float
    unrealized_pnl_usd: float
    equity_usd: float
    margin_usd: float
    initial_margin_usd: float
    siloed_margin_usd: float
    free_margin_usd: float
    margin_level: float | None  # equity / margin; None with no margin
    margin_call_level: float
    stop_out_level: float
    portfolio: MarginResult
    siloed: MarginResult
    positions: Mapping[str, tuple[int, float]]  # symbol -> (lots, average price)
    unpriced: tuple[str, ...] = ()
    """Symbols whose P&L the figures leave out for want of a price: a
    position with no mark, P&L realized in a currency with no rate yet."""

    @property
    def param_version(self) -> str:
        return self.portfolio.param_version

    @property
    def freed_usd(self) -> float:
        """Collateral the portfolio method frees against the siloed one."""
        return self.siloed_margin_usd - self.margin_usd


class _Account:
    __slots__ = (
        "equity",
        "equity_at",
        "generation",
        "holdings",
        "loss_unpriced",
        "portfolio",
        "terms",
        "unpriced",
    )

    def __init__(self, terms: AccountTerms, portfolio: Portfolio) -> None:
        self.terms = terms
        self.portfolio = portfolio
        self.holdings: dict[str, Holding] = {}
        self.generation = -1  # of the marks and parameters it was scanned at
        self.equity = 0.0
        self.equity_at = -1  # the generation ``equity`` was taken at; -1: stale
        # taken with ``equity``: the symbols its P&L leaves out, and one whose
        # realized loss it leaves out (the equity is then above what it is)
        self.unpriced: tuple[str, ...] = ()
        self.loss_unpriced: str | None = None


class Accounts:
    """Every margined client's account (see the module documentation)."""

    def __init__(
        self,
        params: MarginParams | None,
        terms: Mapping[str, AccountTerms],
        instruments: Mapping[str, Instrument],
    ) -> None:
        self._instruments = dict(instruments)
        self._lot_size = {s: float(i.lot_size) for s, i in instruments.items()}
        # symbols quoted in USD: their realized P&L needs no mark
        self._in_usd = {s for s, i in instruments.items() if i.usd_conversion == "quote"}
        # crosses: the instrument whose mark gives their quote currency's
        # rate, and whether USD is its quote (GBP/USD for EUR/GBP: USD per
        # GBP) or its base (USD/JPY for EUR/JPY: JPY per USD)
        self._rate_via = {
            s: (i.usd_conversion, instruments[i.usd_conversion].usd_conversion == "quote")
            for s, i in instruments.items()
            if i.usd_conversion in instruments
            and instruments[i.usd_conversion].usd_conversion in ("quote", "base")
        }
        self._tick_size = {s: float(i.tick_size) for s, i in instruments.items()}
        self._params = params
        self._terms = dict(terms)
        self._accounts: dict[str, _Account] = {}
        self._marks = Marks({}, {})
        self._generation = 0
        self._sweep: Iterator[str] = iter(())
        # open orders: order id -> (client, symbol, side, lots left), and
        # their lots per client and symbol: [buys, sells]
        self._open: dict[str, tuple[str, str, Side, int]] = {}
        self._open_lots: dict[str, dict[str, list[int]]] = {}
        self._loose: dict[str, dict[str, Holding]] = {}  # trades of clients not margined
        self.suspended: set[str] = set()
        """Clients in stop-out: every new order of theirs is refused."""

    # -- parameters and marks -----------------------------------------------------

    @property
    def params(self) -> MarginParams | None:
        return self._params

    @property
    def marks(self) -> Marks:
        return self._marks

    def configure(self, params: MarginParams | None, terms: Mapping[str, AccountTerms]) -> None:
        """New parameters and terms (a reload): every account is rescanned
        under them when next read.  A client whose terms went away keeps its
        positions, no longer margined."""
        self._params = params
        self._terms = dict(terms)
        for client, account in self._accounts.items():
            self._loose[client] = account.holdings
        self._accounts = {}  # made again, under the new terms, when next used
        self._sweep = iter(())
        self._generation += 1

    def mark(self, marks: Marks) -> None:
        """New marks; accounts are rescanned lazily or by :meth:`sweep`.  A
        symbol the new marks lack keeps its last mark."""
        old = self._marks
        self._marks = Marks({**old.price, **marks.price}, {**old.unit_usd, **marks.unit_usd})
        self._generation += 1

    def sweep(self, budget: int, exact: Container[str] = ()) -> list[Standing]:
        """Up to ``budget`` margined clients, taken in turn (rescanned if
        the marks or parameters moved since their last scan): the standing
        of each that may be below its margin call level, and of each named
        in ``exact`` whatever its level.  A client whose equity covers its
        call level times the sum of its scan risks (which margin never
        passes) is left out without a spread formed.  What a watch for
        margin calls and stop-outs reads, a bounded number at a time."""
        out: list[Standing] = []
        clients = self._terms if self._params is not None else {}
        for _ in range(min(budget, len(clients))):
            client = next(self._sweep, None)
            if client is None:
                self._sweep = iter(list(clients))
                client = next(self._sweep, None)
                if client is None:
                    break
            if client not in exact and self._clearly_above_call(client):
                continue
            standing = self.standing(client)
            if standing is not None:
                out.append(standing)
        return out

    def _clearly_above_call(self, client: str) -> bool:
        account = self._account(client)
        if account is None:
            return True
        try:
            self._current(account)
        except MissingMark:
            return False
        call = float(account.terms.margin_call_level)
        return self._equity(account) >= call * account.portfolio.scan_total

    def _scanned(self, client: str) -> _Account | None:
        """The client's account, rescanned if the marks or parameters moved
        (a position without a mark leaves it as at its last scan)."""
        account = self._account(client)
        if account is not None:
            try:
                self._current(account)
            except MissingMark:
                pass
        return account

    def standing(self, client: str) -> Standing | None:
        """The client's equity, margin and levels now (None if not margined)."""
        account = self._scanned(client)
        if account is None:
            return None
        margin = account.portfolio.result().margin
        equity = self._equity(account)
        terms = account.terms
        return Standing(
            client,
            equity,
            margin,
            equity / margin if margin > 0 else None,
            float(terms.margin_call_level),
            float(terms.stop_out_level),
            flat=not any(h.lots for h in account.holdings.values()),
            # a symbol no longer configured is never priced again: what it
            # leaves out does not keep the account from being judged
            complete=not any(symbol in self._lot_size for symbol in account.unpriced),
        )

    def pnl_by_symbol(self, client: str) -> dict[str, float]:
        """Unrealized P&L in USD of each of the client's open positions."""
        out: dict[str, float] = {}
        marks = self._marks
        for symbol, h in self._holdings(client).items():
            to_usd = marks.quote_to_usd(symbol)
            if h.lots and to_usd is not None:
                out[symbol] = self._unrealized(symbol, h, to_usd)
        return out

    def _unrealized(self, symbol: str, h: Holding, to_usd: float) -> float:
        """The holding's unrealized P&L in USD at the mark (``to_usd``: USD
        per unit of its quote currency, there only with a mark)."""
        return h.lots * self._lot_size[symbol] * (self._marks.price[symbol] - h.avg) * to_usd

    def _realized_to_usd(self, symbol: str) -> float | None:
        """USD per unit of the quote currency ``symbol``'s P&L is realized
        in: at its mark, or 1 for a symbol quoted in USD, marked or not
        (marks are not kept across a restart, the realized P&L is); None
        while the rate is not known."""
        to_usd = self._marks.quote_to_usd(symbol)
        if to_usd is not None:
            return to_usd
        if symbol in self._in_usd:
            return 1.0
        via = self._rate_via.get(symbol)
        if via is None:
            return None
        # a cross not marked: its quote currency's rate from the instrument
        # that converts it, when that one is
        price = self._marks.price.get(via[0])
        if not price:
            return None
        return price if via[1] else 1.0 / price

    def position(self, client: str, symbol: str) -> int:
        """The client's position in ``symbol``, in lots (long positive)."""
        holding = self._holdings(client).get(symbol)
        return 0 if holding is None else holding.lots

    def _holdings(self, client: str) -> dict[str, Holding]:
        account = self._accounts.get(client)
        if account is not None:
            return account.holdings
        return self._loose.get(client, {})

    # -- what happens to orders -------------------------------------------------------

    def order_open(self, order_id: str, client: str, symbol: str, side: Side, leaves: int) -> None:
        """An order's lots not yet done, the most it may still fill (0 when
        it is done); replaces what was said of it before."""
        before = self._open.pop(order_id, None)
        if before is not None:
            was_client, was_symbol, was_side, was_leaves = before
            self._add_open(was_client, was_symbol, was_side, -was_leaves)
        if leaves > 0:
            self._open[order_id] = (client, symbol, side, leaves)
            self._add_open(client, symbol, side, leaves)

    def open_lots(self, client: str, symbol: str, side: Side) -> int:
        """The lots the client's open orders in ``symbol`` on ``side`` may
        still fill (as :meth:`order_open` was last told of each)."""
        by_symbol = self._open_lots.get(client)
        if by_symbol is None:
            return 0
        both = by_symbol.get(symbol)
        if both is None:
            return 0
        return both[0] if side is BUY else both[1]

    def _add_open(self, client: str, symbol: str, side: Side, lots: int) -> None:
        by_symbol = self._open_lots.setdefault(client, {})
        both = by_symbol.get(symbol)
        if both is None:
            both = by_symbol[symbol] = [0, 0]
        both[0 if side is BUY else 1] += lots
        if not both[0] and not both[1]:
            del by_symbol[symbol]

    def trade(self, client: str, symbol: str, side: Side, lots: int, price: int) -> None:
        """Book a client's fill of ``lots`` at ``price`` ticks."""
        lot_size = self._lot_size.get(symbol)
        if lot_size is None:
            return  # an instrument no longer configured: nothing to margin it by
        signed = lots if side is BUY else -lots
        self._book(client, symbol, signed, price * self._tick_size[symbol], lot_size)

    def trade_on_grid(
        self,
        client: str,
        symbol: str,
        side: Side,
        lots: int,
        price: int,
        tick_size: float,
        lot_size: float,
    ) -> None:
        """Book a client's fill of ``lots`` at ``price`` ticks counted on
        the grid given (a journal's, which the config may have changed
        since: the realized P&L and the units margined are the fill's; the
        lots held are that grid's, so they must come to none)."""
        if symbol not in self._lot_size:
            return  # an instrument no longer configured: nothing to margin it by
        signed = lots if side is BUY else -lots
        self._book(client, symbol, signed, price * tick_size, lot_size)

    def _book(
        self, client: str, symbol: str, signed: int, price_units: float, lot_size: float
    ) -> None:
        account = self._account(client)
        holdings = self._loose.setdefault(client, {}) if account is None else account.holdings
        holding = holdings.get(symbol)
        if holding is None:
            holding = holdings[symbol] = Holding()
        holding.trade(signed, price_units, lot_size)
        if account is not None:
            account.equity_at = -1
        if account is not None and account.generation == self._generation:
            try:
                account.portfolio.hold(symbol, holding.lots * lot_size)
            except MissingMark:
                account.generation = -1  # scanned again when next read

    def check(self, client: str, symbol: str, side: Side, lots: int) -> RiskBreach | None:
        """Refuse an order whose initial margin, with the client's other open
        orders filled, would pass the client's equity; never one that lowers
        the margin."""
        if client in self.suspended:
            return RiskBreach(MARGIN_LIMIT, "account in stop-out: no new orders (limit margin)")
        account = self._account(client)
        if account is None:
            return None
        params = account.portfolio.params
        if symbol not in params.group_of:
            return None
        factor = float(account.terms.initial_factor)
        try:
            self._current(account)
            equity = self._equity(account)
            if account.loss_unpriced is not None:
                # a realized loss not valued yet: the equity is above what it is
                raise MissingMark(account.loss_unpriced)
            # a position with no mark: its P&L, left out, may be a loss of
            # any size, and the equity above what it is: only an order that
            # does not raise the margin passes (below)
            unvalued = self._held_unpriced(account)
            # first a bound that needs no spread formed: every scan risk,
            # each group's with its open orders (and this one) filled at its
            # worse end
            portfolio = account.portfolio
            held = self._open_lots.get(client)
            if unvalued is not None:
                bound = math.inf
            elif not held or (len(held) == 1 and symbol in held):
                # open orders in this symbol alone, if any (most orders):
                # the bound of its group's two ends
                lot_size = self._lot_size[symbol]
                buys, sells = held[symbol] if held else (0, 0)
                if side is BUY:
                    buys += lots
                else:
                    sells += lots
                bound = portfolio.scan_bound(symbol, buys * lot_size, -sells * lot_size)
            else:
                bound = portfolio.open_bound(self._open_units(client, symbol, side, lots))
            if bound * factor <= equity:
                return None
            opens = self._open_units(client, symbol, side, lots)
            # before and after taken the same way (searched, or both
            # bounded), so that an order reducing the margin is never
            # compared with a figure taken the other way
            search = portfolio.searchable(opens)
            after = portfolio.worst_open(opens, search)
            required = after * factor
            if required <= equity and unvalued is None:
                return None  # whatever it was before
            before = portfolio.worst_open(self._open_units(client, symbol, side, 0), search)
            if unvalued is not None and after > before:
                raise MissingMark(unvalued)
        except MissingMark as missing:
            if self._only_reduces(client, account, symbol, side, lots):
                return None
            return RiskBreach(
                MARGIN_LIMIT, f"margin unknown: no price for {missing.symbol} (limit margin)"
            )
        if after <= before:
            return None
        return RiskBreach(
            MARGIN_LIMIT,
            f"insufficient margin: {against_client(required, 2, up=True)} USD initial margin "
            f"required, {against_client(equity - before * factor, 2, up=False)} USD free "
            "(limit margin)",
        )

    def _held_unpriced(self, account: _Account) -> str | None:
        """A configured symbol the account holds lots of with no mark (its
        unrealized P&L is left out of the equity), None if there is none;
        taken with the equity (:meth:`_equity`)."""
        for symbol in account.unpriced:
            holding = account.holdings.get(symbol)
            if (
                holding is not None
                and holding.lots
                and symbol in self._lot_size
                and self._marks.quote_to_usd(symbol) is None
            ):
                return symbol
        return None

    def _only_reduces(
        self, client: str, account: _Account, symbol: str, side: Side, lots: int
    ) -> bool:
        """Whether the order, with the open ones on its side filled, only
        brings the position in ``symbol`` towards zero, in a group of that
        symbol alone that no spread takes: then it cannot raise the margin,
        and needs no price to be let through (none may be quoted after a
        restart, or with the LPs away).  Where the symbol nets against
        others or forms spreads, reducing it can raise the margin."""
        params = account.portfolio.params
        group = params.group_of[symbol]
        if len(params.by_name[group].symbols) != 1 or params.spreads_of.get(group):
            return False
        held = account.holdings.get(symbol)
        if held is None or not held.lots:
            return False
        buys, sells = self._open_lots.get(client, {}).get(symbol, (0, 0))
        if side is BUY:
            return held.lots < 0 and buys + lots <= -held.lots
        return held.lots > 0 and sells + lots <= held.lots

    def _open_units(
        self, client: str, symbol: str, side: Side, lots: int
    ) -> dict[str, tuple[float, float]]:
        """Per symbol, the units the client's open buys and open sells may
        still fill, with ``lots`` more on ``side`` of ``symbol``."""
        lot_size = self._lot_size
        opens: dict[str, tuple[float, float]] = {}
        for held, (buys, sells) in self._open_lots.get(client, {}).items():
            size = lot_size.get(held)
            if size is not None:
                opens[held] = (buys * size, sells * size)
        if lots:
            buys_units, sells_units = opens.get(symbol, (0.0, 0.0))
            units = lots * lot_size[symbol]
            if side is BUY:
                opens[symbol] = (buys_units + units, sells_units)
            else:
                opens[symbol] = (buys_units, sells_units + units)
        return opens

    # -- reads --------------------------------------------------------------------

    def clients(self) -> list[str]:
        return sorted(self._terms) if self._params is not None else []

    def view(self, client: str) -> AccountView | None:
        """The account's figures now; None for a client not margined."""
        account = self._scanned(client)
        if account is None:
            return None
        portfolio = account.portfolio.result()
        siloed = account.portfolio.result(siloed=True)
        terms = account.terms
        realized, unrealized, unpriced, _ = self._pnl(account.holdings)
        collateral = float(terms.collateral_usd)
        equity = collateral + realized + unrealized
        margin = portfolio.margin
        initial = margin * float(terms.initial_factor)
        return AccountView(
            client=client,
            collateral_usd=collateral,
            realized_pnl_usd=realized,
            unrealized_pnl_usd=unrealized,
            equity_usd=equity,
            margin_usd=margin,
            initial_margin_usd=initial,
            siloed_margin_usd=siloed.margin,
            free_margin_usd=equity - initial,
            margin_level=equity / margin if margin > 0 else None,
            margin_call_level=float(terms.margin_call_level),
            stop_out_level=float(terms.stop_out_level),
            portfolio=portfolio,
            siloed=siloed,
            positions={s: (h.lots, h.avg) for s, h in account.holdings.items() if h.lots},
            unpriced=unpriced,
        )

    def is_margined(self, client: str) -> bool:
        """Whether ``client`` has a margin account under the parameters now."""
        return self._params is not None and client in self._terms

    def holdings(self) -> dict[str, dict[str, tuple[int, float, float]]]:
        """Every client's holdings as (lots, average price, realized P&L in
        the quote currency), for a checkpoint."""
        out: dict[str, dict[str, tuple[int, float, float]]] = {}
        for client, holdings in self._all_holdings():
            kept = {s: (h.lots, h.avg, h.realized) for s, h in holdings.items()}
            if kept:
                out[client] = kept
        return out

    def holdings_of(self, client: str) -> dict[str, tuple[int, float, float]]:
        """One client's holdings as :meth:`holdings` gives them."""
        return {s: (h.lots, h.avg, h.realized) for s, h in self._holdings(client).items()}

    def set_client(self, client: str, holdings: Mapping[str, tuple[int, float, float]]) -> None:
        """Replace one client's holdings (what :meth:`holdings_of` gave,
        elsewhere: another gateway of a cluster)."""
        self._accounts.pop(client, None)  # made again from the holdings when next used
        made = {s: Holding(*values) for s, values in holdings.items()}
        if made:
            self._loose[client] = made
        else:
            self._loose.pop(client, None)

    def load(self, holdings: Mapping[str, Mapping[str, tuple[int, float, float]]]) -> None:
        """Replace every holding with the given ones (what :meth:`holdings`
        returned earlier)."""
        self._loose = {
            client: {s: Holding(*values) for s, values in by_symbol.items()}
            for client, by_symbol in holdings.items()
        }
        self._accounts = {}  # made again from the holdings when next used
        self._sweep = iter(())
        self._generation += 1

    # -- inside -------------------------------------------------------------------

    def _all_holdings(self) -> Iterator[tuple[str, dict[str, Holding]]]:
        for client, account in self._accounts.items():
            yield client, account.holdings
        yield from self._loose.items()

    def _account(self, client: str) -> _Account | None:
        account = self._accounts.get(client)
        if account is not None:
            return account
        terms = self._terms.get(client)
        params = self._params
        if terms is None or params is None:
            return None
        account = _Account(terms, Portfolio(params, {}))
        account.holdings = self._loose.pop(client, {})
        self._accounts[client] = account
        return account

    def _current(self, account: _Account) -> None:
        """Rescan the account's portfolio if the marks or parameters moved."""
        if account.generation == self._generation:
            return
        params = self._params
        assert params is not None
        lot_size = self._lot_size
        positions = {
            s: h.lots * lot_size[s] for s, h in account.holdings.items() if h.lots and s in lot_size
        }
        account.portfolio.positions = positions
        account.portfolio.revalue(self._marks.unit_usd, params)
        account.generation = self._generation

    def _pnl(
        self, holdings: Mapping[str, Holding]
    ) -> tuple[float, float, tuple[str, ...], str | None]:
        """(realized, unrealized) P&L in USD at the current marks, the
        symbols whose P&L they leave out for want of a price (a position
        with no mark, P&L realized in a currency with no rate), and one of
        those whose left out realized P&L is a loss (None if none is)."""
        marks = self._marks
        realized = unrealized = 0.0
        unpriced: list[str] = []
        loss: str | None = None
        for symbol, h in holdings.items():
            if h.realized:
                to_usd = self._realized_to_usd(symbol)
                if to_usd is not None:
                    realized += h.realized * to_usd
                else:
                    unpriced.append(symbol)
                    # one no longer configured is never priced again: its
                    # loss stays out rather than hold every order for ever
                    if h.realized < 0 and loss is None and symbol in self._lot_size:
                        loss = symbol
            if h.lots:
                to_usd = marks.quote_to_usd(symbol)
                if to_usd is not None:
                    unrealized += self._unrealized(symbol, h, to_usd)
                elif not unpriced or unpriced[-1] != symbol:
                    unpriced.append(symbol)
        return realized, unrealized, tuple(unpriced), loss

    def _equity(self, account: _Account) -> float:
        if account.equity_at == self._generation:
            return account.equity
        realized, unrealized, unpriced, loss = self._pnl(account.holdings)
        account.equity = float(account.terms.collateral_usd) + realized + unrealized
        account.unpriced = unpriced
        account.loss_unpriced = loss
        account.equity_at = self._generation
        return account.equity
