"""Kaspi's /refund at its edges: a key given twice, a missing receipt."""

from __future__ import annotations

import pytest

from tests.support.helpers import (
    balance,
    complete_payment,
    metric_value,
    new_customer,
    post_refund,
    transfers_of,
)
from tests.support.stack import Stack


async def test_refund_with_refund_amount_given_twice_is_param_illegal(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "50.00")
    refund_id = "dup-" + new_customer()
    raw = (f'{{"customerId": "{customer}", "paymentId": "{done["paymentId"]}", '
           f'"refundAmount": "1.00", "refundId": "{refund_id}", "linkReceipt": "l", '
           f'"refundAmount": "50.00"}}').encode()
    status, body = await post_refund(stack, raw=raw)
    assert status == 400 and body["result"]["resultCode"] == "PARAM_ILLEGAL", body
    assert "refundAmount" in body["result"]["resultMessage"]
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE refund_id = $1",
                                   refund_id) == 0
    assert await balance(stack, customer) == "0.00"


@pytest.mark.parametrize("link", [None, ""])
async def test_refund_without_link_receipt_is_credited_and_counted(
        stack: Stack, link: str | None) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "30.00")
    body = {"customerId": customer, "paymentId": done["paymentId"],
            "refundAmount": "30.00", "refundId": "nolink-" + new_customer()}
    if link is not None:
        body["linkReceipt"] = link
    counted = metric_value("mpp_kaspi_defects_total", message="refund",
                           field="linkReceipt", defect="missing")
    status, answer = await post_refund(stack, body)
    assert status == 200 and answer["result"]["resultCode"] == "SUCCESS", answer
    assert await balance(stack, customer) == "30.00"
    assert await transfers_of(stack, "refund_credit", body["refundId"]) == 1
    assert metric_value("mpp_kaspi_defects_total", message="refund", field="linkReceipt",
                        defect="missing") == counted + 1
    # A repeat: the same answer, no second credit.
    assert await post_refund(stack, body) == (status, answer)
    assert await balance(stack, customer) == "30.00"


