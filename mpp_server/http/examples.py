"""The OpenAPI description's examples: model instances, so every example is a valid
answer by construction (http/routes.py uses them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from mpp_server.http.models import (
    DisputeOut,
    EventOut,
    MerchantOut,
    OptionOut,
    PaymentOut,
    RefundOut,
    RefundRef,
    ScanOut,
    ScanPaymentOut,
    ServiceOut,
    ServiceParameterOut,
    TopupOut,
    TopupRefundOut,
)

CUSTOMER = "900912345678"
PAYMENT_ID = "abc1234567890"
UNTIL = datetime(2024, 2, 19, 10, 57, 41, tzinfo=UTC)
MERCHANT = MerchantOut(merchantId="123456789", merchantName="Coffee Bar", merchantMCC="5812")
RECEIPT = "https://receipt-test.kaspi.kz/web?extTranId=QR2509155449&sale_date=2024-12-05+12:05:10.285"
REFUND_RECEIPT = "https://receipt.kaspi.kz/ext?TranId=a3ffba1a-5add&sale_date=2024-12-06+10:14:09.646"


def payment_example(**changes: Any) -> PaymentOut:
    base: dict[str, Any] = dict(
        paymentId=PAYMENT_ID, mppPaymentId="1042", qrCodeType="Dynamic", status="COMPLETED",
        amount=150000, refundedAmount=0, linkReceipt=RECEIPT, merchant=MERCHANT,
        canConfirmUntil=UNTIL, kaspiAcknowledged=True, createdAt=UNTIL)
    return PaymentOut(**{**base, **changes})


SCAN_EXAMPLES: dict[str, BaseModel] = {
    "Dynamic": ScanOut(qrCodeType="Dynamic", merchant=MERCHANT, payment=ScanPaymentOut(
        paymentId=PAYMENT_ID, amount=150000, canConfirmUntil=UNTIL, status="SCANNED")),
    "Static": ScanOut(qrCodeType="Static", merchant=MERCHANT, payment=ScanPaymentOut(
        paymentId="st-0192837465", canConfirmUntil=UNTIL, status="SCANNED")),
    "Custom": ScanOut(
        qrCodeType="Custom", merchant=MERCHANT,
        payment=ScanPaymentOut(paymentId="379eb787-1a36-4096-ac39-4f3006e26a19",
                               status="SCANNED"),
        service=ServiceOut(serviceId=2862, serviceName="Парковка", parameters=[
            ServiceParameterOut(id=3932, name="Госномер", value=""),
            ServiceParameterOut(id=3933, name="Зона", options=[
                OptionOut(key="A", label="Зона A"), OptionOut(key="B", label="Зона B")])])),
    "Refund": ScanOut(qrCodeType="Refund", refund=RefundRef(refundId="QR150895463")),
}
PAYMENT_EXAMPLES: dict[str, BaseModel] = {
    "COMPLETED": payment_example(),
    "PENDING": payment_example(status="PENDING", linkReceipt=None, kaspiAcknowledged=False),
    "refunded": payment_example(refundedAmount=50000, refunds=[
        RefundOut(refundId="Ref1234567", amount=50000, createdAt=UNTIL,
                  linkReceipt=REFUND_RECEIPT)]),
}

DUE = datetime(2024, 2, 20, 10, 57, 41, tzinfo=UTC)


def dispute_example(**changes: Any) -> DisputeOut:
    base: dict[str, Any] = dict(
        disputeId="dp-1", paymentId=PAYMENT_ID, customerId=CUSTOMER, status="OPEN",
        reason="Charged twice for one coffee <b>", amount=150000, refundedAmount=0,
        createdAt=UNTIL, dueAt=DUE)
    return DisputeOut(**{**base, **changes})


DISPUTE_EXAMPLES: dict[str, BaseModel] = {
    "OPEN": dispute_example(),
    "REFUNDED": dispute_example(status="RESOLVED", resolution="REFUNDED",
                                refundedAmount=150000, resolvedAt=DUE,
                                note="Kaspi refunded 1500.00 KZT of it since it opened "
                                     "(last refund Ref1234567)"),
    "WITHDRAWN": dispute_example(status="RESOLVED", resolution="WITHDRAWN", resolvedAt=DUE),
}
EVENT_EXAMPLES: list[EventOut] = [
    EventOut(id=17, type="payment.completed", customerId=CUSTOMER, paymentId=PAYMENT_ID,
             amount=150000, merchantName="Coffee Bar", linkReceipt=RECEIPT, createdAt=UNTIL),
    EventOut(id=18, type="refund.credited", customerId=CUSTOMER, paymentId=PAYMENT_ID,
             refundId="Ref1234567", amount=50000, merchantName="Coffee Bar",
             linkReceipt=REFUND_RECEIPT, createdAt=UNTIL),
    EventOut(id=19, type="dispute.resolved", customerId=CUSTOMER, paymentId=PAYMENT_ID,
             disputeId="dp-1", amount=50000, merchantName="Coffee Bar",
             resolution="REFUNDED", createdAt=DUE),
]

TOPUP_EXAMPLES: dict[str, BaseModel] = {
    "CREATED": TopupOut(topupId="tu-1", customerId=CUSTOMER, provider="halyk-epay",
                        amount=500000, status="CREATED", refundedAmount=0,
                        paymentUrl="https://epayment.halykbank.kz/pay/invoices/4821",
                        providerOrderId="4821", createdAt=UNTIL, expiresAt=UNTIL),
    "CREDITED": TopupOut(topupId="tu-1", customerId=CUSTOMER, provider="halyk-epay",
                         amount=500000, status="CREDITED", refundedAmount=0,
                         paymentUrl="https://epayment.halykbank.kz/pay/invoices/4821",
                         providerOrderId="4821", createdAt=UNTIL, creditedAt=UNTIL,
                         expiresAt=UNTIL),
    "FAILED": TopupOut(topupId="tu-3", customerId=CUSTOMER, provider="kapital",
                       amount=150000, status="FAILED", refundedAmount=0,
                       providerOrderId="90817", failureReason="DECLINED", createdAt=UNTIL,
                       expiresAt=UNTIL),
}
REFUND_EXAMPLES: dict[str, BaseModel] = {
    "COMPLETED": TopupRefundOut(refundId="rf-1", topupId="tu-1", amount=50000,
                                status="COMPLETED", operation="refund", createdAt=UNTIL),
    "PENDING": TopupRefundOut(refundId="rf-2", topupId="tu-1", amount=50000,
                              status="PENDING", createdAt=UNTIL),
}
