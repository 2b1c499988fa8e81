"""The notifyPayment outbox: retried until Kaspi answers (regulation §4.3).

A row in notify_outbox is a decision already committed (debited, cancelled, declined)
that Kaspi has not acknowledged yet. One attempt = one transaction that locks the row
with FOR UPDATE SKIP LOCKED, calls Kaspi while holding the lock, and applies the answer
before committing. So two processes never notify one payment at the same time, an
answer is applied once, and a process killed mid-call leaves the row to the next one
(its lock dies with its connection). Policy table: docs/notify-policy.md.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_delay,
    wait_exponential_jitter,
)

from mpp_server import ledger
from mpp_server.db import Conn
from mpp_server.kaspi.client import KaspiClient, KaspiNoAnswer
from mpp_server.kaspi.codes import ResultCode, is_final_notify_answer
from mpp_server.kaspi.models import NotifyPayment, NotifyRequest, NotifyResponse, OutResult
from mpp_server.logs import mask_customer
from mpp_server.metrics import MONEY_ALARMS, NOTIFY_RETRIES, PAYMENTS

log = logging.getLogger(__name__)


class Attempt(Enum):
    ANSWERED = "answered"   # Kaspi answered finally; the row is gone
    RETRY = "retry"         # no final answer; the row waits for its next attempt
    SKIPPED = "skipped"     # the row is gone, not due, or another process holds it


class Notifier:
    def __init__(self, pool: asyncpg.Pool, kaspi: KaspiClient, *, initial_backoff_s: float,
                 max_backoff_s: float, concurrency: int, poll_interval_s: float) -> None:
        self._pool = pool
        self._kaspi = kaspi
        self._wait = wait_exponential_jitter(multiplier=initial_backoff_s, max=max_backoff_s,
                                             jitter=initial_backoff_s)
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s

    def backoff_s(self, attempts: int) -> float:
        """Capped exponential backoff with jitter, the same policy as the inline retries."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempts)
        return float(self._wait(state))

    async def attempt(self, payment_id: str, *, due_only: bool
                      ) -> tuple[Attempt, asyncpg.Record | None]:
        """One attempt; with ANSWERED, the payment row as the answer left it."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT o.*, p.customer_id, p.mpp_payment_id, p.locale
                   FROM notify_outbox o JOIN payments p USING (payment_id)
                   WHERE o.payment_id = $1 AND (NOT $2 OR o.next_attempt_at <= now())
                   FOR UPDATE OF o SKIP LOCKED""", payment_id, due_only)
            if row is None:
                return Attempt.SKIPPED, None
            request = NotifyRequest(
                result=OutResult(resultCode=row["result_code"],
                                 resultMessage=row["result_message"]),
                payment=NotifyPayment(paymentId=payment_id,
                                      mppPaymentId=str(row["mpp_payment_id"]),
                                      paymentAmount=row["amount_tiyn"]),
                customerId=row["customer_id"])
            try:
                answer = await self._kaspi.notify_payment(request, row["locale"])
                reason = None if is_final_notify_answer(answer.result.resultCode) \
                    else answer.result.resultCode
            except KaspiNoAnswer as exc:
                answer, reason = None, exc.reason
            if answer is None or reason is not None:
                attempts = row["attempts"] + 1
                await conn.execute(
                    """UPDATE notify_outbox SET attempts = $2, last_error = $3,
                              next_attempt_at = now() + make_interval(secs => $4)
                       WHERE payment_id = $1""",
                    payment_id, attempts, reason, self.backoff_s(attempts))
                NOTIFY_RETRIES.labels(reason or "UNKNOWN").inc()
                log.warning("notifyPayment not answered, will retry",
                            extra={"payment_id": payment_id, "reason": reason,
                                   "attempts": attempts})
                return Attempt.RETRY, None
            return Attempt.ANSWERED, await _apply_answer(conn, row, answer)

    async def deliver_now(self, payment_id: str, budget_s: float) -> asyncpg.Record | None:
        """Try within the request's time budget; the worker carries on after it.
        Returns the payment row when Kaspi answered within the budget."""
        if budget_s <= 0:
            return None
        retrying = AsyncRetrying(
            stop=stop_after_delay(budget_s), wait=self._wait, reraise=False,
            retry=retry_if_result(lambda outcome: outcome[0] is Attempt.RETRY),
            retry_error_callback=lambda state: (Attempt.RETRY, None))
        result: tuple[Attempt, asyncpg.Record | None] = await retrying(
            self.attempt, payment_id, due_only=False)
        outcome, payment = result
        if outcome is Attempt.SKIPPED:
            await self._wait_for_other(payment_id, budget_s)
        return payment

    async def _wait_for_other(self, payment_id: str, budget_s: float) -> None:
        """Another process holds the row: wait (bounded) until it lets go."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while loop.time() < deadline:
            async with self._pool.acquire() as conn:
                attempts = await conn.fetchval(
                    "SELECT attempts FROM notify_outbox WHERE payment_id = $1", payment_id)
            if attempts is None or attempts > 0:
                return
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        """Background worker: drain due rows forever (started with the server)."""
        sem = asyncio.Semaphore(self._concurrency)
        in_flight: set[str] = set()
        tasks: set[asyncio.Task[None]] = set()

        async def one(payment_id: str) -> None:
            try:
                await self.attempt(payment_id, due_only=True)
            except Exception:
                log.exception("notify attempt failed", extra={"payment_id": payment_id})
            finally:
                in_flight.discard(payment_id)
                sem.release()

        limit = self._concurrency * 4
        while True:
            full = False
            try:
                async with self._pool.acquire() as conn:
                    due = await conn.fetch(
                        """SELECT payment_id FROM notify_outbox WHERE next_attempt_at <= now()
                           ORDER BY next_attempt_at LIMIT $1""", limit)
                full = len(due) >= limit
                for record in due:
                    payment_id = record["payment_id"]
                    if payment_id in in_flight:
                        continue
                    await sem.acquire()
                    in_flight.add(payment_id)
                    task = asyncio.create_task(one(payment_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except (OSError, asyncpg.PostgresError) as exc:
                log.error("notify worker cannot read the outbox", extra={"error": str(exc)})
            if not full:
                await asyncio.sleep(self._poll_interval_s)


async def _apply_answer(conn: Conn, row: asyncpg.Record,
                        answer: NotifyResponse) -> asyncpg.Record:
    """Apply Kaspi's final answer in the attempt's transaction (sql/005:
    apply_notify_answer): COMPLETED with the receipt, or DECLINED with the debit returned
    in the same transaction. Returns the payment row."""
    payment_id = row["payment_id"]
    code = answer.result.resultCode
    applied = await conn.fetchrow(
        "SELECT a.outcome, (a.payment).* FROM apply_notify_answer($1, $2, $3, $4, $5, $6) a",
        payment_id, row["result_code"], code, answer.result.resultMessage, answer.linkReceipt,
        ledger.shard_for(payment_id))
    assert applied is not None
    outcome: str = applied["outcome"]
    if outcome in ("COMPLETED", "DECLINED"):
        PAYMENTS.labels(outcome).inc()
    if outcome == "DECLINED":
        log.info("payment declined by Kaspi, debit returned",
                 extra={"payment_id": payment_id, "result_code": code,
                        "customer": mask_customer(row["customer_id"])})
        if code not in ResultCode.__members__:
            MONEY_ALARMS.labels("unknown_notify_code").inc()
    elif outcome == "CONTRADICTED":
        # A refund already proved Kaspi completed this payment, yet notify says no.
        MONEY_ALARMS.labels("notify_declined_completed_payment").inc()
        log.error("Kaspi declined a payment its refund proved completed",
                  extra={"payment_id": payment_id, "result_code": code})
    return applied  # the payment's columns, and `outcome`
