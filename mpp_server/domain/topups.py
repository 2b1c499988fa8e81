"""Top-ups by card (issue 16, docs/topups.md): the wallet is a merchant of a card
acquirer, and a customer's card payment becomes wallet money exactly once.

Phases (each external call its own, the local work between calls one transaction):
1. the top-up row, CREATED, is committed before the acquirer hears of it;
2. the acquirer's order is created; its id (and Kapital's session) and the payment page
   are stored; the app opens the page;
3. a check asks the acquirer's *status API* (never a callback's body) under the
   top-up's row lock and applies the verdict in the same transaction
   (topup_apply_status, sql/functions/topups.sql): PAID credits the customer from the
   acquirer's clearing account, CREATED -> CREDITED. Callbacks only trigger a check;
   the poller checks every CREATED top-up with backoff until its session is over.
A process killed between the status answer and the commit leaves the top-up CREATED:
the next check asks again and credits it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from mpp_server.acquirers.base import (
    Acquirer,
    AcquirerNoAnswer,
    AcquirerRefused,
    CallbackClaim,
    OrderRef,
    Provider,
    Status,
    Verdict,
)
from mpp_server.db import Conn
from mpp_server.domain import accounts, ledger
from mpp_server.domain.due_worker import run_due
from mpp_server.domain.limits import Limits
from mpp_server.domain.outcomes import TopupCreateOutcome, TopupOutcome, TopupStatus
from mpp_server.errors import (
    AcquirerRefusedOrder,
    AcquirerUnavailable,
    IdempotencyConflict,
    NotFound,
)
from mpp_server.journal import Refs, concerning
from mpp_server.logs import mask_customer
from mpp_server.metrics import (
    BALANCE_OVER_CAP,
    MONEY_ALARMS,
    TOPUP_CALLBACK_DISAGREEMENTS,
    TOPUP_OVERDUE,
    TOPUP_STATUS_CHECKS,
    TOPUPS,
)

log = logging.getLogger(__name__)

# A bound on callback-triggered checks running at once in one process; past it the
# poller finds the top-up anyway.
MAX_CALLBACK_CHECKS = 1000
# How long a callback's check waits for another process's check of the same top-up.
LOCK_WAIT = "10s"
NO_ANSWER = "NO_ANSWER"


_DUE_IDS = """SELECT topup_id FROM topups WHERE status = 'CREATED' AND next_check_at <= now()
              ORDER BY next_check_at LIMIT $1"""


async def _count_overdue(conn: Conn) -> None:
    """mpp_topup_created_overdue: CREATED past the session's end (MppTopupStuckCreated)."""
    rows = await conn.fetch("""SELECT provider, count(*) AS n FROM topups
                               WHERE status = 'CREATED' AND expires_at < now()
                               GROUP BY provider""")
    counts = {r["provider"]: r["n"] for r in rows}
    for provider in Provider:
        TOPUP_OVERDUE.labels(provider.value).set(counts.get(provider.value, 0))


@dataclass(frozen=True)
class Policy:
    """When to check: the first check after creation, doubling to the cap; how long
    each acquirer's payment session lasts."""

    first_check_s: float
    max_backoff_s: float
    session_s: Mapping[Provider, float]
    poll_interval_s: float
    concurrency: int

    def next_check_s(self, checks: int) -> float:
        return min(self.max_backoff_s, self.first_check_s * float(2 ** min(checks, 30)))


def order_ref(row: asyncpg.Record) -> OrderRef:
    return OrderRef(row["topup_id"], row["provider_order_id"], row["provider_session_id"],
                    row["amount_tiyn"])


