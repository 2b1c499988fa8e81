"""Every status a record can be in, and every outcome a step in SQL returns, declared
once (sql/functions/*.sql).

The SQL functions decide (docs/design.md, "Who decides what"); Python matches their
answers against these enums, never against string literals. tests/unit/test_outcomes.py
fails when a function can return a value that is not declared here, or when a value
declared here is never returned; tests/unit/test_states.py fails when the moves the
database allows (sql/functions/states.sql) name a status not declared here, or leave
one unreachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from mpp_server.kaspi_client.codes import ResultCode

# ---- statuses: each machine's, as its table's status column holds them ---------------


class PaymentStatus(StrEnum):
    SCANNED = "SCANNED"
    CHECKED_OUT = "CHECKED_OUT"
    PENDING = "PENDING"        # debited; Kaspi has not answered notifyPayment yet
    COMPLETED = "COMPLETED"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"          # Kaspi refused its checkout finally (PROCESS_FAIL); never debited


class RefundStatus(StrEnum):
    """Kaspi's refunds (POST /refund)."""

    RECEIVED = "RECEIVED"  # the key claimed; never outlives refund_apply's transaction
    SUCCESS = "SUCCESS"
    REFUSED = "REFUSED"


class TopupStatus(StrEnum):
    CREATED = "CREATED"
    CREDITED = "CREDITED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class TopupRefundStatus(StrEnum):
    """Money back to the card; PENDING is the outbox."""

    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"  # an attempt went unanswered: never given back unasked
    COMPLETED = "COMPLETED"
    REFUSED = "REFUSED"


class WebhookStatus(StrEnum):
    """A webhook delivery to the wallet backend; PENDING is the outbox."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"  # the receiver answered 2xx
    GIVEN_UP = "GIVEN_UP"    # not delivered within WEBHOOK_MAX_AGE_S (replayable)


class DisputeStatus(StrEnum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"


class DisputeResolution(StrEnum):
    """How a RESOLVED dispute ended (disputes.resolution)."""

    REFUNDED = "REFUNDED"    # Kaspi refunded the payment (the refunds cover the dispute)
    REJECTED = "REJECTED"    # an operator found the complaint unfounded
    WITHDRAWN = "WITHDRAWN"  # the customer withdrew it (the wallet)


# states.sql's machine names, with their enums and tables.
MACHINES: dict[str, tuple[type[StrEnum], str]] = {
    "payment": (PaymentStatus, "payments"),
    "refund": (RefundStatus, "refunds"),
    "topup": (TopupStatus, "topups"),
    "topup_refund": (TopupRefundStatus, "topup_refunds"),
    "webhook": (WebhookStatus, "webhook_deliveries"),
    "dispute": (DisputeStatus, "disputes"),
}
OPEN_PAYMENT_STATUSES = (PaymentStatus.SCANNED, PaymentStatus.CHECKED_OUT)


# ---- outcomes ---------------------------------------------------------------------


@dataclass(frozen=True)
class StagedNotify:
    """The notifyPayment result an outcome stages in the outbox (regulation §4.3)."""

    result_code: ResultCode
    result_message: str


class ConfirmOutcome(StrEnum):
    """`payment_confirm` (sql/functions/payments.sql): confirm's one statement."""

    DEBITED = "DEBITED"                        # customer debited, PENDING, SUCCESS staged
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # nothing debited, DECLINED, failure staged
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"          # over a limit of the customer's level: the same
    EXPIRED = "EXPIRED"                        # past canConfirmUntil - margin: EXPIRED
    # Refused before any debit, nothing written (the payment returned as it stands):
    NOT_FOUND = "NOT_FOUND"                    # no such payment
    NOT_YOURS = "NOT_YOURS"                    # another customer scanned it
    DECIDED = "DECIDED"                        # PENDING, COMPLETED or DECLINED: a repeat
    CLOSED = "CLOSED"                          # EXPIRED, CANCELLED or FAILED
    AMOUNT_REQUIRED = "AMOUNT_REQUIRED"        # a Static QR code: the customer's amount
    AMOUNT_NOT_WHOLE = "AMOUNT_NOT_WHOLE"      # a Static amount: positive whole tenge
    CHECKOUT_REQUIRED = "CHECKOUT_REQUIRED"    # a Custom QR payment not checked out
    AMOUNT_DIFFERS = "AMOUNT_DIFFERS"          # an amount that is not the payment's

    @property
    def staged(self) -> StagedNotify | None:
        return DEBIT_NOTICES.get(self)


