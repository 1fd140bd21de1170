"""Who may read and who may change through the HTTP APIs: the admin token
does both, the read token reads only, and each is named in its refusal;
refused requests are logged a line per peer now and then, not one each."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from config import ConfigError, default_config_path, load_config, parse_config
from gateway.net.peerlog import LOGGED_EVERY, PeerLog
from gateway.ops.http import build_app
from gateway.ops.tokens import ADMIN_TOKEN_ENV, READ_TOKEN_ENV, Tokens

SETTINGS = load_config(default_config_path()).gateway


def tokens(admin: str, read: str, environ: dict[str, str] | None = None) -> Tokens:
    settings = msgspec.structs.replace(SETTINGS, admin_token=admin, read_token=read)
    return Tokens.of(settings, environ or {})


def status(t: Tokens, header: str, method: str) -> int:
    refusal = t.refusal(header, method)
    return 200 if refusal is None else refusal.status


@pytest.mark.parametrize(
    ("header", "method", "expected"),
    [
        ("Bearer adm", "GET", 200),
        ("Bearer adm", "POST", 200),
        ("bearer  adm ", "POST", 200),
        ("Bearer rd", "GET", 200),
        ("Bearer rd", "HEAD", 200),
        ("Bearer rd", "POST", 403),
        ("Bearer rd", "DELETE", 403),
        ("Bearer nope", "GET", 401),
        ("Bearer adm2", "GET", 401),
        ("Bearer ", "GET", 401),
        ("", "GET", 401),
        ("Basic adm", "GET", 401),
        ("adm", "GET", 401),
    ],
)
def test_the_admin_token_does_everything_the_read_token_reads_only(
    header: str, method: str, expected: int
) -> None:
    assert status(tokens("adm", "rd"), header, method) == expected


def test_a_change_with_the_read_token_says_which_token_it_takes() -> None:
    refusal = tokens("adm", "rd").refusal("Bearer rd", "post")
    assert refusal is not None
    assert refusal.error == "the read token may not POST: this takes gateway.admin_token"


def test_with_a_read_token_alone_nothing_can_be_changed() -> None:
    t = tokens("", "rd")
    assert status(t, "Bearer rd", "GET") == 200
    assert status(t, "Bearer rd", "POST") == 403
    # an empty admin token is not a token anyone can give
    assert status(t, "Bearer ", "POST") == 401


def test_with_no_token_the_apis_are_closed_to_everyone() -> None:
    t = tokens("", "")
    for header in ("", "Bearer ", "Bearer x"):
        refusal = t.refusal(header, "GET")
        assert refusal is not None
        assert refusal.status == 403
        assert refusal.error.startswith("admin API disabled")


def test_the_environment_overrides_each_token() -> None:
    environ = {ADMIN_TOKEN_ENV: "env-adm", READ_TOKEN_ENV: "env-rd"}
    t = tokens("adm", "rd", environ)
    assert (t.admin, t.read) == ("env-adm", "env-rd")
    assert status(t, "Bearer adm", "GET") == 401
    assert status(t, "Bearer env-rd", "POST") == 403
    # an empty variable overrides nothing
    assert tokens("adm", "rd", {ADMIN_TOKEN_ENV: "", READ_TOKEN_ENV: ""}) == Tokens("adm", "rd")


def test_a_read_token_equal_to_the_admin_token_is_refused() -> None:
    text = default_config_path().read_text()
    same = text.replace(
        'admin_token = "dev-admin-token"\n',
        'admin_token = "dev-admin-token"\nread_token = "dev-admin-token"\n',
        1,
    )
    assert same != text
    with pytest.raises(ConfigError, match=r"gateway.read_token: the same as admin_token"):
        parse_config(same)
    other = same.replace('read_token = "dev-admin-token"', 'read_token = "dev-read"')
    assert parse_config(other).gateway.read_token == "dev-read"


@pytest.mark.parametrize("given", ["adm\udcff", "\udcc3\udca9", "rd\udcfe"])
def test_a_token_that_is_not_utf_8_is_a_wrong_token(given: str) -> None:
    # the HTTP server hands a header's bytes that are not UTF-8 on as
    # surrogates: such a token is wrong (401), not an error of the server
    refusal = tokens("adm", "rd").refusal(f"Bearer {given}", "GET")
    assert refusal is not None
    assert (refusal.status, refusal.error) == (401, "wrong bearer token")


def test_a_read_token_the_environment_makes_the_admin_token_reads_only() -> None:
    environ = {READ_TOKEN_ENV: "adm"}  # the config's admin token
    t = tokens("adm", "", environ)
    assert status(t, "Bearer adm", "GET") == 200
    assert status(t, "Bearer adm", "POST") == 403
    settings = msgspec.structs.replace(SETTINGS, admin_token="adm", read_token="")
    clash = Tokens.problem(settings, environ)
    assert clash is not None
    assert clash.startswith("the read token (FIXGW_READ_TOKEN or gateway.read_token) is the admin")
    assert Tokens.problem(settings, {}) is None


@pytest.mark.asyncio
async def test_a_client_without_the_token_does_not_write_the_log_at_its_own_rate() -> None:
    """A flood of requests with a wrong or no token is answered 401 each,
    and logged once (``admin_unauthorized``, naming the peer), not a line a
    request: the log, and the disk under it, are not the client's to fill."""
    gateway: Any = SimpleNamespace(admin_tokens=lambda: Tokens("adm", "rd"), order_flow=None)
    with capture_logs() as logs:
        async with TestClient(TestServer(build_app(gateway))) as http:
            for i in range(200):
                headers = {"Authorization": f"Bearer guess{i}"} if i % 2 else {}
                async with http.get("/admin/sessions", headers=headers) as r:
                    assert r.status == 401
    refused = [e for e in logs if e["event"] == "admin_unauthorized"]
    assert len(refused) == 1
    assert refused[0]["peer"] == "127.0.0.1"
    assert refused[0]["path"] == "/admin/sessions"


def test_a_peer_refused_again_later_is_logged_with_the_refusals_since() -> None:
    log = PeerLog(structlog.get_logger(), "admin_unauthorized", "refused_since_last")
    with capture_logs() as logs:
        for _ in range(3):
            log.happened("10.0.0.1", 100.0, path="/admin/orders")
        log.happened("10.0.0.2", 100.0, path="/admin/reload")  # another peer: its own line
        log.happened("10.0.0.1", 100.0 + LOGGED_EVERY, path="/admin/lps")
    assert [(e["peer"], e["path"], e.get("refused_since_last")) for e in logs] == [
        ("10.0.0.1", "/admin/orders", None),
        ("10.0.0.2", "/admin/reload", None),
        ("10.0.0.1", "/admin/lps", 2),
    ]
