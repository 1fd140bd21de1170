"""Who may use the HTTP APIs: the admin token, which may read and change,
and the read token, which may only read.

The gateway's ``/admin/*`` and the back office's ``/backoffice/*`` take
``Authorization: Bearer <token>``.  The admin token
(``gateway.admin_token``, or ``FIXGW_ADMIN_TOKEN``) may do everything; the
read token (``gateway.read_token``, or ``FIXGW_READ_TOKEN``) may only read:
a ``GET`` or ``HEAD``.  A change (reloading the config, handing a session
over, a reconciliation or an export asked for) with the read token is
refused with 403 and says why; so that a risk desk's screens, a
dashboard or a script that watches can be given a token that cannot
change what the gateway does.  (``HEAD`` and ``OPTIONS`` read too; no
route answers them with a change.)

Tokens are compared in constant time.  With neither token configured the
APIs answer 403 to everyone.  A token is visible ASCII (a character beyond
it is sent differently by different HTTP clients): another is refused in
the config, in the environment and on the command line.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the operator commands, which start light
    from config.schema import GatewaySettings

ADMIN_TOKEN_ENV = "FIXGW_ADMIN_TOKEN"
READ_TOKEN_ENV = "FIXGW_READ_TOKEN"

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not go on: its HTTP status and one line."""

    status: int
    error: str


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens in force; an empty one is not configured."""

    admin: str
    read: str

    @classmethod
    def of(cls, settings: GatewaySettings, environ: Mapping[str, str] = os.environ) -> Tokens:
        """The tokens of ``settings``, each overridden by its environment
        variable when that is set and not empty.  A read token that is the
        admin token (through the environment: the config refuses it) gives
        no more than reading: the admin token is then taken as not set."""
        admin, read = _given(settings, environ)
        return cls(admin="" if admin == read else admin, read=read)

    @staticmethod
    def problem(settings: GatewaySettings, environ: Mapping[str, str] = os.environ) -> str | None:
        """Why the tokens in force cannot be used as given (one is not
        visible ASCII, or the read token is the admin token), or None."""
        from config.checks import bearer_token_problem

        admin, read = _given(settings, environ)
        for env, setting, token in (
            (ADMIN_TOKEN_ENV, "gateway.admin_token", admin),
            (READ_TOKEN_ENV, "gateway.read_token", read),
        ):
            problem = bearer_token_problem(token)
            if problem is not None:
                return f"{env if environ.get(env) else setting}: {problem}"
        if read and admin == read:
            return (
                f"the read token ({READ_TOKEN_ENV} or gateway.read_token) is the admin token "
                f"({ADMIN_TOKEN_ENV} or gateway.admin_token): give it a value of its own"
            )
        return None

    def refusal(self, authorization: str, method: str) -> Refusal | None:
        """None when a request with this ``Authorization`` header may be
        served with ``method``; otherwise why not."""
        if not self.admin and not self.read:
            return Refusal(
                403,
                "admin API disabled: no gateway.admin_token or gateway.read_token configured",
            )
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return Refusal(401, "missing bearer token (Authorization: Bearer <token>)")
        if self.admin and _same(given, self.admin):
            return None
        if self.read and _same(given, self.read):
            if method.upper() in _READS:
                return None
            return Refusal(
                403, f"the read token may not {method.upper()}: this takes gateway.admin_token"
            )
        return Refusal(401, "wrong bearer token")


def _given(settings: GatewaySettings, environ: Mapping[str, str]) -> tuple[str, str]:
    """(admin, read) as given: each environment variable set and not empty
    over the setting."""
    admin = (environ.get(ADMIN_TOKEN_ENV) or settings.admin_token).strip()
    read = (environ.get(READ_TOKEN_ENV) or settings.read_token).strip()
    return admin, read


def _same(given: str, token: str) -> bool:
    """Whether ``given`` is ``token``, in constant time.  Bytes that are not
    UTF-8 (in a header, or in the environment) come as surrogates: they are
    compared as the bytes they were."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )
