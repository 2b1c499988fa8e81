"""The wallet API's wire formats (shared/spec/wallet-api.md), validated with pydantic.

Requests refuse unknown fields (a typo must not be silently ignored when money moves);
amounts are "1500.00" strings (bare numbers accepted) and integer tiyn inside.
The OpenAPI description is generated from these same models (http/openapi.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import asyncpg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from mpp_server.domain.limits import Level as LevelEnum
from mpp_server.domain.outcomes import DisputeResolution as DisputeResolutionEnum
from mpp_server.domain.outcomes import DisputeStatus as DisputeStatusEnum
from mpp_server.domain.outcomes import PaymentStatus, TopupRefundStatus
from mpp_server.domain.outcomes import TopupStatus as TopupStatusEnum
from mpp_server.domain.receipts import receipt_in_locale
from mpp_server.kaspi_client.models import AmountIn
from mpp_server.money import AMOUNT_PATTERN
from mpp_server.wire import Money, SignedMoney, Timestamp


def _enum_schema(enum: type[StrEnum]) -> WithJsonSchema:
    """Statuses and levels on the wire are the declared enums' values
    (domain/outcomes.py, domain/limits.py), a plain string enum in the description."""
    return WithJsonSchema({"type": "string", "enum": [member.value for member in enum]})


CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._*-]{1,12}$"
ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"

# Requests: "1500.00" (bare JSON numbers accepted, as in Kaspi's own examples) parsed
# into tiyn. The schema says so, or a client generator would refuse what we accept.
Amount = Annotated[AmountIn, WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1500.00"]},
              {"type": "number", "minimum": 0, "examples": [1500]}],
    "description": "tenge with up to two decimals: \"1500.00\"; a bare JSON number "
                   "(1500, 1500.5) is accepted too, an exponent (1e3) is not"})]
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
ExternalId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def _storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor a lone UTF-16 surrogate, and JSON can carry
    both (`"\\u0000"`, `"\\ud800"`): refuse them here, or the insert fails with a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError("is not valid Unicode text") from exc
    return value


# Free text that is stored (the id types above are ASCII by their patterns).
StoredText = Annotated[str, AfterValidator(_storable)]
Level = Annotated[LevelEnum, _enum_schema(LevelEnum)]


Status = Annotated[PaymentStatus, _enum_schema(PaymentStatus)]
DisputeStatus = Annotated[DisputeStatusEnum, _enum_schema(DisputeStatusEnum)]
DisputeResolution = Annotated[DisputeResolutionEnum, _enum_schema(DisputeResolutionEnum)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---- requests -------------------------------------------------------------------

class DepositIn(_Request):
    depositId: ExternalId
    amount: Amount


class ScanIn(_Request):
    qrCode: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    customerId: CustomerId


class ParameterIn(_Request):
    id: int = Field(ge=0, le=2**63 - 1)
    value: Annotated[StoredText, StringConstraints(max_length=64)]


class CheckoutIn(_Request):
    customerId: CustomerId
    parameters: list[ParameterIn] = Field(max_length=100)


class ConfirmIn(_Request):
    customerId: CustomerId
    amount: Amount | None = Field(default=None,
                                  description="required for Static QR, whole tenge")


class CancelIn(_Request):
    customerId: CustomerId


class IdentificationIn(_Request):
    level: Level = Field(description="how the bank's core identified the customer "
                                     "(Law on Payments and Payment Systems art. 42)")


# ---- answers --------------------------------------------------------------------

class ErrorBody(_Response):
    code: str
    message: str


class ErrorOut(_Response):
    error: ErrorBody


class AccountOut(_Response):
    customerId: str
    balance: Money
    currency: Literal["KZT"] = "KZT"
    identificationLevel: Level | None = Field(
        default=None, description="GET only; its limits are configured by LIMITS_MCI")


class IdentificationOut(_Response):
    customerId: str
    level: Level


StatementType = Literal["deposit", "topup", "payment", "payment_return", "refund",
                        "topup_refund"]


class StatementEntryOut(_Response):
    id: int = Field(description="the ledger entry's id; lines are in id order")
    type: StatementType
    amount: SignedMoney
    balanceAfter: Money = Field(description="the previous line's balanceAfter plus amount")
    paymentId: str | None = Field(default=None, description="payment, payment_return, "
                                                            "refund (the refunded payment)")
    refundId: str | None = None
    depositId: str | None = None
    topupId: str | None = None
    createdAt: Timestamp


class StatementOut(_Response):
    entries: list[StatementEntryOut]
    next: str = Field(description="pass as `after` for the lines that follow (the same "
                                  "cursor when there are none yet)")


class MerchantOut(_Response):
    merchantId: str
    merchantName: str
    merchantMCC: str
    authorType: str | None = None


class ScanPaymentOut(_Response):
    paymentId: str
    amount: Money | None = None
    canConfirmUntil: Timestamp | None = None
    status: Status


class OptionOut(_Response):
    key: str
    label: str
    description: str | None = None


class ServiceParameterOut(_Response):
    id: int
    name: str
    value: str | None = None
    options: list[OptionOut] | None = None


class ServiceOut(_Response):
    serviceId: int
    serviceName: str
    parameters: list[ServiceParameterOut]


class RefundRef(_Response):
    refundId: str


class ScanOut(_Response):
    qrCodeType: Literal["Dynamic", "Static", "Custom", "Refund"]
    merchant: MerchantOut | None = None
    payment: ScanPaymentOut | None = None
    service: ServiceOut | None = None
    refund: RefundRef | None = None


class CheckoutOut(_Response):
    paymentId: str
    amount: Money
    canConfirmUntil: Timestamp | None = None
    status: Status


class RefundOut(_Response):
    refundId: str
    amount: Money
    createdAt: Timestamp
    linkReceipt: str | None = Field(
        default=None, description="Kaspi's receipt of the refund (with &locale=kk when the "
                                  "payment was made in kk-KZ); absent when Kaspi sent none")


class PaymentOut(_Response):
    paymentId: str
    mppPaymentId: str
    qrCodeType: Literal["Dynamic", "Static", "Custom"]
    status: Status
    amount: Money | None = None
    refundedAmount: Money
    linkReceipt: str | None = None
    refunds: list[RefundOut] = Field(default_factory=list)
    merchant: MerchantOut
    canConfirmUntil: Timestamp | None = None
    declineReason: str | None = Field(
        default=None, description="DECLINED: INSUFFICIENT_FUNDS, LIMIT_EXCEEDED, or Kaspi's "
                                  "resultCode to notifyPayment; FAILED or EXPIRED by checkout: "
                                  "Kaspi's resultCode to it (PROCESS_FAIL, EXPIRED_CODE)")
    kaspiAcknowledged: bool = Field(
        description="Kaspi has answered our notifyPayment (success, decline or cancel)")
    createdAt: Timestamp


# A plain string on the wire: a reader must skip a type it does not know (more come).
EventType = Annotated[str, Field(description="payment.completed, payment.declined, "
                                             "refund.credited, topup.credited, topup.failed, "
                                             "dispute.opened, dispute.resolved, ...")]


class EventOut(_Response):
    """An event of the feed, and the `data` of its webhook."""

    id: int = Field(description="the event's id: a webhook's `webhook-id` header")
    type: EventType
    customerId: str
    paymentId: str | None = None
    refundId: str | None = None
    topupId: str | None = None
    disputeId: str | None = None
    amount: Money | None = None
    merchantName: str | None = Field(default=None, description="the paid merchant's name")
    linkReceipt: str | None = Field(
        default=None, description="payment.completed and refund.credited: Kaspi's receipt "
                                  "(with &locale=kk when the payment was made in kk-KZ)")
    resolution: DisputeResolution | None = Field(default=None,
                                                 description="dispute.resolved: how")
    createdAt: Timestamp

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EventOut:
        """From a row of domain/events.py (the feed's and the webhooks' one query)."""
        return cls(id=row["id"], type=row["type"], customerId=row["customer_id"],
                   paymentId=row["payment_id"], refundId=row["refund_id"],
                   topupId=row["topup_id"], disputeId=row["dispute_id"],
                   amount=row["amount_tiyn"], merchantName=row["merchant_name"],
                   linkReceipt=receipt_in_locale(row["link_receipt"], row["locale"]),
                   resolution=row["resolution"], createdAt=row["created_at"])


class WebhookOut(_Response):
    """The body POSTed to WEBHOOK_URL (Standard Webhooks): signed with the headers
    webhook-id (the event's id), webhook-timestamp and webhook-signature."""

    type: EventType
    timestamp: Timestamp = Field(description="when the event happened (its createdAt)")
    data: EventOut


class EventsOut(_Response):
    events: list[EventOut]
    next: str = Field(description="pass as `after` to read the events that follow")


class HealthOut(_Response):
    status: str
    detail: str | None = None


# ---- disputes (docs/notices.md) -----------------------------------------------------

DISPUTE_REASON_MAX_CHARS = 1000


class DisputeIn(_Request):
    disputeId: ExternalId
    paymentId: ExternalId
    customerId: CustomerId
    reason: Annotated[StoredText, StringConstraints(min_length=1,
                                                    max_length=DISPUTE_REASON_MAX_CHARS)]
    amount: Amount | None = Field(default=None, description="what the customer disputes; "
                                                             "absent: the whole payment")


class WithdrawIn(_Request):
    customerId: CustomerId


class DisputeOut(_Response):
    disputeId: str
    paymentId: str
    customerId: str
    status: DisputeStatus
    reason: str = Field(description="as the customer wrote it (JSON-escaped, never "
                                    "interpreted)")
    amount: Money
    refundedAmount: Money = Field(description="Kaspi's refunds of the payment credited "
                                              "since the dispute opened")
    createdAt: Timestamp
    dueAt: Timestamp = Field(description="createdAt + DISPUTE_RESPONSE_HOURS: the answer "
                                         "is due by then")
    resolution: DisputeResolution | None = None
    note: str | None = Field(default=None, description="the resolver's note")
    resolvedAt: Timestamp | None = None


# ---- top-ups by card (docs/topups.md) ---------------------------------------------

TopupProvider = Literal["halyk-epay", "kapital", "kaspi-ecom"]
TopupStatus = Annotated[TopupStatusEnum, _enum_schema(TopupStatusEnum)]
RefundStatus = Annotated[TopupRefundStatus, _enum_schema(TopupRefundStatus)]


class TopupIn(_Request):
    topupId: ExternalId
    customerId: CustomerId
    provider: TopupProvider
    amount: Amount = Field(description="more than zero; whole tenge for kaspi-ecom")


class TopupOut(_Response):
    topupId: str
    customerId: str
    provider: TopupProvider
    amount: Money
    status: TopupStatus
    refundedAmount: Money
    paymentUrl: str | None = Field(
        default=None, description="the acquirer's payment page the app opens")
    providerOrderId: str | None = Field(
        default=None, description="Halyk's invoice id, Kapital's OrderId, Kaspi's paymentId")
    failureReason: str | None = None
    createdAt: Timestamp
    creditedAt: Timestamp | None = None
    expiresAt: Timestamp = Field(description="when the acquirer's payment session ends")


class TopupRefundIn(_Request):
    refundId: ExternalId
    amount: Amount


class TopupRefundOut(_Response):
    refundId: str
    topupId: str
    amount: Money
    status: RefundStatus = Field(
        description="PENDING: the wallet is debited, the acquirer not answered yet (the "
                    "server keeps telling it); REFUSED: the money is back in the wallet")
    operation: str | None = Field(default=None, description="refund, Reverse or Refund")
    reason: str | None = Field(default=None, description="the acquirer's refusal")
    createdAt: Timestamp
