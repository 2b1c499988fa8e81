"""The payment's steps: scan, checkout, confirm, cancel (regulation §2, §4.1–4.3).

Each external call is its own phase; the local work between calls is one statement of
sql/functions/payments.sql, which makes every status change (the moves allowed are
sql/functions/states.sql's, enforced by the database). The debit and the status PENDING
commit together with the notifyPayment outbox row, *before* Kaspi is told; the outbox
(domain/outbox.py) then retries until Kaspi answers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mpp_server.db import Conn
from mpp_server.domain import kaspi_answers, ledger
from mpp_server.domain.limits import Limits
from mpp_server.domain.outbox import Notice, NotifyOutbox
from mpp_server.domain.outcomes import (
    CANCEL_NOTICE,
    DEBIT_NOTICES,
    DEBIT_NOTICES_JSON,
    OPEN_PAYMENT_STATUSES,
    CancelOutcome,
    CheckoutOutcome,
    ConfirmOutcome,
    PaymentStatus,
)
from mpp_server.domain.receipts import receipt_in_locale
from mpp_server.errors import (
    CustomerMismatch,
    InsufficientFunds,
    InvalidState,
    KaspiRefused,
    KaspiUnavailable,
    LimitExceeded,
    NotFound,
    PaymentExpired,
    ValidationFailed,
)
from mpp_server.kaspi_client.client import KaspiClient, KaspiNoAnswer
from mpp_server.kaspi_client.codes import CHECKOUT_FINAL_REFUSALS, ResultCode
from mpp_server.kaspi_client.models import (
    CheckoutParameter,
    CheckoutRequest,
    ScanRequest,
    sanitise,
)
from mpp_server.logs import mask_customer
from mpp_server.metrics import LIMIT_REFUSALS, PAYMENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentSteps:
    """What the payment's steps work with (built from the settings by the wiring,
    services.py): the database, Kaspi, the notify outbox and the policy."""

    pool: asyncpg.Pool
    kaspi: KaspiClient
    outbox: NotifyOutbox
    confirm_budget_ms: int        # how long confirm and cancel wait for Kaspi
    confirm_safety_margin_ms: int  # no debit closer than this to canConfirmUntil
    limits: Limits                # by identification level (LIMITS_MCI)


@dataclass(frozen=True)
class ScanOutcome:
    qr_code_type: str
    merchant: dict[str, Any] | None
    payment: asyncpg.Record | None
    service: dict[str, Any] | None
    refund_id: str | None


def _kaspi_unavailable(method: str, exc: KaspiNoAnswer) -> KaspiUnavailable:
    return KaspiUnavailable(f"Kaspi did not answer {method} ({exc.reason}); try again")


async def scan(steps: PaymentSteps, qr_code: str, customer_id: str, locale: str) -> ScanOutcome:
    try:
        answer = await steps.kaspi.scan(ScanRequest(qrCode=qr_code, customerId=customer_id),
                                      locale)
    except KaspiNoAnswer as exc:
        raise _kaspi_unavailable("scan", exc) from exc
    if answer.result.resultCode != ResultCode.SUCCESS:
        raise KaspiRefused(answer.result.resultCode, answer.result.resultMessage)
    if answer.qrCodeType == "Refund":
        refund_id = kaspi_answers.scanned_refund_id(answer)
        merchant = answer.merchant.model_dump(exclude_none=True) if answer.merchant else None
        return ScanOutcome("Refund", merchant, None, None, refund_id)
    scanned = kaspi_answers.scanned_payment(answer)  # or KaspiDefectiveAnswer
    async with steps.pool.acquire() as conn:
        # Only the columns the answer needs: the merchant and service are Kaspi's, from
        # its answer; reading them back would decode two jsonb values for nothing.
        row = await conn.fetchrow(
            "SELECT s.created, (s.payment).payment_id, (s.payment).customer_id, "
            "(s.payment).amount_tiyn, (s.payment).can_confirm_until, (s.payment).status "
            "FROM payment_scanned($1, $2, $3, $4, $5, $6, $7, $8) s", scanned.payment_id,
            customer_id, scanned.qr_code_type, scanned.amount_tiyn,
            scanned.can_confirm_until, scanned.merchant, scanned.service, locale)
    assert row is not None
    # A paymentId Kaspi gave before (a Dynamic QR scanned again): the same customer sees
    # the payment as it stands; another customer may not take it over.
    if not row["created"] and row["customer_id"] != customer_id:
        raise CustomerMismatch("this payment was scanned by another customer")
    return ScanOutcome(scanned.qr_code_type, scanned.merchant, row, scanned.service, None)


def _customers_payment(row: asyncpg.Record | None, payment_id: str,
                       customer_id: str) -> asyncpg.Record:
    if row is None:
        raise NotFound(f"payment {payment_id!r} not found")
    if row["customer_id"] != customer_id:
        raise CustomerMismatch("customerId differs from the one that scanned this payment")
    return row


async def _read_payment(steps: PaymentSteps, payment_id: str, customer_id: str) -> asyncpg.Record:
    async with steps.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1", payment_id)
    return _customers_payment(row, payment_id, customer_id)


def _fill_parameters(service: dict[str, Any],
                     given: dict[int, str]) -> list[CheckoutParameter]:
    """Every parameter filled (regulation §4.2): scan's values unchanged, the rest from
    the customer, a drop-down's value one of its keys."""
    filled: list[CheckoutParameter] = []
    known = {int(p["id"]) for p in service.get("parameters", [])}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValidationFailed(f"parameters {unknown} are not parameters of this service")
    for param in service.get("parameters", []):
        pid, preset = int(param["id"]), param.get("value") or ""
        if preset:
            if pid in given and given[pid] != preset:
                raise ValidationFailed(f"parameter {pid} is fixed by the QR code to {preset!r}")
            filled.append(CheckoutParameter(id=pid, value=preset))
            continue
        value = given.get(pid, "").strip()
        if not value:
            raise ValidationFailed(f"parameter {pid} ({param.get('name', '')}) is required")
        options = param.get("options")
        if options and value not in {o["key"] for o in options}:
            raise ValidationFailed(f"parameter {pid} must be one of the option keys")
        filled.append(CheckoutParameter(id=pid, value=value))
    return filled


