"""Fixtures of the back-office tests: a real PostgreSQL server for the
session (installed first when missing and the tests run as root), a fresh
database in it for each test that asks, and the ledgers of both backends."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import asyncpg
import pytest
from pgkit import PgServer, PostgresUnavailable

_DATABASES = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """The session's PostgreSQL server; a test may :meth:`PgServer.stop` and
    :meth:`PgServer.start` it (it must leave it started)."""
    try:
        server = PgServer.create()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres: PgServer) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    return postgres.url


async def _admin(url: str, *statements: str) -> None:
    con = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await con.execute(statement)
    finally:
        await con.close()


@pytest.fixture
def postgres_db(postgres: PgServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    if not postgres.running:  # a fault test that failed before restarting it
        postgres.start()
    name = f"ledger_{next(_DATABASES)}"
    asyncio.run(_admin(postgres.url, f"CREATE DATABASE {name}"))
    yield postgres.url_of(name)
    if not postgres.running:
        postgres.start()
    asyncio.run(_admin(postgres.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
