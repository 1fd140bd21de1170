"""Drop copy: what the gateway told its clients and what it booked at the
LPs, copied to counterparties that keep the record (a back office).

A session with ``Application = "dropcopy"`` covers every client, or those
its ``DropCopyFor`` lists.  It receives:

* a copy of every ExecutionReport sent to a client it covers: the same body,
  with Account (1) naming the client, CopyMsgIndicator (797) = Y and, on a
  fill, LastMkt (30) naming the LP that made it or ``internal`` for a cross;
* a TradeCaptureReport (AE) for every fill booked from an LP, the house's
  side of it: TradeReportID ``<child id>/<LP ExecID>`` (``/house`` added for
  the part of a fill booked to the house account), ExecID the LP's, the
  symbol, LastQty and LastPx, the side and the child order id, the account
  booked (a client or the house) and the LP as contra firm; for lots booked
  to a client, SecondaryExecID (527) is the ExecID of the client's
  ExecutionReport of them.

The drop-copy process makes them from the order journal
(:mod:`gateway.dropcopy.follow`); they go through the drop-copy session like
any message: stored, sent if the counterparty is logged on, resent on its
ResendRequest after an outage.  Nothing it sends is answered: an
application message from it gets a BusinessMessageReject.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import BusinessRejectReason, Session
from router.members import BUY, SELL
from router.model import Instrument, Side
from router.units import instrument_formats

__all__ = ["DropCopies", "DropCopyApplication", "copy_body", "trade_capture_body"]

HOUSE_SUFFIX: Final = "/house"
_SIDES: Final = {BUY: b"1", SELL: b"2"}


def copy_body(body: bytes, client: bytes, market: str = "") -> bytes:
    """An ExecutionReport body sent to ``client``, as its drop copy;
    ``market`` (LastMkt, 30) names where the fill it reports was made: the
    LP, or ``internal`` for a cross between two clients."""
    if market:
        return b"%b1=%b\x0130=%b\x01797=Y\x01" % (body, client, market.encode("latin-1", "replace"))
    return b"%b1=%b\x01797=Y\x01" % (body, client)


def trade_capture_body(
    *,
    child_id: str,
    exec_id: str,
    lp: str,
    account: str,
    house: bool,
    instrument: Instrument,
    side: Side,
    lots: int,
    price: int,
    now: float,
    client_exec_id: str = "",
    day_end: int = 0,
    restates: str = "",
) -> bytes:
    """The TradeCaptureReport (AE) of ``lots`` of an LP fill booked to
    ``account`` (``house`` when that is the house's account) at ``now``;
    ``client_exec_id``, when given, is the ExecID of the client's
    ExecutionReport of the same lots (SecondaryExecID, 527); ``restates``,
    for the booking of an LP's Trade Cancel or Correct, the ExecID of the
    booking of the same child it reverses or corrects (TradeReportRefID,
    572, as ``<child>/<ExecID>``).  TradeDate
    (75) is the trading day, which ends ``day_end`` seconds after midnight
    UTC (``orders.trading_day_end``) and is named by the date it ends on."""
    fmt = instrument_formats(instrument)
    report_id = f"{child_id}/{exec_id}{HOUSE_SUFFIX if house else ''}"
    stamp = codec.format_utc_timestamp(now)
    trade_date = stamp[:8]
    if day_end:
        trade_date = codec.format_utc_timestamp(now + 86400 - day_end)[:8]
    secondary = (
        b"527=%b\x01" % client_exec_id.encode("latin-1", "replace") if client_exec_id else b""
    )
    reference = (
        b"572=%b/%b\x01"
        % (child_id.encode("latin-1", "replace"), restates.encode("latin-1", "replace"))
        if restates
        else b""
    )
    return (
        b"17=%b\x01%b31=%b\x0132=%b\x0155=%b\x0160=%b\x0175=%b\x01"
        b"552=1\x0154=%b\x0137=%b\x01453=1\x01448=%b\x01447=D\x01452=17\x011=%b\x01"
        b"570=N\x01571=%b\x01%b797=Y\x01"
        % (
            exec_id.encode("latin-1", "replace"),
            secondary,
            fmt.price(price),
            fmt.qty(lots),
            instrument.symbol.encode(),
            stamp,
            trade_date,
            _SIDES[side],
            child_id.encode("latin-1", "replace"),
            lp.encode("latin-1", "replace"),
            account.encode("latin-1", "replace"),
            report_id.encode("latin-1", "replace"),
            reference,
        )
    )


class DropCopies:
    """The drop-copy sessions and whom each covers."""

    def __init__(self, sessions: Iterable[Session]) -> None:
        self.all: list[Session] = []
        self.by_client: dict[str, list[Session]] = {}
        self._covering: dict[str, list[Session]] = {}
        for session in sessions:
            covered = session.settings.DropCopyFor
            if covered is None:
                self.all.append(session)
            else:
                for client in covered:
                    self.by_client.setdefault(client, []).append(session)

    def __bool__(self) -> bool:
        return bool(self.all or self.by_client)

    def covering(self, client: str) -> list[Session]:
        """The drop-copy sessions covering ``client``."""
        covering = self._covering.get(client)
        if covering is None:
            covering = self._covering[client] = self.all + self.by_client.get(client, [])
        return covering

    def sessions(self) -> list[Session]:
        """Every drop-copy session, once."""
        seen: dict[str, Session] = {s.session_id: s for s in self.all}
        for named in self.by_client.values():
            for s in named:
                seen[s.session_id] = s
        return list(seen.values())


class DropCopyApplication:
    """What a drop-copy session does with what its counterparty sends:
    nothing but the session layer; an application message is refused."""

    def on_logon(self, session: Session, now: float) -> None:
        pass

    def on_logout(self, session: Session, reason: str, now: float) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now: float) -> None:
        session.reject_business(msg, BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE, now)
