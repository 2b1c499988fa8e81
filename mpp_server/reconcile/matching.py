"""Matching a registry against our books: pure, no I/O, one pass over the rows.

Payment rows match our payments by paymentId, refund rows our refunds by refundId.
What the registry says is `expected`, what our books say is `actual`. A row with no
open finding is matched; what we completed in the period and the registry lacks is
reported too, so a confirmed payment missing on either side is never silent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from mpp_server.money import format_amount
from mpp_server.reconcile.registry import OpType, Registry, Row


class Kind(StrEnum):
    NOT_IN_OUR_BOOKS = "not_in_our_books"
    NOT_IN_REGISTRY = "not_in_registry"
    AMOUNT_MISMATCH = "amount_mismatch"
    TYPE_MISMATCH = "type_mismatch"
    CUSTOMER_MISMATCH = "customer_mismatch"
    # ID операции MPP, or a refund's ID платежа Kaspi, is not the one we hold.
    REFERENCE_MISMATCH = "reference_mismatch"
    # Kaspi confirms what we hold as not done (CANCELLED, EXPIRED, a REFUSED refund, ...).
    STATUS_MISMATCH = "status_mismatch"
    # A PENDING payment the registry confirmed: recorded COMPLETED by this run.
    PENDING_COMPLETED = "pending_completed"
    # We returned the money to the customer and the merchant got it too: a money alarm.
    CONFIRMS_DECLINED = "registry_confirms_declined_payment"


@dataclass(frozen=True, slots=True)
class OurPayment:
    payment_id: str
    mpp_payment_id: str
    customer_id: str
    status: str
    amount_tiyn: int | None


@dataclass(frozen=True, slots=True)
class OurRefund:
    refund_id: str
    payment_id: str
    payment_mpp_id: str | None  # None when the payment is unknown to us
    customer_id: str
    status: str
    amount_tiyn: int


@dataclass(frozen=True, slots=True)
class Books:
    """Our side: every operation a registry row names (by any of its ids), and what we
    completed in the registry's period."""

    payments: dict[str, OurPayment]
    refunds: dict[str, OurRefund]
    period_payments: dict[str, OurPayment]
    period_refunds: dict[str, OurRefund]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    kaspi_id: str | None
    our_id: str | None
    row_number: int | None
    expected: str | None
    actual: str | None
    message: str
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class Totals:
    count: int
    tiyn: int


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    matched_count: int = 0
    matched_ids: list[str] = field(default_factory=list)
    kaspi_payments: Totals = Totals(0, 0)
    kaspi_refunds: Totals = Totals(0, 0)
    kaspi_fees_tiyn: int = 0
    our_payments: Totals = Totals(0, 0)
    our_refunds: Totals = Totals(0, 0)

    @property
    def open_count(self) -> int:
        return sum(not f.resolved for f in self.findings)


def _money(tiyn: int | None) -> str | None:
    return None if tiyn is None else format_amount(tiyn)


