"""Refunds Kaspi asks for (regulation §1.3, §3, §4.4): exactly one credit per refundId.

The refunds table's primary key is the refundId. The first request inserts its row
and holds it (uncommitted) while it works; a duplicate's INSERT waits on that key
until the first commits, then finds the row and answers what the first answered. So
duplicates, sequential or concurrent, never see REFUND_IN_PROCESS: they wait and get
the same final answer. The payment row is locked while a refund is applied, and a
CHECK keeps refunded ≤ paid, so no interleaving can refund more than the payment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from mpp_server import ledger
from mpp_server.db import Conn
from mpp_server.kaspi.codes import ResultCode
from mpp_server.logs import mask_customer
from mpp_server.metrics import MONEY_ALARMS, REFUNDED_TIYN, REFUNDS
from mpp_server.payments import Status, complete_unanswered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str
    payment_id: str
    customer_id: str
    amount_tiyn: int
    link_receipt: str


@dataclass(frozen=True)
class RefundAnswer:
    code: str
    message: str


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = RefundAnswer(code, message)


async def apply_refund(pool: asyncpg.Pool, req: RefundRequest) -> RefundAnswer:
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            """INSERT INTO refunds (refund_id, payment_id, customer_id, amount_tiyn, status,
                                    result_code, result_message, link_receipt)
               VALUES ($1, $2, $3, $4, 'REFUSED', 'PROCESS_FAIL', 'in process', $5)
               ON CONFLICT (refund_id) DO NOTHING RETURNING true""",
            req.refund_id, req.payment_id, req.customer_id, req.amount_tiyn, req.link_receipt)
        if not claimed:
            answer = await _repeat_answer(conn, req)
        else:
            try:
                answer = await _credit(conn, req)
            except _Refused as refused:
                answer = refused.answer
                await conn.execute(
                    """UPDATE refunds SET result_code = $2, result_message = $3
                       WHERE refund_id = $1""", req.refund_id, answer.code, answer.message)
    REFUNDS.labels(answer.code).inc()
    return answer


async def _repeat_answer(conn: Conn, req: RefundRequest) -> RefundAnswer:
    stored = await conn.fetchrow("SELECT * FROM refunds WHERE refund_id = $1", req.refund_id)
    assert stored is not None
    same = (stored["payment_id"], stored["customer_id"], stored["amount_tiyn"]) == (
        req.payment_id, req.customer_id, req.amount_tiyn)
    if not same:
        return RefundAnswer(ResultCode.PARAM_ILLEGAL,
                            "refundId was already used with another payment, customer or amount")
    return RefundAnswer(stored["result_code"], stored["result_message"])


async def _credit(conn: Conn, req: RefundRequest) -> RefundAnswer:
    if req.amount_tiyn <= 0:
        raise _Refused(ResultCode.PARAM_ILLEGAL, "refundAmount must be positive")
    payment = await conn.fetchrow(
        """SELECT payment_id, status, customer_id, amount_tiyn, refunded_tiyn FROM payments
           WHERE payment_id = $1 FOR UPDATE""", req.payment_id)
    if payment is None:
        raise _Refused(ResultCode.PARAM_ILLEGAL, "unknown paymentId")
    if payment["customer_id"] != req.customer_id:
        raise _Refused(ResultCode.PARAM_ILLEGAL, "customerId is not the payment's customer")
    status = payment["status"]
    if status == Status.PENDING:
        # Kaspi refunds only what it completed: our notifyPayment's answer was lost.
        await complete_unanswered(conn, payment, evidence="refund")
    elif status != Status.COMPLETED:
        if status == Status.DECLINED:
            MONEY_ALARMS.labels("refund_for_declined_payment").inc()
        raise _Refused(ResultCode.PARAM_ILLEGAL, f"payment is {status}, not COMPLETED")
    remaining = payment["amount_tiyn"] - payment["refunded_tiyn"]
    if req.amount_tiyn > remaining:
        raise _Refused(ResultCode.PARAM_ILLEGAL,
                       f"refund would exceed the payment: {remaining} tiyn left to refund")
    account = await ledger.customer_account(conn, req.customer_id)
    assert account is not None, "a customer who paid has an account"
    settlement = await ledger.system_account(conn, "settlement", req.payment_id)
    transfer_id = await ledger.transfer(conn, "refund_credit", req.refund_id, settlement,
                                        account[0], req.amount_tiyn)
    await conn.execute("UPDATE payments SET refunded_tiyn = refunded_tiyn + $2, "
                       "updated_at = now() WHERE payment_id = $1",
                       req.payment_id, req.amount_tiyn)
    await conn.execute(
        """UPDATE refunds SET status = 'SUCCESS', result_code = 'SUCCESS',
                  result_message = 'success', transfer_id = $2 WHERE refund_id = $1""",
        req.refund_id, transfer_id)
    await conn.execute(
        """INSERT INTO events (type, customer_id, payment_id, refund_id, amount_tiyn)
           VALUES ('refund.credited', $1, $2, $3, $4)""",
        req.customer_id, req.payment_id, req.refund_id, req.amount_tiyn)
    REFUNDED_TIYN.inc(req.amount_tiyn)
    log.info("refund credited", extra={"refund_id": req.refund_id, "payment_id": req.payment_id,
                                       "customer": mask_customer(req.customer_id)})
    return RefundAnswer(ResultCode.SUCCESS, "success")