# What payment_confirm stages for Kaspi with each outcome; passed to it as its jsonb
# argument (DEBIT_NOTICES_ARG), so this table is the only place they are written.
DEBIT_NOTICES: dict[ConfirmOutcome, StagedNotify] = {
    ConfirmOutcome.DEBITED: StagedNotify(ResultCode.SUCCESS, "success"),
    ConfirmOutcome.INSUFFICIENT_FUNDS: StagedNotify(ResultCode.PROCESS_FAIL,
                                                    "insufficient funds"),
    ConfirmOutcome.LIMIT_EXCEEDED: StagedNotify(ResultCode.PROCESS_FAIL, "limit exceeded"),
}
DEBIT_NOTICES_ARG: dict[str, list[str]] = {
    outcome.value: [n.result_code.value, n.result_message]
    for outcome, n in DEBIT_NOTICES.items()}
# The same as JSON text, encoded once (a confirm passes it as `$n::text::jsonb`).
DEBIT_NOTICES_JSON = json.dumps(DEBIT_NOTICES_ARG)

# What a cancel stages (regulation §4.3: the customer backed out).
CANCEL_NOTICE = StagedNotify(ResultCode.CANCELLED_BY_CLIENT, "cancelled by client")


class CheckoutOutcome(StrEnum):
    """`payment_checkout` (payments.sql): checkout's answer recorded;
    `payment_checkout_refused`: its final refusal (kaspi_client/codes.py
    CHECKOUT_FINAL_REFUSALS) recorded."""

    CHECKED_OUT = "CHECKED_OUT"
    FAILED = "FAILED"    # PROCESS_FAIL: the payment FAILED, never to be checked out again
    EXPIRED = "EXPIRED"  # EXPIRED_CODE: the payment EXPIRED
    CHANGED = "CHANGED"  # no longer open: read it again and refuse


class CancelOutcome(StrEnum):
    """`payment_cancel` (payments.sql): the customer backed out."""

    CANCELLED = "CANCELLED"                  # CANCELLED, CANCELLED_BY_CLIENT staged
    ALREADY_CANCELLED = "ALREADY_CANCELLED"  # a repeat: nothing more
    CHANGED = "CHANGED"                      # no longer open: refused with its status


class DepositOutcome(StrEnum):
    """`deposit_apply` (deposits.sql): a deposit, once per depositId."""

    DEPOSITED = "DEPOSITED"            # credited from the funding account
    REPEAT = "REPEAT"                  # this depositId, customer and amount: stored answer
    CONFLICT = "CONFLICT"              # this depositId with another customer or amount
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # over the balance cap: nothing recorded


class TopupCreateOutcome(StrEnum):
    """`topup_create` (topups.sql): the top-up's row, before the acquirer hears of it."""

    CREATED = "CREATED"                # claimed: the row is CREATED
    REPEAT = "REPEAT"                  # this topupId, customer, provider and amount
    CONFLICT = "CONFLICT"              # this topupId with other arguments
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # over the balance cap: nothing recorded


class NotifyOutcome(StrEnum):
    """`apply_notify_answer_once` (sql/functions/notify.sql): Kaspi's final answer to our
    notifyPayment, applied."""

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
    CONFLICT = "CONFLICT"                  # this refundId with other arguments: PARAM_ILLEGAL
    REFUSED = "REFUSED"                    # PARAM_ILLEGAL: a parameter is wrong
    NOT_REFUNDABLE = "NOT_REFUNDABLE"      # PROCESS_FAIL: the payment refuses it
    REFUSED_DECLINED = "REFUSED_DECLINED"  # PROCESS_FAIL: we DECLINED and returned it

    @property
    def credited(self) -> bool:
        return self in (RefundOutcome.CREDITED, RefundOutcome.CREDITED_PENDING)


class TopupOrderOutcome(StrEnum):
    """`topup_order_claim`, `topup_order_placed`, `topup_order_not_placed` (topups.sql):
    one order per topupId, placed under a lease."""

    CLAIMED = "CLAIMED"  # this caller places the order now
    PLACED = "PLACED"    # it has its page (from this attempt or another)
    BUSY = "BUSY"        # another caller is placing it: wait for its page
    FINAL = "FINAL"      # no longer CREATED: no page is handed out
    STORED = "STORED"    # this attempt's order and page stored
    FAILED = "FAILED"    # refused on its only attempt: the top-up is FAILED
    KEPT = "KEPT"        # not placed, or refused when an earlier try may have been: CREATED