def same_uuid(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return a == b


def fully_consistent(row: Row, payment: OurPayment) -> bool:
    """A payment row that agrees with our payment on everything but the status: the only
    kind of row allowed to change a PENDING payment by itself."""
    return (row.type is OpType.PAYMENT and row.amount_tiyn == payment.amount_tiyn
            and row.customer_id == payment.customer_id
            and same_uuid(row.mpp_id, payment.mpp_payment_id)
            and row.kaspi_payment_id == row.kaspi_id)


def match(registry: Registry, books: Books, completed_now: set[str]) -> Result:
    """`completed_now`: payments this run moved from PENDING to COMPLETED."""
    result = Result()
    for row in registry.rows:
        findings = (_payment_row(row, books, completed_now) if row.type is OpType.PAYMENT
                    else _refund_row(row, books))
        result.findings += findings
        if not any(not f.resolved for f in findings):
            result.matched_count += 1
            result.matched_ids.append(row.kaspi_id)
    in_registry = {row.kaspi_id for row in registry.rows}
    for payment in books.period_payments.values():
        if payment.payment_id not in in_registry:
            result.findings.append(Finding(
                Kind.NOT_IN_REGISTRY, payment.payment_id, payment.mpp_payment_id, None, None,
                _money(payment.amount_tiyn),
                "payment COMPLETED in our books is missing from Kaspi's registry"))
    for refund in books.period_refunds.values():
        if refund.refund_id not in in_registry:
            result.findings.append(Finding(
                Kind.NOT_IN_REGISTRY, refund.refund_id, refund.refund_id, None, None,
                _money(refund.amount_tiyn),
                f"refund of payment {refund.payment_id} credited in our books is missing "
                "from Kaspi's registry"))
    payments = [r for r in registry.rows if r.type is OpType.PAYMENT]
    refunds = [r for r in registry.rows if r.type is OpType.REFUND]
    result.kaspi_payments = Totals(len(payments), sum(r.amount_tiyn for r in payments))
    result.kaspi_refunds = Totals(len(refunds), sum(r.amount_tiyn for r in refunds))
    result.kaspi_fees_tiyn = sum(r.fee_tiyn for r in registry.rows)
    result.our_payments = Totals(len(books.period_payments),
                                 sum(p.amount_tiyn or 0 for p in books.period_payments.values()))
    result.our_refunds = Totals(len(books.period_refunds),
                                sum(r.amount_tiyn for r in books.period_refunds.values()))
    return result


def _payment_row(row: Row, books: Books, completed_now: set[str]) -> list[Finding]:
    payment = books.payments.get(row.kaspi_id)
    if payment is None:
        return [_missing(row, books)]
    ours = payment.mpp_payment_id
    findings: list[Finding] = []
    if payment.status == "DECLINED":
        findings.append(Finding(Kind.CONFIRMS_DECLINED, row.kaspi_id, ours, row.row_number,
                                "COMPLETED", "DECLINED",
                                "Kaspi confirms a payment we DECLINED and returned to the "
                                "customer: the merchant was paid and the customer kept the "
                                "money"))
    elif row.kaspi_id in completed_now:
        findings.append(Finding(Kind.PENDING_COMPLETED, row.kaspi_id, ours, row.row_number,
                                "COMPLETED", "PENDING",
                                "PENDING payment confirmed by the registry: recorded as "
                                "COMPLETED", resolved=True))
    elif payment.status != "COMPLETED":
        findings.append(Finding(Kind.STATUS_MISMATCH, row.kaspi_id, ours, row.row_number,
                                "COMPLETED", payment.status,
                                f"Kaspi confirms a payment we hold as {payment.status}"))
    if row.amount_tiyn != payment.amount_tiyn:
        findings.append(Finding(Kind.AMOUNT_MISMATCH, row.kaspi_id, ours, row.row_number,
                                _money(row.amount_tiyn), _money(payment.amount_tiyn),
                                "payment amount differs"))
    if row.customer_id != payment.customer_id:
        findings.append(Finding(Kind.CUSTOMER_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.customer_id, payment.customer_id,
                                "payment customer differs"))
    if not same_uuid(row.mpp_id, ours):
        findings.append(Finding(Kind.REFERENCE_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.mpp_id, ours, "ID операции MPP is not our mppPaymentId"))
    if row.kaspi_payment_id != row.kaspi_id:
        findings.append(Finding(Kind.REFERENCE_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.kaspi_payment_id, row.kaspi_id,
                                "a payment row's ID платежа Kaspi differs from its "
                                "ID операции Kaspi"))
    return findings


def _refund_row(row: Row, books: Books) -> list[Finding]:
    refund = books.refunds.get(row.kaspi_id)
    if refund is None:
        return [_missing(row, books)]
    ours = refund.refund_id
    findings: list[Finding] = []
    if refund.status != "SUCCESS":
        findings.append(Finding(Kind.STATUS_MISMATCH, row.kaspi_id, ours, row.row_number,
                                "SUCCESS", refund.status, "Kaspi counts a refund we refused: "
                                "the customer was not credited"))
    if row.amount_tiyn != refund.amount_tiyn:
        findings.append(Finding(Kind.AMOUNT_MISMATCH, row.kaspi_id, ours, row.row_number,
                                _money(row.amount_tiyn), _money(refund.amount_tiyn),
                                "refund amount differs"))
    if row.customer_id != refund.customer_id:
        findings.append(Finding(Kind.CUSTOMER_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.customer_id, refund.customer_id, "refund customer differs"))
    if row.kaspi_payment_id != refund.payment_id:
        findings.append(Finding(Kind.REFERENCE_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.kaspi_payment_id, refund.payment_id,
                                "the refund's ID платежа Kaspi is not the payment we refunded"))
    elif not same_uuid(row.mpp_id, refund.payment_mpp_id):
        findings.append(Finding(Kind.REFERENCE_MISMATCH, row.kaspi_id, ours, row.row_number,
                                row.mpp_id, refund.payment_mpp_id,
                                "ID операции MPP is not the refunded payment's mppPaymentId"))
    return findings


def _missing(row: Row, books: Books) -> Finding:
    """A row whose id we do not hold as its type: the other type, or nothing at all."""
    if row.type is OpType.PAYMENT and row.kaspi_id in books.refunds:
        return Finding(Kind.TYPE_MISMATCH, row.kaspi_id, row.kaspi_id, row.row_number,
                       "payment", "refund", "Kaspi lists as a payment what we hold as a refund")
    if row.type is OpType.REFUND and row.kaspi_id in books.payments:
        ours = books.payments[row.kaspi_id].mpp_payment_id
        return Finding(Kind.TYPE_MISMATCH, row.kaspi_id, ours, row.row_number,
                       "refund", "payment", "Kaspi lists as a refund what we hold as a payment")
    what = "payment" if row.type is OpType.PAYMENT else "refund"
    return Finding(Kind.NOT_IN_OUR_BOOKS, row.kaspi_id, None, row.row_number,
                   _money(row.amount_tiyn), None,
                   f"Kaspi's {what} of customer {row.customer_id} is not in our books")
