"""The log set-up: one JSON object per line, level filtering that a reload
changes for loggers already in use, library records rendered alike."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest
import structlog

from gateway.ops.logs import configure_logging, set_log_level


def lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_events_carry_level_logger_and_fields(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    log = structlog.get_logger("gateway.orderflow.flow").bind(session="S1")
    log.info("child_rejected", lp="LP_A", qty=Decimal("1000"), raw=b"F", by_tag={38: "1000"})
    log.debug("route_decision", cl_ord_id="X")
    [event] = lines(capfd.readouterr().err)
    assert event["event"] == "child_rejected"
    assert event["level"] == "info"
    assert event["logger"] == "gateway.orderflow.flow"
    assert event["session"] == "S1"
    assert event["lp"] == "LP_A"
    assert event["by_tag"] == {"38": "1000"}
    assert "Decimal" in event["qty"]
    assert "F" in event["raw"]
    assert event["timestamp"].endswith("Z")


def test_a_level_change_reaches_loggers_already_used(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("warning", "json")
    log = structlog.get_logger("gateway.ops.reload")
    log.info("quiet")
    set_log_level("debug")
    log.debug("loud")
    set_log_level("error")
    log.warning("quiet again")
    log.error("still shown")
    assert [e["event"] for e in lines(capfd.readouterr().err)] == ["loud", "still shown"]


def test_exceptions_are_rendered_in_the_event(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    try:
        raise ValueError("bad frame")
    except ValueError:
        structlog.get_logger("gateway.net.server").exception("application_error")
    [event] = lines(capfd.readouterr().err)
    assert event["level"] == "error"
    assert "ValueError: bad frame" in event["exception"]


def test_standard_library_records_share_the_format(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    logging.getLogger("gateway.fix.store").warning("torn record at %d", 42)
    logging.getLogger("gateway.fix.store").debug("not shown")
    [event] = lines(capfd.readouterr().err)
    assert event == {
        "event": "torn record at 42",
        "level": "warning",
        "logger": "gateway.fix.store",
        "timestamp": event["timestamp"],
    }


def test_console_rendering_for_development(
    capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "console")
    structlog.get_logger("gateway.daemon").info("gateway_started", fix_port=9876)
    err = capfd.readouterr().err
    assert "gateway_started" in err
    assert "fix_port=9876" in err
    assert not err.startswith("{")
