"""Regenerate ``docs/dashboard.png``: the dashboard of a daemon under load.

Starts ``fixgw run`` on the default configuration (free ports, a temporary
data dir), logs on as CLIENT1, CLIENT2 and CLIENT3 and sends market orders at
a steady rate from each (one symbol per client, buys and sells alternating),
asks the daemon to reload its config once (so the reload panel has an
outcome), then, with the load still running, has headless Chromium load
``/dashboard#token=...`` and save a screenshot.  The clients log out and the
daemon stops at the end.

    .venv/bin/python tools/dashboard_screenshot.py [--out docs/dashboard.png]

Needs Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.ops.logs import configure_logging
from gateway.sim.loadgen import LoadClient

REPO = Path(__file__).resolve().parent.parent
TOKEN = "dev-admin-token"
# (client, symbol, quantity in units, orders/s)
FLOWS = (
    ("CLIENT1", "EUR/USD", "100000", 400.0),
    ("CLIENT2", "XAU/USD", "20", 150.0),
    ("CLIENT3", "GBP/USD", "100000", 150.0),
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int, path: str, method: str = "GET") -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        if http(port, "/readyz") == 200:
            return
        time.sleep(0.1)
    raise SystemExit(f"the daemon was not ready after {timeout:g} s")


async def load(fix_port: int, stop: asyncio.Event) -> None:
    clients = []
    for sender, symbol, qty, _ in FLOWS:
        client = LoadClient(sender, "GATEWAY", symbol=symbol, qty=qty)
        await client.connect("127.0.0.1", fix_port)
        clients.append(client)

    async def drive(client: LoadClient, rate: float) -> None:
        while not stop.is_set():
            await client.run(int(rate), rate)  # a second's worth at a time

    await asyncio.gather(*(drive(c, f[3]) for c, f in zip(clients, FLOWS, strict=True)))
    for client in clients:
        await client.logout()


async def screenshot(args: argparse.Namespace, chromium: str, http_port: int, out: Path) -> int:
    """Chromium's exit code, after a screenshot taken under load."""
    stop = asyncio.Event()
    fix_port = args.fix_port
    traffic = asyncio.create_task(load(fix_port, stop))
    await asyncio.sleep(args.settle / 2)
    await asyncio.to_thread(http, http_port, "/admin/reload", "POST")
    await asyncio.sleep(args.settle / 2)
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={args.width},{args.height}",
        f"--virtual-time-budget={args.budget_ms}",
        f"--screenshot={out}",
        f"http://127.0.0.1:{http_port}/dashboard#token={TOKEN}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    code = await proc.wait()
    stop.set()
    await traffic
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=6.0, help="seconds of load before")
    parser.add_argument("--budget-ms", type=int, default=20000, help="chromium virtual time")
    parser.add_argument("--chromium", default=None, help="the chromium binary")
    args = parser.parse_args()
    configure_logging("warning", "console")  # the clients' logons and logouts are not news
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 1

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    args.fix_port = free_port()
    http_port = free_port()
    env = dict(os.environ, FIXGW_ADMIN_TOKEN=TOKEN)
    with tempfile.TemporaryDirectory(prefix="fixgw-shot-") as tmp:
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as log_file:
            cmd = [sys.executable, "-m", "gateway", "run"]
            cmd += ["--fix-port", str(args.fix_port), "--http-port", str(http_port)]
            cmd += ["--data-dir", str(Path(tmp) / "data")]
            daemon = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
            try:
                wait_ready(http_port, daemon)
                code = asyncio.run(screenshot(args, chromium, http_port, out))
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(10)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(10)
    if code != 0 or not out.exists():
        print(f"chromium exited with {code} and left no screenshot", file=sys.stderr)
        return 1
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
