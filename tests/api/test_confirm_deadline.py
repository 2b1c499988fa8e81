"""canConfirmUntil is checked inside the debit, after every lock: a confirm that waited
on a lock past the deadline is EXPIRED, not debited; confirmed_at is the clock at the
debit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mpp_server import db
from tests.support.helpers import (
    balance,
    confirm,
    deposit,
    new_customer,
    new_qr,
    payment,
    scan,
    scanned_payment,
    transfers_of,
)
from tests.support.stack import Stack


async def wait_until_blocked(pool: db.Pool, text: str) -> None:
    """Until a statement containing `text` waits on a lock in this database. (Asked
    outside the lock holder's transaction: pg_stat_activity is a snapshot taken once
    per transaction.)"""
    for _ in range(400):
        waiting = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'
                 AND query LIKE '%' || $1 || '%'""", text)
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no statement with {text!r} ever waited on a lock")


@asynccontextmanager
async def confirm_waiting_on_the_account(
        stack: Stack, payment_id: str, customer: str
) -> AsyncIterator[tuple[asyncpg.Connection, asyncio.Task[tuple[int, Any]]]]:
    """A confirm whose debit waits for the customer's account, which another transaction
    holds (as a concurrent refund would): it took the payment row before the deadline,
    and the deadline is checked again once the account is held. Yields the holder (roll
    it back to release) and the confirm."""
    holder = await asyncpg.connect(stack.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM accounts WHERE customer_id = $1 FOR UPDATE",
                             customer)
        confirming = asyncio.create_task(confirm(stack, payment_id, customer))
        await wait_until_blocked(stack.pool, "payment_confirm")
        yield holder, confirming
        await held.rollback()
    finally:
        await holder.close()


async def test_confirm_that_waits_past_the_deadline_is_expired_not_debited(
        stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00", ttlSeconds=3)
    scanned = await scan(stack, qr["qrCode"], customer)
    payment_id = scanned["payment"]["paymentId"]
    async with confirm_waiting_on_the_account(stack, payment_id, customer) as (_, confirming):
        until = datetime.fromisoformat(scanned["payment"]["canConfirmUntil"])
        # Let the deadline pass while it waits.
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.1)
    status, body = await confirming
    assert status == 409 and body["error"]["code"] == "PAYMENT_EXPIRED", body
    assert await balance(stack, customer) == "100.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    assert (await payment(stack, payment_id))["status"] == "EXPIRED"
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM notify_outbox WHERE payment_id = $1",
                                   payment_id) == 0


async def test_confirmed_at_is_the_clock_at_the_debit_not_the_transaction_start(
        stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    async with confirm_waiting_on_the_account(stack, payment_id, customer) as (holder,
                                                                             confirming):
        released_at = await holder.fetchval("SELECT clock_timestamp()")
    status, body = await confirming
    # Debited either way (PENDING: the budget ran out before Kaspi's answer).
    assert status == 200 and body["status"] in ("COMPLETED", "PENDING"), body
    async with stack.pool.acquire() as conn:
        confirmed_at = await conn.fetchval(
            "SELECT confirmed_at FROM payments WHERE payment_id = $1", payment_id)
    # The debit happened after the lock it waited for was released.
    assert confirmed_at > released_at


