"""GET /v1/events: a reader that follows `next` never misses an event, even one whose
transaction commits after a later-numbered event's."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support.helpers import call, new_customer


async def drain(stack: Any, cursor: str) -> tuple[list[dict[str, Any]], str]:
    seen: list[dict[str, Any]] = []
    while True:
        status, page = await call(stack, "GET", f"/v1/events?after={cursor}&limit=500")
        assert status == 200, page
        seen += page["events"]
        cursor = page["next"]
        if not page["events"]:
            return seen, cursor


async def insert_event(conn: asyncpg.Connection, customer: str, payment_id: str) -> int:
    event_id: int = await conn.fetchval(
        "INSERT INTO events (type, customer_id, payment_id, amount_tiyn) "
        "VALUES ('payment.completed', $1, $2, 100) RETURNING id", customer, payment_id)
    return event_id


async def test_late_committing_event_is_not_skipped(stack: Any) -> None:
    _, cursor = await drain(stack, "0-0")
    customer = new_customer()
    slow = await asyncpg.connect(stack.database_url)
    fast = await asyncpg.connect(stack.database_url)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        early_id = await insert_event(slow, customer, "late-commit-A")
        late_id = await insert_event(fast, customer, "late-commit-B")  # commits at once
        assert late_id > early_id
        # B is committed, but A (a smaller id) may still commit: B must wait.
        seen, cursor = await drain(stack, cursor)
        assert [e["paymentId"] for e in seen if e["customerId"] == customer] == []
        await slow_tx.commit()
        seen, cursor = await drain(stack, cursor)
        mine = [e["paymentId"] for e in seen if e["customerId"] == customer]
        assert mine == ["late-commit-A", "late-commit-B"]
        seen, _ = await drain(stack, cursor)
        assert [e for e in seen if e["customerId"] == customer] == []
    finally:
        await slow.close()
        await fast.close()
