"""Kaspi's wire formats (regulation §4) as pydantic models, with its maximum lengths.

Inbound models ignore fields we do not model (real Kaspi sends more than its examples
show) and accept the regulation's variants: dates with a short offset (`+06`), amounts
as strings or bare JSON numbers. Outbound models always send amounts as "100.00".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from mpp_server.money import format_amount, parse_amount

# Kazakhstan has one time zone, UTC+5, since 2024-03-01; a date without an offset is
# read as local time.
KZ_TZ = timezone(timedelta(hours=5))


def parse_kaspi_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError("date must be an ISO 8601 string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=KZ_TZ)
    return parsed.astimezone(UTC)


# The receipt and message languages Kaspi takes in X-Locale (regulation §4).
LOCALES = ("ru-RU", "kk-KZ")

KaspiDatetime = Annotated[datetime, BeforeValidator(parse_kaspi_datetime)]
# Tiyn inside, "1500.00" on the wire. AmountIn parses what a peer sent (a string or a
# bare number, in tenge); AmountOut is built from our own tiyn and only formats.
AmountIn = Annotated[int, BeforeValidator(parse_amount),
                     PlainSerializer(format_amount, return_type=str)]
AmountOut = Annotated[int, Field(ge=0), PlainSerializer(format_amount, return_type=str)]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Result(_Inbound):
    resultCode: str = Field(min_length=1, max_length=64)
    resultMessage: str = Field(default="", max_length=256)


MERCHANT_MCC_MAX = 32
AUTHOR_TYPE_MAX = 5


class Merchant(_Inbound):
    """§4.1 requires merchantMCC (≤ 32) and authorType (≤ 5); its own example sends no
    authorType. Neither decides anything about the money, so a missing or over-long one
    is taken as sent (an empty MCC for a missing one: the wallet's merchant always has
    one) and listed by `defects` for the caller to count: the customer should not lose
    the payment over Kaspi's defect."""

    merchantId: str = Field(max_length=32)
    merchantName: str = Field(max_length=128)
    merchantMCC: str = ""
    authorType: str | None = None

    def defects(self, *, author_type: bool) -> list[tuple[str, str]]:
        """(field, defect) pairs; `author_type`: whether the message requires it (scan
        does, §4.1; checkout's merchant has no authorType, §4.2)."""
        fields = [("merchantMCC", self.merchantMCC or None, MERCHANT_MCC_MAX)]
        if author_type:
            fields.append(("authorType", self.authorType or None, AUTHOR_TYPE_MAX))
        return [(name, "missing" if value is None else "too_long")
                for name, value, limit in fields if value is None or len(value) > limit]


class ScanPayment(_Inbound):
    paymentId: str = Field(min_length=1, max_length=64)
    paymentAmount: AmountIn | None = None
    # The Custom example carries no canConfirmUntil: checkout gives it.
    canConfirmUntil: KaspiDatetime | None = None


class ScanRefund(_Inbound):
    refundId: str = Field(min_length=1, max_length=64)


class ParameterOption(_Inbound):
    key: str
    label: str
    description: str | None = None


class ServiceParameter(_Inbound):
    id: int
    name: str
    value: str | None = None
    options: list[ParameterOption] | None = None


class PaymentData(_Inbound):
    serviceId: int
    serviceName: str
    parameters: list[ServiceParameter] = Field(default_factory=list, max_length=100)


class ScanResponse(_Inbound):
    result: Result
    qrCodeType: str | None = Field(default=None, max_length=16)
    merchant: Merchant | None = None
    payment: ScanPayment | None = None
    refund: ScanRefund | None = None
    paymentData: PaymentData | None = None


class CheckoutResponse(_Inbound):
    result: Result
    paymentAmount: AmountIn | None = None
    canConfirmUntil: KaspiDatetime | None = None
    merchant: Merchant | None = None


RESULT_MESSAGE_MAX = 256
LINK_RECEIPT_MAX = 2048
# PostgreSQL text holds neither NUL nor a lone UTF-16 surrogate; JSON carries both.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def sanitise(text: str) -> str:
    """Kaspi's text made storable: NUL and lone surrogates become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


class NotifyResponse(_Inbound):
    """notifyPayment's answer. A final resultCode decides the payment whatever the other
    fields hold (issue 14: an over-long resultMessage made a decline "no answer",
    retried for ever while the customer's money was held): the resultMessage is
    sanitised and cut to 256, a linkReceipt that is over 2048, not text, or not
    storable as sent is dropped. Each such defect is listed in `defects`
    (`field:defect`) for the caller to count. Only a resultCode that is missing, not
    text or longer than 64 makes the answer unreadable (no answer)."""

    result: Result
    linkReceipt: str | None = Field(default=None, max_length=LINK_RECEIPT_MAX)
    defects: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _take_what_decides(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
            return data  # unreadable: the model refuses it
        defects: list[str] = []
        result = dict(data["result"])
        code = result.get("resultCode")
        if isinstance(code, str) and sanitise(code) != code:
            defects.append("resultCode:unstorable")
            result["resultCode"] = sanitise(code)
        message = result.get("resultMessage", "")
        if not isinstance(message, str):
            defects.append("resultMessage:not_text")
            message = ""
        if sanitise(message) != message:
            defects.append("resultMessage:unstorable")
            message = sanitise(message)
        if len(message) > RESULT_MESSAGE_MAX:
            defects.append("resultMessage:too_long")
            message = message[:RESULT_MESSAGE_MAX]
        result["resultMessage"] = message
        link = data.get("linkReceipt")
        if link is not None and not isinstance(link, str):
            defects.append("linkReceipt:not_text")
            link = None
        elif link is not None and sanitise(link) != link:
            defects.append("linkReceipt:unstorable")
            link = None
        elif link is not None and len(link) > LINK_RECEIPT_MAX:
            defects.append("linkReceipt:too_long")
            link = None
        return {**data, "result": result, "linkReceipt": link, "defects": tuple(defects)}


# ---- what we send ---------------------------------------------------------------

class _Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanRequest(_Outbound):
    qrCode: str = Field(min_length=1, max_length=128)
    customerId: str = Field(min_length=1, max_length=12)


class CheckoutParameter(_Outbound):
    id: int
    value: str = Field(max_length=64)


class CheckoutRequest(_Outbound):
    paymentId: str = Field(min_length=1, max_length=64)
    serviceId: int
    parameters: list[CheckoutParameter]


class ResultOut(_Outbound):
    """A result we send Kaspi: in notifyPayment, and as our answer to its /refund."""

    resultCode: str = Field(min_length=1, max_length=64)
    resultMessage: str = Field(max_length=256)


class NotifyPayment(_Outbound):
    paymentId: str = Field(min_length=1, max_length=64)
    mppPaymentId: str = Field(min_length=1, max_length=64)
    paymentAmount: AmountOut | None = None


class NotifyRequest(_Outbound):
    result: ResultOut
    payment: NotifyPayment
    customerId: str = Field(min_length=1, max_length=12)
