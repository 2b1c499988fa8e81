"""Kaspi's result codes (regulation §4) and which of them end a notifyPayment's retries."""

from __future__ import annotations

from enum import StrEnum


class ResultCode(StrEnum):
    SUCCESS = "SUCCESS"
    CUSTOM_QR_ERROR = "CUSTOM_QR_ERROR"
    EXPIRED_CODE = "EXPIRED_CODE"
    INVALID_TOKEN = "INVALID_TOKEN"
    PROCESS_FAIL = "PROCESS_FAIL"
    INVALID_MERCHANT = "INVALID_MERCHANT"
    PARAM_ILLEGAL = "PARAM_ILLEGAL"
    UNKNOWN_EXCEPTION = "UNKNOWN_EXCEPTION"
    PAYMENTS_SUSPENDED = "PAYMENTS_SUSPENDED"
    UNKNOWN_SOURCE = "UNKNOWN_SOURCE"
    CANCELLED_BY_CLIENT = "CANCELLED_BY_CLIENT"
    RISK_REJECT = "RISK_REJECT"
    ORDER_NOT_EXIST = "ORDER_NOT_EXIST"
    PAYMENT_INCORRECT_STATUS = "PAYMENT_INCORRECT_STATUS"
    UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"
    REFUND_IN_PROCESS = "REFUND_IN_PROCESS"


# notifyPayment answers that say nothing final about the payment: retry them like a
# timeout. UNKNOWN_EXCEPTION is Kaspi's own "unexpected error"; UNKNOWN_SOURCE means
# our X-Caller-Name is misconfigured, which an operator fixes without the customer's
# money being returned and taken again. Every other code is final (docs/notify-policy.md).
NOTIFY_RETRYABLE: frozenset[str] = frozenset({
    ResultCode.UNKNOWN_EXCEPTION, ResultCode.UNKNOWN_SOURCE,
})


def is_final_notify_answer(code: str) -> bool:
    return code not in NOTIFY_RETRYABLE
