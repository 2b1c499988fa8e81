"""Disputes (issue 25): a customer's complaint about a payment, idempotent on disputeId,
due DISPUTE_RESPONSE_HOURS after it opened, resolved by an operator's command, withdrawn
by the wallet, or resolved REFUNDED by Kaspi's refunds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support.helpers import (
    call,
    complete_payment,
    deposit,
    drain_events,
    new_customer,
    new_qr,
    scan,
    sim_refund,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.usefixtures("clean_faults")


def new_id() -> str:
    return "dp-" + uuid.uuid4().hex[:16]


async def open_dispute(stack: Stack, body: dict[str, Any]) -> tuple[int, Any]:
    return await call(stack, "POST", "/v1/disputes", body)


async def disputes_of(stack: Stack, payment_id: str) -> int:
    async with stack.pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM disputes WHERE payment_id = $1", payment_id)
    return count


async def paid(stack: Stack, amount: str = "100.00") -> tuple[str, str]:
    customer = new_customer()
    done = await complete_payment(stack, customer, amount)
    return customer, str(done["paymentId"])


def command(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpp_server", "disputes", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "DATABASE_URL": stack.database_url})


async def test_a_dispute_opens_due_in_24_hours_and_a_repeat_answers_the_same(
        stack: Stack) -> None:
    customer, payment_id = await paid(stack)
    reason = 'Charged twice <script>alert("x")</script> & "quoted"'
    body = {"disputeId": new_id(), "paymentId": payment_id, "customerId": customer,
            "reason": reason}
    status, opened = await open_dispute(stack, body)
    assert status == 201, opened
    assert opened["status"] == "OPEN" and opened["amount"] == "100.00"
    assert opened["reason"] == reason  # as written: JSON escapes it, nothing interprets it
    due = datetime.fromisoformat(opened["dueAt"]) - datetime.fromisoformat(opened["createdAt"])
    assert due == timedelta(hours=24)
    assert await open_dispute(stack, body) == (200, opened)
    assert await open_dispute(stack, {**body, "amount": "100.00"}) == (200, opened)
    assert await call(stack, "GET", f"/v1/disputes/{body['disputeId']}") == (200, opened)
    status, conflict = await open_dispute(stack, {**body, "reason": "something else"})
    assert status == 409 and conflict["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    feed, _ = await drain_events(stack, "0")
    mine = [e for e in feed if e.get("disputeId") == body["disputeId"]]
    assert [(e["type"], e["amount"], e["paymentId"]) for e in mine] == [
        ("dispute.opened", "100.00", payment_id)]


async def test_a_refused_dispute_records_nothing(stack: Stack) -> None:
    customer, payment_id = await paid(stack, "50.00")
    base = {"paymentId": payment_id, "customerId": customer, "reason": "wrong amount"}
    refusals = [
        ({"paymentId": "no-such-payment"}, 404, "NOT_FOUND"),
        ({"customerId": new_customer()}, 409, "CUSTOMER_MISMATCH"),
        ({"amount": "50.01"}, 422, "VALIDATION_ERROR"),
        ({"amount": "0"}, 422, "VALIDATION_ERROR"),
        ({"reason": "x" * 1001}, 422, "VALIDATION_ERROR"),
        ({"reason": ""}, 422, "VALIDATION_ERROR"),
    ]
    for change, status, code in refusals:
        dispute_id = new_id()
        answer = await open_dispute(stack, {"disputeId": dispute_id, **base, **change})
        assert (answer[0], answer[1]["error"]["code"]) == (status, code), (change, answer)
        # Refused: the disputeId stays free.
        status, opened = await open_dispute(stack, {"disputeId": dispute_id, **base})
        assert status == 201, opened
    scanned_customer = new_customer()
    await deposit(stack, scanned_customer, "10.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    scanned = (await scan(stack, qr["qrCode"], scanned_customer))["payment"]["paymentId"]
    status, answer = await open_dispute(stack, {"disputeId": new_id(), "paymentId": scanned,
                                                "customerId": scanned_customer,
                                                "reason": "never paid"})
    assert status == 409 and answer["error"]["code"] == "INVALID_STATE"
    assert await disputes_of(stack, scanned) == 0
    assert await disputes_of(stack, payment_id) == len(refusals)


async def test_concurrent_duplicates_open_one_dispute(stack: Stack) -> None:
    customer, payment_id = await paid(stack)
    body = {"disputeId": new_id(), "paymentId": payment_id, "customerId": customer,
            "reason": "twice", "amount": "30.00"}
    answers = await asyncio.gather(*(open_dispute(stack, body) for _ in range(10)))
    assert sorted(status for status, _ in answers) == [200] * 9 + [201]
    assert len({json.dumps(answer, sort_keys=True) for _, answer in answers}) == 1
    assert await disputes_of(stack, payment_id) == 1


async def test_the_wallet_withdraws_its_customers_dispute(stack: Stack) -> None:
    customer, payment_id = await paid(stack)
    dispute_id = new_id()
    await open_dispute(stack, {"disputeId": dispute_id, "paymentId": payment_id,
                               "customerId": customer, "reason": "changed my mind"})
    path = f"/v1/disputes/{dispute_id}/withdraw"
    status, other = await call(stack, "POST", path, {"customerId": new_customer()})
    assert status == 409 and other["error"]["code"] == "CUSTOMER_MISMATCH"
    status, withdrawn = await call(stack, "POST", path, {"customerId": customer})
    assert status == 200, withdrawn
    assert (withdrawn["status"], withdrawn["resolution"]) == ("RESOLVED", "WITHDRAWN")
    assert await call(stack, "POST", path, {"customerId": customer}) == (200, withdrawn)
    status, missing = await call(stack, "POST", "/v1/disputes/no-such/withdraw",
                                 {"customerId": customer})
    assert status == 404 and missing["error"]["code"] == "NOT_FOUND"
    feed, _ = await drain_events(stack, "0")
    assert [(e["type"], e.get("resolution")) for e in feed
            if e.get("disputeId") == dispute_id] == [("dispute.opened", None),
                                                     ("dispute.resolved", "WITHDRAWN")]


async def test_kaspis_refunds_resolve_a_dispute_once_they_cover_it(stack: Stack) -> None:
    customer, payment_id = await paid(stack, "150.00")
    early = await sim_refund(stack, payment_id, "10.00")  # before the dispute: not counted
    assert early["resultCode"] == "SUCCESS"
    dispute_id, other_id = new_id(), new_id()
    for one, amount in ((dispute_id, "50.00"), (other_id, "140.00")):
        status, _ = await open_dispute(stack, {"disputeId": one, "paymentId": payment_id,
                                               "customerId": customer, "reason": "short",
                                               "amount": amount})
        assert status == 201
    await sim_refund(stack, payment_id, "30.00")
    status, partly = await call(stack, "GET", f"/v1/disputes/{dispute_id}")
    assert (partly["status"], partly["refundedAmount"]) == ("OPEN", "30.00")
    refund = await sim_refund(stack, payment_id, "20.00")
    status, resolved = await call(stack, "GET", f"/v1/disputes/{dispute_id}")
    assert (resolved["status"], resolved["resolution"], resolved["refundedAmount"]) == (
        "RESOLVED", "REFUNDED", "50.00")
    assert refund["refundId"] in resolved["note"]
    status, still_open = await call(stack, "GET", f"/v1/disputes/{other_id}")
    assert (still_open["status"], still_open["refundedAmount"]) == ("OPEN", "50.00")
    status, late = await call(stack, "POST", f"/v1/disputes/{dispute_id}/withdraw",
                              {"customerId": customer})
    assert status == 409 and late["error"]["code"] == "INVALID_STATE"
    async with stack.pool.acquire() as conn:
        by = await conn.fetchval("SELECT resolved_by FROM disputes WHERE dispute_id = $1",
                                 dispute_id)
    assert by == f"refund:{refund['refundId']}"


async def test_an_operator_resolves_a_dispute_with_the_command(stack: Stack) -> None:
    customer, payment_id = await paid(stack)
    dispute_id, refunded_id = new_id(), new_id()
    for one in (dispute_id, refunded_id):
        await open_dispute(stack, {"disputeId": one, "paymentId": payment_id,
                                   "customerId": customer, "reason": "bad\x1b[31m coffee"})
    listed = await asyncio.to_thread(command, stack, "list", "--limit", "1000")
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if x.startswith(dispute_id))
    assert '"bad\\u001b[31m coffee"' in line and customer not in line  # escaped, masked

    refused = await asyncio.to_thread(command, stack, "resolve", dispute_id,
                                      "--resolution", "REFUNDED", "--note", "refunded?")
    assert refused.returncode == 1 and "refunded nothing" in refused.stdout
    async with stack.pool.acquire() as conn:
        journaled = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_journal")
    done = await asyncio.to_thread(command, stack, "resolve", dispute_id, "--resolution",
                                   "REJECTED", "--note", "the receipt shows one coffee",
                                   "--by", "aigerim")
    assert done.returncode == 0, done.stdout + done.stderr
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM audit_journal WHERE id > $1", journaled)
    assert row is not None and (row["actor"], row["via"], row["action"], row["subject"]) == (
        "aigerim", "cli", "dispute_resolved", f"dispute:{dispute_id}")
    status, shown = await call(stack, "GET", f"/v1/disputes/{dispute_id}")
    assert status == 200 and (shown["status"], shown["resolution"], shown["note"]) == (
        "RESOLVED", "REJECTED", "the receipt shows one coffee")
    again = await asyncio.to_thread(command, stack, "resolve", dispute_id, "--resolution",
                                    "REJECTED", "--note", "same")
    assert again.returncode == 0  # resolved so already: nothing more
    other = await asyncio.to_thread(command, stack, "resolve", dispute_id, "--resolution",
                                    "REFUNDED", "--note", "changed")
    assert other.returncode == 1 and "already RESOLVED as REJECTED" in other.stdout
    unknown = await asyncio.to_thread(command, stack, "resolve", "no-such", "--resolution",
                                      "REJECTED", "--note", "x")
    assert unknown.returncode == 1 and "not found" in unknown.stdout
    usage = await asyncio.to_thread(command, stack, "resolve", dispute_id, "--resolution",
                                    "WITHDRAWN", "--note", "x")
    assert usage.returncode == 2

    await sim_refund(stack, payment_id, "1.00")  # some of the payment back: REFUNDED may be said
    done = await asyncio.to_thread(command, stack, "resolve", refunded_id, "--resolution",
                                   "REFUNDED", "--note", "Kaspi refunded part of it")
    assert done.returncode == 0, done.stdout
    assert (await call(stack, "GET", f"/v1/disputes/{refunded_id}"))[1]["resolution"] == \
        "REFUNDED"


async def metric(stack: Stack, name: str) -> float:
    async with stack.http.get(stack.wallet_url + "/metrics") as resp:
        text = await resp.text()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith(name + " ")))


async def test_a_dispute_past_its_due_time_is_counted_overdue(stack: Stack) -> None:
    customer, payment_id = await paid(stack)
    dispute_id = new_id()
    await open_dispute(stack, {"disputeId": dispute_id, "paymentId": payment_id,
                               "customerId": customer, "reason": "no answer yet"})
    async with stack.pool.acquire() as conn:  # as if DISPUTE_RESPONSE_HOURS had passed
        await conn.execute("UPDATE disputes SET due_at = now() - interval '1 minute' "
                           "WHERE dispute_id = $1", dispute_id)
        overdue: int = await conn.fetchval(
            "SELECT count(*) FROM disputes WHERE status = 'OPEN' AND due_at <= now()")
    deadline = asyncio.get_running_loop().time() + 10
    while await metric(stack, "mpp_disputes_overdue") != overdue:
        assert asyncio.get_running_loop().time() < deadline, "the gauge never caught up"
        await asyncio.sleep(0.1)
    assert overdue >= 1 and await metric(stack, "mpp_disputes_open") >= overdue
