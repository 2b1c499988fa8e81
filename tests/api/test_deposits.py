"""Deposits create money: only DEPOSIT_API_TOKENS may make them, a deposit token makes
no wallet calls, and one deposit is at most DEPOSIT_MAX_AMOUNT."""

from __future__ import annotations

from tests.support.helpers import (
    balance,
    call,
    new_customer,
)
from tests.support.stack import Stack


async def test_wallet_token_cannot_deposit(stack: Stack) -> None:
    customer = new_customer()
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "steal-" + customer, "amount": "1000.00"})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404  # no account, no money


async def test_deposit_token_deposits_but_makes_no_wallet_calls(stack: Stack) -> None:
    customer = new_customer()
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "core-" + customer, "amount": "25.00"},
                              token=stack.deposit_token)
    assert status == 201 and body["balance"] == "25.00", body
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}",
                              token=stack.deposit_token)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    assert await balance(stack, customer) == "25.00"


async def test_deposit_above_deposit_max_amount_is_refused(stack: Stack) -> None:
    customer = new_customer()
    limit = stack.runtime.settings.deposit_max_amount
    assert limit == "1000000.00"  # the default
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "big-" + customer, "amount": "1000000.01"},
                              token=stack.deposit_token)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body
    assert "DEPOSIT_MAX_AMOUNT" in body["error"]["message"]
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404
    # The largest deposit is far over an unidentified customer's balance cap.
    status, _ = await call(stack, "PUT", f"/v1/accounts/{customer}/identification",
                           {"level": "FULL"}, token=stack.deposit_token)
    assert status == 200
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "max-" + customer, "amount": limit},
                              token=stack.deposit_token)
    assert status == 201 and body["balance"] == limit, body



