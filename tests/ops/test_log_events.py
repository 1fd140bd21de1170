"""Our own modules that log through the standard library (the storage) write
named events with fields, rendered like every structlog event."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog
from test_log_output import lines

from gateway.ops.logs import configure_logging
from gateway.storage.session_store import FileStore

KEY = "FIX.4.4:GATEWAY->CLIENT1"


def test_a_record_whose_message_is_a_mapping_is_that_event_with_its_fields(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    logging.getLogger("gateway.storage.x").info({"event": "thing_opened", "path": "/a", "n": 3})
    [event] = lines(capfd.readouterr().err)
    assert event == {
        "event": "thing_opened",
        "path": "/a",
        "n": 3,
        "level": "info",
        "logger": "gateway.storage.x",
        "timestamp": event["timestamp"],
    }


def test_library_and_own_events_are_the_same_json(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    logging.getLogger("gateway.storage.x").info({"event": "thing_opened", "path": "/a"})
    structlog.get_logger("gateway.daemon").info("gateway_starting", data_dir="/a")
    stdlib, own = capfd.readouterr().err.splitlines()
    # both compact, from the same serializer
    assert ", " not in stdlib
    assert ", " not in own
    assert json.loads(stdlib)["path"] == json.loads(own)["data_dir"]


def test_console_rendering_shows_the_event_name_and_fields(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "console")
    logging.getLogger("gateway.storage.x").warning({"event": "tail_discarded", "offset": 12})
    err = capfd.readouterr().err
    assert "tail_discarded" in err
    assert "offset=12" in err
    assert "{" not in err


def test_the_session_store_logs_named_events(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    with FileStore(tmp_path, KEY) as store:
        store.append_sent(1, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01")
        store.set_next_sender_seq(2)
    journal = next(tmp_path.rglob("journal"))
    with journal.open("ab") as f:
        f.write(b"\x00\xff torn")
    FileStore(tmp_path, KEY).close()
    events = lines(capfd.readouterr().err)
    assert [e["event"] for e in events] == [
        "session_store_created",
        "session_store_tail_discarded",
        "session_store_opened",
    ]
    path = str(tmp_path / "FIX.4.4-GATEWAY-CLIENT1")
    created, discarded, opened = events
    assert created["path"] == path
    assert discarded["path"] == path
    assert discarded["level"] == "warning"
    assert discarded["discarded_bytes"] == 7
    assert discarded["offset"] + 7 == discarded["file_size"]
    assert opened["path"] == path
    assert (opened["next_sender_seq"], opened["next_target_seq"], opened["messages"]) == (2, 1, 1)
