"""Matching a registry against our books: pure, no I/O, one pass over the rows.

Payment rows match our payments by paymentId, refund rows our refunds by refundId.
What the registry says is `expected`, what our books say is `actual`. A row with no
open finding is matched; what we completed in the period and the registry lacks is
reported too, so a confirmed payment missing on either side is never silent. Then the
money as a whole: Kaspi's payments − refunds must equal ours (docs/reconciliation.md
states every rule, tolerance and limit).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from mpp_server.kaspi_client.models import KZ_TZ
from mpp_server.money import format_amount, format_signed_amount
from mpp_server.reconcile.registry import OpType, Registry, RegistryRow

# A row's time against our completion time. Kaspi completes a payment after our debit
# (we debit, then notify) and writes whole seconds, so a payment row may read up to a
# second before ours, never earlier. A refund is Kaspi's request: it may be dated when
# Kaspi first sent it, before a lost attempt's retry reached us. A row may be later by
# the time our answer took to arrive, bounded by our last change of the operation.
TIME_EARLY_TOLERANCE = timedelta(seconds=1)
REFUND_EARLY_TOLERANCE = timedelta(minutes=1)
TIME_LATE_TOLERANCE = timedelta(minutes=5)


class Kind(StrEnum):
    NOT_IN_OUR_BOOKS = "not_in_our_books"
    NOT_IN_REGISTRY = "not_in_registry"
    AMOUNT_MISMATCH = "amount_mismatch"
    TYPE_MISMATCH = "type_mismatch"
    CUSTOMER_MISMATCH = "customer_mismatch"
    # ID операции MPP, or a refund's ID платежа Kaspi, is not the one we hold.
    REFERENCE_MISMATCH = "reference_mismatch"
    # Kaspi confirms what we hold as not done (still open, a REFUSED refund, ...).
    STATUS_MISMATCH = "status_mismatch"
    # A PENDING payment the registry confirmed: recorded COMPLETED by this run.
    PENDING_COMPLETED = "pending_completed"
    # We returned the money to the customer and the merchant got it too: a money alarm.
    CONFIRMS_DECLINED = "registry_confirms_declined_payment"
    # A payment we never debited (CANCELLED, EXPIRED, FAILED) that Kaspi paid out: a money
    # alarm.
    CONFIRMS_CANCELLED = "registry_confirms_cancelled_payment"
    # The row's time is before our debit or long after our completion.
    TIME_MISMATCH = "time_mismatch"
    # Another registry of the same kind (another day, another month) matched it already.
    MATCHED_ELSEWHERE = "matched_by_another_registry"
    # A fee above the amount, a fee on a refund, or not the agreed rate.
    FEE_MISMATCH = "fee_mismatch"
    # Kaspi's payments − refunds differ from ours: the settlement is wrong beyond the fees.
    SETTLEMENT_MISMATCH = "settlement_mismatch"


# Kinds that mean money went where it should not: counted in mpp_money_alarms_total.
MONEY_ALARM_KINDS = (Kind.CONFIRMS_DECLINED, Kind.CONFIRMS_CANCELLED)


@dataclass(frozen=True, slots=True)
class OurPayment:
    payment_id: str
    mpp_payment_id: str
    customer_id: str
    status: str
    amount_tiyn: int | None
    confirmed_at: datetime | None = None  # our debit: the earliest Kaspi can complete it
    updated_at: datetime | None = None  # our last change (Kaspi's answer arrived)


@dataclass(frozen=True, slots=True)
class OurRefund:
    refund_id: str
    payment_id: str
    payment_mpp_id: str | None  # None when the payment is unknown to us
    customer_id: str
    status: str
    amount_tiyn: int
    created_at: datetime | None = None  # our SUCCESS answer


@dataclass(frozen=True, slots=True)
class Books:
    """Our side: every operation a registry row names (by any of its ids), and what we
    completed in the registry's period."""

    payments: dict[str, OurPayment]
    refunds: dict[str, OurRefund]
    period_payments: dict[str, OurPayment]
    period_refunds: dict[str, OurRefund]
    # Operations another registry of this kind (another period) matched: which one.
    matched_elsewhere: dict[tuple[str, OpType], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeeRule:
    """The fee agreed with Kaspi (KASPI_FEE_RATE, e.g. 0.0195) and how far a row's fee
    may be from it; no rate: only fee ≤ amount and no fee on a refund are checked."""

    rate: Decimal | None = None
    tolerance_tiyn: int = 1

    def expected_tiyn(self, amount_tiyn: int) -> int | None:
        if self.rate is None:
            return None
        return int((Decimal(amount_tiyn) * self.rate).quantize(Decimal(1), ROUND_HALF_UP))


NO_AGREED_RATE = FeeRule()


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
    sheet: str | None = None
    customer_id: str | None = None
    registry_at: datetime | None = None  # the row's time (aware, UTC+5)
    our_at: datetime | None = None  # our completion time


@dataclass(frozen=True, slots=True)
class Totals:
    count: int
    tiyn: int


@dataclass
class MatchResult:
    findings: list[Finding] = field(default_factory=list)
    matched_count: int = 0
    matched: list[tuple[str, OpType]] = field(default_factory=list)
    kaspi_payments: Totals = Totals(0, 0)
    kaspi_refunds: Totals = Totals(0, 0)
    kaspi_fees_tiyn: int = 0
    our_payments: Totals = Totals(0, 0)
    our_refunds: Totals = Totals(0, 0)

    @property
    def open_count(self) -> int:
        return sum(not f.resolved for f in self.findings)

    @property
    def matched_ids(self) -> list[str]:
        return [kaspi_id for kaspi_id, _ in self.matched]


def _money(tiyn: int | None) -> str | None:
    return None if tiyn is None else format_amount(tiyn)


def _local(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(KZ_TZ).strftime("%Y-%m-%d %H:%M:%S")


def same_uuid(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return a == b


def fully_consistent(row: RegistryRow, payment: OurPayment) -> bool:
    """A payment row that agrees with our payment on everything but the status: the only
    kind of row allowed to change a PENDING payment by itself."""
    return (row.type is OpType.PAYMENT and row.amount_tiyn == payment.amount_tiyn
            and row.customer_id == payment.customer_id
            and same_uuid(row.mpp_id, payment.mpp_payment_id)
            and row.kaspi_payment_id in (None, row.kaspi_id))


@dataclass(slots=True)
class _RowFindings:
    """One row's findings, each carrying the row's context (sheet, customer, times)."""

    row: RegistryRow
    our_id: str | None = None
    our_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, kind: Kind, expected: str | None, actual: str | None, message: str,
            resolved: bool = False) -> None:
        row = self.row
        self.findings.append(Finding(
            kind, row.kaspi_id, self.our_id, row.row_number, expected, actual, message,
            resolved, row.sheet, row.customer_id, row.at.replace(tzinfo=KZ_TZ), self.our_at))


def match(registry: Registry, books: Books, completed_now: set[str],
          fees: FeeRule = NO_AGREED_RATE) -> MatchResult:
    """`completed_now`: payments this run moved from PENDING to COMPLETED."""
    result = MatchResult()
    this = f"{registry.period.kind} {registry.period.label}"
    start, end = registry.period.utc_bounds()
    across_midnight_tiyn = 0  # matched here, completed by us in another period
    for row in registry.rows:
        found = (_payment_row(row, books, completed_now) if row.type is OpType.PAYMENT
                 else _refund_row(row, books))
        _check_fee(found, fees)
        earlier = books.matched_elsewhere.get((row.kaspi_id, row.type))
        if earlier is not None:
            found.add(Kind.MATCHED_ELSEWHERE, this, earlier,
                      f"the {earlier} registry already matched this {row.type}: the same "
                      "operation must not be settled twice")
        result.findings += found.findings
        if not any(not f.resolved for f in found.findings):
            result.matched_count += 1
            result.matched.append((row.kaspi_id, row.type))
            if found.our_at is not None and not start <= found.our_at < end:
                sign = 1 if row.type is OpType.PAYMENT else -1
                across_midnight_tiyn += sign * row.amount_tiyn
    in_registry = {row.kaspi_id for row in registry.rows}
    for payment in books.period_payments.values():
        if payment.payment_id not in in_registry:
            result.findings.append(Finding(
                Kind.NOT_IN_REGISTRY, payment.payment_id, payment.mpp_payment_id, None, None,
                _money(payment.amount_tiyn),
                "payment COMPLETED in our books is missing from Kaspi's registry",
                customer_id=payment.customer_id, our_at=payment.confirmed_at))
    for refund in books.period_refunds.values():
        if refund.refund_id not in in_registry:
            result.findings.append(Finding(
                Kind.NOT_IN_REGISTRY, refund.refund_id, refund.refund_id, None, None,
                _money(refund.amount_tiyn),
                f"refund of payment {refund.payment_id} credited in our books is missing "
                "from Kaspi's registry", customer_id=refund.customer_id,
                our_at=refund.created_at))
    payments = [r for r in registry.rows if r.type is OpType.PAYMENT]
    refunds = [r for r in registry.rows if r.type is OpType.REFUND]
    result.kaspi_payments = Totals(len(payments), sum(r.amount_tiyn for r in payments))
    result.kaspi_refunds = Totals(len(refunds), sum(r.amount_tiyn for r in refunds))
    result.kaspi_fees_tiyn = sum(r.fee_tiyn for r in registry.rows)
    result.our_payments = Totals(len(books.period_payments),
                                 sum(p.amount_tiyn or 0 for p in books.period_payments.values()))
    result.our_refunds = Totals(len(books.period_refunds),
                                sum(r.amount_tiyn for r in books.period_refunds.values()))
    kaspi_net = result.kaspi_payments.tiyn - result.kaspi_refunds.tiyn
    our_net = result.our_payments.tiyn - result.our_refunds.tiyn
    if kaspi_net != our_net:
        why = (f"; {format_signed_amount(across_midnight_tiyn)} of it is operations matched "
               "here that we completed in another period (around midnight)"
               if across_midnight_tiyn else "")
        result.findings.append(Finding(
            Kind.SETTLEMENT_MISMATCH, None, None, None, format_signed_amount(kaspi_net),
            format_signed_amount(our_net),
            "Kaspi's payments − refunds differ from ours by "
            f"{format_signed_amount(kaspi_net - our_net)} (fees aside): the settlement would "
            f"be wrong{why}"))
    return result


def _check_time(found: _RowFindings, done_at: datetime | None,
                last_at: datetime | None) -> None:
    if done_at is None:  # never debited: the status finding says so
        return
    at = found.row.at.replace(tzinfo=KZ_TZ)
    early = TIME_EARLY_TOLERANCE if found.row.type is OpType.PAYMENT else (
        REFUND_EARLY_TOLERANCE)
    latest = max(done_at, last_at or done_at) + TIME_LATE_TOLERANCE
    if at < done_at - early:
        found.add(Kind.TIME_MISMATCH, _local(at), _local(done_at),
                  f"the registry dates it {_duration(done_at - at)} before we completed it")
    elif at > latest:
        found.add(Kind.TIME_MISMATCH, _local(at), _local(done_at),
                  f"the registry dates it {_duration(at - done_at)} after we completed it, "
                  f"beyond the {_duration(TIME_LATE_TOLERANCE)} tolerance")


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60} s"


def _check_fee(found: _RowFindings, fees: FeeRule) -> None:
    row = found.row
    fee, amount = _money(row.fee_tiyn), _money(row.amount_tiyn)
    if row.type is OpType.REFUND:
        if row.fee_tiyn:
            found.add(Kind.FEE_MISMATCH, fee, "0.00", "a fee on a refund: Kaspi charges its "
                      "fee on payments only")
        return
    if row.fee_tiyn > row.amount_tiyn:
        found.add(Kind.FEE_MISMATCH, fee, amount, "the fee is larger than the payment")
        return
    agreed = fees.expected_tiyn(row.amount_tiyn)
    if agreed is not None and abs(row.fee_tiyn - agreed) > fees.tolerance_tiyn:
        found.add(Kind.FEE_MISMATCH, fee, _money(agreed),
                  f"the fee is not the agreed {fees.rate} of {amount}")


def _payment_row(row: RegistryRow, books: Books, completed_now: set[str]) -> _RowFindings:
    payment = books.payments.get(row.kaspi_id)
    if payment is None:
        return _missing(row, books)
    found = _RowFindings(row, payment.mpp_payment_id, payment.confirmed_at)
    if payment.status == "DECLINED":
        found.add(Kind.CONFIRMS_DECLINED, "COMPLETED", "DECLINED",
                  "Kaspi confirms a payment we DECLINED and returned to the customer: the "
                  "merchant was paid and the customer kept the money")
    elif payment.status in ("CANCELLED", "EXPIRED", "FAILED"):
        found.add(Kind.CONFIRMS_CANCELLED, "COMPLETED", payment.status,
                  f"Kaspi confirms a payment we hold as {payment.status} and never debited: "
                  "the merchant was paid and the customer kept the money")
    elif row.kaspi_id in completed_now:
        found.add(Kind.PENDING_COMPLETED, "COMPLETED", "PENDING",
                  "PENDING payment confirmed by the registry: recorded as COMPLETED",
                  resolved=True)
    elif payment.status != "COMPLETED":
        found.add(Kind.STATUS_MISMATCH, "COMPLETED", payment.status,
                  f"Kaspi confirms a payment we hold as {payment.status}")
    if row.amount_tiyn != payment.amount_tiyn:
        found.add(Kind.AMOUNT_MISMATCH, _money(row.amount_tiyn), _money(payment.amount_tiyn),
                  "payment amount differs")
    if row.customer_id != payment.customer_id:
        found.add(Kind.CUSTOMER_MISMATCH, row.customer_id, payment.customer_id,
                  "payment customer differs")
    if not same_uuid(row.mpp_id, payment.mpp_payment_id):
        found.add(Kind.REFERENCE_MISMATCH, row.mpp_id, payment.mpp_payment_id,
                  "ID операции MPP is not our mppPaymentId")
    if row.kaspi_payment_id not in (None, row.kaspi_id):
        found.add(Kind.REFERENCE_MISMATCH, row.kaspi_payment_id, row.kaspi_id,
                  "a payment row's ID платежа Kaspi differs from its ID операции Kaspi")
    _check_time(found, payment.confirmed_at, payment.updated_at)
    return found


def _refund_row(row: RegistryRow, books: Books) -> _RowFindings:
    refund = books.refunds.get(row.kaspi_id)
    if refund is None:
        return _missing(row, books)
    found = _RowFindings(row, refund.refund_id, refund.created_at)
    if refund.status != "SUCCESS":
        found.add(Kind.STATUS_MISMATCH, "SUCCESS", refund.status,
                  "Kaspi counts a refund we refused: the customer was not credited")
    if row.amount_tiyn != refund.amount_tiyn:
        found.add(Kind.AMOUNT_MISMATCH, _money(row.amount_tiyn), _money(refund.amount_tiyn),
                  "refund amount differs")
    if row.customer_id != refund.customer_id:
        found.add(Kind.CUSTOMER_MISMATCH, row.customer_id, refund.customer_id,
                  "refund customer differs")
    if row.kaspi_payment_id not in (None, refund.payment_id):
        found.add(Kind.REFERENCE_MISMATCH, row.kaspi_payment_id, refund.payment_id,
                  "the refund's ID платежа Kaspi is not the payment we refunded")
    elif not same_uuid(row.mpp_id, refund.payment_mpp_id):
        found.add(Kind.REFERENCE_MISMATCH, row.mpp_id, refund.payment_mpp_id,
                  "ID операции MPP is not the refunded payment's mppPaymentId")
    if refund.status == "SUCCESS":
        _check_time(found, refund.created_at, None)
    return found


def _missing(row: RegistryRow, books: Books) -> _RowFindings:
    """A row whose id we do not hold as its type: the other type, or nothing at all."""
    if row.type is OpType.PAYMENT and row.kaspi_id in books.refunds:
        found = _RowFindings(row, row.kaspi_id)
        found.add(Kind.TYPE_MISMATCH, "payment", "refund",
                  "Kaspi lists as a payment what we hold as a refund")
    elif row.type is OpType.REFUND and row.kaspi_id in books.payments:
        found = _RowFindings(row, books.payments[row.kaspi_id].mpp_payment_id)
        found.add(Kind.TYPE_MISMATCH, "refund", "payment",
                  "Kaspi lists as a refund what we hold as a payment")
    else:
        found = _RowFindings(row)
        found.add(Kind.NOT_IN_OUR_BOOKS, _money(row.amount_tiyn), None,
                  f"Kaspi's {row.type} is not in our books")
    return found
