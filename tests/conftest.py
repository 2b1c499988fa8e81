"""Fixtures: a real PostgreSQL database per test session, real servers on real ports
(tests/support/stack.py builds them)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        pytest.fail("DATABASE_URL is not set: run the tests with `make test`")
    return dsn


@pytest.fixture(scope="session")
async def database_url(admin_dsn: str) -> AsyncIterator[str]:
    """The session's database, shared by the in-process `stack`."""
    async with fresh_database(admin_dsn, "mpp_test") as dsn:
        yield dsn


@pytest.fixture
async def isolated_db(admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own, so no other server's worker touches its outbox."""
    async with fresh_database(admin_dsn, "mpp_iso") as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    p = await db.create_pool(database_url, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def stack(database_url: str, pool: db.Pool) -> AsyncIterator[Stack]:
    async with running_stack(database_url, pool) as running:
        yield running


@pytest.fixture
async def clean_faults(stack: Stack) -> AsyncIterator[None]:
    """No simulator fault left over from another test, nor left to the next one."""
    async with stack.http.delete(stack.sim_url + "/sim/faults"):
        pass
    yield
    async with stack.http.delete(stack.sim_url + "/sim/faults"):
        pass
