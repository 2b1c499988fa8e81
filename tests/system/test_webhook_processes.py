"""Webhooks from real server processes (issue 25): a server SIGKILLed after the event
committed and before its webhook was answered leaves it to the next one; two servers
draining one outbox deliver every event, with its own id, never twice at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.support.helpers import new_customer, sim
from tests.support.processes import (
    DEPOSIT_AUTH,
    ServerProcess,
    scanned_on,
    servers,
    wallet,
)
from tests.support.stack import Stack
from tests.support.webhooks import HANG, Receiver

pytestmark = pytest.mark.slow


def webhook_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": receiver.secret,
            "WEBHOOK_POLL_INTERVAL_MS": "50", "WEBHOOK_BACKOFF_INITIAL_MS": "100",
            "WEBHOOK_BACKOFF_MAX_MS": "400", **extra}


async def pay(stack: Stack, server: ServerProcess, amount: str = "10.00") -> tuple[str, str]:
    """A deposit and a completed payment through `server`: (paymentId, customerId)."""
    customer = new_customer()
    status, _ = await wallet(stack.http, server, "POST", f"/v1/accounts/{customer}/deposits",
                             {"depositId": "wh-" + customer, "amount": amount},
                             DEPOSIT_AUTH)
    assert status == 201
    payment_id = await scanned_on(stack, server, customer, amount)
    status, body = await wallet(stack.http, server, "POST",
                                f"/v1/payments/{payment_id}/confirm", {"customerId": customer})
    assert status == 200 and body["status"] == "COMPLETED", body
    return payment_id, customer


async def wait_all_delivered(dsn: str, timeout_s: float = 60) -> list[asyncpg.Record]:
    """Every event's delivery, once each is DELIVERED (bounded)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            rows = await conn.fetch(
                """SELECT e.id, d.status, d.attempts FROM events e
                   LEFT JOIN webhook_deliveries d ON d.event_id = e.id ORDER BY e.id""")
            if rows and all(r["status"] == "DELIVERED" for r in rows):
                return list(rows)
            assert asyncio.get_running_loop().time() < deadline, [dict(r) for r in rows]
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_a_server_killed_before_its_webhook_was_answered_leaves_it_to_the_next(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    await sim(stack, "DELETE", "/sim/faults")
    receiver = Receiver(plan=lambda webhook_id, n: HANG if n == 1 else 200)
    await receiver.start()
    env = webhook_env(receiver, WEBHOOK_TIMEOUT_MS="3000")
    try:
        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (first,):
            await first.ready()
            await pay(stack, first)
            # The event committed; the sender claimed it and the receiver holds the POST.
            await receiver.wait_for(lambda: len(receiver.received) == 1, "the first POST")
            first.kill()
        conn = await asyncpg.connect(isolated_db)
        try:
            left = await conn.fetchrow("SELECT * FROM webhook_deliveries")
        finally:
            await conn.close()
        assert left is not None and (left["status"], left["attempts"]) == ("PENDING", 1)
        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (second,):
            await second.ready()
            (delivered,) = await wait_all_delivered(isolated_db)
    finally:
        await receiver.stop()
    tries = receiver.by_id()[str(delivered["id"])]
    assert [t.answered for t in tries] == [HANG, 200]  # the same webhook, sent again
    assert len({t.body for t in tries}) == 1 and all(t.verified for t in tries)
    assert delivered["attempts"] == 2


async def test_two_servers_deliver_one_outbox_every_event_with_its_id_never_twice_at_once(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    await sim(stack, "DELETE", "/sim/faults")
    # Every third webhook is refused once: its retry may be taken by either server.
    receiver = Receiver(plan=lambda webhook_id, n: 500 if int(webhook_id) % 3 == 0 and n == 1
                        else 200)
    await receiver.start()
    try:
        with servers(2, isolated_db, stack.sim_url, tmp_path, **webhook_env(receiver)) as pair:
            for server in pair:
                await server.ready()
            paid = await asyncio.gather(*(pay(stack, pair[i % 2]) for i in range(30)))
            disputed = await asyncio.gather(*(
                wallet(stack.http, pair[i % 2], "POST", "/v1/disputes",
                       {"disputeId": f"dp-{i}", "paymentId": payment_id,
                        "customerId": customer, "reason": "twice"})
                for i, (payment_id, customer) in enumerate(paid[:10])))
            assert all(status == 201 for status, _ in disputed)
            delivered = await wait_all_delivered(isolated_db)
    finally:
        await receiver.stop()
    assert len(delivered) == 40  # 30 payment.completed, 10 dispute.opened
    by_id = receiver.by_id()
    assert set(by_id) == {str(row["id"]) for row in delivered}  # none lost
    for row in delivered:
        tries = by_id[str(row["id"])]
        refused_once = row["id"] % 3 == 0
        assert [t.answered for t in tries] == ([500, 200] if refused_once else [200])
        assert len({t.body for t in tries}) == 1 and all(t.verified for t in tries)
        assert all(t.payload["data"]["id"] == row["id"] for t in tries)
        assert row["attempts"] == len(tries)
