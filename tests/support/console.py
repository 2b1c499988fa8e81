"""The operators' console's tests' shared parts: a stack of the module's own (its own
database, so the journal holds only what the tests did), a browser-like HTTP client
that keeps its cookie, operators, and a real reconciliation discrepancy."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import openpyxl
import pytest

from mpp_server import db
from mpp_server.audit import Actor, Via
from mpp_server.console import actions, operators
from mpp_server.console.operators import Role
from mpp_server.devtools.devdb import fresh_database
from mpp_server.reconcile import registry, store
from mpp_server.reconcile.matching import NO_AGREED_RATE
from tests.support import helpers
from tests.support.reconcile import today
from tests.support.stack import Stack, running_stack

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TEST_ACTOR = Actor("tests", Via.CLI, system_user="tests")


@pytest.fixture(scope="module")
async def console_stack(admin_dsn: str) -> AsyncIterator[Stack]:
    """A database, simulator and server (with its console) of this module only."""
    async with fresh_database(admin_dsn, "mpp_console") as dsn:
        pool = await db.create_pool(dsn, min_size=1, max_size=6)
        try:
            async with running_stack(dsn, pool) as running:
                yield running
        finally:
            await pool.close()


def console_url(stack: Stack) -> str:
    return stack.runtime.admin_url


async def add_operator(pool: asyncpg.Pool, role: Role, password: str = "") -> tuple[str, str]:
    """A new operator of `role` (login, password)."""
    login = f"{role.value}-{uuid.uuid4().hex[:8]}"
    password = password or "pw-" + uuid.uuid4().hex
    password_hash = await operators.hash_password(password)
    async with pool.acquire() as conn:
        await actions.add_operator(conn, TEST_ACTOR, login, role, password_hash)
    return login, password


@dataclass
class Page:
    status: int
    url: str
    text: str

    @property
    def csrf_token(self) -> str:
        match = _CSRF.search(self.text)
        assert match is not None, "no form with a CSRF token on this page"
        return match.group(1)


class Browser:
    """An HTTP client that behaves like a browser for the console: keeps its cookies
    (also for 127.0.0.1) and follows redirects."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, *, follow: bool = True) -> Page:
        async with self.http.get(self.base_url + path, allow_redirects=follow) as resp:
            return Page(resp.status, str(resp.url), await resp.text())

    async def post(self, path: str, form: dict[str, str], *, follow: bool = True,
                   headers: dict[str, str] | None = None) -> Page:
        async with self.http.post(self.base_url + path, data=form, allow_redirects=follow,
                                  headers=headers) as resp:
            return Page(resp.status, str(resp.url), await resp.text())

    async def sign_in(self, login: str, password: str) -> Page:
        return await self.post("/login", {"login": login, "password": password})

    def cookie(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "mpp_console_session":
                return cookie.value
        return ""


@pytest.fixture
async def browsers(console_stack: Stack) -> AsyncIterator[list[Browser]]:
    """Three separate clients (each its own cookie jar), closed afterwards."""
    made = [Browser(console_url(console_stack)) for _ in range(3)]
    yield made
    for browser in made:
        await browser.close()


async def journal_count(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM audit_journal")
    return count


async def journal_since(pool: asyncpg.Pool, after_id: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(
            "SELECT * FROM audit_journal WHERE id > $1 ORDER BY id", after_id))


async def last_journal_id(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        last: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_journal")
    return last


async def open_discrepancy(stack: Stack, tmp_path: Path) -> tuple[int, str]:
    """A real one: a payment completed today, then Kaspi's registry of today with that
    payment's row left out, reconciled. Returns the `not_in_registry` item's id and the
    payment's id."""
    customer = helpers.new_customer()
    payment_id = (await helpers.complete_payment(stack, customer, "120.00"))["paymentId"]
    async with stack.http.get(f"{stack.sim_url}/sim/registries/daily",
                              params={"date": today()}) as resp:
        assert resp.status == 200
        book = openpyxl.load_workbook(io.BytesIO(await resp.read()))
    sheet = book.active
    assert sheet is not None
    for index, row in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2):
        if row[2] == payment_id:
            sheet.delete_rows(index)
            break
    else:
        raise AssertionError(f"{payment_id} is not in the simulator's registry")
    buffer = io.BytesIO()
    book.save(buffer)
    name = f"registry-{uuid.uuid4().hex[:8]}-daily-{today()}.xlsx"
    (tmp_path / name).write_bytes(buffer.getvalue())
    parsed = registry.read_registry(buffer.getvalue(), name,
                                    registry.RegistryPeriod.parse("daily", today()))
    outcome = await store.reconcile(stack.pool, parsed, NO_AGREED_RATE)
    async with stack.pool.acquire() as conn:
        item_id: int = await conn.fetchval(
            """SELECT id FROM reconciliation_discrepancies
                WHERE run_id = $1 AND kind = 'not_in_registry' AND kaspi_id = $2""",
            outcome.run_id, payment_id)
    return item_id, payment_id
