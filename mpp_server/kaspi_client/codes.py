"""Kaspi's result codes (regulation §4), which of them end a notifyPayment's retries, and
which refusals of checkout are final."""

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


# checkout answers that end the payment (regulation §4.2's codes): PROCESS_FAIL, "a
# general failure of business processing; the action must not be repeated", and
# EXPIRED_CODE, the payment's time is over. They are recorded on the payment (FAILED,
# EXPIRED) and a repeated checkout answers them without asking Kaspi again. The others
# (PARAM_ILLEGAL: the customer's parameters; UNKNOWN_EXCEPTION, PAYMENTS_SUSPENDED,
# UNKNOWN_SOURCE: Kaspi's or our trouble) are passed through and may be tried again.
CHECKOUT_FINAL_REFUSALS: frozenset[str] = frozenset({
    ResultCode.PROCESS_FAIL, ResultCode.EXPIRED_CODE,
})
