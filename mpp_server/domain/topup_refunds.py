"""Money back to the card (`POST /v1/topups/{topupId}/refunds`, docs/topups.md).

The wallet is debited first, in the same transaction that stages the refund
(topup_refund_stage: a PENDING topup_refunds row is the outbox); the acquirer is told
afterwards. Each attempt claims the refund's lease first (topup_refund_claim, committed
before the call), calls the acquirer with no connection held, and applies the result in a
short transaction of its own (topup_refund_answer). An attempt left unanswered makes the
refund UNKNOWN: the acquirer may have done it, so it is never given back to the wallet on
a later refusal; the next attempts read the acquirer's books about the top-up instead
(its status API: what it shows refunded) and complete it when they show it, send it again
when they show it not done (after TOPUP_REFUND_SETTLE_MS), and leave it UNKNOWN, counted
and alerted, when they show neither. Refunds of one top-up go one at a time, so the books
can say whose refund they show. Refunds of one top-up never add up to more than it
credited (a CHECK on topups.refunded_tiyn).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from mpp_server import audit
from mpp_server.acquirers.base import (
    Acquirer,
    AcquirerNoAnswer,
    AcquirerRefused,
    OrderRef,
    Provider,
    RefundRef,
)
from mpp_server.db import Conn
from mpp_server.domain import ledger
from mpp_server.domain.due_worker import run_due
from mpp_server.domain.outcomes import (
    TopupRefundAnswer,
    TopupRefundClaim,
    TopupRefundOutcome,
    TopupRefundResolution,
    TopupRefundStatus,
)
from mpp_server.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidState,
    NotFound,
    RefundExceedsCredit,
    ValidationFailed,
)
from mpp_server.journal import Refs, concerning
from mpp_server.metrics import TOPUP_REFUNDS, TOPUP_REFUNDS_UNKNOWN
from mpp_server.money import format_amount

log = logging.getLogger(__name__)

# Kapital: "the day of the transaction" is the bank's day, Baku's (UTC+4).
_CLAIM = """
    SELECT c.outcome, c.done_tiyn, (c.refund).*, t.provider, t.provider_order_id,
           t.provider_session_id, t.gateway_ref, t.provider_transaction_id,
           t.amount_tiyn AS topup_amount_tiyn,
           ((t.credited_at AT TIME ZONE 'UTC') + interval '4 hours')::date
             = ((now() AT TIME ZONE 'UTC') + interval '4 hours')::date AS credited_today
      FROM topup_refund_claim($1, $2) c
      LEFT JOIN topups t ON t.topup_id = (c.refund).topup_id"""
_ANSWER = """SELECT a.outcome, (a.refund).*
               FROM topup_refund_answer($1, $2, $3, $4, $5, $6, $7, $8, $9) a"""
_DUE_IDS = """SELECT refund_id FROM topup_refunds
              WHERE status IN ('PENDING', 'UNKNOWN') AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $1"""


async def count_unknown(conn: Conn) -> None:
    """mpp_topup_refunds_unknown, by provider (MppTopupRefundUnknown)."""
    rows = await conn.fetch("""SELECT t.provider, count(*) AS n
                                 FROM topup_refunds r JOIN topups t USING (topup_id)
                                WHERE r.status = 'UNKNOWN' GROUP BY t.provider""")
    counts = {r["provider"]: r["n"] for r in rows}
    for provider in Provider:
        TOPUP_REFUNDS_UNKNOWN.labels(provider.value).set(counts.get(provider.value, 0))


class TopupRefunds:
    def __init__(self, pool: asyncpg.Pool, acquirers: Mapping[Provider, Acquirer], *,
                 initial_backoff_s: float, max_backoff_s: float, concurrency: int,
                 poll_interval_s: float, lease_s: float, settle_s: float) -> None:
        self._pool = pool
        self._acquirers = acquirers
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._lease_s = lease_s
        self._settle_s = settle_s

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
            least = self._acquirers[Provider(provider)].min_refund_tiyn
            if not least:
                raise InvalidState(f"{provider} top-ups cannot be refunded to the card")
            if amount_tiyn < least:
                raise ValidationFailed(f"{provider} refunds at least {format_amount(least)}")
            async with conn.transaction():
                applied = await conn.fetchrow(
                    "SELECT a.outcome, (a.refund).* FROM topup_refund_stage($1, $2, $3, $4) a",
                    refund_id, topup_id, amount_tiyn, ledger.shard_for(refund_id))
                assert applied is not None
                # This request tells the acquirer itself: its claim commits with the
                # staging, so the worker never takes the fresh row first (the request
                # would answer PENDING to an acquirer that answers at once).
                claimed = (await conn.fetchrow(_CLAIM, refund_id, self._lease_s)
                           if applied["outcome"] == TopupRefundOutcome.STAGED else None)
        outcome = TopupRefundOutcome(applied["outcome"])
        if outcome is TopupRefundOutcome.REPEAT:
            return applied, False
        _raise_refusal(outcome, refund_id)
        TOPUP_REFUNDS.labels(provider, outcome.value).inc()
        assert claimed is not None
        answered = await self._attempt(claimed)
        return answered or applied, True

    async def get(self, refund_id: str) -> asyncpg.Record | None:
        async with self._pool.acquire() as conn:
            return await conn.fetchrow("SELECT * FROM topup_refunds WHERE refund_id = $1",
                                       refund_id)

    async def attempt(self, refund_id: str) -> asyncpg.Record | None:
        """The refund's next attempt, if it is due and no other process holds it: send it
        (PENDING) or read the acquirer's books about it (UNKNOWN), with no connection held
        across the call; the result applied once. Returns the row when applied."""
        async with self._pool.acquire() as conn:
            claimed = await conn.fetchrow(_CLAIM, refund_id, self._lease_s)
        assert claimed is not None
        return await self._attempt(claimed)

    async def _attempt(self, claimed: asyncpg.Record) -> asyncpg.Record | None:
        """The claimed attempt (committed): the call, then its result applied once."""
        refund_id = claimed["refund_id"]
        what = TopupRefundClaim(claimed["outcome"])
        if what not in (TopupRefundClaim.SEND, TopupRefundClaim.ASK):
            return None
        acquirer = self._acquirers[Provider(claimed["provider"])]
        order = OrderRef(claimed["topup_id"], claimed["provider_order_id"],
                         claimed["provider_session_id"], claimed["topup_amount_tiyn"],
                         claimed["gateway_ref"], claimed["provider_transaction_id"],
                         credited_today=bool(claimed["credited_today"]))
        verdict, reason, operation, books = "LOOKED", None, None, None
        try:
            with concerning(Refs(topup_id=claimed["topup_id"], refund_id=refund_id)):
                if what is TopupRefundClaim.SEND:
                    operation = await acquirer.refund(order, RefundRef(refund_id,
                                                                       claimed["amount_tiyn"]))
                    verdict = "ACCEPTED"
                else:
                    books = (await acquirer.status(order)).refunded_tiyn
        except AcquirerRefused as exc:
            verdict, reason = "REFUSED", exc.reason
        except AcquirerNoAnswer as exc:
            verdict = "NO_ANSWER" if what is TopupRefundClaim.SEND else "LOOKED"
            reason = exc.reason
        return await self._answer(claimed, verdict, reason, operation, books)

    async def _answer(self, claimed: asyncpg.Record, verdict: str, reason: str | None,
                      operation: str | None, books: int | None) -> asyncpg.Record:
        refund_id, provider = claimed["refund_id"], claimed["provider"]
        async with self._pool.acquire() as conn:
            applied = await conn.fetchrow(
                _ANSWER, refund_id, claimed["attempts"], verdict, reason, operation, books,
                ledger.shard_for(refund_id), self.backoff_s(claimed["attempts"]),
                self._settle_s)
        assert applied is not None
        outcome = TopupRefundAnswer(applied["outcome"])
        if outcome is not TopupRefundAnswer.ALREADY_APPLIED:
            TOPUP_REFUNDS.labels(provider, outcome.value).inc()
        if outcome is TopupRefundAnswer.REFUSED:
            log.warning("acquirer refused a refund; the money is back in the wallet",
                        extra={"refund_id": refund_id, "reason": reason})
        elif (outcome is TopupRefundAnswer.UNKNOWN
              and claimed["status"] != TopupRefundStatus.UNKNOWN):
            log.warning("a refund to the card may or may not have been done; asking the "
                        "acquirer's books", extra={"refund_id": refund_id, "reason": reason,
                                                   "acquirer_refunded_tiyn": books})
        return applied

    async def run(self) -> None:
        """Background worker: attempt due refunds forever (started with the server)."""
        await run_due(self._pool, _DUE_IDS, self.attempt, what="top-up refund",
                      concurrency=self._concurrency, poll_interval_s=self._poll_interval_s,
                      each_round=count_unknown)


async def resolve(conn: Conn, refund_id: str, done: bool, by: audit.Actor,
                  resolution: str) -> TopupRefundResolution:
    """A person's word on an UNKNOWN refund, after asking the bank (docs/runbook.md):
    it was done (COMPLETED) or not (REFUSED: the money goes back to the wallet); the
    audit journal's row in the same transaction."""
    async with conn.transaction():
        outcome = TopupRefundResolution(await conn.fetchval(
            "SELECT outcome FROM topup_refund_resolve($1, $2, $3, $4, $5)",
            refund_id, done, by.name, resolution, ledger.shard_for(refund_id)))
        if outcome is not TopupRefundResolution.NOT_UNKNOWN:
            await audit.append(conn, by, audit.Action.TOPUP_REFUND_RESOLVED,
                               f"topup_refund:{refund_id}",
                               {"done": done, "resolution": resolution})
    return outcome


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
