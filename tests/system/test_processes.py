"""Real server processes: killed mid-payment, and two draining one outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from mpp_server.domain import ledger
from tests.support.helpers import new_customer, sim, sim_payment, until_faults_left
from tests.support.processes import (
    DEPOSIT_AUTH,
    scanned_on,
    servers,
    wait_db_status,
    wallet,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.slow


async def test_killed_server_finishes_payment_after_restart_without_second_debit(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    await sim(stack, "DELETE", "/sim/faults")
    customer = new_customer()
    # Kaspi will sit on the first notify for 8 s; the server waits up to 10 s for it.
    slow = {"KASPI_TIMEOUT_MS": "10000"}
    with servers(1, isolated_db, stack.sim_url, tmp_path, **slow) as (first,):
        await first.ready()
        status, _ = await wallet(stack.http, first, "POST",
                                 f"/v1/accounts/{customer}/deposits",
                                 {"depositId": "crash-" + customer, "amount": "100.00"},
                                 DEPOSIT_AUTH)
        assert status == 201
        payment_id = await scanned_on(stack, first, customer, "45.00")
        await sim(stack, "POST", "/sim/faults", {"endpoint": "notifyPayment",
                                                 "mode": "timeout", "times": 1,
                                                 "delayMs": 8000})
        confirming = asyncio.create_task(wallet(stack.http, first, "POST",
                                                f"/v1/payments/{payment_id}/confirm",
                                                {"customerId": customer}))
        await wait_db_status(isolated_db, payment_id, "PENDING")
        await until_faults_left(stack, "notifyPayment", 0)  # the notify call is in flight
        first.kill()
        with pytest.raises(aiohttp.ClientError):
            await confirming
    assert (await sim_payment(stack, payment_id))["status"] == "SCANNED"

    with servers(1, isolated_db, stack.sim_url, tmp_path) as (second,):
        await second.ready()
        await wait_db_status(isolated_db, payment_id, "COMPLETED")
        status, shown = await wallet(stack.http, second, "GET", f"/v1/payments/{payment_id}")
        assert shown["status"] == "COMPLETED" and shown["linkReceipt"]
        status, account = await wallet(stack.http, second, "GET", f"/v1/accounts/{customer}")
        assert account["balance"] == "55.00"
    conn = await asyncpg.connect(isolated_db)
    try:
        debits = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE kind = 'payment_debit' AND reference = $1",
            payment_id)
        assert debits == 1
        assert (await ledger.check_invariants(conn)).ok
    finally:
        await conn.close()
    assert (await sim_payment(stack, payment_id))["status"] == "COMPLETED"


async def test_two_processes_drain_one_outbox_notifying_each_payment_once(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    await sim(stack, "DELETE", "/sim/faults")
    # No inline attempt: every notify goes through the shared outbox.
    with servers(2, isolated_db, stack.sim_url, tmp_path, CONFIRM_BUDGET_MS="0") as pair:
        for server in pair:
            await server.ready()
        customers = [new_customer() for _ in range(30)]
        payment_ids: list[str] = []
        for i, customer in enumerate(customers):
            server = pair[i % 2]
            status, _ = await wallet(stack.http, server, "POST",
                                     f"/v1/accounts/{customer}/deposits",
                                     {"depositId": "two-" + customer, "amount": "10.00"},
                                     DEPOSIT_AUTH)
            assert status == 201
            payment_ids.append(await scanned_on(stack, server, customer, "10.00"))
        answers = await asyncio.gather(*(
            wallet(stack.http, pair[i % 2], "POST", f"/v1/payments/{pid}/confirm",
                   {"customerId": customers[i]}) for i, pid in enumerate(payment_ids)))
        assert all(status == 200 for status, _ in answers)
        for pid in payment_ids:
            await wait_db_status(isolated_db, pid, "COMPLETED")
    counts = [(await sim_payment(stack, pid))["notifyCount"] for pid in payment_ids]
    assert counts == [1] * len(payment_ids)
    conn = await asyncpg.connect(isolated_db)
    try:
        completed = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'payment.completed'")
        assert completed == len(payment_ids)
        assert await conn.fetchval("SELECT count(*) FROM notify_outbox") == 0
        assert (await ledger.check_invariants(conn)).ok
    finally:
        await conn.close()
