"""Logs are JSON lines and never carry a full customerId."""

from __future__ import annotations

import json
import logging

import pytest

from mpp_server.logs import JsonFormatter, mask_customer, mask_customer_ids_in_json
from tests.support.helpers import confirm, deposit, new_customer, new_qr, scan, sim
from tests.support.stack import Stack


def test_mask_keeps_four_characters() -> None:
    assert mask_customer("900912345678") == "9009********"
    assert mask_customer("12") == "12"
    masked = mask_customer_ids_in_json('{"customerId": "900912345678", "customerId ": "77"}')
    assert "900912345678" not in masked and "9009********" in masked


async def test_payment_logs_never_show_the_customer_id(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    customer = new_customer()
    caplog.set_level(logging.DEBUG)
    await deposit(stack, customer, "10.00")
    qr = await new_qr(stack, "Dynamic", amount="20.00")  # more than the balance
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    status, _ = await confirm(stack, payment_id, customer)
    assert status == 409
    qr = await new_qr(stack, "Dynamic", amount="5.00")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    await sim(stack, "POST", "/sim/faults", {"endpoint": "notifyPayment", "mode": "error_code",
                                             "times": 1, "resultCode": "RISK_REJECT"})
    status, _ = await confirm(stack, payment_id, customer)
    assert status == 200
    ours = [r for r in caplog.records if r.name.startswith("mpp_server")
            and not r.name.startswith("mpp_server.devtools.simulator")]
    assert ours, "the payment path logged nothing"
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in ours]
    assert all(json.loads(line)["msg"] for line in lines)
    assert not [line for line in lines if customer in line]
    assert any(mask_customer(customer) in line for line in lines)
