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
from mpp_server.payments import Status, check_transition

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

    async def attempt(self, payment_id: str, *, due_only: bool) -> Attempt:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT o.*, p.customer_id, p.mpp_payment_id, p.locale
                   FROM notify_outbox o JOIN payments p USING (payment_id)
                   WHERE o.payment_id = $1 AND (NOT $2 OR o.next_attempt_at <= now())
                   FOR UPDATE OF o SKIP LOCKED""", payment_id, due_only)
            if row is None:
                return Attempt.SKIPPED
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
                return Attempt.RETRY
            await _apply_answer(conn, row, answer)
            await conn.execute("DELETE FROM notify_outbox WHERE payment_id = $1", payment_id)
            return Attempt.ANSWERED

    async def deliver_now(self, payment_id: str, budget_s: float) -> None:
        """Try within the request's time budget; the worker carries on after it."""
        if budget_s <= 0:
            return
        retrying = AsyncRetrying(
            stop=stop_after_delay(budget_s), wait=self._wait, reraise=False,
            retry=retry_if_result(lambda outcome: outcome is Attempt.RETRY),
            retry_error_callback=lambda state: None)
        outcome: Attempt | None = await retrying(self.attempt, payment_id, due_only=False)
        if outcome is Attempt.SKIPPED:
            await self._wait_for_other(payment_id, budget_s)

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
                        answer: NotifyResponse) -> None:
    """Apply Kaspi's final answer to the payment, in the attempt's transaction."""
    payment_id, customer_id = row["payment_id"], row["customer_id"]
    code, message = answer.result.resultCode, answer.result.resultMessage
    payment = await conn.fetchrow(
        "SELECT status, amount_tiyn FROM payments WHERE payment_id = $1 FOR UPDATE", payment_id)
    assert payment is not None
    status = payment["status"]
    if row["result_code"] != ResultCode.SUCCESS:
        # Our cancel or decline: any answer is Kaspi's acknowledgement.
        await conn.execute(
            """UPDATE payments SET kaspi_acknowledged = true, kaspi_result_code = $2,
                      kaspi_result_message = $3, updated_at = now() WHERE payment_id = $1""",
            payment_id, code, message)
        return
    if code == ResultCode.SUCCESS:
        if status == Status.PENDING:
            check_transition(status, Status.COMPLETED)
            await conn.execute(
                """INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
                   VALUES ('payment.completed', $1, $2, $3)""",
                customer_id, payment_id, payment["amount_tiyn"])
            PAYMENTS.labels("COMPLETED").inc()
        await conn.execute(
            """UPDATE payments SET status = 'COMPLETED', link_receipt = $2,
                      kaspi_result_code = $3, kaspi_result_message = $4,
                      kaspi_acknowledged = true, updated_at = now() WHERE payment_id = $1""",
            payment_id, answer.linkReceipt, code, message)
        return
    if status != Status.PENDING:
        # A refund already proved Kaspi completed this payment, yet notify says no.
        MONEY_ALARMS.labels("notify_declined_completed_payment").inc()
        log.error("Kaspi declined a payment its refund proved completed",
                  extra={"payment_id": payment_id, "result_code": code})
        await conn.execute(
            """UPDATE payments SET kaspi_result_code = $2, kaspi_result_message = $3,
                      kaspi_acknowledged = true, updated_at = now() WHERE payment_id = $1""",
            payment_id, code, message)
        return
    # A final error: the payment did not happen at Kaspi, so the money goes back in the
    # same transaction that records the decline.
    check_transition(status, Status.DECLINED)
    account = await ledger.customer_account(conn, customer_id)
    assert account is not None
    settlement = await ledger.system_account(conn, "settlement", payment_id)
    await ledger.transfer(conn, "payment_return", payment_id, settlement, account[0],
                          payment["amount_tiyn"])
    await conn.execute(
        """UPDATE payments SET status = 'DECLINED', kaspi_result_code = $2,
                  kaspi_result_message = $3, kaspi_acknowledged = true, updated_at = now()
           WHERE payment_id = $1""", payment_id, code, message)
    await conn.execute(
        """INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
           VALUES ('payment.declined', $1, $2, $3)""",
        customer_id, payment_id, payment["amount_tiyn"])
    PAYMENTS.labels("DECLINED").inc()
    if code not in ResultCode.__members__:
        MONEY_ALARMS.labels("unknown_notify_code").inc()
    log.info("payment declined by Kaspi, debit returned",
             extra={"payment_id": payment_id, "result_code": code,
                    "customer": mask_customer(customer_id)})
