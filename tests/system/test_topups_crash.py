"""A real server process killed between the acquirer's status answer and the credit's
commit: the restarted server asks again (once the dead one's check lease is over) and
credits the top-up exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from mpp_server.devtools.launcher import free_port
from mpp_server.domain import ledger
from tests.support.helpers import new_customer, sim
from tests.support.processes import servers, wallet
from tests.support.stack import Stack
from tests.support.topups import until

pytestmark = pytest.mark.slow
WAIT_S = 30.0


async def test_server_killed_between_status_check_and_credit_credits_once_after_restart(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    customer = new_customer()
    port = free_port()
    env = {"ACQUIRING_LISTEN": f"127.0.0.1:{port}",
           "ACQUIRING_PUBLIC_URL": f"http://127.0.0.1:{port}", "TOPUP_FIRST_CHECK_MS": "500"}
    topup_id = "crash-" + customer
    db = await asyncpg.connect(isolated_db)
    # Statistics are read once per transaction: pg_stat_activity is watched from a
    # connection that holds none.
    watch = await asyncpg.connect(isolated_db)
    try:
        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (first,):
            await first.ready()
            status, topup = await wallet(stack.http, first, "POST", "/v1/topups", {
                "topupId": topup_id, "customerId": customer, "provider": "halyk-epay",
                "amount": "2500.00"})
            assert status == 201, topup
            # Hold the customer's account: the credit, which comes after the status
            # answer in the same transaction, waits for it inside ledger_transfer.
            holding = db.transaction()
            await holding.start()
            await db.execute("SELECT 1 FROM accounts WHERE customer_id = $1 FOR UPDATE",
                             customer)
            status, paid = await sim(stack, "POST", "/sim/acquiring/pay", {
                "paymentUrl": topup["paymentUrl"], "outcome": "success", "callback": "send"})
            assert status == 200 and paid["status"] == "PAID"

            async def crediting_pid() -> int | None:
                pid: int | None = await watch.fetchval(
                    """SELECT pid FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()
                         AND wait_event_type = 'Lock' AND query LIKE '%topup_apply_status%'
                       LIMIT 1""")
                return pid

            blocked = await until(crediting_pid, "the credit to wait for the account", WAIT_S)
            _, order = await sim(stack, "GET", f"/sim/acquiring/orders/halyk-epay/"
                                               f"{topup['providerOrderId']}")
            assert order["statusChecks"] >= 1  # the status API said CHARGED
            first.kill()
            # The dead server's backend would go on once the lock is free (its statement
            # commits by itself): it dies with the server, as a server host lost would.
            await watch.execute("SELECT pg_terminate_backend($1)", blocked)
            await holding.rollback()

            async def backend_gone() -> bool:
                return not await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", blocked)

            await until(backend_gone, "the killed server's backend to end", WAIT_S)
        assert await db.fetchval("SELECT status FROM topups WHERE topup_id = $1",
                                 topup_id) == "CREATED"
        assert await db.fetchval("SELECT count(*) FROM transfers WHERE kind = 'topup' "
                                 "AND reference = $1", topup_id) == 0

        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (second,):
            await second.ready()

            async def credited() -> bool:
                status = await db.fetchval("SELECT status FROM topups WHERE topup_id = $1",
                                           topup_id)
                return bool(status == "CREDITED")

            await until(credited, "the restarted server to credit the top-up", WAIT_S)
            status, account = await wallet(stack.http, second, "GET",
                                           f"/v1/accounts/{customer}")
            assert status == 200 and account["balance"] == "2500.00"
        assert await db.fetchval("SELECT count(*) FROM transfers WHERE kind = 'topup' "
                                 "AND reference = $1", topup_id) == 1
        assert await db.fetchval("SELECT count(*) FROM events WHERE topup_id = $1 "
                                 "AND type = 'topup.credited'", topup_id) == 1
        assert (await ledger.check_invariants(db)).ok
    finally:
        await db.close()
        await watch.close()


async def test_server_killed_while_the_acquirer_applies_a_refund_never_gives_it_back(
        stack: Stack, isolated_db: str, tmp_path: Path) -> None:
    """The refund reached Halyk and was done, and the server died before it heard back:
    the attempt's answer was never applied. The next attempt must not send it again and
    take Halyk's "exceeds" for a refusal (the money twice: on the card and back in the
    wallet); it reads Halyk's books, which show it done."""
    customer = new_customer()
    port = free_port()
    env = {"ACQUIRING_LISTEN": f"127.0.0.1:{port}",
           "ACQUIRING_PUBLIC_URL": f"http://127.0.0.1:{port}", "TOPUP_FIRST_CHECK_MS": "300"}
    db = await asyncpg.connect(isolated_db)
    try:
        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (first,):
            await first.ready()
            status, topup = await wallet(stack.http, first, "POST", "/v1/topups", {
                "topupId": "crash-rf-" + customer, "customerId": customer,
                "provider": "halyk-epay", "amount": "1000.00"})
            assert status == 201, topup
            await sim(stack, "POST", "/sim/acquiring/pay", {
                "paymentUrl": topup["paymentUrl"], "outcome": "success", "callback": "send"})

            async def credited() -> bool:
                return bool(await db.fetchval("SELECT status = 'CREDITED' FROM topups "
                                              "WHERE topup_id = $1", topup["topupId"]))

            await until(credited, "the credit", WAIT_S)
            await sim(stack, "POST", "/sim/acquiring/faults", {
                "provider": "halyk-epay", "operation": "refund", "mode": "late_answer",
                "delayMs": 20_000})
            asking = asyncio.create_task(wallet(
                stack.http, first, "POST", f"/v1/topups/{topup['topupId']}/refunds",
                {"refundId": "rf-" + customer, "amount": "1000.00"}))

            async def done_at_halyk() -> bool:
                _, order = await sim(stack, "GET", f"/sim/acquiring/orders/halyk-epay/"
                                                   f"{topup['providerOrderId']}")
                return bool(order["refunds"])

            await until(done_at_halyk, "Halyk to do the refund", WAIT_S)
            first.kill()  # its answer is on its way: never heard
            await asyncio.gather(asking, return_exceptions=True)
        with servers(1, isolated_db, stack.sim_url, tmp_path, **env) as (second,):
            await second.ready()

            async def answered() -> bool:
                status = await db.fetchval("SELECT status FROM topup_refunds "
                                           "WHERE refund_id = $1", "rf-" + customer)
                return status in ("COMPLETED", "REFUSED")

            await until(answered, "the refund to be answered", WAIT_S)
        assert await db.fetchval("SELECT status FROM topup_refunds WHERE refund_id = $1",
                                 "rf-" + customer) == "COMPLETED"
        assert await db.fetchval("SELECT balance_tiyn FROM accounts WHERE customer_id = $1",
                                 customer) == 0
        _, order = await sim(stack, "GET", f"/sim/acquiring/orders/halyk-epay/"
                                           f"{topup['providerOrderId']}")
        assert [r["amountTiyn"] for r in order["refunds"]] == [100000]
        assert (await ledger.check_invariants(db)).ok
    finally:
        await db.close()
