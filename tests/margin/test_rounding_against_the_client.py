"""Figures reported to a client in cents round against it: what it must
hold (margin) up, what it has (equity, free margin, P&L, the margin level)
down.  Rounded to the nearest cent instead, an order refused for margin
could say it needs no more than is free, and a margin call could report
the account at its call level."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from strict_fix44 import problems
from test_collateral_fix import DATE, values

from gateway.orderflow.collateral import collateral_report_body, position_report_body
from risk.accounts import Accounts, AccountTerms, Marks
from risk.margin import MarginGroup, MarginParams
from router.model import AssetClass, Instrument, Side

ZC = Instrument("ZC", AssetClass.COMMODITY, Decimal("0.01"), Decimal(1), 1, 1000, "USD")
# 3,000.004 USD of scan risk a contract: a tenth of a cent past 3,000
PARAMS = MarginParams(
    "v", (MarginGroup("corn", "commodity", ("ZC",), scan_usd=float(Decimal("3000.004"))),)
)


def account(collateral: str) -> Accounts:
    accounts = Accounts(PARAMS, {"C1": AccountTerms(Decimal(collateral))}, {"ZC": ZC})
    accounts.mark(Marks({"ZC": 450.0}, {"ZC": 450.0}))
    return accounts


def test_an_order_refused_for_margin_asks_more_than_is_free() -> None:
    breach = account("3000").check("C1", "ZC", Side.BUY, 1)
    assert breach is not None
    assert "3000.01 USD initial margin required, 3000.00 USD free" in breach.text


def test_a_collateral_report_of_a_called_account_shows_it_below_its_call_level() -> None:
    accounts = account("3000")
    accounts.trade("C1", "ZC", Side.BUY, 1, 45000)
    standing = accounts.standing("C1")
    assert standing is not None
    assert standing.called  # 3,000 of equity under 3,000.004 of margin
    view = accounts.view("C1")
    assert view is not None
    body = collateral_report_body(view, report_id="CR1", inquiry_id="Q1", business_date=DATE)
    assert problems(b"BA", body) == []
    f = values(body)
    assert f[900] == b"3000.00"  # equity
    assert f[899] == b"-0.01"  # free margin: a deficit, however small
    text = f[58].decode()
    assert "margin 3000.01 USD" in text
    assert "initial 3000.01 USD" in text
    assert "level 0.9999" in text


def test_a_figure_a_float_sum_lands_just_past_is_not_rounded_a_cent_away() -> None:
    """6,000 less 0.55 x 6,000 is 2,699.9999999999995 or 2,700.0000000000005
    in binary floating point, as it happens: either is 2,700.00, not a cent
    either side."""
    accounts = account("3000")
    view = accounts.view("C1")
    assert view is not None
    for margin in (2700.0000000000005, 2699.9999999999995):
        for equity in (3000.0000000000005, 2999.9999999999995):
            shown = dataclasses.replace(
                view,
                margin_usd=margin,
                initial_margin_usd=margin,
                siloed_margin_usd=margin,
                equity_usd=equity,
                free_margin_usd=equity - margin,
                margin_level=equity / margin,
            )
            body = collateral_report_body(shown, report_id="R", inquiry_id=None, business_date=DATE)
            f = values(body)
            assert (f[899], f[900]) == (b"300.00", b"3000.00")
            assert "margin 2700.00 USD, initial 2700.00 USD, siloed 2700.00 USD" in f[58].decode()
            assert "level 1.1111" in f[58].decode()


def test_a_level_over_a_margin_of_a_few_ulps_is_written_whole() -> None:
    """A spread offsetting its legs in full can leave a margin of a few
    ulps, and a level past 10**25 over it: written, not a crash."""
    view = account("3000").view("C1")
    assert view is not None
    shown = dataclasses.replace(view, margin_usd=1e-16, margin_level=3e19 * 1e10)
    body = collateral_report_body(shown, report_id="R", inquiry_id=None, business_date=DATE)
    assert problems(b"BA", body) == []
    assert "level 300000000000000000000000000000.0000" in values(body)[58].decode()


EURUSD = Instrument("EUR/USD", AssetClass.FX, Decimal("0.0001"), Decimal(100000), 1, 1000, "USD")
FX_PARAMS = MarginParams(
    "v", (MarginGroup("fx", "fx", ("EUR/USD",), scan_usd=float(Decimal("0.03"))),)
)


def test_a_position_marked_at_its_entry_price_shows_no_pnl() -> None:
    """Bought 4 lots and then 5 at 1.2000, marked at 1.2000: the average
    entry price is 1.2000000000000002 in binary floating point, and the
    P&L the residue of that, -2e-10 USD.  It is no loss of a cent: the
    client is told 0.00, as the quantity times (mark - average) of the
    PositionReport itself says."""
    accounts = Accounts(FX_PARAMS, {"C1": AccountTerms(Decimal(100000))}, {"EUR/USD": EURUSD})
    accounts.trade("C1", "EUR/USD", Side.BUY, 4, 12000)
    accounts.trade("C1", "EUR/USD", Side.BUY, 5, 12000)
    marks = Marks({"EUR/USD": 1.2}, {"EUR/USD": 1.2})
    accounts.mark(marks)
    view = accounts.view("C1")
    assert view is not None
    assert view.unrealized_pnl_usd != 0.0  # the residue this is about
    body = collateral_report_body(view, report_id="R", inquiry_id=None, business_date=DATE)
    assert "unrealized 0.00 USD" in values(body)[58].decode()
    report = position_report_body(
        view,
        "EUR/USD",
        EURUSD,
        marks,
        report_id="P",
        request_id=None,
        total_reports=1,
        business_date=DATE,
    )
    f = values(report)
    assert f[730] == f[734]  # the mark is the average entry price
    assert f[708] == b"0.00"
    assert "unrealized P&L 0.00 USD" in f[58].decode()


def test_a_margin_of_a_few_ulps_is_no_cent() -> None:
    """A spread offsetting its legs in full leaves a margin of a few ulps:
    no cent of margin is asked for it."""
    view = account("3000").view("C1")
    assert view is not None
    shown = dataclasses.replace(view, margin_usd=1e-16, initial_margin_usd=1e-16)
    body = collateral_report_body(shown, report_id="R", inquiry_id=None, business_date=DATE)
    assert "margin 0.00 USD, initial 0.00 USD" in values(body)[58].decode()
