"""Issue 27: Kaspi's scan and checkout answers at the edges of the regulation (§4.1–4.3).

A defective answer (a field §4.1/§4.2 requires is missing, or an amount §4.3 cannot
carry) is refused with KASPI_DEFECTIVE_ANSWER and counted; a defective merchant field
is counted and passed through; checkout's final refusals are recorded on the payment.
Kaspi's answers are the simulator's, or (`replace_answer`) written here as Kaspi might.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpp_server.metrics import KASPI_CALLS, REGISTRY
from tests.support.helpers import (
    balance,
    call,
    confirm,
    deposit,
    fault,
    new_customer,
    new_qr,
    payment,
    scan,
    sim_payment,
    transfers_of,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.usefixtures("clean_faults")

UNTIL = "2099-01-01T12:00:00+05:00"
MERCHANT = {"merchantId": "123456789", "merchantName": "Coffee Bar", "merchantMCC": "5812",
            "authorType": "POS"}
SERVICE = {"serviceId": 2862, "serviceName": "Парковка",
           "parameters": [{"id": 3932, "value": "", "name": "Госномер"}]}


def defects(message: str, field: str, kind: str) -> float:
    return REGISTRY.get_sample_value("mpp_kaspi_defects_total", {
        "message": message, "field": field, "defect": kind}) or 0.0


def kaspi_calls(method: str) -> float:
    return sum(s.value for metric in KASPI_CALLS.collect() for s in metric.samples
               if s.name.endswith("_total") and s.labels["method"] == method)


def scan_answer(qr_type: str, payment_fields: dict[str, Any],
                merchant: dict[str, Any] | None = None, **extra: Any) -> str:
    return json.dumps({"result": {"resultCode": "SUCCESS", "resultMessage": "success"},
                       "qrCodeType": qr_type, "payment": payment_fields,
                       "merchant": MERCHANT if merchant is None else merchant, **extra})


async def scan_as_kaspi_answers(stack: Stack, answer: str) -> tuple[int, Any]:
    """Scan a real QR code; Kaspi's answer is `answer`, written as it is."""
    qr = await new_qr(stack, "Static")
    await fault(stack, "scan", "replace_answer", 1, rawBody=answer)
    return await call(stack, "POST", "/v1/scan",
                      {"qrCode": qr["qrCode"], "customerId": new_customer()})


async def stored_payment(stack: Stack, payment_id: str) -> bool:
    async with stack.pool.acquire() as conn:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM payments WHERE payment_id = $1)", payment_id)
    return found


# ---- item 1: what §4.1 requires of a payment --------------------------------------------

@pytest.mark.parametrize("qr_type", ["Dynamic", "Static"])
async def test_scan_without_can_confirm_until_is_refused_as_defective(
        stack: Stack, qr_type: str) -> None:
    payment_id = f"no-deadline-{new_customer()}"
    fields: dict[str, Any] = {"paymentId": payment_id}
    if qr_type == "Dynamic":
        fields["paymentAmount"] = "100.00"
    counted = defects("scan", "canConfirmUntil", "missing")
    status, body = await scan_as_kaspi_answers(stack, scan_answer(qr_type, fields))
    assert status == 502 and body["error"]["code"] == "KASPI_DEFECTIVE_ANSWER", body
    assert "canConfirmUntil" in body["error"]["message"]
    assert defects("scan", "canConfirmUntil", "missing") == counted + 1
    # Never recorded: a payment without a deadline could be confirmed for ever.
    assert not await stored_payment(stack, payment_id)


async def test_dynamic_scan_without_an_amount_is_refused_as_defective(stack: Stack) -> None:
    payment_id = f"no-amount-{new_customer()}"
    counted = defects("scan", "paymentAmount", "missing")
    status, body = await scan_as_kaspi_answers(stack, scan_answer(
        "Dynamic", {"paymentId": payment_id, "canConfirmUntil": UNTIL}))
    assert status == 502 and body["error"]["code"] == "KASPI_DEFECTIVE_ANSWER", body
    assert defects("scan", "paymentAmount", "missing") == counted + 1
    assert not await stored_payment(stack, payment_id)


