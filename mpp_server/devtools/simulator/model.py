"""What the simulated Kaspi remembers: QR codes, payments, refunds."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mpp_server.devtools.simulator.catalogue import Merchant
from mpp_server.kaspi_client.codes import ResultCode


class KaspiError(Exception):
    """A business outcome other than SUCCESS: answered HTTP 200 with this result code."""

    def __init__(self, code: ResultCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class QrType(StrEnum):
    DYNAMIC = "Dynamic"
    STATIC = "Static"
    CUSTOM = "Custom"
    REFUND = "Refund"


class PaymentStatus(StrEnum):
    CREATED = "CREATED"  # a Dynamic QR's payment nobody has scanned yet
    SCANNED = "SCANNED"
    CHECKED_OUT = "CHECKED_OUT"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


_FINAL = frozenset({PaymentStatus.COMPLETED, PaymentStatus.CANCELLED, PaymentStatus.FAILED})
_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.CREATED: frozenset({PaymentStatus.SCANNED}),
    PaymentStatus.SCANNED: frozenset({PaymentStatus.CHECKED_OUT}) | _FINAL,
    PaymentStatus.CHECKED_OUT: _FINAL,
}


class RefundStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"  # the MPP answered SUCCESS at least once: counted
    REJECTED = "REJECTED"  # the MPP answered an error code
    NO_ANSWER = "NO_ANSWER"  # the MPP never answered within the total bound


@dataclass(slots=True)
class Qr:
    token: str
    qr_type: QrType
    merchant: Merchant
    expires_at: float | None  # epoch seconds; None: a sticker that never expires
    ttl_seconds: float  # the confirmation window of the payments it starts
    amount_tiyn: int | None = None
    payment_id: str | None = None  # Dynamic: its one payment
    refund_id: str | None = None  # Refund
    refund_payment_id: str | None = None  # Refund: the purchase the cashier will pick
    refund_amount_tiyn: int | None = None
    refund_started: bool = False


@dataclass(slots=True)
class Checkout:
    values: dict[int, str]
    amount_tiyn: int
    answer: bytes


@dataclass(slots=True)
class Payment:
    payment_id: str
    qr_type: QrType
    merchant: Merchant
    confirm_until: float  # epoch seconds: the last moment notifyPayment may start
    ttl_seconds: float  # the confirmation window a checkout opens
    qr_amount_tiyn: int | None  # Dynamic: the amount; Custom: an amount override
    status: PaymentStatus = PaymentStatus.CREATED
    customer_id: str | None = None
    amount_tiyn: int | None = None  # known at scan (Dynamic), checkout or notify
    checkout: Checkout | None = None
    notify_count: int = 0
    notify_answer: bytes | None = None
    mpp_payment_id: str | None = None
    link_receipt: str | None = None
    completed_at: float | None = None
    refunded_tiyn: int = 0
    refund_ids: list[str] = field(default_factory=list)

    def move_to(self, status: PaymentStatus) -> None:
        if status not in _TRANSITIONS.get(self.status, frozenset()):
            raise AssertionError(f"payment {self.payment_id}: {self.status} -> {status}")
        self.status = status

    @property
    def is_final(self) -> bool:
        return self.status in _FINAL


@dataclass(slots=True)
class Refund:
    refund_id: str
    payment_id: str
    customer_id: str
    amount_tiyn: int  # of the latest request sent for this refundId
    link_receipt: str
    status: RefundStatus = RefundStatus.IN_PROGRESS
    result_code: str | None = None
    result_message: str | None = None
    attempts: int = 0
    requests: int = 0  # /sim/refunds calls (and refund-QR scans) for this refundId
    succeeded_at: float | None = None
    counted_tiyn: int = 0  # what this refund added to the payment's refundedAmount
