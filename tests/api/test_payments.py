"""The wallet payment path end to end: real PostgreSQL, the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import pytest

from mpp_server.serve import Runtime
from tests.support.helpers import (
    assert_books_balanced,
    balance,
    call,
    complete_payment,
    confirm,
    confirmed,
    deposit,
    fault,
    new_customer,
    new_qr,
    payment,
    scan,
    sim_payment,
    transfers_of,
    wait_status,
)
from tests.support.stack import Stack, server_env, settings_from

pytestmark = pytest.mark.usefixtures("clean_faults")


async def test_dynamic_qr_pays_the_scanned_amount(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "1000.00")
    qr = await new_qr(stack, "Dynamic", amount="250.50")
    scanned = await scan(stack, qr["qrCode"], customer)
    assert scanned["qrCodeType"] == "Dynamic"
    assert scanned["payment"]["amount"] == "250.50"
    assert scanned["payment"]["status"] == "SCANNED"
    assert scanned["merchant"]["merchantName"]
    payment_id = scanned["payment"]["paymentId"]

    status, body = await confirm(stack, payment_id, customer)
    assert status == 200, body
    assert body["status"] == "COMPLETED"
    assert body["amount"] == "250.50"
    assert body["linkReceipt"].startswith("https://")
    assert await balance(stack, customer) == "749.50"
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "COMPLETED" and kaspi["notifyCount"] == 1
    assert kaspi["mppPaymentId"] == body["mppPaymentId"]
    await assert_books_balanced(stack)


async def test_static_qr_takes_the_customers_whole_tenge_amount(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "500.00")
    qr = await new_qr(stack, "Static")
    scanned = await scan(stack, qr["qrCode"], customer)
    assert scanned["qrCodeType"] == "Static" and "amount" not in scanned["payment"]
    payment_id = scanned["payment"]["paymentId"]

    status, body = await confirm(stack, payment_id, customer)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR"
    status, body = await confirm(stack, payment_id, customer, amount="120.50")
    assert status == 422 and "whole" in body["error"]["message"]
    assert await balance(stack, customer) == "500.00"

    body = await confirmed(stack, payment_id, customer, amount="120")
    assert body["amount"] == "120.00"
    assert await balance(stack, customer) == "380.00"
    assert (await sim_payment(stack, payment_id))["amount"] == "120.00"


async def test_custom_qr_goes_through_checkout(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "5000.00")
    qr = await new_qr(stack, "Custom")
    scanned = await scan(stack, qr["qrCode"], customer)
    assert scanned["qrCodeType"] == "Custom"
    service = scanned["service"]
    params = {p["id"]: p for p in service["parameters"]}
    free_text = next(p for p in params.values() if not p.get("value") and not p.get("options"))
    dropdown = next(p for p in params.values() if p.get("options"))
    payment_id = scanned["payment"]["paymentId"]

    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "INVALID_STATE"

    bad_option = [{"id": free_text["id"], "value": "547RBA02"},
                  {"id": dropdown["id"], "value": "no-such-key"}]
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/checkout",
                              {"customerId": customer, "parameters": bad_option})
    assert status == 422, body

    chosen = [{"id": free_text["id"], "value": "547RBA02"},
              {"id": dropdown["id"], "value": dropdown["options"][0]["key"]}]
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/checkout",
                              {"customerId": customer, "parameters": chosen})
    assert status == 200, body
    assert body["status"] == "CHECKED_OUT" and body["canConfirmUntil"]
    amount = body["amount"]

    body = await confirmed(stack, payment_id, customer)
    assert body["amount"] == amount
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "COMPLETED" and kaspi["amount"] == amount


async def test_refund_qr_answers_the_refund_id(stack: Stack) -> None:
    customer = new_customer()
    qr = await new_qr(stack, "Refund")
    scanned = await scan(stack, qr["qrCode"], customer)
    assert scanned == {"qrCodeType": "Refund", "refund": {"refundId": qr["refundId"]},
                       **({"merchant": scanned["merchant"]} if "merchant" in scanned else {})}


async def test_kazakh_locale_gets_a_kazakh_receipt(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    scanned = await scan(stack, qr["qrCode"], customer, headers={"X-Locale": "kk-KZ"})
    status, body = await confirm(stack, scanned["payment"]["paymentId"], customer)
    assert status == 200 and body["linkReceipt"].endswith("&locale=kk"), body


async def test_cancel_tells_kaspi_cancelled_by_client(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/cancel",
                              {"customerId": customer})
    assert status == 200 and body["status"] == "CANCELLED" and body["kaspiAcknowledged"]
    assert (await sim_payment(stack, payment_id))["status"] == "CANCELLED"
    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "INVALID_STATE"
    assert await balance(stack, customer) == "100.00"


async def test_expired_payment_is_not_debited(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00", ttlSeconds=1)
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await asyncio.sleep(1.1)
    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "PAYMENT_EXPIRED", body
    assert await balance(stack, customer) == "100.00"
    assert (await payment(stack, payment_id))["status"] == "EXPIRED"
    assert await transfers_of(stack, "payment_debit", payment_id) == 0


async def test_expired_qr_code_is_refused_at_scan(stack: Stack) -> None:
    qr = await new_qr(stack, "Dynamic", amount="10.00", ttlSeconds=0.2)
    await asyncio.sleep(0.4)
    status, body = await call(stack, "POST", "/v1/scan",
                              {"qrCode": qr["qrCode"], "customerId": new_customer()})
    assert status == 410 and body["error"]["code"] == "EXPIRED_CODE", body


async def test_insufficient_funds_closes_the_payment_without_debit(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "50.00")
    qr = await new_qr(stack, "Dynamic", amount="50.01")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "INSUFFICIENT_FUNDS", body
    assert await balance(stack, customer) == "50.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    shown = await payment(stack, payment_id)
    assert shown["status"] == "DECLINED" and shown["declineReason"] == "INSUFFICIENT_FUNDS"
    assert shown["kaspiAcknowledged"]
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "FAILED" and kaspi["notifyCount"] == 1


async def test_kaspi_decline_returns_the_money(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="60.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await fault(stack, "notifyPayment", "error_code", 1, resultCode="RISK_REJECT")
    body = await confirmed(stack, payment_id, customer, wanted="DECLINED")
    assert body["declineReason"] == "RISK_REJECT"
    assert await balance(stack, customer) == "100.00"
    async with stack.pool.acquire() as conn:
        kinds = await conn.fetch("SELECT kind FROM transfers WHERE reference = $1 ORDER BY id",
                                 payment_id)
    assert [r["kind"] for r in kinds] == ["payment_debit", "payment_return"]
    await assert_books_balanced(stack)


async def test_customer_must_be_the_one_who_scanned(stack: Stack) -> None:
    customer, other = new_customer(), new_customer()
    await deposit(stack, other, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    status, body = await confirm(stack, payment_id, other)
    assert status == 409 and body["error"]["code"] == "CUSTOMER_MISMATCH"
    assert await balance(stack, other) == "100.00"


async def test_twenty_concurrent_confirms_debit_once(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="30.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    answers = await asyncio.gather(*(confirm(stack, payment_id, customer) for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    assert {body["status"] for _, body in answers} <= {"PENDING", "COMPLETED"}
    await wait_status(stack, payment_id, "COMPLETED")
    assert await balance(stack, customer) == "70.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 1
    assert (await sim_payment(stack, payment_id))["status"] == "COMPLETED"


async def test_notify_timeouts_are_retried_until_kaspi_answers(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="40.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    # Each timeout outlasts the client's 1 s timeout; the confirm budget is 3 s.
    await fault(stack, "notifyPayment", "timeout", 3, delayMs=1500)
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] in ("PENDING", "COMPLETED"), body
    done = await wait_status(stack, payment_id, "COMPLETED")
    assert done["linkReceipt"]
    assert await balance(stack, customer) == "60.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 1
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "COMPLETED" and kaspi["notifyCount"] >= 1


async def test_lost_reply_is_applied_once(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="25.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await fault(stack, "notifyPayment", "reset_after_processing", 1)
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200, body
    await wait_status(stack, payment_id, "COMPLETED")
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "COMPLETED" and kaspi["notifyCount"] == 2
    assert await balance(stack, customer) == "75.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 1
    async with stack.pool.acquire() as conn:
        completed = await conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'payment.completed' AND payment_id = $1",
            payment_id)
    assert completed == 1


async def test_http_500_and_unknown_exception_are_retried(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="5.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await fault(stack, "notifyPayment", "http500", 1)
    await fault(stack, "notifyPayment", "error_code", 1, resultCode="UNKNOWN_EXCEPTION")
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200, body
    await wait_status(stack, payment_id, "COMPLETED")
    assert await balance(stack, customer) == "95.00"


async def test_a_stopping_server_cancels_the_notify_attempt_in_flight(
        stack: Stack, isolated_db: str) -> None:
    # A server of its own on a database of its own: only its worker notifies, and the
    # test stops it. No inline attempt (budget 0): the worker claims the outbox row with a
    # lease (the Kaspi timeout and a margin), and its call meets a Kaspi that sits on it.
    env = {**server_env(isolated_db, stack.sim_url), "CONFIRM_BUDGET_MS": "0",
           "KASPI_TIMEOUT_MS": "20000"}
    runtime = Runtime(settings_from(env))
    await runtime.start()
    own = dataclasses.replace(stack, wallet_url=runtime.wallet_url)
    running = True
    watch = await asyncpg.connect(isolated_db)
    try:
        customer = new_customer()
        await deposit(own, customer, "100.00")
        qr = await new_qr(own, "Dynamic", amount="10.00")
        payment_id = (await scan(own, qr["qrCode"], customer))["payment"]["paymentId"]
        await fault(own, "notifyPayment", "timeout", 1, delayMs=15_000)
        status, body = await confirm(own, payment_id, customer)
        assert status == 200 and body["status"] == "PENDING", body
        row_sql = """SELECT attempts, last_error, next_attempt_at > now() + interval '10 s'
                            AS claimed
                       FROM notify_outbox WHERE payment_id = $1"""
        deadline = asyncio.get_running_loop().time() + 10
        while not await watch.fetchval(row_sql, payment_id, column=2):  # not yet taken
            assert asyncio.get_running_loop().time() < deadline, "the worker never took it"
            await asyncio.sleep(0.05)
        # The worker holds no lock and no transaction while Kaspi sits on the call.
        assert await watch.fetchrow("SELECT 1 FROM notify_outbox WHERE payment_id = $1 "
                                    "FOR UPDATE NOWAIT", payment_id) is not None
        await runtime.stop()
        running = False
        # The attempt was cancelled mid-call: nothing counted, the payment still PENDING,
        # and the row waits for the next process once its lease runs out.
        row = await watch.fetchrow(row_sql, payment_id)
        assert row is not None and row["attempts"] == 0 and row["last_error"] is None
        assert row["claimed"]
        assert await watch.fetchval("SELECT status FROM payments WHERE payment_id = $1",
                                    payment_id) == "PENDING"
    finally:
        await watch.close()
        if running:
            await runtime.stop()


async def test_repeated_confirm_after_completion_is_the_same_answer(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "10.00")
    status, again = await confirm(stack, done["paymentId"], customer)
    assert status == 200 and again["status"] == "COMPLETED"
    assert again["linkReceipt"] == done["linkReceipt"]
    assert await balance(stack, customer) == "0.00"


async def test_events_feed_lists_completed_payments_once(stack: Stack) -> None:
    status, first = await call(stack, "GET", "/v1/events?limit=1000")
    assert status == 200
    cursor = first["next"]
    while first["events"]:
        status, first = await call(stack, "GET", f"/v1/events?after={cursor}&limit=1000")
        cursor = first["next"]
    customer = new_customer()
    done = await complete_payment(stack, customer, "7.00")
    seen: list[dict[str, Any]] = []
    for _ in range(50):
        status, page = await call(stack, "GET", f"/v1/events?after={cursor}")
        assert status == 200
        seen += page["events"]
        cursor = page["next"]
        if any(e["paymentId"] == done["paymentId"] for e in seen):
            break
        await asyncio.sleep(0.05)
    mine = [e for e in seen if e["paymentId"] == done["paymentId"]]
    assert [e["type"] for e in mine] == ["payment.completed"]
    assert mine[0]["amount"] == "7.00" and mine[0]["customerId"] == customer
