"""The Kaspi simulator over real HTTP: Kaspi's endpoints, faults, refunds, registries."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import aiohttp
import openpyxl
import pytest

from mpp_server.devtools.simulator.cli import main as cli_main
from tests.support.simulator import CUSTOMER, Kaspi, running_simulator, stub_mpp

KZ = timezone(timedelta(hours=5))
PARKING_VALUES = [{"id": 3932, "value": "547RBA02"}, {"id": 3933, "value": "day"},
                  {"id": 3934, "value": "ALMATY"}]


@pytest.fixture
async def kaspi() -> AsyncIterator[Kaspi]:
    async with running_simulator() as sim:
        yield sim


def code(answer: dict[str, Any]) -> str:
    result: str = answer["result"]["resultCode"]
    return result


async def custom_payment(kaspi: Kaspi, **qr_fields: Any) -> str:
    qr = await kaspi.qr("Custom", **qr_fields)
    payment_id: str = (await kaspi.scan(qr["qrCode"]))["payment"]["paymentId"]
    return payment_id


async def checkout(kaspi: Kaspi, payment_id: str, values: list[dict[str, Any]] | None = None,
                   service_id: int = 2862) -> dict[str, Any]:
    return await kaspi.call("checkout", {"paymentId": payment_id, "serviceId": service_id,
                                         "parameters": values or PARKING_VALUES})


# --- scan ------------------------------------------------------------------------------
async def test_dynamic_scan_answers_amount_merchant_and_short_offset_deadline(
        kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount="100", ttlSeconds=60)
    answer = await kaspi.scan(qr["qrCode"])
    assert code(answer) == "SUCCESS" and answer["qrCodeType"] == "Dynamic"
    assert answer["payment"]["paymentId"] == qr["paymentId"]
    assert answer["payment"]["paymentAmount"] == "100.00"
    deadline = answer["payment"]["canConfirmUntil"]
    assert deadline.endswith("+05") and len(deadline) == len("2024-02-19T15:57:41+06")
    until = datetime.fromisoformat(deadline)
    assert timedelta(seconds=58) < until - datetime.now(UTC) <= timedelta(seconds=60)
    assert answer["merchant"] == {"merchantId": "123456789", "merchantName": "Coffee Bar",
                                  "merchantMCC": "5812", "authorType": "POS"}
    assert answer["qrCodeVersion"] == 2  # a field no client models
    assert len(qr["qrCode"]) <= 128 and qr["qrCode"].isdigit()
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "SCANNED"


async def test_dynamic_qr_belongs_to_its_first_scanning_customer(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount="250.50")
    await kaspi.scan(qr["qrCode"], "111111111111")
    again = await kaspi.scan(qr["qrCode"], "222222222222")
    assert again["payment"]["paymentId"] == qr["paymentId"]
    other = await kaspi.notify(qr["paymentId"], customer_id="222222222222")
    assert code(other) == "UNKNOWN_CUSTOMER"
    assert code(await kaspi.notify(qr["paymentId"], customer_id="111111111111")) == "SUCCESS"
    view = await kaspi.payment(qr["paymentId"])
    assert view["customerId"] == "111111111111" and view["amount"] == "250.50"
    assert code(await kaspi.scan(qr["qrCode"])) == "PROCESS_FAIL"  # already paid


async def test_static_qr_gives_a_new_payment_per_scan_without_amount(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Static", merchantName="Магазин")
    first, second = await kaspi.scan(qr["qrCode"]), await kaspi.scan(qr["qrCode"])
    assert first["payment"]["paymentId"] != second["payment"]["paymentId"]
    assert "paymentAmount" not in first["payment"]
    assert first["merchant"]["merchantName"] == "Магазин"
    assert "canConfirmUntil" in first["payment"]


async def test_custom_scan_lists_text_dropdown_and_prefilled_parameters(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Custom")
    assert qr["qrCode"].startswith("https://kaspi.kz/pay/")
    answer = await kaspi.scan(qr["qrCode"])
    assert answer["qrCodeType"] == "Custom"
    assert set(answer["payment"]) == {"paymentId"}  # no canConfirmUntil before checkout
    assert answer["paymentData"] == {"serviceId": 2862, "serviceName": "Парковка", "parameters": [
        {"id": 3932, "value": "", "name": "Госномер"},
        {"id": 3933, "name": "Тариф", "options": [
            {"key": "1h", "label": "1 час"},
            {"key": "day", "label": "Сутки", "description": "24 часа"}]},
        {"id": 3934, "value": "ALMATY", "name": "Город"}]}
    kazakh = await kaspi.scan(qr["qrCode"], locale="kk-KZ")
    assert kazakh["paymentData"]["parameters"][0]["name"] == "Мемлекеттік нөмір"


async def test_refund_qr_scan_answers_refund_id(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Refund")
    answer = await kaspi.scan(qr["qrCode"])
    assert code(answer) == "SUCCESS" and answer["qrCodeType"] == "Refund"
    assert answer["refund"] == {"refundId": qr["refundId"]}
    assert "merchant" in answer


async def test_unknown_and_expired_qr_codes(kaspi: Kaspi) -> None:
    assert code(await kaspi.scan("592" + "0" * 35)) == "INVALID_TOKEN"
    qr = await kaspi.qr("Dynamic", amount=100, ttlSeconds=0.2)
    static = await kaspi.qr("Static", ttlSeconds=0.2)
    await asyncio.sleep(0.3)
    assert code(await kaspi.scan(qr["qrCode"])) == "EXPIRED_CODE"
    assert code(await kaspi.scan(static["qrCode"])) == "EXPIRED_CODE"


# --- headers and bodies ----------------------------------------------------------------
async def test_headers_are_checked_before_anything_else(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    assert code(await kaspi.scan(qr["qrCode"], caller="SOMEONE")) == "UNKNOWN_SOURCE"
    assert code(await kaspi.scan(qr["qrCode"], caller=None)) == "UNKNOWN_SOURCE"
    assert code(await kaspi.scan(qr["qrCode"], locale="en-US")) == "PARAM_ILLEGAL"
    assert code(await kaspi.scan(qr["qrCode"], request_id="x" * 65)) == "PARAM_ILLEGAL"
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "CREATED"  # nothing applied
    assert code(await kaspi.scan(qr["qrCode"], locale="kk-KZ")) == "SUCCESS"


async def test_malformed_or_overlong_bodies_are_param_illegal(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    assert code(await kaspi.call("scan", None, raw=b"{not json")) == "PARAM_ILLEGAL"
    assert code(await kaspi.call("scan", {"qrCode": qr["qrCode"]})) == "PARAM_ILLEGAL"
    assert code(await kaspi.scan(qr["qrCode"], "1" * 13)) == "PARAM_ILLEGAL"
    assert code(await kaspi.scan("5" * 129)) == "PARAM_ILLEGAL"
    extra = await kaspi.call("scan", {"qrCode": qr["qrCode"], "customerId": CUSTOMER,
                                      "deviceId": "ignored"})
    assert code(extra) == "SUCCESS"


# --- checkout --------------------------------------------------------------------------
async def test_checkout_prices_the_tariff_as_a_bare_number(kaspi: Kaspi) -> None:
    payment_id = await custom_payment(kaspi)
    raw = await kaspi.raw_call("checkout", {"paymentId": payment_id, "serviceId": 2862,
                                            "parameters": PARKING_VALUES})
    assert b'"paymentAmount":3000,' in raw
    answer = json.loads(raw)
    assert code(answer) == "SUCCESS" and answer["merchant"]["merchantId"] == "2862"
    assert answer["canConfirmUntil"].endswith("+05:00")
    assert (await kaspi.payment(payment_id))["status"] == "CHECKED_OUT"
    hourly = await custom_payment(kaspi)
    values = [PARKING_VALUES[0], {"id": 3933, "value": "1h"}, PARKING_VALUES[2]]
    assert (await checkout(kaspi, hourly, values))["paymentAmount"] == 500
    fixed = await custom_payment(kaspi, amount="150")
    assert (await checkout(kaspi, fixed))["paymentAmount"] == 150


@pytest.mark.parametrize("values", [
    PARKING_VALUES[:2],  # a parameter missing
    [{"id": 3932, "value": "   "}, *PARKING_VALUES[1:]],  # free text empty
    [{"id": 3932, "value": "x" * 65}, *PARKING_VALUES[1:]],  # free text too long
    [PARKING_VALUES[0], {"id": 3933, "value": "week"}, PARKING_VALUES[2]],  # not an option
    [*PARKING_VALUES[:2], {"id": 3934, "value": "ASTANA"}],  # prefilled value changed
    [*PARKING_VALUES, {"id": 9999, "value": "x"}],  # unknown parameter
    [*PARKING_VALUES, PARKING_VALUES[0]],  # a parameter twice
])
async def test_checkout_refuses_bad_parameters(kaspi: Kaspi,
                                               values: list[dict[str, Any]]) -> None:
    payment_id = await custom_payment(kaspi)
    assert code(await checkout(kaspi, payment_id, values)) == "PARAM_ILLEGAL"
    assert (await kaspi.payment(payment_id))["status"] == "SCANNED"


async def test_checkout_is_idempotent_and_refuses_other_arguments(kaspi: Kaspi) -> None:
    payment_id = await custom_payment(kaspi)
    body = {"paymentId": payment_id, "serviceId": 2862, "parameters": PARKING_VALUES}
    first = await kaspi.raw_call("checkout", body)
    await asyncio.sleep(1.1)  # a recomputed canConfirmUntil would differ
    assert await kaspi.raw_call("checkout", body) == first
    other = [PARKING_VALUES[0], {"id": 3933, "value": "1h"}, PARKING_VALUES[2]]
    assert code(await checkout(kaspi, payment_id, other)) == "PARAM_ILLEGAL"
    assert code(await checkout(kaspi, payment_id, service_id=1)) == "PARAM_ILLEGAL"


async def test_checkout_of_unknown_or_expired_payment(kaspi: Kaspi) -> None:
    assert code(await checkout(kaspi, "no-such-payment")) == "PARAM_ILLEGAL"
    dynamic = await kaspi.qr("Dynamic", amount=100)
    assert code(await checkout(kaspi, dynamic["paymentId"])) == "PARAM_ILLEGAL"
    payment_id = await custom_payment(kaspi, ttlSeconds=0.2)
    await asyncio.sleep(0.3)
    assert code(await checkout(kaspi, payment_id)) == "EXPIRED_CODE"


# --- notifyPayment ---------------------------------------------------------------------
async def test_notify_is_applied_once_and_answers_the_same_every_time(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount="100.00")
    await kaspi.scan(qr["qrCode"])
    body: dict[str, Any] = {
        "result": {"resultCode": "SUCCESS", "resultMessage": "success"},
        "payment": {"paymentId": qr["paymentId"], "mppPaymentId": "mpp-42",
                    "paymentAmount": "100.00"}, "customerId": CUSTOMER}
    first = await kaspi.raw_call("notifyPayment", body)
    answer = json.loads(first)
    assert code(answer) == "SUCCESS"
    assert answer["linkReceipt"].startswith("https://receipt-test.kaspi.kz/web?extTranId=QR")
    assert "&sale_date=" in answer["linkReceipt"]
    body["payment"]["mppPaymentId"] = "mpp-other"  # even a changed retry changes nothing
    assert await kaspi.raw_call("notifyPayment", body) == first
    assert await kaspi.raw_call("notifyPayment", body) == first
    view = await kaspi.payment(qr["paymentId"])
    assert view["status"] == "COMPLETED" and view["notifyCount"] == 3
    assert view["mppPaymentId"] == "mpp-42" and view["linkReceipt"] == answer["linkReceipt"]
    other = await kaspi.paid_dynamic()
    assert (await kaspi.payment(other))["linkReceipt"] != view["linkReceipt"]


async def test_cancel_and_decline_are_acknowledged_without_receipt(kaspi: Kaspi) -> None:
    for mpp_code, status in [("CANCELLED_BY_CLIENT", "CANCELLED"), ("PROCESS_FAIL", "FAILED")]:
        qr = await kaspi.qr("Dynamic", amount=100)
        await kaspi.scan(qr["qrCode"])
        answer = await kaspi.notify(qr["paymentId"], code=mpp_code)
        assert answer == {"result": {"resultCode": "SUCCESS", "resultMessage": "success"}}
        assert (await kaspi.payment(qr["paymentId"]))["status"] == status
        assert await kaspi.notify(qr["paymentId"]) == answer  # a later SUCCESS is too late


async def test_static_notify_needs_whole_tenge(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Static")
    payment_id = (await kaspi.scan(qr["qrCode"]))["payment"]["paymentId"]
    for bad in (None, "100.50", "0", 0, "-5"):
        assert code(await kaspi.notify(payment_id, bad)) == "PARAM_ILLEGAL", bad
    assert code(await kaspi.notify(payment_id, 700)) == "SUCCESS"  # a bare number
    view = await kaspi.payment(payment_id)
    # "-5" never parsed, so it never reached the payment: 5 calls counted, not 6.
    assert view["amount"] == "700.00" and view["notifyCount"] == 5


async def test_notify_amount_must_match_dynamic_and_custom(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    await kaspi.scan(qr["qrCode"])
    assert code(await kaspi.notify(qr["paymentId"], "99.00")) == "PARAM_ILLEGAL"
    assert code(await kaspi.notify(qr["paymentId"], "100.00")) == "SUCCESS"
    payment_id = await custom_payment(kaspi)
    assert code(await kaspi.notify(payment_id, "3000.00")) == "PAYMENT_INCORRECT_STATUS"
    await checkout(kaspi, payment_id)
    assert code(await kaspi.notify(payment_id)) == "PARAM_ILLEGAL"  # Custom needs it
    assert code(await kaspi.notify(payment_id, "500.00")) == "PARAM_ILLEGAL"
    assert code(await kaspi.notify(payment_id, 3000)) == "SUCCESS"


async def test_notify_errors_for_unknown_late_and_unscanned_payments(kaspi: Kaspi) -> None:
    assert code(await kaspi.notify("no-such-payment")) == "ORDER_NOT_EXIST"
    unscanned = await kaspi.qr("Dynamic", amount=100)
    assert code(await kaspi.notify(unscanned["paymentId"])) == "PAYMENT_INCORRECT_STATUS"
    qr = await kaspi.qr("Dynamic", amount=100, ttlSeconds=0.3)
    await kaspi.scan(qr["qrCode"])
    await asyncio.sleep(0.4)
    assert code(await kaspi.notify(qr["paymentId"])) == "PAYMENT_INCORRECT_STATUS"
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "SCANNED"


# --- faults ----------------------------------------------------------------------------
async def test_timeout_fault_never_answers(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    await kaspi.control("POST", "/sim/faults",
                        {"endpoint": "scan", "mode": "timeout", "delayMs": 100})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await kaspi.scan(qr["qrCode"])
    await kaspi.control("POST", "/sim/faults",
                        {"endpoint": "scan", "mode": "timeout", "delayMs": 5000})
    session_timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(TimeoutError):
        async with kaspi.session.post(kaspi.url("/api/v1/qr/scan"), json={},
                                      timeout=session_timeout):
            pass
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "CREATED"
    assert code(await kaspi.scan(qr["qrCode"])) == "SUCCESS"


async def test_http500_and_error_code_faults_do_not_process(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    await kaspi.scan(qr["qrCode"])
    await kaspi.control("POST", "/sim/faults",
                        {"endpoint": "notifyPayment", "mode": "http500", "times": 2})
    await kaspi.control("POST", "/sim/faults", {"endpoint": "notifyPayment",
                                                "mode": "error_code", "resultCode": "RISK_REJECT",
                                                "delayMs": 50})
    url = kaspi.url("/api/v1/qr/notifyPayment")
    for _ in range(2):
        async with kaspi.session.post(url, json={}) as response:
            assert response.status == 500 and response.content_type == "text/plain"
    assert code(await kaspi.notify(qr["paymentId"])) == "RISK_REJECT"
    view = await kaspi.payment(qr["paymentId"])
    assert view["status"] == "SCANNED" and view["notifyCount"] == 0
    assert code(await kaspi.notify(qr["paymentId"])) == "SUCCESS"


async def test_reset_after_processing_loses_the_reply_not_the_payment(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    await kaspi.scan(qr["qrCode"])
    await kaspi.control("POST", "/sim/faults",
                        {"endpoint": "notifyPayment", "mode": "reset_after_processing"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await kaspi.notify(qr["paymentId"])
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "COMPLETED"
    retry = await kaspi.notify(qr["paymentId"])
    assert code(retry) == "SUCCESS" and "linkReceipt" in retry
    assert (await kaspi.payment(qr["paymentId"]))["notifyCount"] == 2


async def test_replace_answer_processes_then_sends_the_raw_body(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Dynamic", amount=100)
    await kaspi.scan(qr["qrCode"])
    raw = '{"result": {"resultCode": "SUCCESS", "resultMessage": "' + "m" * 300 + '"}}'
    await kaspi.control("POST", "/sim/faults", {"endpoint": "notifyPayment",
                                                "mode": "replace_answer", "rawBody": raw})
    assert await kaspi.raw_call("notifyPayment", {
        "result": {"resultCode": "SUCCESS", "resultMessage": "success"},
        "payment": {"paymentId": qr["paymentId"], "mppPaymentId": "mpp-1"},
        "customerId": "900900900900"}) == raw.encode()
    assert (await kaspi.payment(qr["paymentId"]))["status"] == "COMPLETED"
    for bad in ({"endpoint": "refund", "mode": "replace_answer", "rawBody": "{}"},
                {"endpoint": "scan", "mode": "replace_answer"},
                {"endpoint": "scan", "mode": "http500", "rawBody": "{}"}):
        await kaspi.control("POST", "/sim/faults", bad, expect=400)


async def test_faults_queue_per_endpoint_and_clear(kaspi: Kaspi) -> None:
    qr = await kaspi.qr("Static")
    await kaspi.control("POST", "/sim/faults", {"endpoint": "scan", "mode": "error_code",
                                                "resultCode": "UNKNOWN_EXCEPTION", "times": 2})
    await kaspi.control("POST", "/sim/faults", {"endpoint": "scan", "mode": "error_code",
                                                "resultCode": "PAYMENTS_SUSPENDED"})
    assert code(await kaspi.notify("x")) == "ORDER_NOT_EXIST"  # another endpoint: untouched
    codes = [code(await kaspi.scan(qr["qrCode"])) for _ in range(4)]
    assert codes == ["UNKNOWN_EXCEPTION", "UNKNOWN_EXCEPTION", "PAYMENTS_SUSPENDED", "SUCCESS"]
    await kaspi.control("POST", "/sim/faults", {"endpoint": "scan", "mode": "http500",
                                                "times": 5})
    await kaspi.control("DELETE", "/sim/faults")
    assert code(await kaspi.scan(qr["qrCode"])) == "SUCCESS"
    await kaspi.control("POST", "/sim/faults", {"endpoint": "scan", "mode": "bogus"},
                        expect=400)


# --- refunds Kaspi starts --------------------------------------------------------------
async def test_refund_retries_until_the_mpp_answers() -> None:
    async with stub_mpp(["http500", "hang", "SUCCESS"]) as (mpp, url), \
            running_simulator(sim_mpp_refund_url=url, sim_refund_attempt_timeout_ms=200,
                              sim_refund_backoff_initial_ms=10) as sim:
        payment_id = await sim.paid_dynamic("100.00", mpp_id="mpp-7")
        answer = await sim.control("POST", "/sim/refunds",
                                   {"paymentId": payment_id, "amount": "40.00"})
        assert answer["resultCode"] == "SUCCESS" and answer["attempts"] == 3
        assert mpp.calls == 3
        assert {raw for _, raw in mpp.received} == {mpp.received[0][1]}  # the same body
        assert len({headers["X-Request-ID"] for headers, _ in mpp.received}) == 3
        assert mpp.bodies()[0] == {"customerId": CUSTOMER, "paymentId": payment_id,
                                   "refundAmount": "40.00", "refundId": answer["refundId"],
                                   "linkReceipt": mpp.bodies()[0]["linkReceipt"]}
        view = await sim.payment(payment_id)
        assert view["refundedAmount"] == "40.00"
        assert view["refunds"][0]["status"] == "SUCCESS"


async def test_kaspi_refuses_refunds_beyond_the_payment_unless_told() -> None:
    async with stub_mpp(["PARAM_ILLEGAL"]) as (mpp, url), \
            running_simulator(sim_mpp_refund_url=url) as sim:
        payment_id = await sim.paid_dynamic("100.00")
        first = await sim.control("POST", "/sim/refunds",
                                  {"paymentId": payment_id, "amount": "60"})
        assert first["resultCode"] == "PARAM_ILLEGAL" and mpp.calls == 1  # the MPP said no
        ok = await sim.control("POST", "/sim/refunds", {"paymentId": payment_id, "amount": 60})
        assert ok["resultCode"] == "SUCCESS" and mpp.calls == 2
        over = await sim.control("POST", "/sim/refunds",
                                 {"paymentId": payment_id, "amount": "40.01"})
        assert over["resultCode"] == "PARAM_ILLEGAL" and over["attempts"] == 0
        assert mpp.calls == 2  # Kaspi's own check: the MPP never heard of it
        forced = await sim.control("POST", "/sim/refunds", {"paymentId": payment_id,
                                                             "amount": "50", "skipSumCheck": True})
        assert forced["resultCode"] == "SUCCESS" and mpp.calls == 3
        assert (await sim.payment(payment_id))["refundedAmount"] == "110.00"
        pending = await sim.qr("Dynamic", amount=100)
        not_paid = await sim.control("POST", "/sim/refunds",
                                     {"paymentId": pending["paymentId"], "amount": 1})
        assert not_paid["resultCode"] == "PARAM_ILLEGAL"
        await sim.control("POST", "/sim/refunds", {"paymentId": "nope", "amount": 1},
                          expect=404)


async def test_refund_writes_the_regulations_quirky_shape_on_request() -> None:
    async with stub_mpp() as (mpp, url), running_simulator(sim_mpp_refund_url=url) as sim:
        payment_id = await sim.paid_dynamic("100.00")
        await sim.control("POST", "/sim/refunds", {
            "paymentId": payment_id, "amount": "100", "refundId": "Ref1234567",
            "amountAsNumber": True, "trailingSpaceKeys": True})
        raw = mpp.received[0][1].decode()
        assert '"refundAmount":100.00,' in raw
        assert f'"paymentId ":"{payment_id}"' in raw and '"refundId ":"Ref1234567"' in raw
        headers = mpp.received[0][0]
        assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"]


async def test_same_refund_id_is_resent_and_counted_once() -> None:
    async with stub_mpp() as (mpp, url), running_simulator(sim_mpp_refund_url=url) as sim:
        payment_id = await sim.paid_dynamic("100.00")
        body = {"paymentId": payment_id, "amount": "100", "refundId": "R-1"}
        for _ in range(2):
            assert (await sim.control("POST", "/sim/refunds", body))["resultCode"] == "SUCCESS"
        answers = await asyncio.gather(*[sim.control("POST", "/sim/refunds", body)
                                         for _ in range(20)])
        assert {a["resultCode"] for a in answers} == {"SUCCESS"}
        assert mpp.calls == 22
        view = await sim.payment(payment_id)
        assert view["refundedAmount"] == "100.00" and len(view["refunds"]) == 1
        assert view["refunds"][0]["requests"] == 22


async def test_lost_replies_make_kaspi_send_again() -> None:
    async with stub_mpp() as (mpp, url), running_simulator(
            sim_mpp_refund_url=url, sim_refund_backoff_initial_ms=5) as sim:
        payment_id = await sim.paid_dynamic()
        answer = await sim.control("POST", "/sim/refunds",
                                   {"paymentId": payment_id, "amount": 10, "loseReplies": 2})
        assert answer["attempts"] == 3 and mpp.calls == 3
        await sim.control("POST", "/sim/faults", {"endpoint": "refund",
                                                  "mode": "reset_after_processing"})
        answer = await sim.control("POST", "/sim/refunds", {"paymentId": payment_id,
                                                            "amount": 10})
        assert answer["attempts"] == 2 and mpp.calls == 5


async def test_refund_gives_up_with_no_answer_after_the_total_bound() -> None:
    async with stub_mpp(["http500"] * 100) as (mpp, url), running_simulator(
            sim_mpp_refund_url=url, sim_refund_total_timeout_ms=300,
            sim_refund_backoff_initial_ms=10, sim_refund_backoff_max_ms=50) as sim:
        payment_id = await sim.paid_dynamic()
        answer = await sim.control("POST", "/sim/refunds", {"paymentId": payment_id,
                                                            "amount": 10})
        assert answer["resultCode"] == "NO_ANSWER" and answer["attempts"] == mpp.calls > 2
        assert (await sim.payment(payment_id))["refundedAmount"] == "0.00"


async def test_refund_qr_for_a_purchase_calls_the_mpp_once() -> None:
    async with stub_mpp() as (mpp, url), running_simulator(sim_mpp_refund_url=url) as sim:
        payment_id = await sim.paid_dynamic("100.00")
        qr = await sim.qr("Refund", paymentId=payment_id, refundAmount="30")
        assert code(await sim.scan(qr["qrCode"], "000000000001")) == "SUCCESS"  # not theirs
        await sim.scan(qr["qrCode"])
        await sim.scan(qr["qrCode"])
        for _ in range(100):
            if (await sim.payment(payment_id))["refundedAmount"] == "30.00":
                break
            await asyncio.sleep(0.02)
        assert mpp.calls == 1 and mpp.bodies()[0]["refundId"] == qr["refundId"]
        assert (await sim.payment(payment_id))["refundedAmount"] == "30.00"


# --- registries ------------------------------------------------------------------------
async def registry_rows(kaspi: Kaspi, path: str) -> list[tuple[Any, ...]]:
    async with kaspi.session.get(kaspi.url(path)) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        content = await response.read()
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def today_kz() -> str:
    return datetime.now(KZ).date().isoformat()


async def test_registries_list_payments_and_refunds_with_fees() -> None:
    async with stub_mpp() as (_, url), running_simulator(sim_mpp_refund_url=url) as sim:
        paid = await sim.paid_dynamic("1234.56", mpp_id="mpp-a")
        unpaid = await sim.qr("Dynamic", amount=5)
        await sim.scan(unpaid["qrCode"])
        await sim.notify(unpaid["paymentId"], code="CANCELLED_BY_CLIENT")
        refund = await sim.control("POST", "/sim/refunds", {"paymentId": paid, "amount": "34.56"})
        rows = await registry_rows(sim, f"/sim/registries/daily?date={today_kz()}")
        assert rows[0] == ("ID клиента", "ID операции MPP", "ID операции Kaspi",
                           "ID платежа Kaspi", "Дата и время операции", "Тип операции",
                           "Сумма", "Комиссия")
        assert len(rows) == 3
        payment_row, refund_row = rows[1], rows[2]
        assert payment_row[:4] == (CUSTOMER, "mpp-a", paid, paid)
        assert payment_row[5:] == ("Оплата", pytest.approx(1234.56), pytest.approx(11.73))
        assert Decimal(str(payment_row[6])) == Decimal("1234.56")
        assert abs(payment_row[4] - datetime.now(KZ).replace(tzinfo=None)) < timedelta(
            seconds=5)
        assert refund_row[:4] == (CUSTOMER, "mpp-a", refund["refundId"], paid)
        assert refund_row[5:] == ("Возврат", pytest.approx(34.56), 0)
        month = today_kz()[:7]
        assert len(await registry_rows(sim, f"/sim/registries/monthly?month={month}")) == 3
        assert len(await registry_rows(sim, "/sim/registries/daily?date=2020-01-01")) == 1
        for bad in ("daily?date=2024-13-01", "daily?date=20240101", "daily",
                    "monthly?month=2024-1", "daily?date=2024-01-01&format=csv"):
            await sim.control("GET", f"/sim/registries/{bad}", expect=400)


async def test_registry_discrepancies_until_cleared(kaspi: Kaspi) -> None:
    first, second, third = [await kaspi.paid_dynamic("100.00", mpp_id=f"m{i}")
                            for i in range(3)]
    for item in ({"kind": "drop_row", "kaspiId": first},
                 {"kind": "change_amount", "kaspiId": second, "amount": "90.00"},
                 {"kind": "duplicate_row", "kaspiId": third},
                 {"kind": "add_row", "amount": "55.00", "customerId": "777"}):
        await kaspi.control("POST", "/sim/registries/discrepancies", item)
    await kaspi.control("POST", "/sim/registries/discrepancies", {"kind": "drop_row"},
                        expect=400)
    path = f"/sim/registries/daily?date={today_kz()}"
    rows = (await registry_rows(kaspi, path))[1:]
    ids = [row[2] for row in rows]
    assert first not in ids and ids.count(third) == 2 and len(rows) == 4
    changed = next(row for row in rows if row[2] == second)
    assert changed[6] == 90 and changed[7] == pytest.approx(0.86)  # 0.855 half-up
    added = next(row for row in rows if row[0] == "777")
    assert added[2] not in (first, second, third) and added[6] == 55
    await kaspi.control("DELETE", "/sim/registries/discrepancies")
    assert [row[2] for row in (await registry_rows(kaspi, path))[1:]] == [first, second, third]


# --- control API and CLI ---------------------------------------------------------------
@pytest.mark.parametrize("body", [
    {"type": "Dynamic"}, {"type": "Dynamic", "amount": "1.001"}, {"type": "Dynamic",
                                                                  "amount": "-1"},
    {"type": "Static", "amount": 5}, {"type": "Nope"}, {"type": "Dynamic", "amount": 1,
                                                        "ttlSeconds": 0},
    {"type": "Refund", "paymentId": "x"}, {"type": "Refund", "paymentId": "x",
                                           "refundAmount": 1},
    {"type": "Static", "colour": "red"},
])
async def test_control_api_refuses_bad_qr_requests(kaspi: Kaspi, body: dict[str, Any]) -> None:
    answer = await kaspi.control("POST", "/sim/qr", body, expect=400)
    assert answer["error"]["code"] == "VALIDATION_ERROR"


async def test_unknown_payment_is_404_and_reset_empties_state(kaspi: Kaspi) -> None:
    await kaspi.control("GET", "/sim/payments/nope", expect=404)
    payment_id = await kaspi.paid_dynamic()
    await kaspi.control("POST", "/sim/reset")
    await kaspi.control("GET", f"/sim/payments/{payment_id}", expect=404)


async def test_state_is_bounded() -> None:
    async with running_simulator(sim_max_payments=3) as sim:
        static = await sim.qr("Static")
        assert code(await sim.scan(static["qrCode"])) == "SUCCESS"
        await sim.qr("Static")
        assert code(await sim.scan(static["qrCode"])) == "UNKNOWN_EXCEPTION"
        answer = await sim.control("POST", "/sim/qr", {"type": "Static"}, expect=503)
        assert answer["error"]["code"] == "CAPACITY"


async def test_cli_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0
    assert "--listen" in capsys.readouterr().out
