"""Kaspi's answers as JSON bytes (regulation §4.1–4.3).

Scan dates use the regulation's short offset (`+05`, §1.6), checkout's the long one
(`+05:00`, its example), so clients are exercised on both. Scan carries one field no
client models (`qrCodeVersion`): real servers send more than their examples show.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from mpp_server.devtools.simulator import catalogue
from mpp_server.devtools.simulator.model import Payment, Qr, QrType
from mpp_server.devtools.simulator.wire import (
    amount_number,
    dumps,
    full_offset_time,
    raw_object,
    result,
    short_offset_time,
)
from mpp_server.kaspi_client.codes import ResultCode
from mpp_server.money import format_amount

SUCCESS_MESSAGE = "success"
RECEIPT_BASE = "https://receipt-test.kaspi.kz/web"


def _success() -> dict[str, str]:
    return result(ResultCode.SUCCESS, SUCCESS_MESSAGE)


def scan(qr: Qr, payment: Payment | None, locale: str, tz: timezone) -> bytes:
    body: dict[str, Any] = {"result": _success(), "qrCodeType": qr.qr_type.value,
                            "qrCodeVersion": 2}
    if qr.qr_type is QrType.REFUND:
        body["refund"] = {"refundId": qr.refund_id}
    else:
        assert payment is not None, "a payment QR's scan names a payment"
        wire_payment: dict[str, str] = {"paymentId": payment.payment_id}
        if qr.qr_type is QrType.DYNAMIC:
            assert payment.amount_tiyn is not None, "a Dynamic QR has an amount"
            wire_payment["paymentAmount"] = format_amount(payment.amount_tiyn)
        if qr.qr_type is not QrType.CUSTOM:
            # The Custom example has no canConfirmUntil: checkout gives it.
            wire_payment["canConfirmUntil"] = short_offset_time(payment.confirm_until, tz)
        body["payment"] = wire_payment
        if qr.qr_type is QrType.CUSTOM:
            body["paymentData"] = catalogue.payment_data(locale)
    body["merchant"] = qr.merchant.wire()
    return dumps(body).encode()


def checkout(payment: Payment, amount_tiyn: int, tz: timezone) -> bytes:
    # The regulation's example sends a bare number: `"paymentAmount": 100`.
    return raw_object([
        ("paymentAmount", amount_number(amount_tiyn, keep_decimals=False)),
        ("canConfirmUntil", dumps(full_offset_time(payment.confirm_until, tz))),
        ("merchant", dumps(payment.merchant.wire())),
        ("result", dumps(_success())),
    ]).encode()


def notify(link_receipt: str | None) -> bytes:
    body: dict[str, Any] = {"result": _success()}
    if link_receipt is not None:
        body["linkReceipt"] = link_receipt
    return dumps(body).encode()


def receipt_link(ext_tran_id: str, epoch_s: float, tz: timezone) -> str:
    """`https://receipt-test.kaspi.kz/web?extTranId=QR2509155449&sale_date=2024-12-05+12:05:10.285`"""
    local = datetime.fromtimestamp(epoch_s, tz)
    sale_date = local.strftime("%Y-%m-%d+%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    return f"{RECEIPT_BASE}?extTranId={ext_tran_id}&sale_date={sale_date}"
