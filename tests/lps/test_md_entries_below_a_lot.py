"""An entry named by its MDEntryID whose size does not fill a lot adds
nothing to its level, but it is still the LP's entry: a change or delete
naming it later touches it alone, never the lots the level's other entries
hold."""

from __future__ import annotations

from pathlib import Path

from lp_test_kit import INSTRUMENTS
from test_fix_adapter import Sink, lp_settings
from test_market_data_entries import latest, levels, md

from lp_adapters.fix import FixLp


def adapter_with_a_level_of_two_entries() -> tuple[FixLp, Sink]:
    """A bid level of 2 lots from B2, and B1 at the same price below a lot."""
    sink = Sink()
    adapter = FixLp("LPT", INSTRUMENTS, sink, lp_settings(1, Path("/nonexistent")))
    snapshot = [(55, b"EUR/USD"), (262, b"R1"), (268, b"2")]
    snapshot += [(269, b"0"), (278, b"B1"), (270, b"1.1"), (271, b"500")]
    snapshot += [(269, b"0"), (278, b"B2"), (270, b"1.1"), (271, b"2000")]
    adapter._on_market_data(md(b"W", *snapshot), 1.0, full=True)
    assert levels(latest(sink)) == ([(110_000, 2)], [])
    return adapter, sink


def test_a_delete_of_an_entry_below_a_lot_leaves_the_others_at_its_level() -> None:
    adapter, sink = adapter_with_a_level_of_two_entries()
    # deleted by its MDEntryID, its type and price said again (as many LPs do)
    delete = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B1"), (55, b"EUR/USD")]
    delete += [(269, b"0"), (270, b"1.1")]
    adapter._on_market_data(md(b"X", *delete), 2.0, full=False)
    assert levels(latest(sink)) == ([(110_000, 2)], [])


def test_an_entry_below_a_lot_grown_by_its_md_entry_id_alone_adds_to_its_level() -> None:
    adapter, sink = adapter_with_a_level_of_two_entries()
    grown = [(262, b"R1"), (268, b"1"), (279, b"1"), (278, b"B1"), (55, b"EUR/USD")]
    grown.append((271, b"3000"))
    adapter._on_market_data(md(b"X", *grown), 2.0, full=False)
    assert levels(latest(sink)) == ([(110_000, 5)], [])
    # and shrunk below a lot again, then deleted: B2's lots stay
    shrunk = [(262, b"R1"), (268, b"1"), (279, b"1"), (278, b"B1"), (55, b"EUR/USD")]
    shrunk.append((271, b"100"))
    adapter._on_market_data(md(b"X", *shrunk), 3.0, full=False)
    assert levels(latest(sink)) == ([(110_000, 2)], [])
    delete = [(262, b"R1"), (268, b"1"), (279, b"2"), (278, b"B1"), (55, b"EUR/USD")]
    delete += [(269, b"0"), (270, b"1.1")]
    adapter._on_market_data(md(b"X", *delete), 4.0, full=False)
    assert levels(latest(sink)) == ([(110_000, 2)], [])