async def checkout(steps: PaymentSteps, payment_id: str, customer_id: str,
                   parameters: dict[int, str], locale: str) -> asyncpg.Record:
    row = await _read_payment(steps, payment_id, customer_id)
    if row["checkout_result_code"] is not None:
        # Kaspi refused this checkout finally (§4.2: PROCESS_FAIL, do not retry;
        # EXPIRED_CODE): the same answer, without asking it again.
        raise KaspiRefused(row["checkout_result_code"], row["checkout_result_message"])
    if row["qr_code_type"] != "Custom":
        raise InvalidState("checkout is only for Custom QR payments")
    if row["status"] not in OPEN_PAYMENT_STATUSES:
        raise InvalidState(f"payment is {row['status']}")
    request = CheckoutRequest(paymentId=payment_id, serviceId=int(row["service"]["serviceId"]),
                              parameters=_fill_parameters(row["service"], parameters))
    try:
        answer = await steps.kaspi.checkout(request, locale)
    except KaspiNoAnswer as exc:
        raise _kaspi_unavailable("checkout", exc) from exc
    if answer.result.resultCode != ResultCode.SUCCESS:
        if answer.result.resultCode in CHECKOUT_FINAL_REFUSALS:
            await _checkout_refused(steps, payment_id, answer.result.resultCode,
                                    answer.result.resultMessage)
        raise KaspiRefused(answer.result.resultCode, answer.result.resultMessage)
    amount, until = kaspi_answers.checked_out(answer, row["can_confirm_until"])
    async with steps.pool.acquire() as conn:
        applied = await conn.fetchrow(
            "SELECT a.outcome, (a.payment).* FROM payment_checkout($1, $2, $3, $4) a",
            payment_id, amount, until, [p.model_dump() for p in request.parameters])
    assert applied is not None
    if CheckoutOutcome(applied["outcome"]) is CheckoutOutcome.CHANGED:
        # Confirmed, cancelled or expired while Kaspi was asked.
        changed = await _read_payment(steps, payment_id, customer_id)
        raise InvalidState(f"payment is {changed['status']}")
    return applied


async def _checkout_refused(steps: PaymentSteps, payment_id: str, code: str,
                            message: str) -> None:
    """Record Kaspi's final refusal of a checkout on the payment (payment_checkout_refused:
    FAILED, or EXPIRED for EXPIRED_CODE); a payment that moved on meanwhile keeps its
    status."""
    async with steps.pool.acquire() as conn:
        outcome = CheckoutOutcome(await conn.fetchval(
            "SELECT outcome FROM payment_checkout_refused($1, $2, $3)", payment_id, code,
            sanitise(message)))
    if outcome is not CheckoutOutcome.CHANGED:
        PAYMENTS.labels(outcome.value).inc()
        log.info("checkout refused finally by Kaspi",
                 extra={"payment_id": payment_id, "result_code": code})


