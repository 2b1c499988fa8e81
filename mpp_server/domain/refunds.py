"""Refunds Kaspi asks for (regulation §1.3, §3, §4.4): exactly one credit per refundId.

The work is one statement, `refund_apply` (sql/functions/refunds.sql): the refunds table's
primary key is the refundId; the first request inserts its row and holds it
(uncommitted) while it works; a duplicate's INSERT waits on that key until the first
commits, then answers what the first answered. So duplicates, sequential or concurrent,
never see REFUND_IN_PROCESS: they wait and get the same final answer. The payment row is
locked while a refund is applied, and a CHECK keeps refunded ≤ paid, so no interleaving
can refund more than the payment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from mpp_server.domain import ledger
from mpp_server.domain.limits import Limits
from mpp_server.domain.outcomes import RefundOutcome
from mpp_server.domain.payments import count_completed_without_answer
from mpp_server.logs import mask_customer
from mpp_server.metrics import (
    BALANCE_OVER_CAP,
    KASPI_DEFECTS,
    MONEY_ALARMS,
    REFUNDED_TIYN,
    REFUNDS_BY,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str
    payment_id: str
    customer_id: str
    amount_tiyn: int
    link_receipt: str | None  # None: Kaspi sent none, or an empty one


@dataclass(frozen=True)
class InboundExchange:
    """The inbound request log's record of the HTTP request that asked for the refund."""

    source_ip: str
    path: str
    headers: dict[str, str]
    body_masked: str
    elapsed_ms: int


@dataclass(frozen=True)
class RefundDecision:
    code: str
    message: str


async def apply_refund(pool: asyncpg.Pool, req: RefundRequest, exchange: InboundExchange,
                       limits: Limits) -> RefundDecision:
    """One statement (refund_apply_logged: the refund and its request-log entry
    together); the metrics and logs follow its outcome. A refund is never refused for a
    limit (the customer already had that money); one that leaves the balance over the
    cap of the customer's level is counted (balance_over_cap reads after the refund)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT code, message, outcome, balance_over_cap($3, $12) AS over_cap "
            "FROM refund_apply_logged($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            req.refund_id, req.payment_id, req.customer_id, req.amount_tiyn,
            req.link_receipt, ledger.shard_for(req.payment_id), exchange.source_ip,
            exchange.path, exchange.headers, exchange.body_masked, exchange.elapsed_ms,
            limits.sql_arg)
    assert row is not None
    outcome = RefundOutcome(row["outcome"])
    if outcome.credited:
        REFUNDED_TIYN.inc(req.amount_tiyn)
        if row["over_cap"]:
            BALANCE_OVER_CAP.inc()
            log.warning("a refund left the balance over the balance cap",
                        extra={"refund_id": req.refund_id,
                               "customer": mask_customer(req.customer_id)})
        log.info("refund credited", extra={"refund_id": req.refund_id,
                                           "payment_id": req.payment_id,
                                           "customer": mask_customer(req.customer_id)})
        if req.link_receipt is None:
            KASPI_DEFECTS.labels("refund", "linkReceipt", "missing").inc()
            log.warning("refund credited without a linkReceipt",
                        extra={"refund_id": req.refund_id, "payment_id": req.payment_id})
    if outcome is RefundOutcome.CREDITED_PENDING:
        # Kaspi refunds only what it completed: our notifyPayment's answer was lost.
        count_completed_without_answer(req.payment_id, "refund")
    elif outcome is RefundOutcome.REFUSED_DECLINED:
        MONEY_ALARMS.labels("refund_for_declined_payment").inc()
        log.error("Kaspi refunds a payment we DECLINED and returned",
                  extra={"payment_id": req.payment_id, "refund_id": req.refund_id})
    REFUNDS_BY(row["code"]).inc()
    return RefundDecision(row["code"], row["message"])
