"""A ``--url`` naming something that does not answer as the daemon's HTTP
API does (a NATS server, an SSH port, a proxy's login page, a path with a
space) is one line on stderr and exit status 1, not a traceback: for the
operator commands and for ``fixgw backoffice``'s questions alike."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from netkit import answering_http

from gateway.cli import main


@contextmanager
def speaking(greeting: bytes) -> Iterator[str]:
    """A TCP server on loopback that answers every connection with
    ``greeting`` and hangs up (a NATS server says ``INFO {...}`` first)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # the accept looks at ``stop`` this often
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(greeting)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


NATS_GREETING = b'INFO {"server_id":"x","version":"2.10.0","max_payload":1048576}\r\n'
COMMANDS = [["status"], ["orders"], ["backoffice", "status"], ["backoffice", "breaks"]]


def _one_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_peer_that_does_not_speak_http_is_one_line(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with speaking(NATS_GREETING) as url:
        assert main([*command, "--url", url]) == 1
    _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_url_with_a_space_in_its_path_is_one_line(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--url", "http://127.0.0.1:1/a b"]) == 1
    _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("action", ["status", "breaks", "treasury", "recon"])
def test_the_back_office_answering_other_than_json_is_one_line(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``fixgw status`` says of it: a login page, another server."""
    server: Any
    with answering_http((200, b"<html>sign in</html>"), methods=True) as server:
        assert main(["backoffice", action, "--url", server.url]) == 1
    _one_line(capsys.readouterr().err)
