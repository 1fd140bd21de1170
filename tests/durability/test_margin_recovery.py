"""Margin accounts after a restart, in the order flow fed directly on a
clock the test holds (as tests/orderentry/test_throttles.py does): what a
client is answered over FIX."""

from __future__ import annotations

from pathlib import Path

import pytest
from strict_fix44 import message_problems

from config import SessionSettings, parse_config
from gateway.daemon import build_order_flow
from gateway.fix import codec
from gateway.fix.codec import FixMessage
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.journal import OrderJournal
from gateway.orderflow.journal_entries import Run, Traded
from router.model import Side

START = 1_800_000_000.0

CONFIG = """
[[sessions]]
SenderCompID = "GATEWAY"
TargetCompID = "CLIENT1"

[[instruments]]
symbol = "ZC"
asset_class = "commodity"
tick_size = "0.25"
lot_size = "1"
min_qty = "1"
max_qty = "1000"
quote_currency = "USD"

[[lps]]
name = "LP_A"
adapter = "simulated"
soft_limit_usd = "100000000"
hard_limit_usd = "200000000"

[margin]
version = "v1"

[[margin.groups]]
name = "corn"
symbols = ["ZC"]
scan_usd = "1750"

[accounts.CLIENT1]
collateral_usd = "3000"
"""


def sent(session: Session, first: int = 1) -> list[FixMessage]:
    out = []
    for _, raw in session.store.get_sent(first, 2**31 - 1):
        assert message_problems(raw) == [], raw
        out.append(codec.parse_frame(raw))
    return out


def send(flow: object, session: Session, msg_type: bytes, *fields: tuple[int, bytes]) -> None:
    header = [(34, b"2"), (49, b"CLIENT1"), (52, codec.format_utc_timestamp(START))]
    header.append((56, b"GATEWAY"))
    raw = codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(fields))
    flow.on_message(session, codec.parse_frame(raw), START)  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_after_a_restart_an_order_is_checked_against_the_equity_its_losses_left(
    tmp_path: Path,
) -> None:
    """CLIENT1 bought 100 ZC at 450 and sold them at 425: 2,500 USD lost
    (ZC is quoted in USD) of its 3,000 of collateral, 500 left.  The journal
    holds both fills.  After a restart, before any LP quotes ZC, a bid for
    one ZC (1,750 USD of margin) is rejected (OrdStatus 8, OrdRejReason 3):
    the loss realized in USD counts in equity with no mark (it was left out
    until ZC had one, and the bid passed)."""
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Run(4))
    journal.add(Traded("CLIENT1", "ZC", Side.BUY, 100, 1800, False))  # 450.00
    journal.add(Traded("CLIENT1", "ZC", Side.SELL, 100, 1700, False))  # 425.00
    journal.close()

    session = Session(
        SessionSettings(SenderCompID="GATEWAY", TargetCompID="CLIENT1"), MemoryStore()
    )
    journal = OrderJournal(tmp_path)
    try:
        flow = build_order_flow(
            parse_config(CONFIG), {"CLIENT1": session}, journal, Outbox(), lambda: START
        )
        send(
            flow,
            session,
            b"D",
            (11, b"B1"),
            (38, b"1"),
            (40, b"2"),
            (44, b"100.00"),
            (54, b"1"),
            (55, b"ZC"),
            (59, b"1"),
            (60, codec.format_utc_timestamp(START)),
        )
        (report,) = [m for m in sent(session) if m.msg_type == b"8"]
        assert report.get(39) == b"8", report.get(58)
        assert report.get(103) == b"3"
        assert b"1750.00 USD initial margin required, 500.00 USD free" in (report.get(58) or b"")
        view = flow.reports.accounts.view("CLIENT1")
        assert view is not None
        assert round(view.realized_pnl_usd, 2) == -2500
        # the CollateralReport tells the same equity
        send(flow, session, b"BB", (909, b"Q1"), (263, b"0"))
        (collateral,) = [m for m in sent(session) if m.msg_type == b"BA"]
        assert (collateral.get(900), collateral.get(901)) == (b"500.00", b"3000.00")
        assert b"realized -2500.00 USD" in (collateral.get(58) or b"")
    finally:
        journal.close()
