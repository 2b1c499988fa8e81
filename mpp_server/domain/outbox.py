"""The notifyPayment outbox: retried until Kaspi answers (regulation §4.3).

A row in notify_outbox is a decision already committed (debited, cancelled, declined)
that Kaspi has not acknowledged yet. The request that decided owns the row for a lease:
the row's next_attempt_at, set by the deciding transaction CONFIRM_BUDGET_MS ahead, keeps
every worker away until then. Within it the request calls Kaspi, with backoff between
attempts and each call's timeout ending before the lease does, holding no row lock, no
transaction and no connection across a call. After the lease (or a crash) the worker of
any process takes the row the same way: it claims the due row with a lease of its own
(notify_claim: next_attempt_at moved past the call's timeout, committed), calls Kaspi
holding nothing, then applies the answer, or records the failure under its claim, in a
short transaction of its own; a process killed mid-call leaves the row to the next one
when its lease runs out. Applying an answer deletes the row first (notify.sql), so an
answer is applied once even if a stalled lease holder and a worker both sent (Kaspi
answers a repeated notify the same). Policy and the overlap argument:
docs/notify-policy.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum

import asyncpg
from tenacity import RetryCallState, wait_exponential_jitter

from mpp_server.db import Conn
from mpp_server.domain import ledger
from mpp_server.domain.due_worker import run_due
from mpp_server.domain.outcomes import NotifyOutcome
from mpp_server.kaspi_client.client import KaspiClient, KaspiNoAnswer
from mpp_server.kaspi_client.codes import ResultCode, is_final_notify_answer
from mpp_server.kaspi_client.models import NotifyPayment, NotifyRequest, NotifyResponse, ResultOut
from mpp_server.logs import mask_customer
from mpp_server.metrics import KASPI_DEFECTS, MONEY_ALARMS, NOTIFY_RETRIES, PAYMENTS_BY
from mpp_server.money import is_whole_tenge

log = logging.getLogger(__name__)


class Attempt(Enum):
    ANSWERED = "answered"   # Kaspi answered finally; the row is gone
    RETRY = "retry"         # no final answer; the row waits for its next attempt
    SKIPPED = "skipped"     # the row is gone, not due, held by another process, or
                            # (leased) too little of the lease is left


# The worker's read: the due rows, most overdue first (the lease holders' rows only once
# their lease is over).
_DUE_IDS = """SELECT payment_id FROM notify_outbox WHERE next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $1"""

# The lease holder's calls must end this long before its lease does (the worker polls
# for due rows); with less than MIN_LEASED_CALL_S left it stops and leaves the row to
# the worker.
LEASE_MARGIN_S = 0.5
MIN_LEASED_CALL_S = 0.1
# The worker's lease runs this much longer than its call's timeout.
WORKER_LEASE_MARGIN_S = 5.0


@dataclass(frozen=True)
class Notice:
    """A notifyPayment staged in the outbox: what to send Kaspi."""

    payment_id: str
    mpp_payment_id: str
    customer_id: str
    amount_tiyn: int | None
    result_code: str
    result_message: str
    locale: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Notice:
        """From an outbox row joined with its payment's customer, id and locale."""
        return cls(row["payment_id"], str(row["mpp_payment_id"]), row["customer_id"],
                   row["amount_tiyn"], row["result_code"], row["result_message"],
                   row["locale"])

    def request(self) -> NotifyRequest:
        # §4.3: paymentAmount is a whole number of tenge (written "1500.00"). Static and
        # Custom amounts are whole (confirm and checkout refuse others); a Dynamic amount
        # with tiyn is not sent: the field is for Static and Custom, and Kaspi has the
        # Dynamic amount from its own QR code.
        whole = self.amount_tiyn is not None and is_whole_tenge(self.amount_tiyn)
        return NotifyRequest(
            result=ResultOut(resultCode=self.result_code, resultMessage=self.result_message),
            payment=NotifyPayment(paymentId=self.payment_id,
                                  mppPaymentId=self.mpp_payment_id,
                                  paymentAmount=self.amount_tiyn if whole else None),
            customerId=self.customer_id)