class TopupCheckOutcome(StrEnum):
    """`topup_check_claim`: who asks the acquirer's status API now."""

    CLAIMED = "CLAIMED"  # this caller asks, under the lease
    BUSY = "BUSY"        # another process asks; it asks once more right after
    NOT_DUE = "NOT_DUE"  # final and no longer watched


class TopupOutcome(StrEnum):
    """`topup_apply_status` (sql/functions/topups.sql): the acquirer's status applied."""

    CREDITED = "CREDITED"            # paid: the customer credited, topup.credited
    LATE_CREDITED = "LATE_CREDITED"  # paid after FAILED/EXPIRED: credited, counted
    MISMATCHED = "MISMATCHED"        # paid another amount: nothing credited, alarm
    WRONG_CURRENCY = "WRONG_CURRENCY"  # paid in another currency: nothing credited, alarm
    FAILED = "FAILED"                # declined or cancelled: topup.failed
    EXPIRED = "EXPIRED"              # the session is over and it was not paid
    WAITING = "WAITING"              # not paid yet (or no answer): checked again later
    ALREADY_FINAL = "ALREADY_FINAL"  # credited, or a late check found nothing new

    @property
    def final(self) -> bool:
        return self not in (TopupOutcome.WAITING, TopupOutcome.ALREADY_FINAL)

    @property
    def credited(self) -> bool:
        return self in (TopupOutcome.CREDITED, TopupOutcome.LATE_CREDITED)


class TopupRefundOutcome(StrEnum):
    """`topup_refund_stage`: money back to the card, the wallet debited first."""

    STAGED = "STAGED"                          # debited; the acquirer is told by the outbox
    REPEAT = "REPEAT"                          # this refundId was staged before: nothing more
    CONFLICT = "CONFLICT"                      # this refundId with other arguments
    UNKNOWN_TOPUP = "UNKNOWN_TOPUP"
    NOT_CREDITED = "NOT_CREDITED"              # the top-up was never credited
    EXCEEDS = "EXCEEDS"                        # more than credited less refunded
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # the wallet no longer holds the money


class TopupRefundClaim(StrEnum):
    """`topup_refund_claim`: what a refund's next attempt does, under its lease."""

    SEND = "SEND"            # tell the acquirer (sent_at is set before the call)
    ASK = "ASK"              # UNKNOWN: read the acquirer's books, send nothing
    WAIT_TURN = "WAIT_TURN"  # another refund of the top-up is in flight or UNKNOWN
    NOT_DUE = "NOT_DUE"      # answered, not due, or another process holds it


class TopupRefundAnswer(StrEnum):
    """`topup_refund_answer`: an attempt's result, applied once."""

    COMPLETED = "COMPLETED"              # the acquirer took it (said so, or its books show it)
    REFUSED = "REFUSED"                  # refused, never in doubt: the money is back
    UNKNOWN = "UNKNOWN"                  # it may have been done: never given back unasked
    RESEND = "RESEND"                    # the books show it was not done: sent again
    WAITING = "WAITING"                  # looked too early, or unreadable books: again later
    ALREADY_APPLIED = "ALREADY_APPLIED"  # answered before, or a stale attempt's no-proof


class TopupRefundResolution(StrEnum):
    """`topup_refund_resolve`: a person's word on an UNKNOWN refund, after asking the bank."""

    COMPLETED = "COMPLETED"      # the bank says it was done
    REFUSED = "REFUSED"          # it was not: the money is back in the wallet
    NOT_UNKNOWN = "NOT_UNKNOWN"  # the refund is not UNKNOWN: nothing changed


class DeviceOutcome(StrEnum):
    """`acquirer_device_claim`, `acquirer_device_registered`, `acquirer_device_lost`
    (acquirer_devices.sql): the trade point's device, registered once."""

    REGISTERED = "REGISTERED"  # it has its token
    CLAIMED = "CLAIMED"        # this caller registers it now
    BUSY = "BUSY"              # another caller is registering it
    STORED = "STORED"          # this registration's token kept
    RELEASED = "RELEASED"      # the registration failed: the next one uses a new DeviceId
    STALE = "STALE"            # another registration or token won meanwhile
    FORGOTTEN = "FORGOTTEN"    # the acquirer lost the device: the next payment registers


