"""Kaspi's wire formats as the simulator reads and writes them (regulation §1.6, §4).

Requests are validated with the regulation's maximum lengths; unknown fields are ignored
like a real server does. Answers are written as JSON text here, including the two shapes
pydantic cannot produce: bare-number amounts written exactly (`100`, `100.00`) and keys
with a trailing space (the regulation's refund example).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mpp_server.money import format_amount, parse_amount

AmountTiyn = Annotated[int, BeforeValidator(parse_amount)]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ScanRequest(_Inbound):
    qrCode: str = Field(min_length=1, max_length=128)
    customerId: str = Field(min_length=1, max_length=12)


class CheckoutParameter(_Inbound):
    id: int
    value: str = Field(max_length=64)


class CheckoutRequest(_Inbound):
    paymentId: str = Field(min_length=1, max_length=64)
    serviceId: int
    parameters: list[CheckoutParameter] = Field(max_length=64)


class NotifyResult(_Inbound):
    resultCode: str = Field(min_length=1, max_length=64)
    resultMessage: str = Field(default="", max_length=256)


class NotifyPayment(_Inbound):
    paymentId: str = Field(min_length=1, max_length=64)
    mppPaymentId: str = Field(min_length=1, max_length=64)
    paymentAmount: AmountTiyn | None = None


class NotifyRequest(_Inbound):
    result: NotifyResult
    payment: NotifyPayment
    customerId: str = Field(min_length=1, max_length=12)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def raw_object(items: Iterable[tuple[str, str]]) -> str:
    """A JSON object from (key, value already written as JSON text) pairs."""
    return "{" + ",".join(f"{dumps(key)}:{value}" for key, value in items) + "}"


def amount_number(tiyn: int, *, keep_decimals: bool) -> str:
    """An amount as a bare JSON number: `100` (checkout's example) or `100.00` (refund's)."""
    text = format_amount(tiyn)
    if keep_decimals or not text.endswith(".00"):
        return text
    return text[:-3]


def result(code: str, message: str) -> dict[str, str]:
    # str, not only ResultCode: an injected fault may answer any code.
    return {"resultCode": str(code), "resultMessage": message}


def error_answer(code: str, message: str) -> bytes:
    return dumps({"result": result(code, message)}).encode()


def short_offset_time(epoch_s: float, tz: timezone) -> str:
    """`2024-02-19T15:57:41+06`: the regulation's §1.6 form (whole-hour offsets only)."""
    local = datetime.fromtimestamp(int(epoch_s), tz)
    full = local.isoformat(timespec="seconds")
    return full[:-3] if full.endswith(":00") and full[-6] in "+-" else full


def full_offset_time(epoch_s: float, tz: timezone) -> str:
    """`2024-10-31T16:26:29+05:00`: the form of the regulation's checkout example."""
    return datetime.fromtimestamp(int(epoch_s), tz).isoformat(timespec="seconds")
