"""The process that reads and validates config files for a reload, beside
the daemon.  Ctrl-C in the terminal of `fixgw run` sends SIGINT to the whole
foreground process group, the worker included: the daemon stops on it and
ends the worker itself, so the worker must not die of it first (with a
KeyboardInterrupt traceback on the daemon's stderr)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from config import Config, default_config_path, load_config
from gateway.ops.reload import Overrides, Reloader
from lp_adapters.registry import adapter_settings


@pytest_asyncio.fixture
async def reloader(tmp_path: Path) -> AsyncIterator[Reloader]:
    path = tmp_path / "gateway.toml"
    path.write_text(default_config_path().read_text())
    current = load_config(path, adapter_settings())
    applied: list[Config] = []
    reloader = Reloader(
        path,
        Overrides(),
        current=lambda: current,
        version=lambda: "1-test",
        apply=applied.append,
    )
    await reloader.start_worker()
    try:
        yield reloader
    finally:
        await reloader.aclose()


@pytest.mark.asyncio
async def test_the_config_worker_leaves_ctrl_c_to_the_daemon(reloader: Reloader) -> None:
    worker = reloader._worker
    assert worker is not None, "the config worker did not start"
    loop = asyncio.get_running_loop()
    handler = await loop.run_in_executor(worker, signal.getsignal, signal.SIGINT)
    assert handler == signal.SIG_IGN
    # and it still reads the file for a reload
    assert (await reloader.reload("test")).status == "unchanged"
