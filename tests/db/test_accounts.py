"""The statement's cursor and the limits' calendar, at the database (issue 15;
mpp_server/domain/accounts.py, sql/functions/accounts.sql)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from mpp_server import cursors, db
from mpp_server.domain import accounts, ledger
from tests.support.helpers import new_customer
from tests.support.schema import allowed_values


async def test_every_transfer_kind_has_a_statement_type(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        kinds = await allowed_values(conn, "transfers", "kind")
    assert kinds == set(accounts.STATEMENT_TYPES)


async def test_entry_ids_are_handed_out_in_call_order(pool: db.Pool) -> None:
    """The cursor's argument needs ids taken in the order the account's lock is granted:
    a sequence cache above 1 would let one connection's later entry take a smaller id."""
    async with pool.acquire() as conn:
        cache = await conn.fetchval(
            "SELECT cache_size FROM pg_sequences WHERE sequencename = 'entries_id_seq'")
    assert cache == 1


async def test_a_posting_committed_after_a_page_was_read_comes_after_its_cursor(
        pool: db.Pool) -> None:
    """A writer holds the account's lock with an entry not yet committed; a reader's page
    ends before it; after the commit, the next page starts with it."""
    customer = new_customer()
    async with pool.acquire() as conn:
        account = await ledger.ensure_customer_account(conn, customer)
        funding = await ledger.system_account(conn, "funding", "x")
        await ledger.transfer(conn, "deposit", "st-" + uuid.uuid4().hex, funding, account, 100)
    async with pool.acquire() as writer:
        transaction = writer.transaction()
        await transaction.start()
        await ledger.transfer(writer, "deposit", "st-" + uuid.uuid4().hex, funding, account, 7)
        first, cursor = await accounts.statement(pool, customer, cursors.START, 10)
        assert [line.amount_tiyn for line in first] == [100]
        await transaction.commit()
    second, _ = await accounts.statement(pool, customer, int(cursor), 10)
    assert [(line.amount_tiyn, line.balance_after_tiyn) for line in second] == [(7, 107)]


@pytest.mark.parametrize(("at", "day", "month"), [
    # 00:00 in Almaty (UTC+5) is 19:00 UTC the evening before.
    ("2025-03-31T18:59:59.999999+00:00", "2025-03-30T19:00:00+00:00",
     "2025-02-28T19:00:00+00:00"),
    ("2025-03-31T19:00:00+00:00", "2025-03-31T19:00:00+00:00", "2025-03-31T19:00:00+00:00"),
    ("2025-04-15T12:00:00+05:00", "2025-04-14T19:00:00+00:00", "2025-03-31T19:00:00+00:00"),
    ("2024-12-31T23:30:00+00:00", "2024-12-31T19:00:00+00:00", "2024-12-31T19:00:00+00:00"),
])
async def test_days_and_months_start_at_midnight_in_kazakhstan(
        pool: db.Pool, at: str, day: str, month: str) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT kz_day_start($1) AS d, kz_month_start($1) AS m",
                                  datetime.fromisoformat(at))
    assert row is not None
    assert row["d"] == datetime.fromisoformat(day)
    assert row["m"] == datetime.fromisoformat(month)
