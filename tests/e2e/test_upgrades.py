"""Going back a version: a gateway started on a journal holding an entry
of a kind it does not know refuses in one line and leaves every file of
its data directory as it was (docs/operations.md, Upgrades)."""

from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[2]


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, by path, with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_journal_of_a_newer_version_stops_the_start_and_changes_nothing(
    daemon_factory: Any,
) -> None:
    d = daemon_factory().start()
    assert d.stop() == 0
    journal = d.data_dir / "orders" / "journal"
    size = journal.stat().st_size
    # a whole batch, its checksum right, of an entry kind added later
    body = b"\x91" + msgspec.msgpack.encode([99, "added later"])
    length = struct.pack("<I", len(body))
    with open(journal, "ab") as f:
        f.write(struct.pack("<I", zlib.crc32(length + body)) + length + body)
    before = files(d.data_dir)
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "gateway", "run", "--fix-port", str(d.fix_port)),
            *("--http-port", str(d.http_port), "--drop-copy-port", str(d.drop_copy_port)),
            *("--data-dir", str(d.data_dir)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    # the batch after those the first run wrote (how many it wrote is its own affair)
    said = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        re.escape(f"fixgw: refusing to start: {journal}: batch ")
        + r"\d+"
        + re.escape(
            " holds an entry this version cannot read (Invalid value 99 - at `$[0][0]`): "
            "most likely the journal was written by a newer version of fixgw; start that "
            "version (docs/operations.md, Upgrades)"
        ),
        said,
    ), said
    assert files(d.data_dir) == before
    assert journal.stat().st_size == size + 4 + 4 + len(body)


def test_a_journal_of_a_newer_format_stops_the_start_saying_so(daemon_factory: Any) -> None:
    d = daemon_factory().start()
    assert d.stop() == 0
    journal = d.data_dir / "orders" / "journal"
    with open(journal, "r+b") as f:
        f.seek(7)
        f.write(b"\x02")  # the magic's last byte: the journal format's version
    before = files(d.data_dir)
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "gateway", "run", "--fix-port", str(d.fix_port)),
            *("--http-port", str(d.http_port), "--drop-copy-port", str(d.drop_copy_port)),
            *("--data-dir", str(d.data_dir)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert said == [
        f"fixgw: refusing to start: {journal} is an order journal of format version 2; this "
        "version of fixgw reads version 1 only: it was written by a newer version of fixgw; "
        "start that version (docs/operations.md, Upgrades)"
    ]
    assert files(d.data_dir) == before
