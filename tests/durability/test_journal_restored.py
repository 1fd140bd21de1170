"""A journal restored from an older copy (docs/operations.md, Damaged
journal or store): the IDs of the next run never repeat those of the runs
started since the copy, and the batches written from then on are numbered
after those the drop copy has copied already, so it copies them."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from config import default_config_path, load_config
from gateway.daemon import build_order_flow
from gateway.fix.session import Session
from gateway.fix.store import MemoryStore
from gateway.net.transport import Outbox
from gateway.orderflow.journal import RUN_MARK_NAME, SEGMENTS_NAME, JournalError, OrderJournal
from gateway.orderflow.journal_entries import Ended

CONFIG = load_config(str(default_config_path()))

pytestmark = pytest.mark.asyncio


def started(folder: Path, serial_floor: int = 0) -> tuple[str, int]:
    """A start on the journal in ``folder`` (replayed, its run marked, the
    checkpoint taken), then one batch written: (the run's name, the serial
    of that batch)."""
    sessions = {
        s.TargetCompID: Session(s, MemoryStore())
        for s in CONFIG.sessions
        if s.Application != "dropcopy"
    }
    journal = OrderJournal(folder, keep_segments=True)
    try:
        flow = build_order_flow(
            CONFIG, sessions, journal, Outbox(journal.flush), time.time, True, "", serial_floor
        )
        run = flow.matcher._order_ids.prefix  # what the run's OrderIDs start with
        journal.add(Ended("C-1"))
        journal.flush()
        return run, journal.serial
    finally:
        journal.close()


async def test_a_journal_restored_from_an_older_copy_goes_on_after_the_latest_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "orders"
    first, _ = started(folder)
    backup = (folder / "journal").read_bytes()
    second, _ = started(folder)
    (folder / "journal").write_bytes(backup)  # restored
    with caplog.at_level(logging.WARNING):
        third, _ = started(folder)
    assert len({first, second, third}) == 3
    said = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert [m["event"] for m in said] == ["order_journal_older_than_its_runs"]
    # a mark that is not a run number stops the start, naming the file
    (folder / RUN_MARK_NAME).write_text("three\n")
    journal = OrderJournal(folder)
    with pytest.raises(JournalError, match="not a run number"):
        list(journal.replay())
    journal.close()


async def test_batches_after_a_restore_are_numbered_past_what_the_drop_copy_has(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "orders"
    _, serial = started(folder)
    backup = (folder / "journal").read_bytes()
    _, copied = started(folder)  # the drop copy copied up to here
    assert copied > serial
    (folder / "journal").write_bytes(backup)
    with capture_logs() as logs:
        _, written = started(folder, serial_floor=copied)
    assert written > copied
    behind = [e for e in logs if e["event"] == "order_journal_behind_its_drop_copy"]
    assert [e["copied_up_to"] for e in behind] == [copied]


async def test_batches_are_numbered_past_the_segments_kept_for_the_drop_copy(
    tmp_path: Path,
) -> None:
    # a segment whose last batch is 7, not read yet by the drop copy (it was
    # down), beside a journal restored from a copy whose last batch is 1
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Ended("C-1"))
    journal.flush()
    journal.close()
    segments = tmp_path / SEGMENTS_NAME
    segments.mkdir()
    (segments / f"{7:020d}").write_bytes(b"")
    (segments / f"{5:020d}").write_bytes(b"")
    journal = OrderJournal(tmp_path)
    list(journal.replay())
    journal.add(Ended("C-2"))
    journal.flush()
    assert journal.serial == 8
    journal.close()
