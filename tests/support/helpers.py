"""Small clients for the tests: the wallet API, the simulator's control API, the books."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

from mpp_server.domain import ledger
from mpp_server.metrics import REGISTRY
from tests.support.stack import Stack


def new_customer() -> str:
    """A customer id no other test uses. Not from `random`: hypothesis seeds it for each
    example, and pytest-randomly for each test, so ids drawn from it repeat, and a
    repeated customer finds another test's account (its balance, its limits' totals) in
    the shared database."""
    return "77" + f"{secrets.randbelow(10**10):010d}"


async def call(stack: Stack, method: str, path: str, body: Any = None, *,
               token: str | None = "default", headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    """Call the wallet API; returns (HTTP status, parsed JSON)."""
    hdrs = dict(headers or {})
    if token == "default":
        hdrs.update(stack.auth)
    elif token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"headers": hdrs}
    if raw is not None:
        kwargs["data"] = raw
        hdrs.setdefault("Content-Type", "application/json")
    elif body is not None:
        kwargs["json"] = body
    async with stack.http.request(method, stack.wallet_url + path, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def drain_events(stack: Stack, cursor: str) -> tuple[list[dict[str, Any]], str]:
    """Follow the event feed's `next` from `cursor` to its end: the events and the end."""
    seen: list[dict[str, Any]] = []
    while True:
        status, page = await call(stack, "GET", f"/v1/events?after={cursor}&limit=1000")
        assert status == 200, page
        seen += page["events"]
        cursor = page["next"]
        if not page["events"]:
            return seen, cursor


