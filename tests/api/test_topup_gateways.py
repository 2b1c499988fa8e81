"""Each gateway's own wire (issue 23), against the simulator's fakes built from the
gateways' documentation: Halyk's OAuth host, payment token and our page; Kapital's mutual
TLS, Status 96, Reverse falling back to Refund, its currency; Kaspi's Api-Key,
X-Request-ID and the device registered once per trade point."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mpp_server.acquirers.halyk_epay import secret_hash
from mpp_server.serve import Runtime
from tests.support.helpers import call, journal_rows, metric_value, new_customer, sim
from tests.support.stack import Stack
from tests.support.topups import (
    account_balance,
    acquirer_fault,
    create,
    credited,
    no_acquirer_faults,
    pay,
    refund,
    sim_order,
    stack_of_its_own,
    until,
    wait_for,
)

pytestmark = pytest.mark.usefixtures(no_acquirer_faults.__name__)


async def recorded(stack: Stack, provider: str) -> list[dict[str, Any]]:
    status, answer = await sim(stack, "GET", f"/sim/acquiring/requests?provider={provider}")
    assert status == 200
    return list(answer["requests"])


async def page(stack: Stack, url: str) -> tuple[int, str]:
    async with stack.http.get(url) as resp:
        return resp.status, await resp.text()


# ---- Halyk ePay ----------------------------------------------------------------------

async def test_halyk_payment_token_is_asked_by_form_for_a_digit_invoice(stack: Stack) -> None:
    first = await create(stack, "halyk-epay", "1500.50")
    second = await create(stack, "halyk-epay", "20.00")
    for topup in (first, second):
        assert re.fullmatch(r"[0-9]{6,15}", topup["providerOrderId"]), topup
    assert first["providerOrderId"][-6:] != second["providerOrderId"][-6:]
    [token] = [r for r in await recorded(stack, "halyk-epay") if r["operation"] == "create"
               and f"invoiceID={first['providerOrderId']}" in r["body"]]
    assert token["contentType"].startswith("application/x-www-form-urlencoded")
    assert "amount=1500.50" in token["body"] and "currency=KZT" in token["body"]
    assert "secret_hash=" in token["body"] and "postLink=" in token["body"]
    assert "grant_type=client_credentials" in token["body"]


async def test_halyk_page_opens_the_form_with_the_invoice_token_while_created(
        stack: Stack) -> None:
    topup = await create(stack, "halyk-epay", "300.00")
    assert topup["paymentUrl"].startswith(stack.acquiring_url + "/pay/halyk-epay/")
    status, html = await page(stack, topup["paymentUrl"])
    assert status == 200
    assert "/halyk-epay/payform/payment-api.js" in html and "halyk.pay(" in html
    assert f'"invoiceId":"{topup["providerOrderId"]}"' in html
    assert '"access_token":"' in html and '"amount":300.00' in html
    await pay(stack, topup)
    await wait_for(stack, topup["topupId"], "CREDITED")
    status, html = await page(stack, topup["paymentUrl"])
    assert status == 200 and "access_token" not in html and "credited" in html
    status, _ = await page(stack, stack.acquiring_url + "/pay/halyk-epay/" + "x" * 32)
    assert status == 404


async def test_halyk_refund_goes_to_the_transaction_with_our_refund_id(stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "500.00")
    refund_id = "rf-" + uuid.uuid4().hex[:12]
    status, answer = await refund(stack, topup, "120.00", refund_id)
    assert status == 201 and answer["status"] == "COMPLETED", answer
    [sent] = [r for r in await recorded(stack, "halyk-epay") if r["operation"] == "refund"
              and f"externalID={refund_id}" in r["path"]]
    assert re.match(r"/halyk-epay/api/operation/[0-9a-f-]{36}/refund\?", sent["path"])
    assert "amount=120.00" in sent["path"]
    assert sent["authorization"].startswith("Bearer ")


async def test_halyk_refund_under_ten_tenge_is_refused_unsent(stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "500.00")
    status, answer = await refund(stack, topup, "9.99")
    assert status == 422 and "10.00" in answer["error"]["message"], answer
    assert await account_balance(stack, topup["customerId"]) == "500.00"
    assert (await sim_order(stack, topup))["refunds"] == []


# ---- Kapital Bank ----------------------------------------------------------------------

async def test_kapital_calls_carry_the_client_certificate(stack: Stack) -> None:
    topup = await credited(stack, "kapital", "100.00")
    ours = [r for r in await recorded(stack, "kapital")
            if topup["providerOrderId"] in r["body"]]
    assert ours and {r["clientCertificate"] for r in ours} == {"MPPTEST"}


async def test_kapital_status_96_is_asked_again_never_a_refusal(stack: Stack) -> None:
    topup = await create(stack, "kapital", "250.00")
    await acquirer_fault(stack, "kapital", "status", "system_error", times=3,
                         order_id=topup["providerOrderId"])
    await pay(stack, topup, "success", "skip")
    await wait_for(stack, topup["topupId"], "CREDITED")
    assert await account_balance(stack, topup["customerId"]) == "250.00"
    assert metric_value("mpp_acquirer_calls_total", provider="kapital", operation="status",
                  outcome="HTTP_200") >= 3  # the three 96s were answers, read as none


async def test_kapital_refused_reverse_falls_back_to_refund(stack: Stack) -> None:
    topup = await credited(stack, "kapital", "800.00")
    await acquirer_fault(stack, "kapital", "refund", "refuse")  # the Reverse
    status, answer = await refund(stack, topup, "800.00")
    assert status == 201 and answer["status"] == "COMPLETED", answer
    assert answer["operation"] == "Refund"
    assert [r["operation"] for r in (await sim_order(stack, topup))["refunds"]] == ["Refund"]


@pytest.mark.parametrize(("from_bakus_midnight", "operation"),
                         [("-1 second", "Refund"), ("1 second", "Reverse")])
async def test_kapital_reverse_only_on_the_banks_day_of_the_payment(
        stack: Stack, from_bakus_midnight: str, operation: str) -> None:
    """Kapital's "same day" is Baku's (UTC+4). A top-up credited one second before
    today's midnight in Baku is the bank's yesterday (Refund), though it is today in
    Almaty (UTC+5); one credited one second after it is the bank's today (Reverse),
    though it is yesterday in UTC."""
    topup = await credited(stack, "kapital", "300.00")
    async with stack.pool.acquire() as conn:
        await conn.execute(
            """UPDATE topups
                  SET credited_at = (date_trunc('day', (now() AT TIME ZONE 'UTC')
                                                       + interval '4 hours')
                                     - interval '4 hours' + $2::text::interval)
                                    AT TIME ZONE 'UTC'
                WHERE topup_id = $1""", topup["topupId"], from_bakus_midnight)
    status, answer = await refund(stack, topup, "300.00")
    assert status == 201 and answer["status"] == "COMPLETED", answer
    assert answer["operation"] == operation
    assert [r["operation"] for r in (await sim_order(stack, topup))["refunds"]] == [operation]


@pytest.fixture(scope="module")
async def misconfigured(admin_dsn: str) -> AsyncIterator[Stack]:
    """Kapital set as the bank documents it (944, AZN) and Kaspi with a wrong Api-Key."""
    async with stack_of_its_own(admin_dsn, "mpp_gateways", KAPITAL_CURRENCY="944",
                                KASPI_ECOM_API_KEY="not-the-key") as running:
        yield running


async def test_a_gateway_charging_another_currency_is_refused_before_anything(
        misconfigured: Stack) -> None:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "kapital", "amount": "100.00"}
    status, answer = await call(misconfigured, "POST", "/v1/topups", body)
    assert status == 422 and "AZN" in answer["error"]["message"], answer
    status, _ = await call(misconfigured, "GET", f"/v1/topups/{body['topupId']}")
    assert status == 404


# ---- Kaspi's QR API --------------------------------------------------------------------

async def test_kaspi_calls_carry_the_api_key_and_a_request_id(stack: Stack) -> None:
    topup = await credited(stack, "kaspi-ecom", "700.00")
    ours = [r for r in await recorded(stack, "kaspi-ecom")
            if topup["providerOrderId"] in r["path"] or topup["topupId"] in r["body"]]
    assert {r["operation"] for r in ours} >= {"create", "status"}
    assert all(r["apiKey"] and r["requestId"] for r in ours)
    assert len({r["requestId"] for r in ours}) == len(ours)  # a fresh one each call
    # The exchange journal names the same X-Request-ID as Kaspi's log, per top-up.
    sent = {r["requestId"] for r in ours}

    async def journaled() -> bool:
        rows = await journal_rows(stack, "topup_id", topup["topupId"], 1)
        return sent <= {row["request_id"] for row in rows}

    await until(journaled, "the journal's rows of the Kaspi calls")


async def test_kaspi_device_token_and_halyk_secret_hash_never_reach_the_journal(
        stack: Stack) -> None:
    kaspi = await create(stack, "kaspi-ecom", "100.00")
    halyk = await create(stack, "halyk-epay", "100.00")
    await pay(stack, halyk)
    await wait_for(stack, halyk["topupId"], "CREDITED")
    async with stack.pool.acquire() as conn:
        token = await conn.fetchval("SELECT device_token FROM acquirer_devices")
    secret = secret_hash(stack.runtime.settings.halyk_epay_client_secret,
                         halyk["providerOrderId"])
    assert token
    rows = [*await journal_rows(stack, "topup_id", kaspi["topupId"], 1),
            *await journal_rows(stack, "topup_id", halyk["topupId"], 3)]
    assert {r["operation"] for r in rows} >= {"create", "status", "callback"}
    for row in rows:
        text = " ".join(str(row[c]) for c in ("target", "request_body", "response_body"))
        assert token not in text and secret not in text, row


async def test_kaspi_wrong_api_key_is_no_answer_not_a_refusal(misconfigured: Stack) -> None:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "kaspi-ecom", "amount": "100.00"}
    status, answer = await call(misconfigured, "POST", "/v1/topups", body)
    assert status == 503 and answer["error"]["code"] == "ACQUIRER_UNAVAILABLE", answer
    status, kept = await call(misconfigured, "GET", f"/v1/topups/{body['topupId']}")
    assert status == 200 and kept["status"] == "CREATED"


async def device_registrations(stack: Stack) -> list[str]:
    return [r["body"] for r in await recorded(stack, "kaspi-ecom")
            if r["operation"] == "device"]


def device_ids(registrations: list[str]) -> list[str]:
    return re.findall(r'"DeviceId": ?"([^"]+)"', "".join(registrations))


async def test_kaspi_device_is_registered_once_and_kept(stack: Stack) -> None:
    await create(stack, "kaspi-ecom", "100.00")
    before = await device_registrations(stack)
    for _ in range(3):
        await create(stack, "kaspi-ecom", "100.00")
    # Another server process on the same database takes the device kept there.
    other = Runtime(stack.runtime.settings.model_copy(update={
        "wallet_listen": "127.0.0.1:0", "kaspi_listen": "127.0.0.1:0",
        "acquiring_listen": "127.0.0.1:0"}))
    await other.start()
    try:
        async with stack.http.post(other.wallet_url + "/v1/topups", headers=stack.auth, json={
                "topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
                "provider": "kaspi-ecom", "amount": "100.00"}) as resp:
            assert resp.status == 201, await resp.text()
    finally:
        await other.stop()
    assert await device_registrations(stack) == before
    async with stack.pool.acquire() as conn:
        kept = await conn.fetch("SELECT * FROM acquirer_devices")
    assert len(kept) == 1 and kept[0]["device_token"], kept


async def test_kaspi_device_lost_is_registered_anew_with_a_new_id(stack: Stack) -> None:
    await create(stack, "kaspi-ecom", "100.00")  # a device is registered
    status, _ = await sim(stack, "DELETE", "/sim/acquiring/devices")
    assert status == 200
    earlier = set(device_ids(await device_registrations(stack)))
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "kaspi-ecom", "amount": "100.00"}
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 503, answer  # -1501: the device is gone; the token forgotten
    await acquirer_fault(stack, "kaspi-ecom", "device", "timeout", delay_ms=2000)
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 503, answer  # the registration's answer lost
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 200 and answer["paymentUrl"], answer
    ids = [i for i in device_ids(await device_registrations(stack)) if i not in earlier]
    assert len(ids) == len(set(ids)) == 2  # the lost answer's and the next: each its own DeviceId
    await pay(stack, answer)
    await wait_for(stack, body["topupId"], "CREDITED")
