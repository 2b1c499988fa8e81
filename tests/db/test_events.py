"""GET /v1/events: a reader that follows `next` never misses an event, even one whose
transaction commits after a later-numbered event's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mpp_server.devtools.devdb import fresh_database
from tests.support.helpers import complete_payment, drain_events, new_customer
from tests.support.stack import Stack


async def insert_event(conn: asyncpg.Connection, customer: str, payment_id: str) -> int:
    event_id: int = await conn.fetchval(
        "INSERT INTO events (type, customer_id, payment_id, amount_tiyn) "
        "VALUES ('payment.completed', $1, $2, 100) RETURNING id", customer, payment_id)
    return event_id


async def test_late_committing_event_is_not_skipped(stack: Stack) -> None:
    _, cursor = await drain_events(stack, "0-0")
    customer = new_customer()
    # Event writers are the server's own steps: they run as its role, whose sessions the
    # publisher sees (pg_stat_activity shows a role only its own sessions' transactions).
    slow = await asyncpg.connect(stack.runtime.settings.database_url)
    fast = await asyncpg.connect(stack.runtime.settings.database_url)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        early_id = await insert_event(slow, customer, "late-commit-A")
        late_id = await insert_event(fast, customer, "late-commit-B")  # commits at once
        assert late_id > early_id
        # B is committed, but A (a smaller id) may still commit: B must wait.
        seen, cursor = await drain_events(stack, cursor)
        assert [e["paymentId"] for e in seen if e["customerId"] == customer] == []
        await slow_tx.commit()
        seen, cursor = await drain_events(stack, cursor)
        mine = [e["paymentId"] for e in seen if e["customerId"] == customer]
        assert mine == ["late-commit-A", "late-commit-B"]
        seen, _ = await drain_events(stack, cursor)
        assert [e for e in seen if e["customerId"] == customer] == []
    finally:
        await slow.close()
        await fast.close()


# ---- issue 14 item 4: nothing outside the server's own short writes stalls the feed -----

async def seen_within(stack: Stack, cursor: str, customer: str, payment_id: str,
                      tries: int = 100) -> tuple[bool, str]:
    """Follow the feed from `cursor` until the event of `payment_id` shows (bounded)."""
    for _ in range(tries):
        seen, cursor = await drain_events(stack, cursor)
        if any(e["customerId"] == customer and e["paymentId"] == payment_id for e in seen):
            return True, cursor
        await asyncio.sleep(0.1)
    return False, cursor


@pytest.fixture
async def other_database(admin_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(admin_dsn, "mpp_other") as dsn:
        yield dsn


@pytest.mark.parametrize("where", ["another database", "this database"])
async def test_open_transaction_that_wrote_no_event_does_not_stall_the_feed(
        stack: Stack, other_database: str, where: str) -> None:
    """A transaction left open in another database, or an idle-in-transaction session
    here (a forgotten psql, a long reconciliation run), hid every new event before: the
    feed waited for the cluster's oldest transaction (pg_snapshot_xmin)."""
    _, cursor = await drain_events(stack, "0")
    idle = await asyncpg.connect(other_database if where == "another database"
                                 else stack.database_url)
    try:
        tx = idle.transaction()
        await tx.start()
        await idle.fetchval("SELECT pg_current_xact_id()")  # it has an xid: holds the xmin
        customer = new_customer()
        done = await complete_payment(stack, customer, "5.00")
        shown, _ = await seen_within(stack, cursor, customer, done["paymentId"])
        assert shown, f"the event stayed hidden while a transaction in {where} was open"
        await tx.rollback()
    finally:
        await idle.close()


async def test_open_event_writer_holds_newer_events_back_at_most_the_hold(
        stack: Stack) -> None:
    """An event-writing transaction that stays open (ours, stalled) delays newer events
    by at most EVENTS_HOLD_MS, and its own event still appears once it commits."""
    _, cursor = await drain_events(stack, "0")
    customer = new_customer()
    stalled = await asyncpg.connect(stack.runtime.settings.database_url)  # the server's role
    try:
        tx = stalled.transaction()
        await tx.start()
        await insert_event(stalled, customer, "stalled-writer")
        done = await complete_payment(stack, customer, "7.00")
        shown, cursor = await seen_within(stack, cursor, customer, done["paymentId"])
        assert shown, "a newer event stayed hidden past the hold"
        await tx.commit()
        shown, _ = await seen_within(stack, cursor, customer, "stalled-writer")
        assert shown, "the late writer's event was missed"
    finally:
        await stalled.close()