async def confirm(steps: PaymentSteps, payment_id: str, customer_id: str, amount_tiyn: int | None,
                  locale: str | None) -> asyncpg.Record:
    """One statement (payment_confirm, sql/functions/payments.sql) locks the payment,
    checks it against the request and debits or declines it; then Kaspi is told under
    the lease the statement set. 20 confirms at once: one debits, the others find the
    payment decided and answer what the first did, never a second debit."""
    budget_s = steps.confirm_budget_ms / 1000
    lease_ends = asyncio.get_running_loop().time() + budget_s
    async with steps.pool.acquire() as conn:
        outcome, row = await confirm_statement(
            conn, payment_id, customer_id, amount_tiyn, locale, budget_s,
            steps.limits.sql_json, steps.confirm_safety_margin_ms)
    if outcome is ConfirmOutcome.EXPIRED:
        # The deadline passed before the debit held its locks.
        PAYMENTS.labels("EXPIRED").inc()
        log.info("payment expired at the debit", extra={"payment_id": payment_id})
        raise PaymentExpired("the payment's canConfirmUntil has passed")
    staged = DEBIT_NOTICES.get(outcome)
    if staged is None:
        return _refused_or_repeated(steps, outcome, row, payment_id, amount_tiyn)
    _count_decline(outcome, row)
    notice = Notice(payment_id, str(row["mpp_payment_id"]), customer_id, row["amount_tiyn"],
                    staged.result_code, staged.result_message, row["locale"])
    answered = await steps.outbox.deliver_now(notice, lease_ends)
    if outcome is ConfirmOutcome.INSUFFICIENT_FUNDS:
        raise InsufficientFunds("insufficient funds")
    if outcome is ConfirmOutcome.LIMIT_EXCEEDED:
        LIMIT_REFUSALS.labels(row["exceeded_limit"], row["exceeded_level"]).inc()
        raise _limit_exceeded(steps, row)
    return answered if answered is not None else await _read_payment(steps, payment_id,
                                                                     customer_id)


async def confirm_statement(conn: Conn, payment_id: str, customer_id: str,
                            amount_tiyn: int | None, locale: str | None, hold_s: float,
                            limits_json: str, margin_ms: int, now: datetime | None = None
                            ) -> tuple[ConfirmOutcome, asyncpg.Record]:
    """The one call of payment_confirm, its arguments in one place (the confirm; the
    benchmark's history and the ledger's tests call it too): the outcome and the payment
    as the statement left it. `hold_s` is the lease on the staged notify, `limits_json`
    the limits by level (`Limits.sql_json`; "{}" for none), `margin_ms` the safety
    margin before canConfirmUntil; `now`, the debit's time for the limits' calendar, is
    the database's clock unless a test crosses a midnight. The two jsonb arguments are
    sent as text (encoded once, not by the driver on every call)."""
    row = await conn.fetchrow(
        "SELECT c.outcome, (c.payment).* FROM payment_confirm($1, $2, $3, $4, $5, $6, "
        "$7::text::jsonb, $8::text::jsonb, $9, $10) c", payment_id, customer_id,
        amount_tiyn, ledger.shard_for(payment_id), locale, hold_s, DEBIT_NOTICES_JSON,
        limits_json, margin_ms, now)
    assert row is not None
    return ConfirmOutcome(row["outcome"]), row


def _refused_or_repeated(steps: PaymentSteps, outcome: ConfirmOutcome, row: asyncpg.Record,
                         payment_id: str, amount_tiyn: int | None) -> asyncpg.Record:
    """The error of a confirm payment_confirm refused (nothing written), or, for a
    payment already decided, the same outcome as the confirm that decided it."""
    if outcome is ConfirmOutcome.NOT_FOUND:
        raise NotFound(f"payment {payment_id!r} not found")
    if outcome is ConfirmOutcome.NOT_YOURS:
        raise CustomerMismatch("customerId differs from the one that scanned this payment")
    status = row["status"]
    if outcome is ConfirmOutcome.DECIDED:
        # A repeated confirm: never a second debit, the same outcome.
        if amount_tiyn is not None and amount_tiyn != row["amount_tiyn"]:
            raise InvalidState(f"payment is already {status} with another amount")
        if row["decline_code"] == ConfirmOutcome.INSUFFICIENT_FUNDS:
            raise InsufficientFunds("insufficient funds")
        if row["decline_code"] == ConfirmOutcome.LIMIT_EXCEEDED:
            raise _limit_exceeded(steps, row)
        return row
    if outcome is ConfirmOutcome.CLOSED:
        if status == PaymentStatus.EXPIRED:
            raise PaymentExpired("the payment's canConfirmUntil has passed")
        refused = row["checkout_result_code"]
        raise InvalidState(f"payment is {status}" + (
            f" (Kaspi refused its checkout: {refused})" if refused else ""))
    error, message = _AMOUNT_REFUSALS[outcome]
    raise error(message)


