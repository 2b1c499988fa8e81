"""Issue 27 item 4: which refusal `/refund` answers (regulation §4.4's codes):
PARAM_ILLEGAL for a wrong parameter, PROCESS_FAIL for a business failure that must not
be retried. docs/refunds.md has the table; each row is a case here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mpp_server.metrics import MONEY_ALARMS
from tests.support.helpers import (
    balance,
    call,
    complete_payment,
    confirm,
    deposit,
    fault,
    new_customer,
    new_qr,
    payment,
    post_refund,
    refund_body,
    scan,
    transfers_of,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.usefixtures("clean_faults")
Case = Callable[[Any], Awaitable[tuple[str, dict[str, Any], str]]]


async def assert_refused_and_repeated(stack: Stack, customer: str, body: dict[str, Any],
                                      code: str, why: str) -> None:
    """Refused with `code`, nothing credited, and a repeat gets the very same answer."""
    before = await balance(stack, customer)
    status, answer = await post_refund(stack, body)
    assert status == 200 and answer["result"]["resultCode"] == code, answer
    assert why in answer["result"]["resultMessage"]
    assert await transfers_of(stack, "refund_credit", body["refundId"]) == 0
    assert await post_refund(stack, body) == (status, answer)
    assert await balance(stack, customer) == before


# ---- PARAM_ILLEGAL: a parameter of the request is wrong ------------------------------------

async def unknown_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer = new_customer()
    await deposit(stack, customer, "1.00")
    return customer, refund_body({"paymentId": "no-such-" + customer}, customer, "1.00"), (
        "unknown paymentId")


async def another_customer(stack: Stack) -> tuple[str, dict[str, Any], str]:
    done = await complete_payment(stack, new_customer(), "20.00")
    stranger = new_customer()
    await deposit(stack, stranger, "1.00")
    return stranger, refund_body(done, stranger, "1.00"), "not the payment's customer"


async def zero_amount(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer = new_customer()
    done = await complete_payment(stack, customer, "20.00")
    return customer, refund_body(done, customer, "0.00"), "must be positive"


@pytest.mark.parametrize("case", [unknown_payment, another_customer, zero_amount],
                         ids=lambda c: c.__name__)
async def test_a_wrong_parameter_is_param_illegal(stack: Stack, case: Case) -> None:
    customer, body, why = await case(stack)
    await assert_refused_and_repeated(stack, customer, body, "PARAM_ILLEGAL", why)


async def test_a_refund_id_used_with_other_arguments_is_param_illegal(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "20.00")
    body = refund_body(done, customer, "5.00")
    _, answer = await post_refund(stack, body)
    assert answer["result"]["resultCode"] == "SUCCESS", answer
    other = {**body, "refundAmount": "6.00"}
    status, answer = await post_refund(stack, other)
    assert status == 200 and answer["result"]["resultCode"] == "PARAM_ILLEGAL", answer
    assert "refundId was already used" in answer["result"]["resultMessage"]
    assert await balance(stack, customer) == "5.00"


# ---- PROCESS_FAIL: the payment refuses it; repeating cannot help ---------------------------

async def over_what_remains(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer = new_customer()
    done = await complete_payment(stack, customer, "20.00")
    _, answer = await post_refund(stack, refund_body(done, customer, "15.00"))
    assert answer["result"]["resultCode"] == "SUCCESS", answer
    return customer, refund_body(done, customer, "5.01"), "500 tiyn left to refund"


async def scanned(stack: Stack) -> tuple[str, str]:
    """A customer holding 10.00 and a SCANNED Dynamic payment of 30.00."""
    customer = new_customer()
    await deposit(stack, customer, "10.00")
    qr = await new_qr(stack, "Dynamic", amount="30.00")
    return customer, str((await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"])


def refund_of(customer: str, payment_id: str, status: str
              ) -> tuple[str, dict[str, Any], str]:
    return customer, refund_body({"paymentId": payment_id}, customer, "30.00"), (
        f"payment is {status}")


async def declined_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer, payment_id = await scanned(stack)
    _, body = await confirm(stack, payment_id, customer)
    assert body["error"]["code"] == "INSUFFICIENT_FUNDS", body
    return refund_of(customer, payment_id, "DECLINED")


async def cancelled_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer, payment_id = await scanned(stack)
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/cancel",
                              {"customerId": customer})
    assert status == 200 and body["status"] == "CANCELLED", body
    return refund_of(customer, payment_id, "CANCELLED")


async def open_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    return refund_of(*await scanned(stack), "SCANNED")


async def expired_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer = new_customer()
    await deposit(stack, customer, "10.00")
    payment_id = "expired-" + uuid.uuid4().hex[:12]
    # Kaspi's deadline is already over: confirm finds it EXPIRED.
    await fault(stack, "scan", "replace_answer", 1, rawBody=json.dumps({
        "result": {"resultCode": "SUCCESS", "resultMessage": "success"},
        "qrCodeType": "Static", "payment": {"paymentId": payment_id,
                                            "canConfirmUntil": "2024-02-19T15:57:41+06"},
        "merchant": {"merchantId": "1", "merchantName": "Coffee Bar", "merchantMCC": "5812",
                     "authorType": "POS"}}))
    await scan(stack, (await new_qr(stack, "Static"))["qrCode"], customer)
    _, body = await confirm(stack, payment_id, customer, amount="5")
    assert body["error"]["code"] == "PAYMENT_EXPIRED", body
    return customer, refund_body({"paymentId": payment_id}, customer, "5.00"), (
        "payment is EXPIRED")


async def failed_payment(stack: Stack) -> tuple[str, dict[str, Any], str]:
    customer = new_customer()
    await deposit(stack, customer, "10.00")
    qr = await new_qr(stack, "Custom")
    payment_id = str((await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"])
    await fault(stack, "checkout", "error_code", 1, resultCode="PROCESS_FAIL")
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/checkout", {
        "customerId": customer, "parameters": [{"id": 3932, "value": "547RBA02"},
                                               {"id": 3933, "value": "1h"}]})
    assert status == 409 and body["error"]["code"] == "PROCESS_FAIL", body
    return refund_of(customer, payment_id, "FAILED")


@pytest.mark.parametrize("case", [over_what_remains, declined_payment, cancelled_payment,
                                  open_payment, expired_payment, failed_payment],
                         ids=lambda c: c.__name__)
async def test_a_business_failure_is_process_fail(stack: Stack, case: Case) -> None:
    alarms = MONEY_ALARMS.labels("refund_for_declined_payment")._value.get()
    customer, body, why = await case(stack)
    await assert_refused_and_repeated(stack, customer, body, "PROCESS_FAIL", why)
    # Only a refund of a payment we declined (and returned) is a money alarm.
    expected = alarms + (1 if case is declined_payment else 0)
    assert MONEY_ALARMS.labels("refund_for_declined_payment")._value.get() == expected
    refunded = "15.00" if case is over_what_remains else "0.00"
    assert (await payment(stack, body["paymentId"]))["refundedAmount"] == refunded


# ---- answers stored before this rule keep their code ----------------------------------------

async def test_a_refusal_stored_before_the_table_is_repeated_as_it_was(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "20.00")
    body = refund_body(done, customer, "25.00")
    # An earlier version answered a refund over the payment PARAM_ILLEGAL and stored it.
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO refunds (refund_id, payment_id, customer_id, amount_tiyn, status,
                                    result_code, result_message, link_receipt)
               VALUES ($1, $2, $3, 2500, 'RECEIVED', 'PROCESS_FAIL', 'in process', $4)""",
            body["refundId"], done["paymentId"], customer, body["linkReceipt"])
        await conn.execute(
            """UPDATE refunds SET status = 'REFUSED', result_code = 'PARAM_ILLEGAL',
                      result_message = 'refund would exceed the payment: 2000 tiyn left'
                WHERE refund_id = $1""", body["refundId"])
    status, answer = await post_refund(stack, body)
    assert status == 200 and answer["result"] == {
        "resultCode": "PARAM_ILLEGAL",
        "resultMessage": "refund would exceed the payment: 2000 tiyn left"}
    assert await balance(stack, customer) == "0.00"
