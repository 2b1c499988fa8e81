"""What a successful scan or checkout answer must carry before a payment is recorded
(regulation §4.1, §4.2, §4.3), and what is only counted.

An answer without what a later step needs (a payment's canConfirmUntil, a Dynamic
amount, checkout's amount) would leave a payment that never expires or cannot be
confirmed: it is refused, KaspiDefectiveAnswer, nothing recorded. A defective field that
decides nothing (the merchant's MCC or terminal type) is taken as sent. Either way the
defect is counted in mpp_kaspi_defects_total{message, field, defect} and logged, for
someone to raise with Kaspi (docs/money.md, "Kaspi's defective answers").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpp_server.errors import KaspiDefectiveAnswer
from mpp_server.kaspi_client.models import CheckoutResponse, Merchant, ScanResponse
from mpp_server.metrics import KASPI_DEFECTS
from mpp_server.money import format_amount, is_whole_tenge

log = logging.getLogger(__name__)

PAYMENT_QR_TYPES = ("Dynamic", "Static", "Custom")


def count_defect(message: str, field: str, defect: str, **context: str) -> None:
    """A field of Kaspi's message that breaks the regulation: counted and logged."""
    KASPI_DEFECTS.labels(message, field, defect).inc()
    log.warning(f"Kaspi's {message} has a defective {field} ({defect})",
                extra={"kaspi_message": message, "field": field, "defect": defect,
                       **context})


def _refuse(message: str, field: str, defect: str, why: str) -> KaspiDefectiveAnswer:
    count_defect(message, field, defect)
    return KaspiDefectiveAnswer(f"Kaspi's {message} answer {why}; nothing was recorded")


def _merchant(message: str, merchant: Merchant, *, author_type: bool) -> dict[str, Any]:
    for field, defect in merchant.defects(author_type=author_type):
        count_defect(message, field, defect)
    return merchant.model_dump(exclude_none=True)


@dataclass(frozen=True)
class ScannedPayment:
    qr_code_type: str
    payment_id: str
    amount_tiyn: int | None  # Dynamic only
    can_confirm_until: datetime | None  # None only for Custom: checkout gives it
    merchant: dict[str, Any]
    service: dict[str, Any] | None  # Custom only


def scanned_payment(answer: ScanResponse) -> ScannedPayment:
    """A SUCCESS scan of a payment QR (§4.1): every field the payment needs, or
    KaspiDefectiveAnswer."""
    qr_type = answer.qrCodeType or ""
    if qr_type not in PAYMENT_QR_TYPES:
        raise _refuse("scan", "qrCodeType", "unknown", f"names qrCodeType {qr_type!r}")
    if answer.payment is None or answer.merchant is None:
        field = "payment" if answer.payment is None else "merchant"
        raise _refuse("scan", field, "missing", f"of a {qr_type} QR has no {field}")
    amount = answer.payment.paymentAmount if qr_type == "Dynamic" else None
    if qr_type == "Dynamic" and amount is None:
        raise _refuse("scan", "paymentAmount", "missing", "of a Dynamic QR has no paymentAmount")
    if amount is not None and amount <= 0:
        raise _refuse("scan", "paymentAmount", "not_positive",
                      f"names paymentAmount {format_amount(amount)}")
    until = answer.payment.canConfirmUntil
    # §4.1 requires it of every payment; the regulation's own Custom example has none,
    # and checkout (§4.2) gives a Custom payment its deadline before confirm.
    if until is None and qr_type != "Custom":
        raise _refuse("scan", "canConfirmUntil", "missing",
                      f"of a {qr_type} QR has no canConfirmUntil: the payment would never "
                      "expire")
    if qr_type == "Custom" and answer.paymentData is None:
        raise _refuse("scan", "paymentData", "missing", "of a Custom QR has no paymentData")
    service = answer.paymentData.model_dump(exclude_none=True) if answer.paymentData else None
    return ScannedPayment(qr_type, answer.payment.paymentId, amount, until,
                          _merchant("scan", answer.merchant, author_type=True), service)


def scanned_refund_id(answer: ScanResponse) -> str:
    if answer.refund is None:
        raise _refuse("scan", "refund", "missing", "of a Refund QR has no refund")
    if answer.merchant is not None:
        _merchant("scan", answer.merchant, author_type=True)
    return answer.refund.refundId


def checked_out(answer: CheckoutResponse, scan_until: datetime | None
                ) -> tuple[int, datetime]:
    """A SUCCESS checkout (§4.2): the amount and the deadline to confirm by, or
    KaspiDefectiveAnswer. A checkout without canConfirmUntil keeps scan's (counted); with
    neither, the payment could never expire: refused."""
    amount = answer.paymentAmount
    if amount is None:
        raise _refuse("checkout", "paymentAmount", "missing", "has no paymentAmount")
    if amount <= 0:
        raise _refuse("checkout", "paymentAmount", "not_positive",
                      f"names paymentAmount {format_amount(amount)}")
    if not is_whole_tenge(amount):
        # §4.3: notifyPayment's paymentAmount, required for a Custom payment, is a whole
        # number: this amount could not be reported. Refused before any debit rather than
        # rounded (the customer would pay another amount than the merchant asked).
        raise _refuse("checkout", "paymentAmount", "not_whole",
                      f"names paymentAmount {format_amount(amount)}, which notifyPayment "
                      "cannot carry (§4.3: whole tenge)")
    until = answer.canConfirmUntil or scan_until
    if until is None:
        raise _refuse("checkout", "canConfirmUntil", "missing",
                      "has no canConfirmUntil, nor had scan: the payment would never expire")
    if answer.canConfirmUntil is None:
        count_defect("checkout", "canConfirmUntil", "missing")
    if answer.merchant is not None:
        _merchant("checkout", answer.merchant, author_type=False)
    return amount, until
