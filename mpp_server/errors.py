"""One exception per wallet-API outcome; mapped to HTTP in one place (api/middleware.py)."""

from __future__ import annotations


class WalletError(Exception):
    code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(WalletError):
    code, http_status = "VALIDATION_ERROR", 422


class Unauthorized(WalletError):
    code, http_status = "UNAUTHORIZED", 401


class Forbidden(WalletError):
    """A valid token of the wrong kind: a wallet token where only the core-banking side's
    DEPOSIT_API_TOKENS may call, or the other way round."""

    code, http_status = "FORBIDDEN", 403


class NotFound(WalletError):
    code, http_status = "NOT_FOUND", 404


class InsufficientFunds(WalletError):
    code, http_status = "INSUFFICIENT_FUNDS", 409


class LimitExceeded(WalletError):
    """A confirm or a deposit over a limit of the customer's identification level."""

    code, http_status = "LIMIT_EXCEEDED", 409


class PaymentExpired(WalletError):
    code, http_status = "PAYMENT_EXPIRED", 409


class InvalidState(WalletError):
    code, http_status = "INVALID_STATE", 409


class CustomerMismatch(WalletError):
    code, http_status = "CUSTOMER_MISMATCH", 409


class IdempotencyConflict(WalletError):
    """The same idempotency key (depositId) was used with different arguments."""

    code, http_status = "IDEMPOTENCY_CONFLICT", 409


class KaspiUnavailable(WalletError):
    code, http_status = "KASPI_UNAVAILABLE", 503


class AcquirerUnavailable(WalletError):
    """The card acquirer did not answer the order's creation; the top-up is kept and the
    same request may be repeated."""

    code, http_status = "ACQUIRER_UNAVAILABLE", 503


class AcquirerRefusedOrder(WalletError):
    """The card acquirer refused to create the order: the top-up is FAILED."""

    code, http_status = "ACQUIRER_REFUSED", 502


class RefundExceedsCredit(WalletError):
    """Money back to the card beyond what the top-up credited (less earlier refunds)."""

    code, http_status = "REFUND_EXCEEDS_CREDITED", 409


class DatabaseUnavailable(WalletError):
    """PostgreSQL did not answer within its bounds, refused, or is not the primary (a
    failover): the call may be repeated (http/availability.py says what a repeat does)."""

    code, http_status = "DATABASE_UNAVAILABLE", 503


# How Kaspi's own error codes from scan/checkout reach the wallet (docs/wallet-errors.md).
_KASPI_HTTP_STATUS = {
    "INVALID_TOKEN": 422, "PARAM_ILLEGAL": 422, "CUSTOM_QR_ERROR": 422,
    "EXPIRED_CODE": 410,
    "PROCESS_FAIL": 409, "INVALID_MERCHANT": 409, "PAYMENTS_SUSPENDED": 409,
    "UNKNOWN_EXCEPTION": 502, "UNKNOWN_SOURCE": 502,
}


class KaspiRefused(WalletError):
    """Kaspi answered a scan or checkout with an error code: passed through as is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message or code)
        self.code = code
        self.http_status = _KASPI_HTTP_STATUS.get(code, 502)
