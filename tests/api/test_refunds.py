"""Inbound POST /refund from Kaspi: exactly one credit per refundId."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from mpp_server.serve import create_refund_app
from mpp_server.services import Services
from tests.support.helpers import (
    assert_books_balanced,
    balance,
    complete_payment,
    confirm,
    deposit,
    new_customer,
    new_qr,
    payment,
    post_refund,
    refund_body,
    scan,
    sim,
    sim_refund,
    transfers_of,
)
from tests.support.stack import Stack, server_env, settings_from

pytestmark = pytest.mark.usefixtures("clean_faults")


async def test_full_refund_credits_the_customer(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "300.00")
    answer = await sim_refund(stack, done["paymentId"], "300.00")
    assert answer["resultCode"] == "SUCCESS", answer
    assert await balance(stack, customer) == "300.00"
    shown = await payment(stack, done["paymentId"])
    assert shown["refundedAmount"] == "300.00"
    assert [(r["refundId"], r["amount"]) for r in shown["refunds"]] == [
        (answer["refundId"], "300.00")]
    await assert_books_balanced(stack)


async def test_partial_refunds_up_to_the_total_then_refused(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "100.00")
    for amount in ("30.00", "30.00", "40.00"):
        answer = await sim_refund(stack, done["paymentId"], amount)
        assert answer["resultCode"] == "SUCCESS", answer
    assert await balance(stack, customer) == "100.00"
    # Kaspi's own sum check is bypassed to prove the MPP's.
    answer = await sim_refund(stack, done["paymentId"], "0.01", skipSumCheck=True)
    assert answer["resultCode"] == "PROCESS_FAIL", answer
    assert "exceed" in answer["resultMessage"]
    assert await balance(stack, customer) == "100.00"
    shown = await payment(stack, done["paymentId"])
    assert shown["refundedAmount"] == "100.00" and len(shown["refunds"]) == 3


async def test_twenty_concurrent_copies_credit_once(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "50.00")
    body = refund_body(done, customer, "20.00")
    answers = await asyncio.gather(*(post_refund(stack, body) for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    assert all(a == answers[0][1] for _, a in answers)
    assert answers[0][1]["result"]["resultCode"] == "SUCCESS"
    assert await transfers_of(stack, "refund_credit", body["refundId"]) == 1
    assert await balance(stack, customer) == "20.00"
    # A later repeat: the same answer, no second credit.
    assert await post_refund(stack, body) == answers[0]
    assert await balance(stack, customer) == "20.00"


async def test_concurrent_partial_refunds_never_exceed_the_payment(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "100.00")
    bodies = [refund_body(done, customer, "30.00") for _ in range(8)]
    answers = await asyncio.gather(*(post_refund(stack, b) for b in bodies))
    codes = [a["result"]["resultCode"] for _, a in answers]
    assert codes.count("SUCCESS") == 3 and codes.count("PROCESS_FAIL") == 5
    assert await balance(stack, customer) == "90.00"
    assert (await payment(stack, done["paymentId"]))["refundedAmount"] == "90.00"


async def test_same_refund_id_with_another_amount_is_refused(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "50.00")
    body = refund_body(done, customer, "10.00")
    status, first = await post_refund(stack, body)
    assert status == 200 and first["result"]["resultCode"] == "SUCCESS"
    status, second = await post_refund(stack, {**body, "refundAmount": "11.00"})
    assert status == 200 and second["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert await balance(stack, customer) == "10.00"
    assert (await payment(stack, done["paymentId"]))["refundedAmount"] == "10.00"


async def test_unknown_payment_and_customer_mismatch_are_refused(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "50.00")
    unknown = refund_body({"paymentId": "no-such-payment"}, customer, "1.00")
    status, answer = await post_refund(stack, unknown)
    assert status == 200 and answer["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert "unknown paymentId" in answer["result"]["resultMessage"]
    stranger = new_customer()
    status, answer = await post_refund(stack, refund_body(done, stranger, "1.00"))
    assert status == 200 and answer["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert await balance(stack, customer) == "0.00"
    assert (await payment(stack, done["paymentId"]))["refundedAmount"] == "0.00"


async def test_refund_of_a_pending_payment_completes_it(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="80.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    # Kaspi processes the notify but every reply is lost: we stay PENDING.
    await sim(stack, "POST", "/sim/faults", {"endpoint": "notifyPayment",
                                             "mode": "reset_after_processing", "times": 1000})
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "PENDING", body
    answer = await sim_refund(stack, payment_id, "80.00")
    assert answer["resultCode"] == "SUCCESS", answer
    shown = await payment(stack, payment_id)
    assert shown["status"] == "COMPLETED" and shown["refundedAmount"] == "80.00"
    assert await balance(stack, customer) == "100.00"
    # Now Kaspi's reply gets through: the receipt is recorded, nothing declined.
    await sim(stack, "DELETE", "/sim/faults")
    for _ in range(100):
        shown = await payment(stack, payment_id)
        if shown["kaspiAcknowledged"]:
            break
        await asyncio.sleep(0.05)
    assert shown["status"] == "COMPLETED" and shown["linkReceipt"], shown
    assert await balance(stack, customer) == "100.00"
    await assert_books_balanced(stack)


async def test_pending_payment_refunded_is_not_declined_by_a_late_notify(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await sim(stack, "POST", "/sim/faults", {"endpoint": "notifyPayment", "mode": "http500",
                                             "times": 1000})
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "PENDING"
    status, answer = await post_refund(stack, refund_body({"paymentId": payment_id},
                                                          customer, "10.00"))
    assert answer["result"]["resultCode"] == "SUCCESS"
    await sim(stack, "DELETE", "/sim/faults")
    await sim(stack, "POST", "/sim/faults", {"endpoint": "notifyPayment", "mode": "error_code",
                                             "times": 1, "resultCode": "RISK_REJECT"})
    for _ in range(100):
        shown = await payment(stack, payment_id)
        if shown["kaspiAcknowledged"]:
            break
        await asyncio.sleep(0.05)
    assert shown["status"] == "COMPLETED" and shown["kaspiAcknowledged"]
    assert await balance(stack, customer) == "100.00"  # 90 left + 10 refunded, no return


async def test_lost_refund_reply_is_retried_and_credits_once(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "60.00")
    answer = await sim_refund(stack, done["paymentId"], "60.00", loseReplies=2)
    assert answer["resultCode"] == "SUCCESS" and answer["attempts"] == 3, answer
    assert await transfers_of(stack, "refund_credit", answer["refundId"]) == 1
    assert await balance(stack, customer) == "60.00"


async def test_regulation_example_shape_is_accepted(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "100.00")
    answer = await sim_refund(stack, done["paymentId"], "100.00", amountAsNumber=True,
                              trailingSpaceKeys=True)
    assert answer["resultCode"] == "SUCCESS", answer
    assert await balance(stack, customer) == "100.00"


async def test_refund_emits_an_event_and_keeps_a_masked_request_log(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "10.00")
    body = refund_body(done, customer, "4.00")
    status, _ = await post_refund(stack, body)
    assert status == 200
    async with stack.pool.acquire() as conn:
        event = await conn.fetchrow("SELECT * FROM events WHERE refund_id = $1",
                                    body["refundId"])
        logged = await conn.fetchrow(
            "SELECT * FROM inbound_requests WHERE body_masked LIKE '%' || $1 || '%'",
            body["refundId"])
    assert event is not None and logged is not None
    assert event["type"] == "refund.credited" and event["amount_tiyn"] == 400
    assert logged["http_status"] == 200 and logged["answer"]["result"]["resultCode"] == "SUCCESS"
    assert customer not in logged["body_masked"] and customer[:4] + "*" in logged["body_masked"]
    with pytest.raises(Exception, match="kept at least 30 days"):
        async with stack.pool.acquire() as conn:
            await conn.execute("DELETE FROM inbound_requests WHERE id = $1", logged["id"])


@pytest.mark.parametrize(("raw", "why"), [
    (b"{not json", "malformed"),
    (b"[]", "object"),
    (b'{"customerId": "1", "paymentId": "p", "refundId": "r", "linkReceipt": "x"}',
     "refundAmount"),
    (b'{"customerId": "1234567890123", "paymentId": "p", "refundId": "r",'
     b' "refundAmount": "1.00", "linkReceipt": "x"}', "customerId"),
    (b'{"customerId": "1", "paymentId": "p", "refundId": "r", "refundAmount": "-1.00",'
     b' "linkReceipt": "x"}', "refundAmount"),
    (b'{"customerId": "1", "paymentId": "p", "refundId": "r", "refundAmount": "1.001",'
     b' "linkReceipt": "x"}', "refundAmount"),
])
async def test_bad_refund_requests_get_param_illegal(stack: Stack, raw: bytes, why: str) -> None:
    async with stack.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM refunds")
    status, answer = await post_refund(stack, raw=raw)
    assert status == 400 and answer["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert why.lower() in answer["result"]["resultMessage"].lower()
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refunds") == before


async def test_oversized_body_is_refused(stack: Stack) -> None:
    status, answer = await post_refund(stack, raw=b'{"x": "' + b"a" * 70_000 + b'"}')
    assert status == 413 and answer["result"]["resultCode"] == "PARAM_ILLEGAL"


async def test_source_outside_allowed_networks_gets_403_and_nothing_is_written(
        stack: Stack) -> None:
    env = server_env(stack.database_url, stack.sim_url)
    env["KASPI_ALLOWED_NETWORKS"] = "192.0.2.0/24"
    services = Services(stack.pool, stack.services.kaspi, settings_from(env),
                        stack.services.outbox, stack.services.journal)
    runner = web.AppRunner(create_refund_app(services))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/refund"
    customer = new_customer()
    done = await complete_payment(stack, customer, "10.00")
    body = refund_body(done, customer, "10.00")
    async with stack.pool.acquire() as conn:
        logged_before = await conn.fetchval("SELECT count(*) FROM inbound_requests")
    try:
        async with stack.http.post(url, json=body) as resp:
            assert resp.status == 403
    finally:
        await runner.cleanup()
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM inbound_requests") == logged_before
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE refund_id = $1",
                                   body["refundId"]) == 0
    assert await balance(stack, customer) == "0.00"


async def test_books_balance_after_refunds(stack: Stack) -> None:
    await assert_books_balanced(stack)
