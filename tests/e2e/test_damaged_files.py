"""A data directory whose order journal or a session store is damaged
(a bad batch or record with an intact one after it: not the torn last
write a crash leaves) stops ``fixgw run`` with one line naming the file
and both offsets, exit 2, and every file of the data directory as it was
(docs/operations.md, Damaged journal or store)."""

from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.orderflow.journal import MAGIC, OrderJournal
from gateway.orderflow.journal_entries import Ended
from gateway.storage.session_store import FileStore

ROOT = Path(__file__).resolve().parents[2]
PORT = 29500  # fix, http, drop copy: 29500-29502


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, by path, with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run(data_dir: Path, *, wait: bool) -> subprocess.CompletedProcess[str]:
    """``fixgw run`` on ``data_dir``: stopped (SIGTERM) once started unless
    it stops by itself first."""
    cmd = [
        sys.executable,
        *("-m", "gateway", "run", "--fix-port", str(PORT)),
        *("--http-port", str(PORT + 1), "--drop-copy-port", str(PORT + 2)),
        *("--data-dir", str(data_dir)),
    ]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until it has started (or stopped)
            if "gateway_started" in line:
                break
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    return subprocess.CompletedProcess(cmd, 0, out, "")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory a gateway ran on, its journal a few batches longer."""
    data_dir = tmp_path_factory.mktemp("damaged") / "data"
    run(data_dir, wait=False)
    journal = OrderJournal(data_dir / "orders")
    try:
        list(journal.replay())
        for n in range(3):
            journal.add(Ended(f"C-{n}"))
            journal.flush()
    finally:
        journal.close()
    # and CLIENT1's session store a write longer (a flush after its first)
    with FileStore(data_dir / "sessions", "FIX.4.4:GATEWAY->CLIENT1") as store:
        store.set_next_target_seq(2)
        store.flush()
    return data_dir


def refused(data_dir: Path, path: Path, bad: str) -> None:
    before = files(data_dir)
    done = run(data_dir, wait=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    # the start's log records, then one line
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(said) == 1, done.stderr
    assert re.fullmatch(
        re.escape(
            f"fixgw: refusing to start: {path}: {bad}: not a torn write a crash "
            "leaves; the journal is left as it is: "
            "restore it from a backup (fixgw has no way to start past it; "
            "docs/operations.md, Damaged journal or store)"
        ),
        said[0],
    ), said[0]
    after = files(data_dir)
    assert {name: after.get(name) for name in before} == before


def test_a_damaged_order_journal_stops_the_start(made: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    subprocess.run(["cp", "-a", str(made), str(data_dir)], check=True)
    journal = data_dir / "orders" / "journal"
    data = bytearray(journal.read_bytes())
    first = len(MAGIC)
    (length,) = struct.unpack_from("<I", data, first + 4)
    data[first + 8 + length - 1] ^= 0x01  # a bit of the first batch
    journal.write_bytes(bytes(data))
    refused(
        data_dir,
        journal,
        f"the batch at offset {first} is damaged and the batch at offset "
        f"{first + 8 + length} after it is intact",
    )


def test_a_damaged_session_store_stops_the_start(made: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    subprocess.run(["cp", "-a", str(made), str(data_dir)], check=True)
    store = data_dir / "sessions" / "FIX.4.4-GATEWAY-CLIENT1" / "journal"
    data = bytearray(store.read_bytes())
    first = 8  # the magic, then the reset marker
    (length,) = struct.unpack_from("<I", data, first + 4)
    data[first + 9 + length - 1] ^= 0x01  # a bit of the session key it names
    store.write_bytes(bytes(data))
    # the later write: the first (the marker and the sequence numbers) ends
    # 25 bytes after the marker
    later = first + 9 + length + 25
    refused(
        data_dir,
        store,
        f"the record at offset {first} is damaged and a later write, at offset {later}, is intact",
    )


@pytest.mark.parametrize("part", ["sessions/FIX.4.4-GATEWAY-CLIENT3/lock", "orders/journal"])
def test_a_file_of_the_data_directory_that_cannot_be_opened_stops_the_start(
    made: Path, tmp_path: Path, part: str
) -> None:
    # a folder where the file should be: what any file the gateway's user
    # cannot open does (another user's, one made immutable)
    data_dir = tmp_path / "data"
    subprocess.run(["cp", "-a", str(made), str(data_dir)], check=True)
    path = data_dir / part
    path.unlink()
    path.mkdir()
    done = run(data_dir, wait=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert said == [f"fixgw: refusing to start: cannot open {path}: Is a directory"]
