"""The top-up tests' shared parts: the wallet's top-up calls, the simulator's acquirers
played as the customer, and what the books and the metrics say."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from tests.support.helpers import balance, call, new_customer, sim
from tests.support.stack import Stack, running_stack

PROVIDERS = ["halyk-epay", "kapital", "kaspi-ecom"]
REFUNDABLE = ["halyk-epay", "kapital"]
WAIT_S = 20.0


@pytest.fixture
async def no_acquirer_faults(stack: Stack) -> Any:
    """No acquirer fault left over from another test, nor left to the next one."""
    await sim(stack, "DELETE", "/sim/acquiring/faults")
    yield
    await sim(stack, "DELETE", "/sim/acquiring/faults")


async def create(stack: Stack, provider: str, amount: str = "1500.00",
                 customer: str | None = None) -> dict[str, Any]:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": customer or new_customer(),
            "provider": provider, "amount": amount}
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 201, answer
    assert answer["status"] == "CREATED" and answer["paymentUrl"], answer
    return dict(answer)


async def pay(stack: Stack, topup: dict[str, Any], outcome: str = "success",
              callback: str = "send") -> dict[str, Any]:
    status, answer = await sim(stack, "POST", "/sim/acquiring/pay",
                               {"paymentUrl": topup["paymentUrl"], "outcome": outcome,
                                "callback": callback})
    assert status == 200, answer
    assert answer["providerOrderId"] == topup["providerOrderId"]
    return dict(answer)


async def until(check: Callable[[], Awaitable[Any]], what: str,
                wait_s: float = WAIT_S) -> Any:
    """Poll `check` until it returns something true (its value), at most `wait_s`."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def stack_of_its_own(admin_dsn: str, prefix: str, **env: str) -> AsyncIterator[Stack]:
    """A database, simulator and server of the test module's own, with `env` over the
    tests' settings."""
    async with fresh_database(admin_dsn, prefix) as dsn:
        pool = await db.create_pool(dsn, min_size=1, max_size=4)
        try:
            async with running_stack(dsn, pool, **env) as running:
                yield running
        finally:
            await pool.close()


async def wait_for(stack: Stack, topup_id: str, wanted: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        status, answer = await call(stack, "GET", f"/v1/topups/{topup_id}")
        assert status == 200, answer
        if answer["status"] == wanted:
            return dict(answer)
        assert answer["status"] == "CREATED", f"{topup_id} became {answer['status']}"
        assert asyncio.get_running_loop().time() < deadline, f"{topup_id} still {answer}"
        await asyncio.sleep(0.05)


async def transfers(stack: Stack, kind: str, reference: str) -> int:
    async with stack.pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE kind = $1 AND reference = $2",
            kind, reference)
    return count


async def event_types(stack: Stack, topup_id: str) -> list[str]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT type FROM events WHERE topup_id = $1 ORDER BY id",
                                topup_id)
    return [r["type"] for r in rows]


async def sim_order(stack: Stack, topup: dict[str, Any]) -> dict[str, Any]:
    status, order = await sim(stack, "GET", f"/sim/acquiring/orders/{topup['provider']}/"
                                            f"{topup['providerOrderId']}")
    assert status == 200, order
    return dict(order)


async def account_balance(stack: Stack, customer: str) -> str:
    """The balance, "0.00" for a customer whose top-up created the account only."""
    return await balance(stack, customer)


def callback_of(topup: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A callback in the acquirer's own format claiming the order was paid, as a forger
    would send it: Halyk's postLink without the invoice's secret_hash, the browser's
    return from Kapital's page (xmlmsg, which carries no secret at all), a nudge to the
    Kaspi path (Kaspi itself calls nobody)."""
    order_id = topup["providerOrderId"]
    if topup["provider"] == "halyk-epay":
        return "/callbacks/halyk-epay", {"json": {
            "code": "ok", "invoiceId": order_id, "id": "forged", "amount": 1,
            "secret_hash": "forged"}}
    if topup["provider"] == "kapital":
        return "/callbacks/kapital?result=approve", {"data": {"xmlmsg": (
            f"<Message><OrderID>{order_id}</OrderID><SessionID>forged</SessionID>"
            "<OrderStatus>APPROVED</OrderStatus></Message>")}}
    return "/callbacks/kaspi-ecom", {"json": {"Data": {
        "PaymentId": order_id, "Status": "Processed"}}}


async def send_callback(stack: Stack, topup: dict[str, Any]) -> int:
    path, kwargs = callback_of(topup)
    async with stack.http.post(stack.acquiring_url + path, **kwargs) as resp:
        await resp.read()
        return resp.status


async def credited(stack: Stack, provider: str, amount: str) -> dict[str, Any]:
    topup = await create(stack, provider, amount)
    await pay(stack, topup)
    return await wait_for(stack, topup["topupId"], "CREDITED")


async def refund(stack: Stack, topup: dict[str, Any], amount: str,
                 refund_id: str | None = None) -> tuple[int, Any]:
    return await call(stack, "POST", f"/v1/topups/{topup['topupId']}/refunds",
                      {"refundId": refund_id or "rf-" + uuid.uuid4().hex[:12], "amount": amount})


async def wait_refund(stack: Stack, topup: dict[str, Any], refund_id: str,
                      wanted: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        status, answer = await call(stack, "GET",
                                    f"/v1/topups/{topup['topupId']}/refunds/{refund_id}")
        assert status == 200, answer
        if answer["status"] == wanted:
            return dict(answer)
        assert asyncio.get_running_loop().time() < deadline, answer
        await asyncio.sleep(0.05)


async def acquirer_fault(stack: Stack, provider: str, operation: str, mode: str,
                         times: int = 1, delay_ms: int = 0, order_id: str | None = None) -> None:
    """The simulator's acquirer misbehaves on its next `times` calls of `operation` (of
    those naming `order_id` only, when given: other tests' top-ups are polled too)."""
    status, body = await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": provider, "operation": operation, "mode": mode, "times": times,
        "delayMs": delay_ms, "orderId": order_id})
    assert status == 200, body
