"""One exception per wallet-API outcome, with its code, HTTP status and what it means to
the caller (`why`, the OpenAPI description's words); mapped to the wire in one place
(http/middleware.py wallet_errors). Routes declare which they may raise
(http/routes.py)."""

from __future__ import annotations


class WalletError(Exception):
    code = "INTERNAL_ERROR"
    http_status = 500
    why = "we failed; the request was logged"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(WalletError):
    code, http_status = "VALIDATION_ERROR", 422
    why = "the request is malformed or breaks a rule (message says which)"


class Unauthorized(WalletError):
    code, http_status = "UNAUTHORIZED", 401
    why = "missing or unknown bearer token"


class Forbidden(WalletError):
    """A valid token of the wrong kind: a wallet token where only the core-banking side's
    DEPOSIT_API_TOKENS may call, or the other way round."""

    code, http_status = "FORBIDDEN", 403
    why = ("a valid token that may not call this (deposits and setting the identification "
           "level take only DEPOSIT_API_TOKENS, every other call only WALLET_API_TOKENS)")


class NotFound(WalletError):
    code, http_status = "NOT_FOUND", 404
    why = "no such account, payment, top-up, dispute or run"


class InsufficientFunds(WalletError):
    code, http_status = "INSUFFICIENT_FUNDS", 409
    why = "the balance does not cover it (a payment is DECLINED)"


class LimitExceeded(WalletError):
    """A confirm or a deposit over a limit of the customer's identification level."""

    code, http_status = "LIMIT_EXCEEDED", 409
    why = ("over a limit of the customer's identification level (LIMITS_MCI; the message "
           "names it); nothing moved. A confirm's payment is DECLINED and Kaspi told; a "
           "deposit or top-up is not recorded")


class PaymentExpired(WalletError):
    code, http_status = "PAYMENT_EXPIRED", 409
    why = "canConfirmUntil has passed (the payment is EXPIRED)"


class InvalidState(WalletError):
    code, http_status = "INVALID_STATE", 409
    why = "the record's status does not allow this"


class CustomerMismatch(WalletError):
    code, http_status = "CUSTOMER_MISMATCH", 409
    why = "another customer scanned this payment (or opened this dispute)"


class IdempotencyConflict(WalletError):
    """The same idempotency key (depositId) was used with different arguments."""

    code, http_status = "IDEMPOTENCY_CONFLICT", 409
    why = ("the idempotency key (depositId, topupId, refundId, disputeId) was used with "
           "other arguments")


class PayloadTooLarge(WalletError):
    code, http_status = "PAYLOAD_TOO_LARGE", 413
    why = "the body is larger than MAX_BODY_BYTES"


class KaspiUnavailable(WalletError):
    code, http_status = "KASPI_UNAVAILABLE", 503
    why = "Kaspi did not answer (timeout, network); safe to retry"


class KaspiDefectiveAnswer(WalletError):
    """Kaspi answered SUCCESS without what the regulation requires for the step (§4.1:
    a payment's canConfirmUntil, a Dynamic amount; §4.2: checkout's amount and a
    deadline), or with an amount notifyPayment cannot carry (§4.3: whole tenge).
    Nothing is recorded; counted in mpp_kaspi_defects_total."""

    code, http_status = "KASPI_DEFECTIVE_ANSWER", 502
    why = ("Kaspi's answer lacks what the regulation requires (or carries an amount "
           "notifyPayment cannot send); nothing was recorded, the defect is counted for "
           "Kaspi's support. A repeat asks Kaspi again")


class AcquirerUnavailable(WalletError):
    """The card acquirer did not answer the order's creation; the top-up is kept and the
    same request may be repeated."""

    code, http_status = "ACQUIRER_UNAVAILABLE", 503
    why = "the card acquirer did not answer; the top-up is kept, repeat the same request"


class AcquirerRefusedOrder(WalletError):
    """The card acquirer refused to create the order: the top-up is FAILED."""

    code, http_status = "ACQUIRER_REFUSED", 502
    why = "the card acquirer refused the order; the top-up is FAILED"


class RefundExceedsCredit(WalletError):
    """Money back to the card beyond what the top-up credited (less earlier refunds)."""

    code, http_status = "REFUND_EXCEEDS_CREDITED", 409
    why = "the refunds would add up to more than the top-up credited"


class DatabaseUnavailable(WalletError):
    """PostgreSQL did not answer within its bounds, refused, or is not the primary (a
    failover): the call may be repeated (http/availability.py says what a repeat does)."""

    code, http_status = "DATABASE_UNAVAILABLE", 503
    why = ("the database is unavailable or failing over; the call may be repeated "
           "(docs/high-availability.md)")


# How Kaspi's own error codes from scan/checkout reach the wallet (README, "Wallet API").
KASPI_HTTP_STATUS = {
    "INVALID_TOKEN": 422, "PARAM_ILLEGAL": 422, "CUSTOM_QR_ERROR": 422,
    "EXPIRED_CODE": 410,
    "PROCESS_FAIL": 409, "INVALID_MERCHANT": 409, "PAYMENTS_SUSPENDED": 409,
    "UNKNOWN_EXCEPTION": 502, "UNKNOWN_SOURCE": 502,
}


class KaspiRefused(WalletError):
    """Kaspi answered a scan or checkout with an error code: passed through as is."""

    why = "passed through from Kaspi"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message or code)
        self.code = code
        self.http_status = KASPI_HTTP_STATUS.get(code, 502)
