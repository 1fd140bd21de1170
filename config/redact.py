"""Secrets in setting values that are not named as such: the credentials
of a URL (a PostgreSQL ledger's, a NATS server's), left out wherever a
value is shown or logged."""

from __future__ import annotations

import re

__all__ = ["REDACTED", "url_without_secrets"]

REDACTED = "(redacted)"

# user:password@ in the address
_PASSWORD = re.compile(r"(://[^/?#@:]*:)[^/?#]*(@)")
# token@ of a NATS URL (token authentication: the whole user part is the secret)
_NATS_TOKEN = re.compile(r"^((?:nats|tls|ws|wss)://)[^/?#@:]+(@)", re.IGNORECASE)
# password=... in the query
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def url_without_secrets(value: str) -> str:
    """``value`` with the password (or the NATS token) of a URL in it
    replaced by ``(redacted)``; a value with no ``://`` as it is."""
    if "://" not in value:
        return value
    value = _PASSWORD.sub(rf"\1{REDACTED}\2", value)
    value = _NATS_TOKEN.sub(rf"\1{REDACTED}\2", value)
    return _QUERY_PASSWORD.sub(rf"\1{REDACTED}", value)
