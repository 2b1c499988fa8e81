"""Real server processes: killed mid-payment, and two draining one outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from mpp_server.devtools.launcher import Listeners, Processes
from mpp_server.domain import ledger
from tests.support.helpers import new_customer, new_qr, sim, sim_payment, until_faults_left
from tests.support.stack import DEPOSIT_TOKEN, TOKEN, Stack, server_env

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEPOSIT_AUTH = {"Authorization": f"Bearer {DEPOSIT_TOKEN}"}


@dataclass
class ServerProcess:
    """A `serve` process the launcher started (its log in the test's folder)."""

    processes: Processes
    name: str
    wallet_url: str

    async def ready(self, timeout_s: float = 20) -> None:
        await asyncio.to_thread(self.processes.wait_http, self.name,
                                self.wallet_url + "/readyz", timeout_s)

    def kill(self) -> None:
        self.processes.kill(self.name)


@contextmanager
def servers(count: int, dsn: str, sim_url: str, tmp_path: Path,
            **overrides: str) -> Iterator[list[ServerProcess]]:
    processes = Processes(tmp_path)
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            listeners = Listeners.free()
            processes.start_server(f"server{i}", {**server_env(dsn, sim_url, listeners),
                                                  **overrides})
            started.append(ServerProcess(processes, f"server{i}", listeners.wallet_url))
        yield started
    finally:
        processes.stop()


async def wallet(http: aiohttp.ClientSession, server: ServerProcess, method: str, path: str,
                 body: Any = None, auth: dict[str, str] = AUTH) -> tuple[int, Any]:
    async with http.request(method, server.wallet_url + path, json=body,
                            headers=auth) as resp:
        return resp.status, await resp.json(content_type=None)


async def scanned_payment(stack: Stack, server: ServerProcess, customer: str,
                          amount: str) -> str:
    qr = await new_qr(stack, "Dynamic", amount=amount)
    status, body = await wallet(stack.http, server, "POST", "/v1/scan",
                                {"qrCode": qr["qrCode"], "customerId": customer})
    assert status == 200, body
    return str(body["payment"]["paymentId"])


async def wait_db_status(dsn: str, payment_id: str, wanted: str, timeout_s: float = 30) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            status = await conn.fetchval("SELECT status FROM payments WHERE payment_id = $1",
                                         payment_id)
            if status == wanted:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{payment_id} is {status}"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


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
        payment_id = await scanned_payment(stack, first, customer, "45.00")
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
            payment_ids.append(await scanned_payment(stack, server, customer, "10.00"))
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