class NotifyOutbox:
    def __init__(self, pool: asyncpg.Pool, kaspi: KaspiClient, *, initial_backoff_s: float,
                 max_backoff_s: float, concurrency: int, poll_interval_s: float,
                 kaspi_timeout_s: float) -> None:
        self._pool = pool
        self._kaspi = kaspi
        # The worker's lease on a row: the call's timeout and a margin for the answer to
        # be applied (a stalled process overrunning it is harmless: apply-once).
        self._worker_lease_s = kaspi_timeout_s + WORKER_LEASE_MARGIN_S
        self._wait = wait_exponential_jitter(multiplier=initial_backoff_s, max=max_backoff_s,
                                             jitter=initial_backoff_s)
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s

    def backoff_s(self, attempts: int) -> float:
        """Capped exponential backoff with jitter, the same policy as the inline retries."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempts)
        return float(self._wait(state))

    async def attempt(self, payment_id: str) -> tuple[Attempt, asyncpg.Record | None]:
        """One attempt of the worker on a due row, under a lease it claims first
        (notify_claim), holding no lock, transaction or connection across Kaspi's call;
        with ANSWERED, the payment row as the answer left it."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM notify_claim($1, $2)", payment_id,
                                      self._worker_lease_s)
        if row is None:
            return Attempt.SKIPPED, None
        notice = Notice.from_row(row)
        answer, reason = await self._send(notice, None)  # the client's timeout < the lease
        async with self._pool.acquire() as conn:
            if answer is not None:
                try:
                    return Attempt.ANSWERED, await apply_answer(conn, notice, answer)
                except Exception as exc:  # every failure is counted
                    reason = self._unexpected(payment_id, "applying the answer", exc)
            attempts = await conn.fetchval(
                "SELECT notify_attempt_failed($1, $2, $3, $4)", payment_id,
                row["claimed_until"], reason, self.backoff_s(row["attempts"] + 1))
        self._count_retry(payment_id, reason, attempts or row["attempts"] + 1)
        return Attempt.RETRY, None

    async def _leased_attempt(self, notice: Notice, lease_ends: float
                              ) -> tuple[Attempt, asyncpg.Record | None]:
        """An attempt of the deciding request, under the lease its transaction set (the
        row's next_attempt_at): no row lock, no transaction and no connection are held
        across the call, whose timeout ends LEASE_MARGIN_S before the lease. SKIPPED when
        too little of the lease is left: the worker takes the row when it ends."""
        time_left = lease_ends - asyncio.get_running_loop().time() - LEASE_MARGIN_S
        if time_left < MIN_LEASED_CALL_S:
            return Attempt.SKIPPED, None
        answer, reason = await self._send(notice, time_left)
        async with self._pool.acquire() as conn:
            if answer is not None:
                try:
                    return Attempt.ANSWERED, await apply_answer(conn, notice, answer)
                except Exception as exc:  # every failure is counted
                    reason = self._unexpected(notice.payment_id, "applying the answer", exc)
            # The row keeps its lease; deliver_now waits the backoff before the next try.
            attempts = await conn.fetchval(
                """UPDATE notify_outbox SET attempts = attempts + 1, last_error = $2
                   WHERE payment_id = $1 RETURNING attempts""",
                notice.payment_id, reason[:500])
            self._count_retry(notice.payment_id, reason, attempts or 0)
            return Attempt.RETRY, None

    async def _send(self, notice: Notice, timeout_s: float | None
                    ) -> tuple[NotifyResponse | None, str]:
        """Kaspi's final answer, or None and why there is none (no answer, an answer
        that says nothing about the payment: docs/notify-policy.md, or our own failure
        to handle it, which is counted and retried like no answer)."""
        try:
            answer = await self._kaspi.notify_payment(notice.request(), notice.locale,
                                                      timeout_s=timeout_s)
        except KaspiNoAnswer as exc:
            return None, exc.reason
        except Exception as exc:  # every failure is counted
            return None, self._unexpected(notice.payment_id, "calling Kaspi", exc)
        code = answer.result.resultCode
        return (answer, "") if is_final_notify_answer(code) else (None, code)

    @staticmethod
    def _unexpected(payment_id: str, doing: str, exc: Exception) -> str:
        """An attempt failed in a way nobody foresaw (issue 14: text PostgreSQL refuses,
        a parser error): logged with its stack, then counted like no answer (reason
        INTERNAL_ERROR) so the row waits its backoff instead of being re-sent on every
        poll with nothing recorded."""
        log.exception(f"notifyPayment attempt failed while {doing}",
                      extra={"payment_id": payment_id})
        return f"INTERNAL_ERROR: {type(exc).__name__}: {str(exc)[:300]}"

    @staticmethod
    def _count_retry(payment_id: str, reason: str, attempts: int) -> None:
        # The label is the reason's code (INTERNAL_ERROR, BAD_RESPONSE, a result code),
        # never its free text: a bounded set of series.
        NOTIFY_RETRIES.labels(reason.partition(":")[0][:64] or "UNKNOWN").inc()
        log.warning("notifyPayment not answered, will retry",
                    extra={"payment_id": payment_id, "reason": reason, "attempts": attempts})

    async def deliver_now(self, notice: Notice, lease_ends: float
                          ) -> asyncpg.Record | None:
        """The deciding request's attempts, all within the lease its transaction set
        (`lease_ends`, event-loop time; CONFIRM_BUDGET_MS after the decision), with the
        backoff between them (`backoff_s`, the worker's policy); the worker carries on
        after the lease. Returns the payment row when Kaspi answered in time. A plain
        loop: a tenacity retrier set up for every payment, when the first attempt is
        nearly always answered, cost 2-5 % of a server's CPU (docs/performance.md)."""
        loop = asyncio.get_running_loop()
        # No sleep that would end past the lease: the request answers in its budget.
        stop_at = lease_ends - LEASE_MARGIN_S
        attempts = 0
        try:
            while True:
                attempts += 1
                outcome, row = await self._leased_attempt(notice, lease_ends)
                if outcome is not Attempt.RETRY:
                    return row
                pause_s = self.backoff_s(attempts)
                if loop.time() + pause_s >= stop_at:
                    return None
                await asyncio.sleep(pause_s)
        except Exception:  # the decision is committed: never a 500 now
            # Even the bookkeeping failed (the database went away mid-attempt): the
            # request answers the payment as it stands; the worker carries on after the
            # lease.
            log.exception("notifyPayment attempts of the deciding request failed",
                          extra={"payment_id": notice.payment_id})
            return None

    async def run(self) -> None:
        """Background worker: drain due rows forever (started with the server)."""
        await run_due(self._pool, _DUE_IDS, self.attempt, what="notify_worker",
                      concurrency=self._concurrency, poll_interval_s=self._poll_interval_s)


