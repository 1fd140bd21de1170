"""Listening sockets bound before anything else is built."""

from __future__ import annotations

import socket

import pytest

from gateway.net.server import ListenError, bind_listening


def test_a_port_bound_by_another_starting_process_is_refused() -> None:
    """Two daemons starting at once on one port: the second is told at
    bind time (both may bind with SO_REUSEADDR; only one may listen)."""
    first = bind_listening("127.0.0.1", 0, "gateway.fix_port")
    port = first[0].getsockname()[1]
    try:
        with pytest.raises(ListenError, match=rf"127\.0\.0\.1:{port} \(--fix-port\)"):
            bind_listening("127.0.0.1", port, "--fix-port")
    finally:
        for sock in first:
            sock.close()


def test_a_bound_port_accepts_before_the_server_serves_it() -> None:
    """What connects before the server starts waits in the backlog."""
    (sock,) = bind_listening("127.0.0.1", 0, "gateway.fix_port")
    try:
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass
    finally:
        sock.close()