class WebhookAttemptOutcome(StrEnum):
    """`webhook_attempt_done` (sql/functions/webhooks.sql): one attempt's result."""

    DELIVERED = "DELIVERED"    # the receiver answered 2xx
    RETRY = "RETRY"            # failed; due again after the backoff
    GIVEN_UP = "GIVEN_UP"      # failed, and the next try would be past WEBHOOK_MAX_AGE_S
    SUPERSEDED = "SUPERSEDED"  # another claim holds the row, or it is no longer PENDING


class WebhookReplayOutcome(StrEnum):
    """`webhook_replay`: an operator sends a delivery again."""

    REPLAYED = "REPLAYED"
    ALREADY_PENDING = "ALREADY_PENDING"  # nothing to do: it is being delivered
    UNKNOWN = "UNKNOWN"                  # no delivery of that event
    EVENT_GONE = "EVENT_GONE"            # retention removed the event: nothing to send


class DisputeOpenOutcome(StrEnum):
    """`dispute_open` (sql/functions/disputes.sql): POST /v1/disputes, claimed first."""

    OPENED = "OPENED"                        # the dispute is OPEN, dispute.opened
    REPEAT = "REPEAT"                        # this disputeId with the same request
    CONFLICT = "CONFLICT"                    # this disputeId with another request
    UNKNOWN_PAYMENT = "UNKNOWN_PAYMENT"      # nothing recorded
    CUSTOMER_MISMATCH = "CUSTOMER_MISMATCH"  # another customer's payment: nothing recorded
    NOT_PAID = "NOT_PAID"                    # nothing was debited: nothing recorded
    EXCEEDS = "EXCEEDS"                      # more than the payment: nothing recorded


class DisputeResolveOutcome(StrEnum):
    """`dispute_resolve`: the one way a dispute is resolved (operator, wallet, refund)."""

    RESOLVED = "RESOLVED"                    # RESOLVED now, dispute.resolved
    REPEAT = "REPEAT"                        # already resolved the same way: nothing more
    ALREADY_RESOLVED = "ALREADY_RESOLVED"    # resolved otherwise: nothing changes
    UNKNOWN = "UNKNOWN"
    CUSTOMER_MISMATCH = "CUSTOMER_MISMATCH"  # a withdrawal for another customer's dispute
    NOT_REFUNDED = "NOT_REFUNDED"            # REFUNDED asked, Kaspi refunded nothing


class DueNow(StrEnum):
    """`notify_due_now`, `topup_check_due_now`: an operator's "try again now" (console)."""

    DUE_NOW = "DUE_NOW"          # the worker of any process takes the row at its next poll
    IN_PROGRESS = "IN_PROGRESS"  # a worker holds the row: an attempt is under way
    NOT_WAITING = "NOT_WAITING"  # nothing waits: answered, decided, or no such row


# The SQL function that returns each enum: the outcome test reads their bodies.
RETURNED_BY: dict[type[StrEnum], tuple[str, ...]] = {
    ConfirmOutcome: ("payment_confirm",),
    CheckoutOutcome: ("payment_checkout", "payment_checkout_refused"),
    CancelOutcome: ("payment_cancel",),
    DepositOutcome: ("deposit_apply",),
    TopupCreateOutcome: ("topup_create",),
    NotifyOutcome: ("apply_notify_answer_once",),
    RefundOutcome: ("refund_apply",),
    TopupOrderOutcome: ("topup_order_claim", "topup_order_placed", "topup_order_not_placed"),
    TopupCheckOutcome: ("topup_check_claim",),
    TopupOutcome: ("topup_apply_status",),
    TopupRefundOutcome: ("topup_refund_stage",),
    TopupRefundClaim: ("topup_refund_claim",),
    TopupRefundAnswer: ("topup_refund_answer",),
    TopupRefundResolution: ("topup_refund_resolve",),
    DeviceOutcome: ("acquirer_device_claim", "acquirer_device_registered",
                    "acquirer_device_lost"),
    WebhookAttemptOutcome: ("webhook_attempt_done",),
    WebhookReplayOutcome: ("webhook_replay",),
    DisputeOpenOutcome: ("dispute_open",),
    DisputeResolveOutcome: ("dispute_resolve",),
    DueNow: ("notify_due_now", "topup_check_due_now"),
}