# payment_confirm's refusals of the amount or of an unfinished Custom payment.
_AMOUNT_REFUSALS: dict[ConfirmOutcome, tuple[type[ValidationFailed | InvalidState], str]] = {
    ConfirmOutcome.AMOUNT_REQUIRED: (ValidationFailed,
                                     "amount is required for a Static QR payment"),
    # notifyPayment's paymentAmount must be whole tenge (regulation §4.3).
    ConfirmOutcome.AMOUNT_NOT_WHOLE: (ValidationFailed,
                                      "amount must be a positive whole number of tenge"),
    ConfirmOutcome.CHECKOUT_REQUIRED: (InvalidState,
                                       "a Custom QR payment needs checkout before confirm"),
    ConfirmOutcome.AMOUNT_DIFFERS: (ValidationFailed,
                                    "amount differs from the payment's amount"),
}


def _limit_exceeded(steps: PaymentSteps, row: asyncpg.Record) -> LimitExceeded:
    """The 409 of a payment DECLINED over a limit, naming the limit (its figure as
    configured now)."""
    what = steps.limits.describe(row["exceeded_level"], row["exceeded_limit"])
    return LimitExceeded(f"the payment would exceed {what}; nothing was debited")


def _count_decline(outcome: ConfirmOutcome, row: asyncpg.Record) -> None:
    """A decline counted and logged (a debit is counted when Kaspi's answer decides)."""
    if outcome is not ConfirmOutcome.DEBITED:
        PAYMENTS.labels(outcome.value).inc()
        log.info(f"payment declined: {outcome.value}",
                 extra={"payment_id": row["payment_id"],
                        "customer": mask_customer(row["customer_id"])})


def count_completed_without_answer(payment_id: str, evidence: str) -> None:
    """A PENDING payment became COMPLETED because Kaspi proved it (a refund of it, or its
    registry), not through notifyPayment's answer (which the outbox still records)."""
    PAYMENTS.labels("COMPLETED").inc()
    log.warning(f"{evidence} for a PENDING payment: recorded as COMPLETED",
                extra={"payment_id": payment_id})


async def complete_unanswered(conn: Conn, payment: asyncpg.Record, *, evidence: str) -> None:
    """Kaspi proved it completed a PENDING payment whose notifyPayment answer we never got
    (its registry lists it; refunds do the same inside refund_apply): record it
    COMPLETED. `payment` is the row the caller holds FOR UPDATE."""
    await conn.execute("SELECT complete_unanswered($1)", payment["payment_id"])
    count_completed_without_answer(payment["payment_id"], evidence)


async def cancel(steps: PaymentSteps, payment_id: str, customer_id: str) -> asyncpg.Record:
    """The customer backed out: CANCELLED, and CANCELLED_BY_CLIENT (regulation §4.3)
    staged and tried now (payment_cancel)."""
    row = await _read_payment(steps, payment_id, customer_id)
    budget_s = steps.confirm_budget_ms / 1000
    lease_ends = asyncio.get_running_loop().time() + budget_s
    async with steps.pool.acquire() as conn:
        applied = await conn.fetchrow(
            "SELECT a.outcome, (a.payment).* FROM payment_cancel($1, $2, $3, $4) a",
            payment_id, CANCEL_NOTICE.result_code, CANCEL_NOTICE.result_message, budget_s)
    assert applied is not None
    outcome = CancelOutcome(applied["outcome"])
    if outcome is CancelOutcome.ALREADY_CANCELLED:
        return applied
    if outcome is CancelOutcome.CHANGED:
        raise InvalidState(f"payment is {applied['status']} and can no longer be cancelled")
    PAYMENTS.labels("CANCELLED").inc()
    notice = Notice(payment_id, str(row["mpp_payment_id"]), customer_id, None,
                    CANCEL_NOTICE.result_code, CANCEL_NOTICE.result_message, row["locale"])
    answered = await steps.outbox.deliver_now(notice, lease_ends)
    return answered if answered is not None else await _read_payment(steps, payment_id,
                                                                     customer_id)


async def get(pool: asyncpg.Pool, payment_id: str) -> tuple[asyncpg.Record,
                                                            list[asyncpg.Record]]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1", payment_id)
        if row is None:
            raise NotFound(f"payment {payment_id!r} not found")
        refunds = await conn.fetch(
            """SELECT refund_id, amount_tiyn, created_at, link_receipt FROM refunds
               WHERE payment_id = $1 AND status = 'SUCCESS' ORDER BY created_at, refund_id""",
            payment_id)
    return row, list(refunds)


def receipt_link(row: asyncpg.Record) -> str | None:
    """The payment's receipt, in Kazakh when the customer uses kk-KZ (regulation §4.3)."""
    return receipt_in_locale(row["link_receipt"], row["locale"])


async def expire_stale(pool: asyncpg.Pool) -> int:
    """Mark open payments whose canConfirmUntil has passed as EXPIRED."""
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT payments_expire_stale()")
    if count:
        PAYMENTS.labels("EXPIRED").inc(count)
    return count
