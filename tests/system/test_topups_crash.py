"""A real server process killed between the acquirer's status answer and the credit's
commit: the restarted server asks again and credits the top-up exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mpp_server.devtools.launcher import free_port
from mpp_server.domain import ledger
from tests.support.helpers import new_customer, sim
from tests.system.test_processes import servers, wallet

pytestmark = pytest.mark.slow
WAIT_S = 30.0


async def _until(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_server_killed_between_status_check_and_credit_credits_once_after_restart(
        stack: Any, isolated_db: str, tmp_path: Path) -> None:
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

            blocked = await _until(crediting_pid, "the credit to wait for the account")
            _, order = await sim(stack, "GET", f"/sim/acquiring/orders/halyk-epay/"
                                               f"{topup['providerOrderId']}")
            assert order["statusChecks"] >= 1  # the status API said CHARGED
            first.kill()
            await holding.rollback()

            async def backend_gone() -> bool:
                return not await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", blocked)

            await _until(backend_gone, "the killed server's backend to end")
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

            await _until(credited, "the restarted server to credit the top-up")
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
