"""The simulated Kaspi's behaviour: scan, checkout, notifyPayment (regulation §4.1–4.3).

Every operation here is synchronous: with one asyncio loop and no `await` inside an
operation, each runs to completion before the next starts, so concurrent requests always
see a consistent state without locks. Lookups are dict hits: O(1) per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mpp_server.devtools.simulator import answers, catalogue
from mpp_server.devtools.simulator.ids import (
    QR_PREFIX_DYNAMIC,
    QR_PREFIX_REFUND,
    QR_PREFIX_STATIC,
    IdFactory,
)
from mpp_server.devtools.simulator.model import (
    Checkout,
    KaspiError,
    Payment,
    PaymentStatus,
    Qr,
    QrType,
    Refund,
    RefundStatus,
)
from mpp_server.devtools.simulator.settings import SimulatorSettings
from mpp_server.devtools.simulator.wire import CheckoutRequest, NotifyRequest, ScanRequest
from mpp_server.kaspi_client.codes import ResultCode
from mpp_server.money import is_whole_tenge

# Not a Kaspi code: what /sim/refunds reports when the MPP never answered.
NO_ANSWER = "NO_ANSWER"


class CapacityExceeded(Exception):
    """SIM_MAX_PAYMENTS reached: the simulator refuses to grow without bound."""


class UnknownPayment(Exception):
    """A control-API call names a payment the simulator does not know."""


class RefundConflict(Exception):
    """A refundId reused for another payment."""


@dataclass(frozen=True, slots=True)
class RefundOrder:
    payment_id: str
    refund_id: str
    amount_tiyn: int
    skip_sum_check: bool = False
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class QrOrder:
    qr_type: QrType
    amount_tiyn: int | None = None
    ttl_seconds: float | None = None
    merchant_name: str | None = None
    refund_payment_id: str | None = None
    refund_amount_tiyn: int | None = None


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    qr: Qr
    payment: Payment | None
    start_refund: bool  # a refund QR whose purchase is known: call the MPP's /refund


class SimState:
    def __init__(self, settings: SimulatorSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.tz = settings.registry_tz
        self.ids = IdFactory(settings.sim_id_seed)
        self.qrs: dict[str, Qr] = {}
        self.payments: dict[str, Payment] = {}
        self.refunds: dict[str, Refund] = {}
        # Registry sources, in completion order (regulation §5).
        self.completed_payments: list[Payment] = []
        self.succeeded_refunds: list[Refund] = []

    def reset(self) -> None:
        self.qrs.clear()
        self.payments.clear()
        self.refunds.clear()
        self.completed_payments.clear()
        self.succeeded_refunds.clear()

    def _ensure_room(self) -> None:
        held = len(self.payments) + len(self.qrs) + len(self.refunds)
        if held >= self.settings.sim_max_payments:
            raise CapacityExceeded("SIM_MAX_PAYMENTS reached: POST /sim/reset")

    # --- control: QR codes -------------------------------------------------------------
    def create_qr(self, order: QrOrder) -> Qr:
        self._ensure_room()
        now = self.clock()
        ttl = order.ttl_seconds or self.settings.sim_default_ttl_seconds
        # Dynamic and refund QR codes live briefly on a till's screen; Static and Custom
        # ones are stickers that only expire when a test asks for it.
        expiring = (order.qr_type in (QrType.DYNAMIC, QrType.REFUND)
                    or order.ttl_seconds is not None)
        merchant = catalogue.PARKING if order.qr_type is QrType.CUSTOM else catalogue.COFFEE_BAR
        if order.merchant_name:
            merchant = replace(merchant, name=order.merchant_name)
        qr = Qr(token=self._new_token(order.qr_type), qr_type=order.qr_type,
                merchant=merchant, expires_at=now + ttl if expiring else None,
                ttl_seconds=ttl, amount_tiyn=order.amount_tiyn)
        if order.qr_type is QrType.DYNAMIC:
            payment = Payment(payment_id=self.ids.payment_id(), qr_type=QrType.DYNAMIC,
                              merchant=merchant, confirm_until=now + ttl, ttl_seconds=ttl,
                              qr_amount_tiyn=order.amount_tiyn, amount_tiyn=order.amount_tiyn)
            self.payments[payment.payment_id] = payment
            qr.payment_id = payment.payment_id
        elif order.qr_type is QrType.REFUND:
            qr.refund_id = self.ids.refund_id()
            qr.refund_payment_id = order.refund_payment_id
            qr.refund_amount_tiyn = order.refund_amount_tiyn
        self.qrs[qr.token] = qr
        return qr

    def _new_token(self, qr_type: QrType) -> str:
        if qr_type is QrType.CUSTOM:
            return self.ids.custom_qr_token()
        prefix = {QrType.DYNAMIC: QR_PREFIX_DYNAMIC, QrType.STATIC: QR_PREFIX_STATIC,
                  QrType.REFUND: QR_PREFIX_REFUND}[qr_type]
        return self.ids.qr_token(prefix)

    # --- scan (§4.1) -------------------------------------------------------------------
    def scan(self, req: ScanRequest) -> ScanOutcome:
        qr = self.qrs.get(req.qrCode)
        if qr is None:
            raise KaspiError(ResultCode.INVALID_TOKEN, "QR token is not valid")
        now = self.clock()
        if qr.expires_at is not None and now > qr.expires_at:
            raise KaspiError(ResultCode.EXPIRED_CODE, "QR code has expired")
        if qr.qr_type is QrType.REFUND:
            return ScanOutcome(qr, None, self._refund_qr_starts(qr, req.customerId))
        if qr.qr_type is QrType.DYNAMIC:
            assert qr.payment_id is not None, "a Dynamic QR has its payment"
            payment = self.payments[qr.payment_id]
            if payment.is_final:
                raise KaspiError(ResultCode.PROCESS_FAIL, "QR code has already been used")
            if payment.customer_id is None:
                # The first scanning customer owns the payment; later scans see it too.
                payment.customer_id = req.customerId
                payment.move_to(PaymentStatus.SCANNED)
            return ScanOutcome(qr, payment, False)
        # Static and Custom: a reusable sticker, a new payment per scan.
        self._ensure_room()
        new_id = self.ids.custom_payment_id() if qr.qr_type is QrType.CUSTOM \
            else self.ids.payment_id()
        payment = Payment(payment_id=new_id, qr_type=qr.qr_type, merchant=qr.merchant,
                          confirm_until=now + qr.ttl_seconds, ttl_seconds=qr.ttl_seconds,
                          qr_amount_tiyn=qr.amount_tiyn,
                          customer_id=req.customerId)
        payment.move_to(PaymentStatus.SCANNED)
        assert payment.payment_id not in self.payments, "payment ids are unique"
        self.payments[payment.payment_id] = payment
        return ScanOutcome(qr, payment, False)

    def _refund_qr_starts(self, qr: Qr, customer_id: str) -> bool:
        """§3.1 steps 8-12: Kaspi lists the scanning customer's purchases on the POS, the
        cashier picks one, Kaspi calls the MPP's /refund. A refund QR created with a
        paymentId plays the cashier: once, and only for that purchase's customer."""
        if qr.refund_started or qr.refund_payment_id is None:
            return False
        payment = self.payments.get(qr.refund_payment_id)
        if payment is None or payment.customer_id != customer_id:
            return False
        qr.refund_started = True
        return True

    # --- checkout (§4.2) ---------------------------------------------------------------
    def checkout(self, req: CheckoutRequest) -> bytes:
        payment = self.payments.get(req.paymentId)
        if payment is None or payment.qr_type is not QrType.CUSTOM:
            raise KaspiError(ResultCode.PARAM_ILLEGAL, "paymentId is not a Custom payment")
        values = self._checkout_values(req)
        if payment.checkout is not None:
            # §4.2: repeated checkout for one paymentId answers the same.
            if payment.checkout.values != values:
                raise KaspiError(ResultCode.PARAM_ILLEGAL,
                                 "parameters differ from the first checkout")
            return payment.checkout.answer
        if payment.is_final:
            raise KaspiError(ResultCode.PROCESS_FAIL, "payment is already finished")
        now = self.clock()
        if now > payment.confirm_until:
            raise KaspiError(ResultCode.EXPIRED_CODE, "payment has expired")
        amount = payment.qr_amount_tiyn or catalogue.tariff_price_tiyn(values)
        payment.confirm_until = now + payment.ttl_seconds
        payment.amount_tiyn = amount
        payment.checkout = Checkout(values, amount, answers.checkout(payment, amount, self.tz))
        payment.move_to(PaymentStatus.CHECKED_OUT)
        return payment.checkout.answer

    @staticmethod
    def _checkout_values(req: CheckoutRequest) -> dict[int, str]:
        if req.serviceId != catalogue.SERVICE_ID:
            raise KaspiError(ResultCode.PARAM_ILLEGAL, f"unknown serviceId {req.serviceId}")
        values: dict[int, str] = {}
        for param in req.parameters:
            definition = catalogue.PARAMETERS.get(param.id)
            if definition is None or param.id in values:
                raise KaspiError(ResultCode.PARAM_ILLEGAL, f"unexpected parameter {param.id}")
            if not definition.accepts(param.value):
                raise KaspiError(ResultCode.PARAM_ILLEGAL, f"invalid value for {param.id}")
            values[param.id] = param.value
        missing = catalogue.PARAMETERS.keys() - values.keys()
        if missing:
            raise KaspiError(ResultCode.PARAM_ILLEGAL, f"missing parameters {sorted(missing)}")
        return values

    # --- notifyPayment (§4.3) ----------------------------------------------------------
    def notify(self, req: NotifyRequest) -> bytes:
        payment = self.payments.get(req.payment.paymentId)
        if payment is None:
            raise KaspiError(ResultCode.ORDER_NOT_EXIST, "payment not found")
        payment.notify_count += 1
        if payment.customer_id is None:
            raise KaspiError(ResultCode.PAYMENT_INCORRECT_STATUS, "payment was never scanned")
        if req.customerId != payment.customer_id:
            raise KaspiError(ResultCode.UNKNOWN_CUSTOMER, "customerId differs from scan's")
        if payment.notify_answer is not None:
            # §4.3: the same paymentId gets the same answer; nothing happens twice.
            return payment.notify_answer
        if payment.qr_type is QrType.CUSTOM and payment.checkout is None:
            raise KaspiError(ResultCode.PAYMENT_INCORRECT_STATUS, "checkout was not called")
        now = self.clock()
        if now > payment.confirm_until:
            raise KaspiError(ResultCode.PAYMENT_INCORRECT_STATUS,
                             "notifyPayment started after canConfirmUntil")
        mpp_code = req.result.resultCode
        amount = self._notify_amount(payment, req.payment.paymentAmount,
                                     required=mpp_code == ResultCode.SUCCESS)
        payment.mpp_payment_id = req.payment.mppPaymentId
        if mpp_code == ResultCode.SUCCESS:
            payment.amount_tiyn = amount
            payment.link_receipt = answers.receipt_link(self.ids.ext_tran_id(), now, self.tz)
            payment.completed_at = now
            payment.move_to(PaymentStatus.COMPLETED)
            self.completed_payments.append(payment)
        elif mpp_code == ResultCode.CANCELLED_BY_CLIENT:
            payment.move_to(PaymentStatus.CANCELLED)
        else:
            payment.move_to(PaymentStatus.FAILED)
        payment.notify_answer = answers.notify(payment.link_receipt)
        return payment.notify_answer

    @staticmethod
    def _notify_amount(payment: Payment, given: int | None, *, required: bool) -> int | None:
        # §4.3: "paymentAmount must be a whole number (without a floating point)", for
        # whichever payment it is given: a Dynamic or Custom amount with tiyn cannot be
        # sent as it is.
        if given is not None and (given <= 0 or not is_whole_tenge(given)):
            raise KaspiError(ResultCode.PARAM_ILLEGAL,
                             "paymentAmount must be whole tenge above zero")
        if payment.qr_type is QrType.STATIC:
            if given is None and required:
                raise KaspiError(ResultCode.PARAM_ILLEGAL, "paymentAmount is required")
            return given
        expected = payment.amount_tiyn
        assert expected is not None, "Dynamic and checked-out Custom payments have an amount"
        if payment.qr_type is QrType.CUSTOM and given is None and required:
            raise KaspiError(ResultCode.PARAM_ILLEGAL, "paymentAmount is required")
        if given is not None and given != expected:
            raise KaspiError(ResultCode.PARAM_ILLEGAL, "paymentAmount differs from the payment")
        return expected

    # --- refunds Kaspi starts (§3, §4.4) -------------------------------------------------
    def prepare_refund(self, order: RefundOrder) -> Refund:
        """Kaspi's own check, then the refund record whose request goes to the MPP.

        Raises KaspiError(PARAM_ILLEGAL) when Kaspi itself would refuse: the payment is
        not completed, or refunds would add up to more than it (§4.4). Refunds still in
        flight are not reserved, so concurrent refunds reach the MPP's own check.
        """
        payment = self.payments.get(order.payment_id)
        existing = self.refunds.get(order.refund_id)
        if existing is not None and existing.payment_id != order.payment_id:
            raise RefundConflict(f"refundId {order.refund_id} belongs to another payment")
        if not order.skip_sum_check:
            if payment is None:
                raise UnknownPayment(f"payment {order.payment_id} not found")
            if payment.status is not PaymentStatus.COMPLETED:
                raise KaspiError(ResultCode.PARAM_ILLEGAL, "payment is not completed")
            assert payment.amount_tiyn is not None, "a completed payment has an amount"
            others = payment.refunded_tiyn - (existing.counted_tiyn if existing else 0)
            if others + order.amount_tiyn > payment.amount_tiyn:
                raise KaspiError(ResultCode.PARAM_ILLEGAL, "refunds exceed the payment")
        customer_id = order.customer_id or (payment.customer_id if payment else None)
        if customer_id is None:
            raise UnknownPayment(f"payment {order.payment_id} has no customer: give customerId")
        if existing is None:
            self._ensure_room()
            existing = Refund(refund_id=order.refund_id, payment_id=order.payment_id,
                              customer_id=customer_id, amount_tiyn=order.amount_tiyn,
                              link_receipt=answers.receipt_link(self.ids.ext_tran_id(),
                                                                self.clock(), self.tz))
            self.refunds[existing.refund_id] = existing
            if payment is not None:
                payment.refund_ids.append(existing.refund_id)
        existing.amount_tiyn = order.amount_tiyn
        existing.customer_id = customer_id
        existing.requests += 1
        return existing

    def record_refund_answer(self, refund: Refund, code: str, message: str,
                             attempts: int) -> None:
        refund.attempts += attempts
        refund.result_code, refund.result_message = code, message
        if refund.status is RefundStatus.SUCCESS:
            return  # counted once per refundId, whatever later re-sends get
        if code == ResultCode.SUCCESS:
            refund.status = RefundStatus.SUCCESS
            refund.succeeded_at = self.clock()
            refund.counted_tiyn = refund.amount_tiyn
            payment = self.payments.get(refund.payment_id)
            if payment is not None:
                payment.refunded_tiyn += refund.amount_tiyn
            self.succeeded_refunds.append(refund)
        elif code == NO_ANSWER:
            refund.status = RefundStatus.NO_ANSWER
        else:
            refund.status = RefundStatus.REJECTED
