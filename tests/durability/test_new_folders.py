"""A folder made under the data directory is made durable with it: the
folder holding it is fsynced once it is made, so that a power loss after
the first acknowledged order cannot take back the folder of its journal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import default_config_path, load_config, with_overrides
from gateway.daemon import Gateway
from gateway.dropcopy.follow import Cursor
from gateway.storage.durable import make_dir


def recorded_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """What os.fsync is called on from now on (the compiled build calls
    os's function through the module, so it is seen too)."""
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def folders(top: Path) -> list[Path]:
    """``top`` and every folder under it."""
    return [top, *(p for p in top.rglob("*") if p.is_dir())]


def test_a_first_start_syncs_the_folder_holding_each_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path.resolve()
    data = root / "data"
    cfg = with_overrides(
        load_config(default_config_path()), http_port=0, drop_copy_port=0, data_dir=str(data)
    )
    synced = recorded_fsyncs(monkeypatch)
    gateway = Gateway(cfg)
    try:
        made = folders(data)
        # the order journal's folder (and its segments', the drop copy
        # reading the journal), the sessions' folder and each session's
        assert {data / "orders", data / "sessions"} <= set(made)
        assert len(made) > 4
        assert [f for f in made if f.parent not in synced] == []
    finally:
        assert gateway.journal is not None
        gateway.journal.close()
        for store in gateway.stores:
            store.close()


def test_the_drop_copy_cursor_syncs_the_folders_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path.resolve()
    synced = recorded_fsyncs(monkeypatch)
    cursor = Cursor(root / "data" / "dropcopy")
    cursor.save(1)
    cursor.close()
    assert {root, root / "data", root / "data" / "dropcopy"} <= set(synced)


def test_make_dir_syncs_only_what_it_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path.resolve()
    (root / "a").mkdir()
    synced = recorded_fsyncs(monkeypatch)
    make_dir(root / "a" / "b" / "c")
    assert (root / "a" / "b" / "c").is_dir()
    assert synced == [root / "a", root / "a" / "b"]
    synced.clear()
    make_dir(root / "a" / "b" / "c")  # there already: nothing to make durable
    assert synced == []
    (root / "file").touch()
    with pytest.raises(FileExistsError):
        make_dir(root / "file")
    with pytest.raises(NotADirectoryError):
        make_dir(root / "file" / "d")
