"""Asking a running fixgw process over HTTP from the command line (``fixgw
status``, ``fixgw backoffice status``...): the address checked before
anything is sent, and requests sent straight to it.

A proxy named in the environment (``http_proxy``) is never used: it would
be handed the bearer token.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

__all__ = ["OPENER", "http_base", "is_http_address"]

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Opens requests straight to their address, never through a proxy."""


def is_http_address(url: str) -> bool:
    """Whether ``url`` is ``http://HOST[:PORT]`` (or https) with a port, if
    given, that is a number from 0 to 65535, and no space or control
    character anywhere."""
    if any(c <= " " or c == "\x7f" for c in url):
        return False  # http.client refuses a space or a control character in the path
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # ValueError: not a number, or not in 0..65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def http_base(host: str, port: int) -> str:
    """``http://HOST:PORT`` of a server listening on ``host`` and ``port``,
    from this machine: all interfaces are reached on the loopback, an IPv6
    address is written in brackets."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"