class Topups:
    def __init__(self, pool: asyncpg.Pool, acquirers: Mapping[Provider, Acquirer],
                 callback_base_url: str, policy: Policy, limits: Limits) -> None:
        self._pool = pool
        self._limits = limits
        self._acquirers = acquirers
        self._callback_base_url = callback_base_url
        self.policy = policy
        self._checking: set[str] = set()  # top-ups this process is checking now
        self._again: set[str] = set()     # ... and a callback came meanwhile
        self._tasks: set[asyncio.Task[None]] = set()

    def callback_url(self, provider: Provider) -> str:
        return f"{self._callback_base_url}/callbacks/{provider.value}"

    # ---- phases 1 and 2: the row, then the acquirer's order ------------------------

    async def create(self, topup_id: str, customer_id: str, provider: Provider,
                     amount_tiyn: int) -> tuple[asyncpg.Record, bool]:
        """The top-up and its payment page; (row, created). Idempotent on topupId
        (topup_create, sql/functions/topups.sql): the same arguments answer the same
        top-up (creating its order if an earlier try could not), other arguments
        IdempotencyConflict; over the balance cap, LimitExceeded before the card is
        charged, nothing recorded (a credit that finds the balance over it later is
        made and counted: docs/topups.md)."""
        assert amount_tiyn > 0
        async with self._pool.acquire() as conn:
            applied = await conn.fetchrow(
                "SELECT a.outcome, a.level, (a.topup).* "
                "FROM topup_create($1, $2, $3, $4, $5, $6, $7) a",
                topup_id, customer_id, provider.value, amount_tiyn,
                float(self.policy.session_s[provider]), self.policy.first_check_s,
                self._limits.sql_arg)
        assert applied is not None
        outcome = TopupCreateOutcome(applied["outcome"])
        if outcome is TopupCreateOutcome.CONFLICT:
            raise IdempotencyConflict(f"topupId {topup_id!r} was already used with "
                                      "another customer, provider or amount")
        if outcome is TopupCreateOutcome.LIMIT_EXCEEDED:
            raise accounts.balance_cap_refusal(self._limits, applied["level"], "top-up")
        created = outcome is TopupCreateOutcome.CREATED
        if applied["payment_url"] is not None or applied["status"] != TopupStatus.CREATED:
            return applied, created
        return await self._place_order(applied), created

    async def _count_over_cap(self, conn: Conn, customer_id: str) -> None:
        if await conn.fetchval("SELECT balance_over_cap($1, $2)", customer_id,
                               self._limits.sql_arg):
            BALANCE_OVER_CAP.inc()
            log.warning("a top-up credit left the balance over the cap",
                        extra={"customer": mask_customer(customer_id)})

    async def _place_order(self, row: asyncpg.Record) -> asyncpg.Record:
        provider = Provider(row["provider"])
        try:
            with concerning(Refs(topup_id=row["topup_id"])):
                order = await self._acquirers[provider].create_order(
                    row["topup_id"], row["amount_tiyn"], self.callback_url(provider))
        except AcquirerNoAnswer as exc:
            # The row stays CREATED without a page: nobody can pay it; a repeat of the
            # request tries again, and it expires with its session otherwise.
            raise AcquirerUnavailable(f"{provider} did not answer ({exc.reason}); "
                                      "repeat the request") from exc
        except AcquirerRefused as exc:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._apply(conn, row, Status(Verdict.DECLINED,
                                                    reason=f"ORDER_REFUSED: {exc.reason}"),
                                  "create")
            raise AcquirerRefusedOrder(f"{provider} refused the order: {exc.reason}") from exc
        TOPUPS.labels(provider.value, "CREATED").inc()
        async with self._pool.acquire() as conn:
            stored = await conn.fetchrow(
                """UPDATE topups SET provider_order_id = $2, provider_session_id = $3,
                                     payment_url = $4, updated_at = now()
                   WHERE topup_id = $1 AND payment_url IS NULL RETURNING *""",
                row["topup_id"], order.order_id, order.session_id, order.payment_url)
            if stored is None:  # a concurrent repeat stored its order first
                stored = await conn.fetchrow("SELECT * FROM topups WHERE topup_id = $1",
                                             row["topup_id"])
        assert stored is not None
        return stored

    async def get(self, topup_id: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM topups WHERE topup_id = $1", topup_id)
        if row is None:
            raise NotFound(f"no top-up {topup_id!r}")
        return row

    # ---- phase 3: the status API's verdict, applied once ---------------------------

    async def check(self, topup_id: str, trigger: str, *, wait: bool,
                    claims_paid: bool = False) -> asyncpg.Record | None:
        """Ask the acquirer and apply its answer, under the top-up's row lock, in one
        transaction. `wait`: wait for another check's lock (a callback) or skip the
        row (the poller). Returns the row, or None when skipped."""
        async with self._pool.acquire() as conn, conn.transaction():
            if wait:
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
            try:
                row = await conn.fetchrow(
                    "SELECT * FROM topups WHERE topup_id = $1 FOR UPDATE"
                    + ("" if wait else " SKIP LOCKED"), topup_id)
            except asyncpg.LockNotAvailableError:
                return None
            if wait:  # the wait was for the row only: the credit's locks are waited for
                await conn.execute("SET LOCAL lock_timeout = 0")
            if row is None or row["status"] != TopupStatus.CREATED:
                return row
            provider = Provider(row["provider"])
            if row["provider_order_id"] is None:
                status = Status(Verdict.WAITING)  # no page was ever handed out
            else:
                try:
                    with concerning(Refs(topup_id=topup_id)):
                        status = await self._acquirers[provider].status(order_ref(row))
                except AcquirerNoAnswer as exc:
                    status = Status(Verdict.WAITING, reason=exc.reason)
                    TOPUP_STATUS_CHECKS.labels(provider.value, trigger, NO_ANSWER).inc()
                    return await self._apply(conn, row, status, trigger, no_answer=True)
            TOPUP_STATUS_CHECKS.labels(provider.value, trigger, status.verdict.value).inc()
            if claims_paid and status.verdict is not Verdict.PAID:
                TOPUP_CALLBACK_DISAGREEMENTS.labels(provider.value).inc()
                log.warning("a callback claimed a payment the status API does not confirm",
                            extra={"topup_id": topup_id, "provider": provider.value,
                                   "verdict": status.verdict.value})
            return await self._apply(conn, row, status, trigger)

    async def _apply(self, conn: Conn, row: asyncpg.Record, status: Status, trigger: str,
                     *, no_answer: bool = False) -> asyncpg.Record:
        topup_id = row["topup_id"]
        applied = await conn.fetchrow(
            "SELECT a.outcome, (a.topup).* FROM topup_apply_status($1, $2, $3, $4, $5, $6) a",
            topup_id, NO_ANSWER if no_answer else status.verdict.value, status.reason,
            status.paid_tiyn, ledger.shard_for(topup_id),
            self.policy.next_check_s(row["checks"] + 1))
        assert applied is not None
        outcome = TopupOutcome(applied["outcome"])
        if outcome.final:
            TOPUPS.labels(row["provider"], outcome.value).inc()
            log.info("top-up decided", extra={
                "topup_id": topup_id, "provider": row["provider"], "outcome": outcome.value,
                "trigger": trigger, "customer": mask_customer(row["customer_id"])})
        if outcome is TopupOutcome.CREDITED:
            await self._count_over_cap(conn, row["customer_id"])
        if outcome is TopupOutcome.MISMATCHED:
            MONEY_ALARMS.labels("topup_amount_mismatch").inc()
            log.error("the acquirer took another amount than ordered; nothing credited",
                      extra={"topup_id": topup_id, "paid_tiyn": status.paid_tiyn,
                             "amount_tiyn": row["amount_tiyn"]})
        return applied

    # ---- what triggers checks: callbacks and the poller ---------------------------

    def on_callback(self, provider: Provider, claim: CallbackClaim) -> None:
        """A callback arrived: check its top-up in the background (the callback was
        answered already). Checks of one top-up in this process are coalesced."""
        if len(self._tasks) >= MAX_CALLBACK_CHECKS:
            log.warning("too many callback checks running; the poller will check it")
            return
        self._spawn(self._callback_check(provider, claim))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def topup_of(self, provider: Provider, claim: CallbackClaim) -> str | None:
        """The top-up a callback names (by the acquirer's order id, or ours)."""
        async with self._pool.acquire() as conn:
            topup_id: str | None = await conn.fetchval(
                """SELECT topup_id FROM topups WHERE provider = $1
                     AND (provider_order_id = $2 OR topup_id = $3)
                   ORDER BY (provider_order_id = $2) DESC NULLS LAST LIMIT 1""",
                provider.value, claim.order_id, claim.topup_id)
        return topup_id

    async def _callback_check(self, provider: Provider, claim: CallbackClaim) -> None:
        try:
            topup_id = await self.topup_of(provider, claim)
            if topup_id is None:
                log.warning("a callback for no top-up of ours",
                            extra={"provider": provider.value, "order_id": claim.order_id})
                if claim.claims_paid:
                    TOPUP_CALLBACK_DISAGREEMENTS.labels(provider.value).inc()
                return
            await self._coalesced(topup_id, "callback", wait=True,
                                  claims_paid=claim.claims_paid)
        except (OSError, asyncpg.PostgresError):
            log.exception("callback check failed; the poller will check it")

    async def _coalesced(self, topup_id: str, trigger: str, *, wait: bool,
                         claims_paid: bool = False) -> None:
        if topup_id in self._checking:
            self._again.add(topup_id)  # the running check runs once more after
            return
        self._checking.add(topup_id)
        try:
            while True:
                self._again.discard(topup_id)
                row = await self.check(topup_id, trigger, wait=wait, claims_paid=claims_paid)
                if (topup_id not in self._again or row is None
                        or row["status"] != TopupStatus.CREATED):
                    return
        finally:
            self._checking.discard(topup_id)
            self._again.discard(topup_id)

    async def run_poller(self) -> None:
        """Background: check every CREATED top-up that is due (the first check within
        TOPUP_FIRST_CHECK_MS of creation, then with backoff), forever."""

        async def poll(topup_id: str) -> None:
            await self._coalesced(topup_id, "poll", wait=False)

        await run_due(self._pool, _DUE_IDS, poll, what="top-up status check",
                      concurrency=self.policy.concurrency,
                      poll_interval_s=self.policy.poll_interval_s, each_round=_count_overdue)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
