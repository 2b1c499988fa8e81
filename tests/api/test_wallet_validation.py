"""Bad input on the wallet API: the contract's error, a 4xx, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helpers import call, deposit, new_customer, new_qr, scan
from tests.support.stack import Stack


async def row_counts(stack: Stack, *customers: str) -> tuple[int, int, int, int]:
    """What a request for `customers` could write: their payments, ledger entries,
    accounts and notify outbox rows. Not the whole database's: the session's workers
    finish other tests' payments meanwhile (outbox rows go, returns are posted)."""
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM payments WHERE customer_id = ANY($1)) AS p,
                      (SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id
                        WHERE a.customer_id = ANY($1)) AS e,
                      (SELECT count(*) FROM accounts WHERE customer_id = ANY($1)) AS a,
                      (SELECT count(*) FROM notify_outbox JOIN payments USING (payment_id)
                        WHERE customer_id = ANY($1)) AS o""", list(customers))
    assert row is not None
    return row["p"], row["e"], row["a"], row["o"]


@pytest.fixture
async def dynamic_payment(stack: Stack) -> tuple[str, str]:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00")
    return customer, (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]


async def test_missing_or_wrong_token_is_401(stack: Stack) -> None:
    for token in (None, "wrong-token"):
        status, body = await call(stack, "GET", "/v1/accounts/123", token=token)
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    status, _ = await call(stack, "GET", "/healthz", token=None)
    assert status == 200


BAD_DEPOSITS = [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"depositId": "d1", "amount": "1.00", "extra": 1}', "extra"),
    (b'{"depositId": "d1", "amount": "-1.00"}', "negative"),
    (b'{"depositId": "d1", "amount": "1.005"}', "two decimals"),
    (b'{"depositId": "d1", "amount": "0.00"}', "positive"),
    (b'{"depositId": "d1", "amount": 1e3}', "two decimals"),
    (b'{"depositId": "d1", "amount": NaN}', "malformed"),
    (b'{"depositId": 5, "amount": "1.00"}', "depositId"),
    (b'{"depositId": "' + b"x" * 65 + b'", "amount": "1.00"}', "depositId"),
    (b'{"amount": "1.00"}', "depositId"),
]


@pytest.mark.parametrize(("raw", "why"), BAD_DEPOSITS)
async def test_bad_deposit_is_refused_and_writes_nothing(stack: Stack, raw: bytes,
                                                         why: str) -> None:
    customer = new_customer()
    before = await row_counts(stack, customer)
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits", raw=raw,
                              token=stack.deposit_token)
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert why.lower() in body["error"]["message"].lower(), body
    assert await row_counts(stack, customer) == before


async def test_over_long_customer_id_is_refused(stack: Stack) -> None:
    before = await row_counts(stack, "1234567890123", "1")
    status, body = await call(stack, "POST", "/v1/accounts/1234567890123/deposits",
                              {"depositId": "d-long", "amount": "1.00"},
                              token=stack.deposit_token)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR"
    status, body = await call(stack, "POST", "/v1/scan",
                              {"qrCode": "x", "customerId": "1234567890123"})
    assert status == 422 and "customerId" in body["error"]["message"]
    status, body = await call(stack, "POST", "/v1/scan",
                              {"qrCode": "x" * 129, "customerId": "1"})
    assert status == 422 and "qrCode" in body["error"]["message"]
    assert await row_counts(stack, "1234567890123", "1") == before


async def test_deposit_is_idempotent_on_deposit_id(stack: Stack) -> None:
    customer = new_customer()
    body = {"depositId": "dep-idem-" + customer, "amount": "10.00"}
    status, first = await call(stack, "POST", f"/v1/accounts/{customer}/deposits", body,
                              token=stack.deposit_token)
    assert status == 201 and first["balance"] == "10.00"
    status, again = await call(stack, "POST", f"/v1/accounts/{customer}/deposits", body,
                              token=stack.deposit_token)
    assert status == 200 and again["balance"] == "10.00"
    status, clash = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                               {**body, "amount": "11.00"}, token=stack.deposit_token)
    assert status == 409 and clash["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    status, shown = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert shown == {"customerId": customer, "balance": "10.00", "currency": "KZT",
                     "identificationLevel": "NONE"}


async def test_unknown_payment_and_account_are_404(stack: Stack) -> None:
    for method, path, body in [
        ("GET", "/v1/payments/no-such-payment", None),
        ("POST", "/v1/payments/no-such-payment/confirm", {"customerId": "1"}),
        ("POST", "/v1/payments/no-such-payment/cancel", {"customerId": "1"}),
        ("GET", "/v1/accounts/999999999999", None),
    ]:
        status, answer = await call(stack, method, path, body)
        assert status == 404 and answer["error"]["code"] == "NOT_FOUND", (path, answer)


@pytest.mark.parametrize(("body", "why"), [
    ({"customerId": "1", "amount": "-5"}, "negative"),
    ({"customerId": "1", "amount": "5.123"}, "two decimals"),
    ({"customerId": "1", "amount": True}, "amount"),
    ({"customerId": 7}, "customerId"),
    ({"customerId": "1", "unexpected": "x"}, "unexpected"),
])
async def test_bad_confirm_is_refused_and_writes_nothing(
        stack: Stack, dynamic_payment: tuple[str, str], body: dict[str, Any], why: str) -> None:
    customer, payment_id = dynamic_payment
    before = await row_counts(stack, customer, "1")
    status, answer = await call(stack, "POST", f"/v1/payments/{payment_id}/confirm", body)
    assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR"
    assert why.lower() in answer["error"]["message"].lower(), answer
    assert await row_counts(stack, customer, "1") == before


async def test_dynamic_confirm_with_another_amount_is_refused(
        stack: Stack, dynamic_payment: tuple[str, str]) -> None:
    customer, payment_id = dynamic_payment
    before = await row_counts(stack, customer)
    status, answer = await call(stack, "POST", f"/v1/payments/{payment_id}/confirm",
                                {"customerId": customer, "amount": "9.00"})
    assert status == 422 and "differs" in answer["error"]["message"]
    assert await row_counts(stack, customer) == before


async def test_bad_locale_and_events_cursor_are_refused(stack: Stack) -> None:
    status, answer = await call(stack, "POST", "/v1/scan", {"qrCode": "x", "customerId": "1"},
                                headers={"X-Locale": "en-US"})
    assert status == 422 and "X-Locale" in answer["error"]["message"]
    for query in ("after=garbage", "limit=0", "limit=abc", "limit=100000"):
        status, answer = await call(stack, "GET", f"/v1/events?{query}")
        assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR", query


async def test_kaspi_scan_errors_pass_through(stack: Stack) -> None:
    status, answer = await call(stack, "POST", "/v1/scan",
                                {"qrCode": "not-a-known-token", "customerId": "1"})
    assert status == 422 and answer["error"]["code"] == "INVALID_TOKEN"


async def test_scan_without_kaspi_answer_is_503(stack: Stack) -> None:
    async with stack.http.post(stack.sim_url + "/sim/faults",
                               json={"endpoint": "scan", "mode": "http500", "times": 1}):
        pass
    qr = await new_qr(stack, "Dynamic", amount="1.00")
    status, answer = await call(stack, "POST", "/v1/scan",
                                {"qrCode": qr["qrCode"], "customerId": "1"})
    assert status == 503 and answer["error"]["code"] == "KASPI_UNAVAILABLE"


async def test_metrics_and_probes_are_served(stack: Stack) -> None:
    async with stack.http.get(stack.wallet_url + "/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    for name in ("mpp_http_requests_total", "mpp_kaspi_calls_total", "mpp_payments_total",
                 "mpp_notify_outbox_depth", "mpp_notify_retries_total"):
        assert name in text
    async with stack.http.get(stack.wallet_url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
