"""Issue 27 item 6: Custom QR payments after checkout, over the simulator. A Custom
payment is refunded by Kaspi's /refund like any other; its cancellation goes through the
merchant (regulation §3's warning: the customer asks the merchant, the merchant cancels
through Kaspi, Kaspi calls the MPP's /refund); before confirm the customer backs out with
cancel (§4.3, CANCELLED_BY_CLIENT)."""

from __future__ import annotations

import pytest

from tests.support.helpers import (
    assert_books_balanced,
    balance,
    call,
    confirm,
    deposit,
    drain_events,
    new_customer,
    new_qr,
    payment,
    scan,
    sim,
    sim_payment,
    transfers_of,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.usefixtures("clean_faults")
HOURLY = [{"id": 3932, "value": "547RBA02"}, {"id": 3933, "value": "1h"}]  # 500.00


async def checked_out(stack: Stack, customer: str) -> str:
    qr = await new_qr(stack, "Custom")
    payment_id = str((await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"])
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/checkout",
                              {"customerId": customer, "parameters": HOURLY})
    assert status == 200 and (body["status"], body["amount"]) == ("CHECKED_OUT", "500.00")
    return payment_id


async def test_custom_payment_refunded_then_cancelled_through_its_merchant(
        stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "800.00")
    payment_id = await checked_out(stack, customer)
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "COMPLETED", body
    assert await balance(stack, customer) == "300.00"
    _, cursor = await drain_events(stack, "0")

    status, refund = await sim(stack, "POST", "/sim/refunds",
                               {"paymentId": payment_id, "amount": "120.00"})
    assert status == 200 and refund["resultCode"] == "SUCCESS", refund
    # The merchant cancels the rest through Kaspi, which calls our /refund for it.
    status, cancel = await sim(stack, "POST", f"/sim/payments/{payment_id}/merchant-cancel")
    assert status == 200 and cancel["resultCode"] == "SUCCESS", cancel

    assert await balance(stack, customer) == "800.00"
    shown = await payment(stack, payment_id)
    assert (shown["status"], shown["refundedAmount"]) == ("COMPLETED", "500.00")
    assert [(r["refundId"], r["amount"]) for r in shown["refunds"]] == [
        (refund["refundId"], "120.00"), (cancel["refundId"], "380.00")]
    for refund_id in (refund["refundId"], cancel["refundId"]):
        assert await transfers_of(stack, "refund_credit", refund_id) == 1
    events, _ = await drain_events(stack, cursor)
    assert [(e["type"], e["amount"]) for e in events if e["paymentId"] == payment_id] == [
        ("refund.credited", "120.00"), ("refund.credited", "380.00")]
    kaspi = await sim_payment(stack, payment_id)
    assert (kaspi["qrCodeType"], kaspi["refundedAmount"]) == ("Custom", "500.00")
    # Nothing is left to cancel.
    status, again = await sim(stack, "POST", f"/sim/payments/{payment_id}/merchant-cancel")
    assert status == 400, again
    assert await balance(stack, customer) == "800.00"
    await assert_books_balanced(stack)


async def test_checked_out_custom_payment_cancelled_by_the_customer(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "800.00")
    payment_id = await checked_out(stack, customer)
    status, body = await call(stack, "POST", f"/v1/payments/{payment_id}/cancel",
                              {"customerId": customer})
    assert status == 200 and body["status"] == "CANCELLED", body
    assert body["kaspiAcknowledged"]
    kaspi = await sim_payment(stack, payment_id)
    assert (kaspi["status"], kaspi["notifyCount"]) == ("CANCELLED", 1)
    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "INVALID_STATE", body
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    assert await balance(stack, customer) == "800.00"