async def sim(stack: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with stack.http.request(method, stack.sim_url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def sim_refund(stack: Stack, payment_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    """Kaspi refunds a payment: the simulator calls our POST /refund until answered."""
    status, body = await sim(stack, "POST", "/sim/refunds",
                             {"paymentId": payment_id, "amount": amount, **extra})
    assert status == 200, body
    return dict(body)


async def fault(stack: Stack, endpoint: str, mode: str, times: int, **extra: Any) -> None:
    """Make the simulator misbehave on its next `times` calls of `endpoint`."""
    status, body = await sim(stack, "POST", "/sim/faults",
                             {"endpoint": endpoint, "mode": mode, "times": times, **extra})
    assert status == 200, body


async def until_faults_left(stack: Stack, endpoint: str, left: int,
                            timeout_s: float = 15.0) -> None:
    """Poll the simulator until only `left` faults on `endpoint` are still queued: the
    call that took the last one has reached it (and, for a timeout, is held there)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, body = await sim(stack, "GET", "/sim/faults")
        assert status == 200, body
        if body["pending"][endpoint] <= left:
            return
        assert asyncio.get_running_loop().time() < deadline, f"no call took a fault: {body}"
        await asyncio.sleep(0.02)


async def new_qr(stack: Stack, qr_type: str, **fields: Any) -> dict[str, Any]:
    status, body = await sim(stack, "POST", "/sim/qr", {"type": qr_type, **fields})
    assert status == 200, body
    return dict(body)


async def deposit(stack: Stack, customer_id: str, amount: str) -> dict[str, Any]:
    status, body = await call(stack, "POST", f"/v1/accounts/{customer_id}/deposits",
                              {"depositId": "dep-" + new_customer() + customer_id,
                               "amount": amount}, token=stack.deposit_token)
    assert status in (200, 201), body
    return dict(body)


async def balance(stack: Stack, customer_id: str) -> str:
    status, body = await call(stack, "GET", f"/v1/accounts/{customer_id}")
    assert status == 200, body
    return str(body["balance"])


async def scan(stack: Stack, qr_code: str, customer_id: str,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, body = await call(stack, "POST", "/v1/scan",
                              {"qrCode": qr_code, "customerId": customer_id}, headers=headers)
    assert status == 200, body
    return dict(body)


async def confirm(stack: Stack, payment_id: str, customer_id: str, amount: str | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {"customerId": customer_id}
    if amount is not None:
        body["amount"] = amount
    return await call(stack, "POST", f"/v1/payments/{payment_id}/confirm", body,
                      headers=headers)


async def payment(stack: Stack, payment_id: str) -> dict[str, Any]:
    status, body = await call(stack, "GET", f"/v1/payments/{payment_id}")
    assert status == 200, body
    return dict(body)


async def sim_payment(stack: Stack, payment_id: str) -> dict[str, Any]:
    status, body = await sim(stack, "GET", f"/sim/payments/{payment_id}")
    assert status == 200, body
    return dict(body)


async def wait_status(stack: Stack, payment_id: str, wanted: str,
                      timeout_s: float = 15.0) -> dict[str, Any]:
    """Poll GET /v1/payments/{id} until it shows `wanted` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        current = await payment(stack, payment_id)
        if current["status"] == wanted:
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"payment stayed {current['status']}, wanted {wanted}")
        await asyncio.sleep(0.05)


async def confirmed(stack: Stack, payment_id: str, customer_id: str, amount: str | None = None,
                    wanted: str = "COMPLETED") -> dict[str, Any]:
    """Confirm a payment that Kaspi will decide as `wanted`: the payment as confirm
    answered it, or, when the confirm's budget (CONFIRM_BUDGET_MS) ran out before Kaspi's
    answer (PENDING: a loaded machine), as it shows once the outbox got the answer."""
    status, body = await confirm(stack, payment_id, customer_id, amount)
    assert status == 200 and body["status"] in (wanted, "PENDING"), body
    if body["status"] == "PENDING":
        return await wait_status(stack, payment_id, wanted)
    return dict(body)


async def complete_payment(stack: Stack, customer_id: str, amount: str = "100.00"
                           ) -> dict[str, Any]:
    """Deposit, scan a Dynamic QR, confirm: the payment once COMPLETED."""
    await deposit(stack, customer_id, amount)
    qr = await new_qr(stack, "Dynamic", amount=amount)
    scanned = await scan(stack, qr["qrCode"], customer_id)
    return await confirmed(stack, scanned["payment"]["paymentId"], customer_id)


async def transfers_of(stack: Stack, kind: str, reference: str) -> int:
    """How many ledger transfers of `kind` were made for a paymentId/refundId."""
    async with stack.pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE kind = $1 AND reference = $2", kind,
            reference)
    return count


async def assert_books_balanced(stack: Stack) -> None:
    async with stack.pool.acquire() as conn:
        report = await ledger.check_invariants(conn)
    assert report.ok, report


async def post_refund(stack: Stack, body: dict[str, Any] | None = None, *,
                      raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with stack.http.post(stack.kaspi_url + "/refund", data=data,
                               headers={"Content-Type": "application/json",
                                        "X-Request-ID": uuid.uuid4().hex}) as resp:
        return resp.status, await resp.json(content_type=None)


def refund_body(done: dict[str, Any], customer: str, amount: str,
                refund_id: str | None = None) -> dict[str, Any]:
    return {"customerId": customer, "paymentId": done["paymentId"], "refundAmount": amount,
            "refundId": refund_id or "R" + uuid.uuid4().hex[:20],
            "linkReceipt": "https://receipt-test.kaspi.kz/web?extTranId=QR1"}


def metric_value(name: str, **labels: str) -> float:
    """A Prometheus sample of the in-process server (0 until it is first counted)."""
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def counted(name: str, expected: float, wait_s: float = 10.0, *,
                  at_least: bool = False, **labels: str) -> None:
    """The in-process server's counter `name` is exactly `expected` once it gets there
    (`at_least`: `expected` or more, where other work may count too): a step is counted
    after its commit, so a test that has seen the committed state waits (at most
    `wait_s`) for the count, then asserts it was not counted more."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while (value := metric_value(name, **labels)) < expected:
        assert asyncio.get_running_loop().time() < deadline, \
            f"{name}{labels} stayed {value}, {expected} expected"
        await asyncio.sleep(0.05)
    assert at_least or value == expected, f"{name}{labels} is {value}, {expected} expected"


async def scanned_payment(stack: Stack, amount: str = "10.00") -> tuple[str, str]:
    """A customer with 100.00 and a scanned Dynamic payment of `amount`, not confirmed."""
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount=amount)
    return customer, (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]


async def journal_rows(stack: Stack, column: str, value: str, count: int,
                       timeout_s: float = 10.0) -> list[Any]:
    """The exchange journal's rows for an id (`column` one of its id columns), once at
    least `count` are written: the journal is written in batches, a fraction of a second
    after the exchange."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with stack.pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT * FROM exchange_journal WHERE {column} = $1 "
                                    "ORDER BY occurred_at, id", value)
        if len(rows) >= count:
            return list(rows)
        assert asyncio.get_running_loop().time() < deadline, (column, value, rows)
        await asyncio.sleep(0.05)
