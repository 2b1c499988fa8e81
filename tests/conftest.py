"""Fixtures: a real PostgreSQL database per test session, real servers on real ports
(tests/support/stack.py builds them)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from mpp_server.metrics import UNDECLARED_ERRORS
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session", autouse=True)
def every_error_answered_is_declared() -> Iterator[None]:
    """Each wallet-API error the in-process server answered during the session is one its
    route declares (http/routes.py), so the OpenAPI description lists every error a
    caller can get; a handler that raises another is a bug in the declaration."""
    yield
    undeclared = {(s.labels["operation"], s.labels["code"]): s.value
                  for metric in UNDECLARED_ERRORS.collect() for s in metric.samples
                  if s.name.endswith("_total") and s.value}
    assert undeclared == {}, "errors answered but not declared by their route"


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