async def apply_answer(conn: Conn, notice: Notice,
                        answer: NotifyResponse) -> asyncpg.Record:
    """Apply Kaspi's final answer (apply_notify_answer_once, sql/functions/notify.sql):
    COMPLETED with the receipt, or DECLINED with the debit returned in the same
    transaction; nothing when it was applied already. Returns the payment row."""
    payment_id = notice.payment_id
    code = answer.result.resultCode
    for defect in answer.defects:
        # The answer decides the payment all the same (NotifyResponse); someone should
        # tell Kaspi its answer breaks the regulation.
        field, _, kind = defect.partition(":")
        KASPI_DEFECTS.labels("notifyPayment", field, kind).inc()
        log.warning("Kaspi's notifyPayment answer has a defect; taken as sanitised",
                    extra={"payment_id": payment_id, "defect": defect})
    applied = await conn.fetchrow(
        "SELECT a.outcome, (a.payment).* "
        "FROM apply_notify_answer_once($1, $2, $3, $4, $5, $6) a",
        payment_id, notice.result_code, code, answer.result.resultMessage,
        answer.linkReceipt, ledger.shard_for(payment_id))
    assert applied is not None
    outcome = NotifyOutcome(applied["outcome"])
    if outcome in (NotifyOutcome.COMPLETED, NotifyOutcome.DECLINED):
        PAYMENTS_BY(outcome.value).inc()
    if outcome is NotifyOutcome.DECLINED:
        log.info("payment declined by Kaspi, debit returned",
                 extra={"payment_id": payment_id, "result_code": code,
                        "customer": mask_customer(notice.customer_id)})
        if code not in ResultCode.__members__:
            MONEY_ALARMS.labels("unknown_notify_code").inc()
    elif outcome is NotifyOutcome.CONTRADICTED:
        # A refund already proved Kaspi completed this payment, yet notify says no.
        MONEY_ALARMS.labels("notify_declined_completed_payment").inc()
        log.error("Kaspi declined a payment its refund proved completed",
                  extra={"payment_id": payment_id, "result_code": code})
    return applied  # the payment's columns, and `outcome`
