"""Money back to the card (`POST /v1/topups/{topupId}/refunds`, docs/topups.md).

The wallet is debited first, in the same transaction that stages the refund
(topup_refund_stage: a PENDING topup_refunds row is the outbox); the acquirer is told
afterwards and told again, with capped backoff, until it answers. Each attempt is one
transaction holding the refund row with FOR UPDATE SKIP LOCKED across the call, like the
notify outbox (domain/outbox.py): a process killed mid-call leaves the row to the next.
A final refusal returns the money to the wallet (topup_refund_answer). Refunds of one
top-up never add up to more than it credited (a CHECK on topups.refunded_tiyn).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from mpp_server.acquirers.base import (
    Acquirer,
    AcquirerNoAnswer,
    AcquirerRefused,
    OrderRef,
    Provider,
)
from mpp_server.domain import ledger
from mpp_server.domain.due_worker import run_due
from mpp_server.domain.outcomes import TopupRefundAnswer, TopupRefundOutcome
from mpp_server.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidState,
    NotFound,
    RefundExceedsCredit,
)
from mpp_server.journal import Refs, concerning
from mpp_server.metrics import TOPUP_REFUNDS

log = logging.getLogger(__name__)

# The contract offers money back to the card through these acquirers only.
REFUNDABLE = frozenset({Provider.HALYK_EPAY, Provider.KAPITAL})
# Kapital: "the day of the transaction" is Kazakhstan's day (UTC+5).
_DUE = """
    SELECT r.*, t.provider, t.provider_order_id, t.provider_session_id,
           t.amount_tiyn AS topup_amount_tiyn,
           ((t.credited_at AT TIME ZONE 'UTC') + interval '5 hours')::date
             = ((now() AT TIME ZONE 'UTC') + interval '5 hours')::date AS credited_today
    FROM topup_refunds r JOIN topups t USING (topup_id)
    WHERE r.refund_id = $1 AND r.status = 'PENDING' AND ($2 OR r.next_attempt_at <= now())
    FOR UPDATE OF r SKIP LOCKED"""
_DUE_IDS = """SELECT refund_id FROM topup_refunds
              WHERE status = 'PENDING' AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $1"""


class TopupRefunds:
    def __init__(self, pool: asyncpg.Pool, acquirers: Mapping[Provider, Acquirer], *,
                 initial_backoff_s: float, max_backoff_s: float, concurrency: int,
                 poll_interval_s: float, lease_s: float) -> None:
        self._pool = pool
        self._acquirers = acquirers
        self._lease_s = lease_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s

    def backoff_s(self, attempts: int) -> float:
        return min(self._max_backoff_s,
                   self._initial_backoff_s * float(2 ** min(max(attempts - 1, 0), 30)))

    async def request(self, topup_id: str, refund_id: str,
                      amount_tiyn: int) -> tuple[asyncpg.Record, bool]:
        """Debit the wallet and stage the refund; then one attempt at once. Returns the
        refund row and whether this call staged it."""
        assert amount_tiyn > 0
        async with self._pool.acquire() as conn:
            provider = await conn.fetchval("SELECT provider FROM topups WHERE topup_id = $1",
                                           topup_id)
            if provider is None:
                raise NotFound(f"no top-up {topup_id!r}")
            if Provider(provider) not in REFUNDABLE:
                raise InvalidState(f"{provider} top-ups cannot be refunded to the card")
            async with conn.transaction():
                applied = await conn.fetchrow(
                    "SELECT a.outcome, (a.refund).* FROM topup_refund_stage($1, $2, $3, $4) a",
                    refund_id, topup_id, amount_tiyn, ledger.shard_for(refund_id))
                assert applied is not None
                if applied["outcome"] == TopupRefundOutcome.STAGED:
                    # This request tells the acquirer at once: a lease keeps the worker
                    # off the row until then (it took the due row first and the request
                    # answered PENDING). A process that dies meanwhile leaves the row to
                    # the worker once the lease ends.
                    await conn.execute(
                        """UPDATE topup_refunds
                           SET next_attempt_at = now() + make_interval(secs => $2)
                           WHERE refund_id = $1""", refund_id, self._lease_s)
        outcome = TopupRefundOutcome(applied["outcome"])
        if outcome is TopupRefundOutcome.REPEAT:
            return applied, False
        _raise_refusal(outcome, refund_id)
        TOPUP_REFUNDS.labels(provider, outcome.value).inc()
        answered = await self.attempt(refund_id, leased=True)
        return answered or applied, True

    async def get(self, refund_id: str) -> asyncpg.Record | None:
        async with self._pool.acquire() as conn:
            return await conn.fetchrow("SELECT * FROM topup_refunds WHERE refund_id = $1",
                                       refund_id)

    async def attempt(self, refund_id: str, *, leased: bool = False) -> asyncpg.Record | None:
        """Tell the acquirer, if the refund is due (or `leased` to this caller) and no
        other process holds it; apply a final answer, or schedule the next attempt.
        Returns the row when answered."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_DUE, refund_id, leased)
            if row is None:
                return None
            provider = Provider(row["provider"])
            order = OrderRef(row["topup_id"], row["provider_order_id"],
                             row["provider_session_id"], row["topup_amount_tiyn"],
                             credited_today=bool(row["credited_today"]))
            try:
                with concerning(Refs(topup_id=row["topup_id"], refund_id=refund_id)):
                    operation = await self._acquirers[provider].refund(order, refund_id,
                                                                       row["amount_tiyn"])
                verdict, reason = "ACCEPTED", None
            except AcquirerRefused as exc:
                operation, verdict, reason = None, "REFUSED", exc.reason
            except AcquirerNoAnswer as exc:
                attempts = row["attempts"] + 1
                await conn.execute(
                    """UPDATE topup_refunds SET attempts = $2, last_error = $3,
                              next_attempt_at = now() + make_interval(secs => $4)
                       WHERE refund_id = $1""",
                    refund_id, attempts, exc.reason, self.backoff_s(attempts))
                TOPUP_REFUNDS.labels(provider.value, "RETRY").inc()
                log.warning("acquirer did not answer a refund, will retry",
                            extra={"refund_id": refund_id, "reason": exc.reason,
                                   "attempts": attempts})
                return None
            applied = await conn.fetchrow(
                "SELECT a.outcome, (a.refund).* FROM topup_refund_answer($1, $2, $3, $4, $5) a",
                refund_id, verdict, reason, operation, ledger.shard_for(refund_id))
        assert applied is not None
        outcome = TopupRefundAnswer(applied["outcome"])
        if outcome is not TopupRefundAnswer.ALREADY_APPLIED:
            TOPUP_REFUNDS.labels(provider.value, outcome.value).inc()
        if outcome is TopupRefundAnswer.REFUSED:
            log.warning("acquirer refused a refund; the money is back in the wallet",
                        extra={"refund_id": refund_id, "reason": reason})
        return applied

    async def run(self) -> None:
        """Background worker: attempt due refunds forever (started with the server)."""
        await run_due(self._pool, _DUE_IDS, self.attempt, what="top-up refund",
                      concurrency=self._concurrency, poll_interval_s=self._poll_interval_s)


def _raise_refusal(outcome: TopupRefundOutcome, refund_id: str) -> None:
    """Each refusal's wallet error (nothing was debited for any of them)."""
    if outcome is TopupRefundOutcome.CONFLICT:
        raise IdempotencyConflict(f"refundId {refund_id!r} was already used with another "
                                  "top-up or amount")
    if outcome is TopupRefundOutcome.UNKNOWN_TOPUP:
        raise NotFound("no such top-up")
    if outcome is TopupRefundOutcome.NOT_CREDITED:
        raise InvalidState("the top-up was not credited: nothing to give back")
    if outcome is TopupRefundOutcome.EXCEEDS:
        raise RefundExceedsCredit("the refunds would exceed what the top-up credited")
    if outcome is TopupRefundOutcome.INSUFFICIENT_FUNDS:
        raise InsufficientFunds("the wallet's balance does not cover the refund")
    assert outcome is TopupRefundOutcome.STAGED