async def custom_scanned(stack: Stack, customer: str, *, until: str | None) -> str:
    """A Custom payment scanned; Kaspi's scan carries `until` as canConfirmUntil (the
    regulation's own Custom example carries none)."""
    fields: dict[str, Any] = {"paymentId": f"custom-{new_customer()}"}
    if until is not None:
        fields["canConfirmUntil"] = until
    qr = await new_qr(stack, "Custom")
    await fault(stack, "scan", "replace_answer", 1,
                rawBody=scan_answer("Custom", fields, paymentData=SERVICE))
    scanned = await scan(stack, qr["qrCode"], customer)
    assert scanned["payment"]["status"] == "SCANNED"
    return str(scanned["payment"]["paymentId"])


async def checkout_as_kaspi_answers(stack: Stack, customer: str, payment_id: str,
                                    answer: dict[str, Any]) -> tuple[int, Any]:
    await fault(stack, "checkout", "replace_answer", 1, rawBody=json.dumps(
        {"result": {"resultCode": "SUCCESS", "resultMessage": "success"}, **answer}))
    return await call(stack, "POST", f"/v1/payments/{payment_id}/checkout", {
        "customerId": customer, "parameters": [{"id": 3932, "value": "547RBA02"}]})


async def test_checkout_without_can_confirm_until_keeps_scans_and_is_counted(
        stack: Stack) -> None:
    customer = new_customer()
    payment_id = await custom_scanned(stack, customer, until=UNTIL)
    counted = defects("checkout", "canConfirmUntil", "missing")
    status, body = await checkout_as_kaspi_answers(stack, customer, payment_id,
                                                   {"paymentAmount": 700})
    assert status == 200, body
    assert (body["status"], body["amount"]) == ("CHECKED_OUT", "700.00")
    assert body["canConfirmUntil"] == UNTIL
    assert defects("checkout", "canConfirmUntil", "missing") == counted + 1


@pytest.mark.parametrize("answer, field", [
    ({"paymentAmount": 700}, "canConfirmUntil"),
    ({"canConfirmUntil": UNTIL}, "paymentAmount"),
], ids=["no deadline at all", "no amount"])
async def test_checkout_answer_missing_what_confirm_needs_is_refused(
        stack: Stack, answer: dict[str, Any], field: str) -> None:
    customer = new_customer()
    payment_id = await custom_scanned(stack, customer, until=None)
    counted = defects("checkout", field, "missing")
    status, body = await checkout_as_kaspi_answers(stack, customer, payment_id, answer)
    assert status == 502 and body["error"]["code"] == "KASPI_DEFECTIVE_ANSWER", body
    assert field in body["error"]["message"]
    assert defects("checkout", field, "missing") == counted + 1
    shown = await payment(stack, payment_id)
    assert shown["status"] == "SCANNED" and "canConfirmUntil" not in shown


# ---- item 2: merchant fields -------------------------------------------------------------

@pytest.mark.parametrize("merchant, kind", [
    ({"merchantId": "123456789", "merchantName": "Coffee Bar"}, "missing"),
    ({**MERCHANT, "merchantMCC": "5" * 40, "authorType": "TERMINAL"}, "too_long"),
], ids=["missing", "over-long"])
async def test_defective_merchant_fields_are_counted_and_passed_through(
        stack: Stack, merchant: dict[str, Any], kind: str) -> None:
    payment_id = f"merchant-{new_customer()}"
    before = {f: defects("scan", f, kind) for f in ("merchantMCC", "authorType")}
    status, body = await scan_as_kaspi_answers(stack, scan_answer(
        "Static", {"paymentId": payment_id, "canConfirmUntil": UNTIL}, merchant))
    assert status == 200, body
    assert body["payment"]["paymentId"] == payment_id
    shown = body["merchant"]
    assert shown["merchantMCC"] == merchant.get("merchantMCC", "")
    assert shown.get("authorType") == merchant.get("authorType")
    assert {f: defects("scan", f, kind) for f in before} == {f: n + 1 for f, n in before.items()}
    assert (await payment(stack, payment_id))["merchant"] == shown


