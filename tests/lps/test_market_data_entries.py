"""An LP that names its market data entries by MDEntryID (278): in FIX 4.4
an incremental refresh changes or deletes an entry by its MDEntryID alone,
its MDEntryType, MDEntryPx and MDEntrySize not said again."""

from __future__ import annotations

from pathlib import Path

from lp_test_kit import INSTRUMENTS
from structlog.testing import capture_logs
from test_fix_adapter import Sink, lp_settings

from gateway.fix import codec
from lp_adapters.fix import FixLp
from router.model import Quote


def md(msg_type: bytes, *fields: tuple[int, bytes]) -> codec.FixMessage:
    header = [(34, b"9"), (49, b"LPT"), (52, b"20261206-10:00:00"), (56, b"GW")]
    return codec.parse_frame(
        codec.encode_message(b"FIX.4.4", msg_type, header, codec.encode_fields(fields))
    )


def levels(quote: Quote) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    return [(lv.price, lv.qty) for lv in quote.bids], [(lv.price, lv.qty) for lv in quote.asks]


def latest(sink: Sink) -> Quote:
    quotes = [e for e in sink.events if isinstance(e, Quote)]
    assert quotes
    return quotes[-1]


def test_entries_changed_and_deleted_by_their_md_entry_id_leave_no_level_behind() -> None:
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    snapshot = [(55, b"EUR/USD"), (262, b"R1"), (268, b"3")]
    snapshot += [(269, b"0"), (278, b"B1"), (270, b"1.1"), (271, b"2000000")]
    snapshot += [(269, b"0"), (278, b"B2"), (270, b"1.09999"), (271, b"1000000")]
    snapshot += [(269, b"1"), (278, b"A1"), (270, b"1.10002"), (271, b"3000000")]
    adapter._on_market_data(md(b"W", *snapshot), 1.0, full=True)
    assert levels(latest(sink)) == ([(110_000, 2000), (109_999, 1000)], [(110_002, 3000)])

    # the best bid deleted by its MDEntryID alone
    delete = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B1"), (55, b"EUR/USD")]
    adapter._on_market_data(md(b"X", *delete), 2.0, full=False)
    assert levels(latest(sink)) == ([(109_999, 1000)], [(110_002, 3000)])

    # the ask's size changed, and then the ask moved, by its MDEntryID
    size = [(262, b"R1"), (268, b"1"), (279, b"1"), (278, b"A1"), (55, b"EUR/USD")]
    size.append((271, b"5000000"))
    adapter._on_market_data(md(b"X", *size), 3.0, full=False)
    assert levels(latest(sink)) == ([(109_999, 1000)], [(110_002, 5000)])
    moved = [(262, b"R1"), (268, b"1"), (279, b"1"), (278, b"A1"), (55, b"EUR/USD")]
    moved += [(270, b"1.10003"), (271, b"4000000")]
    adapter._on_market_data(md(b"X", *moved), 4.0, full=False)
    assert levels(latest(sink)) == ([(109_999, 1000)], [(110_003, 4000)])

    # a second entry at a level adds to it, and its delete takes only its own
    added = [(262, b"R1"), (268, b"1"), (279, b"0"), (278, b"B3"), (55, b"EUR/USD")]
    added += [(269, b"0"), (270, b"1.09999"), (271, b"3000000")]
    adapter._on_market_data(md(b"X", *added), 5.0, full=False)
    assert levels(latest(sink)) == ([(109_999, 4000)], [(110_003, 4000)])
    gone = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B2"), (55, b"EUR/USD")]
    adapter._on_market_data(md(b"X", *gone), 6.0, full=False)
    assert levels(latest(sink)) == ([(109_999, 3000)], [(110_003, 4000)])

    # a delete of an entry the adapter does not know changes nothing, said
    quotes = len([e for e in sink.events if isinstance(e, Quote)])
    unknown = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B9"), (55, b"EUR/USD")]
    with capture_logs() as logs:
        adapter._on_market_data(md(b"X", *unknown), 7.0, full=False)
    assert [(e["event"], e["md_entry_id"]) for e in logs] == [
        ("lp_market_data_unknown_entry", "B9")
    ]
    assert len([e for e in sink.events if isinstance(e, Quote)]) == quotes
    assert levels(latest(sink)) == ([(109_999, 3000)], [(110_003, 4000)])


def test_a_snapshot_starts_the_entries_over() -> None:
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    first = [(55, b"EUR/USD"), (262, b"R1"), (268, b"1")]
    first += [(269, b"0"), (278, b"B1"), (270, b"1.1"), (271, b"2000000")]
    adapter._on_market_data(md(b"W", *first), 1.0, full=True)
    again = [(55, b"EUR/USD"), (262, b"R1"), (268, b"1")]
    again += [(269, b"0"), (278, b"B1"), (270, b"1.09998"), (271, b"1000000")]
    adapter._on_market_data(md(b"W", *again), 2.0, full=True)
    assert levels(latest(sink)) == ([(109_998, 1000)], [])
    delete = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B1"), (55, b"EUR/USD")]
    adapter._on_market_data(md(b"X", *delete), 3.0, full=False)
    assert levels(latest(sink)) == ([], [])
