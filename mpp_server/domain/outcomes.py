"""Every outcome a money step in SQL returns, declared once (sql/functions/*.sql).

The SQL functions decide (docs/design.md, "Who decides what"); Python matches their
answers against these enums, never against string literals. tests/db/test_outcomes.py
fails when a function can return a value that is not declared here, or when a value
declared here is never returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mpp_server.kaspi_client.codes import ResultCode


@dataclass(frozen=True)
class StagedNotify:
    """The notifyPayment result an outcome stages in the outbox (regulation §4.3)."""

    result_code: ResultCode
    result_message: str


class DebitOutcome(StrEnum):
    """`payment_debit` (sql/functions/payments.sql): confirm's one statement."""

    DEBITED = "DEBITED"                        # customer debited, PENDING, SUCCESS staged
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # nothing debited, DECLINED, failure staged
    EXPIRED = "EXPIRED"                        # past canConfirmUntil - margin: EXPIRED
    CHANGED = "CHANGED"                        # not in the status validated: read again

    @property
    def staged(self) -> StagedNotify | None:
        return DEBIT_NOTICES.get(self)


# What payment_debit stages for Kaspi with each outcome; passed to it as its jsonb
# argument (DEBIT_NOTICES_ARG), so this table is the only place they are written.
DEBIT_NOTICES: dict[DebitOutcome, StagedNotify] = {
    DebitOutcome.DEBITED: StagedNotify(ResultCode.SUCCESS, "success"),
    DebitOutcome.INSUFFICIENT_FUNDS: StagedNotify(ResultCode.PROCESS_FAIL,
                                                  "insufficient funds"),
}
DEBIT_NOTICES_ARG: dict[str, list[str]] = {
    outcome.value: [n.result_code.value, n.result_message]
    for outcome, n in DEBIT_NOTICES.items()}

# What a cancel stages (regulation §4.3: the customer backed out).
CANCEL_NOTICE = StagedNotify(ResultCode.CANCELLED_BY_CLIENT, "cancelled by client")


class NotifyOutcome(StrEnum):
    """`apply_notify_answer_once` / `apply_notify_answer` (sql/functions/notify.sql):
    Kaspi's final answer to our notifyPayment, applied."""

    ACKNOWLEDGED = "ACKNOWLEDGED"        # our cancel or decline was answered
    COMPLETED = "COMPLETED"              # PENDING -> COMPLETED with the receipt
    RECEIPT = "RECEIPT"                  # already COMPLETED (a refund proved it): receipt kept
    DECLINED = "DECLINED"                # PENDING -> DECLINED, the debit returned
    CONTRADICTED = "CONTRADICTED"        # a refund proved it completed, Kaspi says error
    ALREADY_APPLIED = "ALREADY_APPLIED"  # another sender applied this answer first


class RefundOutcome(StrEnum):
    """`refund_apply` / `refund_apply_logged` (sql/functions/refunds.sql): POST /refund."""

    CREDITED = "CREDITED"                  # the customer credited
    CREDITED_PENDING = "CREDITED_PENDING"  # credited; the PENDING payment now COMPLETED
    REPEAT = "REPEAT"                      # this refundId was answered before: same answer
    CONFLICT = "CONFLICT"                  # this refundId with other arguments
    REFUSED = "REFUSED"                    # PARAM_ILLEGAL: the money rules refuse it
    REFUSED_DECLINED = "REFUSED_DECLINED"  # refused: we DECLINED and returned the payment

    @property
    def credited(self) -> bool:
        return self in (RefundOutcome.CREDITED, RefundOutcome.CREDITED_PENDING)


# The SQL function that returns each enum: the outcome test reads their bodies.
RETURNED_BY: dict[type[StrEnum], tuple[str, ...]] = {
    DebitOutcome: ("payment_debit",),
    NotifyOutcome: ("apply_notify_answer", "apply_notify_answer_once"),
    RefundOutcome: ("refund_apply",),
}