# ---- item 3: checkout's final refusals -----------------------------------------------------

async def custom_from_simulator(stack: Stack, customer: str, **qr_fields: Any) -> str:
    qr = await new_qr(stack, "Custom", **qr_fields)
    return str((await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"])


async def checkout(stack: Stack, customer: str, payment_id: str) -> tuple[int, Any]:
    return await call(stack, "POST", f"/v1/payments/{payment_id}/checkout", {
        "customerId": customer, "parameters": [{"id": 3932, "value": "547RBA02"},
                                               {"id": 3933, "value": "1h"}]})


@pytest.mark.parametrize("code, http_status, status", [
    ("PROCESS_FAIL", 409, "FAILED"),
    ("EXPIRED_CODE", 410, "EXPIRED"),
])
async def test_checkouts_final_refusal_is_recorded_and_repeated_without_kaspi(
        stack: Stack, code: str, http_status: int, status: str) -> None:
    customer = new_customer()
    await deposit(stack, customer, "1000.00")
    payment_id = await custom_from_simulator(stack, customer)
    await fault(stack, "checkout", "error_code", 1, resultCode=code)
    first = await checkout(stack, customer, payment_id)
    assert first[0] == http_status and first[1]["error"]["code"] == code, first
    shown = await payment(stack, payment_id)
    assert (shown["status"], shown["declineReason"]) == (status, code)

    # Kaspi said not to retry: the repeat answers the same, and Kaspi is not asked.
    calls = kaspi_calls("checkout")
    assert await checkout(stack, customer, payment_id) == first
    assert kaspi_calls("checkout") == calls
    status_code, body = await confirm(stack, payment_id, customer)
    assert status_code == 409, body
    assert body["error"]["code"] == ("PAYMENT_EXPIRED" if status == "EXPIRED"
                                     else "INVALID_STATE")
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    assert await balance(stack, customer) == "1000.00"
    assert (await payment(stack, payment_id))["status"] == status


# ---- item 5: notifyPayment's paymentAmount is whole tenge (§4.3) ---------------------------

async def test_custom_amount_with_tiyn_from_checkout_is_refused_before_any_debit(
        stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "2000.00")
    payment_id = await custom_from_simulator(stack, customer, amount="1500.50")
    counted = defects("checkout", "paymentAmount", "not_whole")
    status, body = await checkout(stack, customer, payment_id)
    assert status == 502 and body["error"]["code"] == "KASPI_DEFECTIVE_ANSWER", body
    assert "1500.50" in body["error"]["message"]
    assert defects("checkout", "paymentAmount", "not_whole") == counted + 1
    shown = await payment(stack, payment_id)
    assert shown["status"] == "SCANNED" and "amount" not in shown
    status, body = await confirm(stack, payment_id, customer)
    assert status == 409 and body["error"]["code"] == "INVALID_STATE", body
    assert await balance(stack, customer) == "2000.00"


async def test_dynamic_amount_with_tiyn_is_notified_without_payment_amount(
        stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="60.75")
    payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
    status, body = await confirm(stack, payment_id, customer)
    # The simulator refuses a paymentAmount with tiyn as §4.3 says; Kaspi has the
    # Dynamic amount from its own QR code.
    assert status == 200 and body["status"] == "COMPLETED", body
    assert await balance(stack, customer) == "39.25"
    kaspi = await sim_payment(stack, payment_id)
    assert (kaspi["status"], kaspi["amount"], kaspi["notifyCount"]) == ("COMPLETED",
                                                                        "60.75", 1)
