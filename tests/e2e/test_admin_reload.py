"""``POST /admin/reload`` of a ``fixgw run`` process whose config file on
disk is invalid: 422 with every error named by its path, and the config in
force stays in force."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_order_scenarios import FINAL, order, reports_until

from config import SessionSettings, default_config_path
from gateway.net.client import FixClient

DEFAULT_TEXT = default_config_path().read_text()
TOKEN = "dev-admin-token"


def replaced(old: str, new: str, text: str = DEFAULT_TEXT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def admin(port: int, method: str, path: str) -> tuple[int, Any]:
    """Status and JSON body of an admin request (a 4xx answer included)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, json.loads(answer.read())


async def final_of(c: FixClient, cl_ord_id: str, qty: str) -> tuple[bytes, bytes]:
    """(OrdStatus, Text) of a buy market order's final report."""
    c.send(b"D", order(cl_ord_id, "1", qty))
    last = (await reports_until(c, cl_ord_id.encode(), *FINAL))[-1]
    return last.get(39) or b"", last.get(58) or b""


@pytest.mark.asyncio
async def test_an_invalid_file_is_answered_422_naming_each_error_and_changes_nothing(
    daemon_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "fixgw.toml"
    write_atomically(path, DEFAULT_TEXT)
    d = daemon_factory("--config", str(path)).start()
    c = FixClient(SessionSettings(SenderCompID="CLIENT1", TargetCompID="GATEWAY"))
    await c.connect("127.0.0.1", d.fix_port)
    try:
        status, config = await asyncio.to_thread(admin, d.http_port, "GET", "/admin/config")
        assert status == 200
        version = config["version"]

        # a tighter order size, in a file with two schema errors
        tighter = replaced('max_order_qty = "5000000"', 'max_order_qty = "1000"')
        bad = replaced("max_reroutes = 2", "max_reroutes = -1", tighter)
        bad = replaced("max_messages_per_second = 50000", 'max_messages_per_second = "fast"', bad)
        write_atomically(path, bad)
        status, body = await asyncio.to_thread(admin, d.http_port, "POST", "/admin/reload")
        assert status == 422
        assert body["status"] == "invalid"
        assert body["version"] == version
        assert sorted(body["details"]) == [
            "risk.default.max_messages_per_second: expected int, got str",
            "routing.max_reroutes: must be >= 0",
        ]
        # the limits in force are the old ones: 3,000 is within 5,000,000
        assert await final_of(c, "OLD-LIMIT", "3000") == (b"2", b"")
        status, config = await asyncio.to_thread(admin, d.http_port, "GET", "/admin/config")
        assert (status, config["version"]) == (200, version)

        # a file that is not TOML: 422 too, naming the line of the fault
        broken = replaced("max_reroutes = 2 ", "max_reroutes = ", tighter)
        line = broken[: broken.index("max_reroutes = ")].count("\n") + 1
        write_atomically(path, broken)
        status, body = await asyncio.to_thread(admin, d.http_port, "POST", "/admin/reload")
        assert (status, body["status"], body["version"]) == (422, "invalid", version)
        (detail,) = body["details"]
        assert detail.startswith(f"TOML syntax error at line {line}, "), detail
        assert await final_of(c, "STILL-OLD", "3000") == (b"2", b"")

        # the same tighter limit in a valid file is taken, and refuses that order
        write_atomically(path, tighter)
        status, body = await asyncio.to_thread(admin, d.http_port, "POST", "/admin/reload")
        assert (status, body["status"]) == (200, "applied")
        assert body["details"] == ["risk.default.max_order_qty"]
        assert body["version"] != version
        ord_status, text = await final_of(c, "NEW-LIMIT", "3000")
        assert ord_status == b"8"
        assert b"max_order_qty" in text
    finally:
        await c.logout()
