"""Loopback helpers shared by the tests that start processes or servers."""

from __future__ import annotations

import datetime
import ipaddress
import json
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now, below the
    kernel's ephemeral range: a port asked of the kernel (bind to 0) comes
    from that range, where any outgoing connection of the tests may take it
    before the server it was meant for binds it.  Never the same twice in
    one process."""
    high = min(_ephemeral_low(), 65536)
    for _ in range(1000):
        port = random.randrange(max(1024, high - 12000), high)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    """Wait until something listens on ``port``; raise if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling, with the deadline above
    raise TimeoutError(f"port {port} not listening after {timeout}s")


def day_end_away_from_now() -> str:
    """A trading day end (``orders.trading_day_end``, ``HH:MM`` UTC) twelve
    hours from now: a gateway (or back office) started for a test ends no
    trading day of its own while the test runs, so its DAY orders stay open
    and its final orders known, whatever the hour the test runs at."""
    return time.strftime("%H:%M", time.gmtime(time.time() + 12 * 3600))


def with_day_end_away(text: str) -> str:
    """Config ``text`` whose ``[orders]`` ``trading_day_end`` is replaced by
    :func:`day_end_away_from_now`."""
    line = f'trading_day_end = "{day_end_away_from_now()}"'
    text, found = re.subn(r"(?m)^trading_day_end = .*$", line, text)
    assert found == 1, "no trading_day_end in the config"
    return text


def log_events(log: str | Path) -> list[dict[str, Any]]:
    """The JSON events of a process's log (its text, or the file holding it)."""
    text = log.read_text(errors="replace") if isinstance(log, Path) else log
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key,
    written as PEM files to ``directory``: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fixgw test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Answering(BaseHTTPRequestHandler):
    """Answers every GET and POST with the server's ``answer`` (status,
    body) and records each request in ``seen``: its target and
    Authorization header, after its method when the server ``methods``."""

    def _answer(self) -> None:
        server: Any = self.server
        seen = (self.path, self.headers.get("Authorization"))
        server.seen.append((self.command, *seen) if server.methods else seen)
        status, body = server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def answering_http(answer: tuple[int, bytes], *, methods: bool = False) -> Iterator[Any]:
    """A small HTTP server on loopback standing for a daemon's API (its
    ``url``; ``answer`` and ``seen`` as :class:`_Answering` uses them)."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    server.seen = []
    server.answer = answer
    server.methods = methods
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
