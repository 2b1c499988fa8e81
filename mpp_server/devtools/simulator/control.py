"""The control API tests, the benchmark and the demo use to play the POS and Kaspi's back
office: `/sim/...`. Errors are HTTP 4xx with `{"error": {"code", "message"}}`."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any, TypeVar

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mpp_server import jsonutil
from mpp_server.devtools.simulator import registry
from mpp_server.devtools.simulator.context import MAX_DISCREPANCIES, SIM, Simulator
from mpp_server.devtools.simulator.faults import Endpoint, Fault, FaultMode, FaultQueueFull
from mpp_server.devtools.simulator.model import Payment, PaymentStatus, QrType, Refund
from mpp_server.devtools.simulator.refunds import RefundStyle
from mpp_server.devtools.simulator.state import (
    CapacityExceeded,
    QrOrder,
    RefundConflict,
    RefundOrder,
    UnknownPayment,
)
from mpp_server.devtools.simulator.wire import AmountTiyn
from mpp_server.money import format_amount

M = TypeVar("M", bound=BaseModel)
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class _Control(BaseModel):
    # Typos in a test's request should fail loudly, unlike Kaspi's lenient endpoints.
    model_config = ConfigDict(extra="forbid", frozen=True)


class QrCreate(_Control):
    type: QrType
    amount: AmountTiyn | None = Field(default=None, gt=0)
    ttlSeconds: float | None = Field(default=None, gt=0, le=86_400 * 366)
    merchantName: str | None = Field(default=None, min_length=1, max_length=128)
    paymentId: str | None = Field(default=None, min_length=1, max_length=64)
    refundAmount: AmountTiyn | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _fits_type(self) -> QrCreate:
        if self.type is QrType.DYNAMIC and self.amount is None:
            raise ValueError("a Dynamic QR needs an amount")
        if self.type in (QrType.STATIC, QrType.REFUND) and self.amount is not None:
            raise ValueError(f"a {self.type} QR has no amount")
        if self.type is not QrType.REFUND and (self.paymentId or self.refundAmount):
            raise ValueError("paymentId and refundAmount are for Refund QR codes")
        if (self.paymentId is None) != (self.refundAmount is None):
            raise ValueError("give both paymentId and refundAmount, or neither")
        return self


class FaultCreate(_Control):
    endpoint: Endpoint
    mode: FaultMode
    times: int = Field(default=1, ge=1, le=100_000)
    resultCode: str | None = Field(default=None, min_length=1, max_length=64)
    delayMs: int = Field(default=0, ge=0, le=600_000)
    rawBody: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _code_fits_mode(self) -> FaultCreate:
        if (self.mode is FaultMode.ERROR_CODE) != (self.resultCode is not None):
            raise ValueError("resultCode is required for error_code and only for it")
        if (self.mode is FaultMode.REPLACE_ANSWER) != (self.rawBody is not None):
            raise ValueError("rawBody is required for replace_answer and only for it")
        if self.mode is FaultMode.REPLACE_ANSWER and self.endpoint is Endpoint.REFUND:
            raise ValueError("replace_answer is for Kaspi's endpoints, not refund")
        return self


class RefundCreate(_Control):
    paymentId: str = Field(min_length=1, max_length=64)
    amount: AmountTiyn = Field(gt=0)
    refundId: str | None = Field(default=None, min_length=1, max_length=64)
    customerId: str | None = Field(default=None, min_length=1, max_length=12)
    skipSumCheck: bool = False
    amountAsNumber: bool = False
    trailingSpaceKeys: bool = False
    loseReplies: int = Field(default=0, ge=0, le=100)


class MerchantCancelCreate(_Control):
    refundId: str | None = Field(default=None, min_length=1, max_length=64)


class DiscrepancyCreate(_Control):
    kind: registry.DiscrepancyKind
    kaspiId: str | None = Field(default=None, min_length=1, max_length=64)
    amount: AmountTiyn | None = Field(default=None, gt=0)
    customerId: str | None = Field(default=None, min_length=1, max_length=12)
    mppPaymentId: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> DiscrepancyCreate:
        kind = registry.DiscrepancyKind
        if self.kind is not kind.ADD_ROW and self.kaspiId is None:
            raise ValueError(f"{self.kind} needs kaspiId")
        if self.kind in (kind.ADD_ROW, kind.CHANGE_AMOUNT) and self.amount is None:
            raise ValueError(f"{self.kind} needs amount")
        return self


def _error(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    body = jsonutil.dumps({"error": {"code": code, "message": message}})
    return status(text=body, content_type="application/json")


def _invalid(message: str) -> web.HTTPException:
    return _error(web.HTTPBadRequest, "VALIDATION_ERROR", message)


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(jsonutil.loads(await request.read()))
    except jsonutil.JSONDecodeError as exc:
        raise _invalid(str(exc)) from exc
    except pydantic.ValidationError as exc:
        raise _invalid("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())) from exc


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=jsonutil.dumps(body), status=status,
                        content_type="application/json")


async def create_qr(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    body = await _body(request, QrCreate)
    if body.paymentId is not None and body.paymentId not in sim.state.payments:
        raise _invalid(f"payment {body.paymentId} not found")
    try:
        qr = sim.state.create_qr(QrOrder(body.type, body.amount, body.ttlSeconds,
                                         body.merchantName, body.paymentId, body.refundAmount))
    except CapacityExceeded as exc:
        raise _error(web.HTTPServiceUnavailable, "CAPACITY", str(exc)) from exc
    answer = {"qrCode": qr.token, "qrCodeType": qr.qr_type.value}
    if qr.payment_id is not None:
        answer["paymentId"] = qr.payment_id
    if qr.refund_id is not None:
        answer["refundId"] = qr.refund_id
    return _json(answer)


def _amount(tiyn: int | None) -> str | None:
    return None if tiyn is None else format_amount(tiyn)


def payment_view(payment: Payment, sim: Simulator) -> dict[str, Any]:
    view: dict[str, Any] = {
        "paymentId": payment.payment_id, "qrCodeType": payment.qr_type.value,
        "status": payment.status.value, "amount": _amount(payment.amount_tiyn),
        "notifyCount": payment.notify_count, "customerId": payment.customer_id,
        "mppPaymentId": payment.mpp_payment_id,
        "refundedAmount": format_amount(payment.refunded_tiyn),
        "refunds": [refund_view(sim.state.refunds[r]) for r in payment.refund_ids],
    }
    if payment.link_receipt is not None:
        view["linkReceipt"] = payment.link_receipt
    return view


def refund_view(refund: Refund) -> dict[str, Any]:
    return {"refundId": refund.refund_id, "paymentId": refund.payment_id,
            "amount": format_amount(refund.amount_tiyn), "status": refund.status.value,
            "resultCode": refund.result_code, "resultMessage": refund.result_message,
            "attempts": refund.attempts, "requests": refund.requests}


async def get_payment(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    payment = sim.state.payments.get(request.match_info["payment_id"])
    if payment is None:
        raise _error(web.HTTPNotFound, "NOT_FOUND", "payment not found")
    return _json(payment_view(payment, sim))


async def get_refund(request: web.Request) -> web.Response:
    refund = request.app[SIM].state.refunds.get(request.match_info["refund_id"])
    if refund is None:
        raise _error(web.HTTPNotFound, "NOT_FOUND", "refund not found")
    return _json(refund_view(refund))


async def create_refund(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    body = await _body(request, RefundCreate)
    order = RefundOrder(payment_id=body.paymentId,
                        refund_id=body.refundId or sim.state.ids.refund_id(),
                        amount_tiyn=body.amount, skip_sum_check=body.skipSumCheck,
                        customer_id=body.customerId)
    style = RefundStyle(body.amountAsNumber, body.trailingSpaceKeys, body.loseReplies)
    return await _refund(sim, order, style)


async def merchant_cancel(request: web.Request) -> web.Response:
    """§3's warning: a Custom payment is cancelled through its merchant, not by a refund
    QR; once Kaspi has processed the cancellation it calls the MPP's /refund for what
    is left of the payment. Answers as /sim/refunds does."""
    sim = request.app[SIM]
    body = await _body(request, MerchantCancelCreate) if request.body_exists else (
        MerchantCancelCreate())
    payment = sim.state.payments.get(request.match_info["payment_id"])
    if payment is None:
        raise _error(web.HTTPNotFound, "NOT_FOUND", "payment not found")
    left = (payment.amount_tiyn or 0) - payment.refunded_tiyn
    if payment.status is not PaymentStatus.COMPLETED or left <= 0:
        raise _invalid(f"payment is {payment.status} with {format_amount(max(left, 0))} "
                       "left to refund: only a completed payment is cancelled")
    order = RefundOrder(payment_id=payment.payment_id,
                        refund_id=body.refundId or sim.state.ids.refund_id(), amount_tiyn=left)
    return await _refund(sim, order, RefundStyle())


async def _refund(sim: Simulator, order: RefundOrder, style: RefundStyle) -> web.Response:
    try:
        answer = await sim.refund(order, style)
    except UnknownPayment as exc:
        raise _error(web.HTTPNotFound, "NOT_FOUND", str(exc)) from exc
    except RefundConflict as exc:
        raise _invalid(str(exc)) from exc
    except CapacityExceeded as exc:
        raise _error(web.HTTPServiceUnavailable, "CAPACITY", str(exc)) from exc
    return _json({"refundId": order.refund_id, "resultCode": answer.result_code,
                  "resultMessage": answer.result_message, "attempts": answer.attempts})


async def add_fault(request: web.Request) -> web.Response:
    body = await _body(request, FaultCreate)
    try:
        request.app[SIM].faults.add(body.endpoint, Fault(body.mode, body.delayMs,
                                                         body.resultCode, body.rawBody),
                                  body.times)
    except FaultQueueFull as exc:
        raise _invalid(str(exc)) from exc
    return _json({})


async def list_faults(request: web.Request) -> web.Response:
    return _json({"pending": request.app[SIM].faults.pending()})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[SIM].faults.clear()
    return _json({})


async def daily_registry(request: web.Request) -> web.Response:
    text = request.query.get("date", "")
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise _invalid("date must be YYYY-MM-DD")
    return await _registry(request, registry.SimRegistryPeriod.day(day))


async def monthly_registry(request: web.Request) -> web.Response:
    match = _MONTH_RE.match(request.query.get("month", ""))
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise _invalid("month must be YYYY-MM")
    return await _registry(request, registry.SimRegistryPeriod.month(int(match.group(1)),
                                                          int(match.group(2))))


async def _registry(request: web.Request, period: registry.SimRegistryPeriod) -> web.Response:
    if request.query.get("format", "xlsx") != "xlsx":
        raise _invalid("format must be xlsx")
    sim = request.app[SIM]
    state, percent = sim.state, sim.settings.sim_fee_percent
    mpp_ids = {r.payment_id: _mpp_id(sim, r.payment_id) for r in state.succeeded_refunds}
    rows = registry.collect_rows(state.completed_payments, state.succeeded_refunds, mpp_ids,
                                 period, state.tz, percent)
    rows = registry.apply_discrepancies(rows, sim.discrepancies, period, percent)
    # Writing a big workbook takes a while: off the event loop, which keeps serving.
    content = await asyncio.to_thread(registry.to_xlsx, rows, period)
    return web.Response(body=content, content_type=registry.XLSX_CONTENT_TYPE, headers={
        "Content-Disposition": f'attachment; filename="kaspi-registry-{period.label}.xlsx"'})


def _mpp_id(sim: Simulator, payment_id: str) -> str | None:
    payment = sim.state.payments.get(payment_id)
    return None if payment is None else payment.mpp_payment_id


async def add_discrepancy(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    body = await _body(request, DiscrepancyCreate)
    if len(sim.discrepancies) >= MAX_DISCREPANCIES:
        raise _invalid(f"at most {MAX_DISCREPANCIES} discrepancies")
    kaspi_id = body.kaspiId
    if body.kind is registry.DiscrepancyKind.ADD_ROW and kaspi_id is None:
        kaspi_id = sim.state.ids.payment_id()  # a payment the MPP never confirmed
    sim.discrepancies.append(registry.Discrepancy(body.kind, kaspi_id, body.amount,
                                                  body.customerId, body.mppPaymentId))
    return _json({"kaspiId": kaspi_id})


async def clear_discrepancies(request: web.Request) -> web.Response:
    request.app[SIM].discrepancies.clear()
    return _json({})


async def reset(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim.state.reset()
    sim.faults.clear()
    sim.discrepancies.clear()
    return _json({})


async def health(request: web.Request) -> web.Response:
    state = request.app[SIM].state
    return _json({"status": "ok", "payments": len(state.payments), "qrCodes": len(state.qrs),
                  "refunds": len(state.refunds)})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/sim/qr", create_qr)
    router.add_get("/sim/payments/{payment_id}", get_payment)
    router.add_post("/sim/payments/{payment_id}/merchant-cancel", merchant_cancel)
    router.add_post("/sim/refunds", create_refund)
    router.add_get("/sim/refunds/{refund_id}", get_refund)
    router.add_post("/sim/faults", add_fault)
    router.add_get("/sim/faults", list_faults)
    router.add_delete("/sim/faults", clear_faults)
    router.add_get("/sim/registries/daily", daily_registry)
    router.add_get("/sim/registries/monthly", monthly_registry)
    router.add_post("/sim/registries/discrepancies", add_discrepancy)
    router.add_delete("/sim/registries/discrepancies", clear_discrepancies)
    router.add_post("/sim/reset", reset)
    router.add_get("/sim/healthz", health)
