"""The wallet API (shared/spec/wallet-api.md): thin handlers over the domain modules
(declared, with their paths and errors, in http/routes.py)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mpp_server import cursors, db, migrate
from mpp_server.domain import accounts, deposits, events, payments
from mpp_server.domain.limits import Level
from mpp_server.domain.receipts import receipt_in_locale
from mpp_server.errors import ValidationFailed
from mpp_server.http.middleware import (
    SERVICES,
    json_response,
    locale_of,
    parse_body,
    query_int,
)
from mpp_server.http.models import (
    AccountOut,
    CancelIn,
    CheckoutIn,
    CheckoutOut,
    ConfirmIn,
    DepositIn,
    EventOut,
    EventsOut,
    HealthOut,
    IdentificationIn,
    IdentificationOut,
    MerchantOut,
    PaymentOut,
    RefundOut,
    ScanIn,
    ScanOut,
    ScanPaymentOut,
    ServiceOut,
    StatementEntryOut,
    StatementOut,
)
from mpp_server.metrics import CONFIRM_LATENCY, REGISTRY
from mpp_server.services import Services

DEFAULT_LOCALE = "ru-RU"
EVENTS_MAX_LIMIT = 1000
STATEMENT_MAX_LIMIT = 1000


def _svc(request: web.Request) -> Services:
    return request.app[SERVICES]


def _payment_id(request: web.Request) -> str:
    return request.match_info["paymentId"]


def payment_out(row: asyncpg.Record, refunds: list[asyncpg.Record] | None = None) -> PaymentOut:
    return PaymentOut(
        paymentId=row["payment_id"], mppPaymentId=str(row["mpp_payment_id"]),
        qrCodeType=row["qr_code_type"], status=row["status"], amount=row["amount_tiyn"],
        refundedAmount=row["refunded_tiyn"], linkReceipt=payments.receipt_link(row),
        refunds=[RefundOut(refundId=r["refund_id"], amount=r["amount_tiyn"],
                           createdAt=r["created_at"],
                           linkReceipt=receipt_in_locale(r["link_receipt"], row["locale"]))
                 for r in refunds or []],
        merchant=MerchantOut.model_validate(row["merchant"]),
        canConfirmUntil=row["can_confirm_until"],
        declineReason=row["decline_code"] or row["checkout_result_code"] or (
            row["kaspi_result_code"] if row["status"] == "DECLINED" else None),
        kaspiAcknowledged=row["kaspi_acknowledged"], createdAt=row["created_at"])


async def deposit(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    body = await parse_body(request, DepositIn)
    if body.amount <= 0:
        raise ValidationFailed("amount must be positive")
    svc = _svc(request)
    if body.amount > svc.settings.deposit_max_tiyn:
        raise ValidationFailed(f"amount is above DEPOSIT_MAX_AMOUNT "
                               f"({svc.settings.deposit_max_amount}) for one deposit")
    result = await deposits.deposit(svc.pool, body.depositId, customer_id, body.amount,
                                    svc.settings.limits)
    return json_response(AccountOut(customerId=customer_id, balance=result.balance_tiyn),
                         status=201 if result.created else 200)


async def account(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    found = await accounts.get(_svc(request).pool, customer_id)
    return json_response(AccountOut(customerId=customer_id, balance=found.balance_tiyn,
                                    identificationLevel=found.level.value))


async def set_identification(request: web.Request) -> web.Response:
    """Deposit tokens only: the bank's core knows who the customer is."""
    customer_id = request.match_info["customerId"]
    body = await parse_body(request, IdentificationIn)
    async with _svc(request).pool.acquire() as conn:
        level = await accounts.set_level(conn, customer_id, Level(body.level))
    return json_response(IdentificationOut(customerId=customer_id, level=level.value))


async def statement(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    limit = query_int(request, "limit", 100, 1, STATEMENT_MAX_LIMIT)
    assert limit is not None
    lines, cursor = await accounts.statement(_svc(request).pool, customer_id,
                                             cursors.parse(request.query.get("after")), limit)
    return json_response(StatementOut(entries=[
        StatementEntryOut(id=line.entry_id, type=line.type, amount=line.amount_tiyn,
                          balanceAfter=line.balance_after_tiyn, createdAt=line.created_at,
                          **line.ids)
        for line in lines], next=cursor))


async def scan(request: web.Request) -> web.Response:
    body = await parse_body(request, ScanIn)
    locale = locale_of(request) or DEFAULT_LOCALE
    outcome = await payments.scan(_svc(request).payments, body.qrCode, body.customerId, locale)
    payment = None
    if outcome.payment is not None:
        row = outcome.payment
        payment = ScanPaymentOut(paymentId=row["payment_id"], amount=row["amount_tiyn"],
                                 canConfirmUntil=row["can_confirm_until"], status=row["status"])
    answer: dict[str, Any] = {
        "qrCodeType": outcome.qr_code_type, "payment": payment,
        "merchant": MerchantOut.model_validate(outcome.merchant) if outcome.merchant else None,
        "service": ServiceOut.model_validate(outcome.service) if outcome.service else None,
        "refund": {"refundId": outcome.refund_id} if outcome.refund_id else None,
    }
    return json_response(ScanOut.model_validate(answer))


async def checkout(request: web.Request) -> web.Response:
    payment_id = _payment_id(request)
    body = await parse_body(request, CheckoutIn)
    given = {p.id: p.value for p in body.parameters}
    if len(given) != len(body.parameters):
        raise ValidationFailed("a parameter id is given twice")
    row = await payments.checkout(_svc(request).payments, payment_id, body.customerId, given,
                                  locale_of(request) or DEFAULT_LOCALE)
    return json_response(CheckoutOut(paymentId=payment_id, amount=row["amount_tiyn"],
                                     canConfirmUntil=row["can_confirm_until"],
                                     status=row["status"]))


async def confirm(request: web.Request) -> web.Response:
    with CONFIRM_LATENCY.time():
        payment_id = _payment_id(request)
        body = await parse_body(request, ConfirmIn)
        row = await payments.confirm(_svc(request).payments, payment_id, body.customerId,
                                     body.amount, locale_of(request))
        return json_response(payment_out(row))


async def cancel(request: web.Request) -> web.Response:
    payment_id = _payment_id(request)
    body = await parse_body(request, CancelIn)
    row = await payments.cancel(_svc(request).payments, payment_id, body.customerId)
    return json_response(payment_out(row))


async def get_payment(request: web.Request) -> web.Response:
    row, refunds = await payments.get(_svc(request).pool, _payment_id(request))
    return json_response(payment_out(row, refunds))


async def list_events(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, EVENTS_MAX_LIMIT)
    assert limit is not None
    svc = _svc(request)
    text = request.query.get("after")
    after = cursors.parse_legacy(text) or cursors.parse(text)  # an old "txid-id", or a seq
    rows, cursor = await events.read_after(svc.pool, after, limit,
                                           svc.settings.events_hold_ms)
    return json_response(EventsOut(events=[EventOut.from_row(r) for r in rows], next=cursor))


async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthOut(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    try:
        async with _svc(request).pool.acquire() as conn:  # DB_ACQUIRE_TIMEOUT_MS
            missing = await migrate.pending(conn)
    except Exception as exc:
        if not (db.is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError)):
            raise
        return json_response(HealthOut(status="unavailable", detail=f"database: {exc}"), 503)
    if missing:
        return json_response(HealthOut(status="unavailable",
                                       detail=f"migrations not applied: {missing}"), 503)
    return json_response(HealthOut(status="ready"))


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
