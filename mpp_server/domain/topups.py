"""Top-ups by card (docs/topups.md): the wallet is a merchant of a card acquirer, and a
customer's card payment becomes wallet money exactly once.

Phases, each acquirer call its own, no connection or transaction held across one:
1. the top-up row, CREATED, is committed before the acquirer hears of it;
2. one order per topupId: the caller that claims the order's lease (topup_order_claim)
   places it; a concurrent repeat waits for its page; the page is handed out only while
   the top-up is CREATED;
3. a check claims the top-up's check lease (topup_check_claim), asks the acquirer's
   *status API* (never a callback's body) with no connection held, and applies the
   verdict in a short transaction of its own (topup_apply_status, which moves a status
   only from the one it was claimed in): PAID credits the customer from the acquirer's
   clearing account. Callbacks only trigger a check, bounded and coalesced per top-up
   (they cannot take the connections the wallet API needs); the poller checks every
   CREATED top-up with backoff until the acquirer's own session is over, and a FAILED or
   EXPIRED one a while longer: money taken late is credited late.
A process killed between the status answer and the commit leaves the top-up as it was:
its lease runs out and the next check asks again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from mpp_server.acquirers.base import (
    Acquirer,
    AcquirerNoAnswer,
    AcquirerRefused,
    CallbackClaim,
    Order,
    OrderRef,
    OrderRequest,
    Provider,
    Status,
    Verdict,
)
from mpp_server.db import Conn
from mpp_server.domain import accounts, ledger
from mpp_server.domain.due_worker import run_due
from mpp_server.domain.limits import Limits
from mpp_server.domain.outcomes import (
    TopupCheckOutcome,
    TopupCreateOutcome,
    TopupOrderOutcome,
    TopupOutcome,
)
from mpp_server.errors import (
    AcquirerRefusedOrder,
    AcquirerUnavailable,
    IdempotencyConflict,
    NotFound,
    ValidationFailed,
)
from mpp_server.journal import Exchange, Journal, Refs, concerning
from mpp_server.logs import mask_customer
from mpp_server.metrics import (
    BALANCE_OVER_CAP,
    MONEY_ALARMS,
    TOPUP_CALLBACK_DISAGREEMENTS,
    TOPUP_CALLBACKS_DROPPED,
    TOPUP_LATE_CREDITS,
    TOPUP_OVERDUE,
    TOPUP_STATUS_CHECKS,
    TOPUPS,
)

log = logging.getLogger(__name__)

NO_ANSWER = "NO_ANSWER"
WALLET_CURRENCY = "KZT"
# How often a repeat of POST /v1/topups looks whether the concurrent request that holds
# the order's lease has stored the page.
ORDER_POLL_S = 0.05
_ALARMS = {TopupOutcome.MISMATCHED: "topup_amount_mismatch",
           TopupOutcome.WRONG_CURRENCY: "topup_currency_mismatch"}

_DUE_IDS = """
    SELECT topup_id FROM topups
     WHERE next_check_at <= now()
       AND (status = 'CREATED'
            OR (status IN ('FAILED', 'EXPIRED') AND watch_until > now()))
       AND (check_claimed_until IS NULL OR check_claimed_until <= now())
     ORDER BY next_check_at LIMIT $1"""
_ORDER_OF_CALLBACK = """
    SELECT topup_id FROM topups WHERE provider = $1
       AND (provider_order_id = $2 OR gateway_ref = $3 OR topup_id = $3)
     ORDER BY (provider_order_id = $2) DESC NULLS LAST LIMIT 1"""


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
    each acquirer's payment session lasts; how long a failed or expired top-up is still
    watched; the leases (longer than one acquirer call) and the bounds on callbacks."""

    first_check_s: float
    max_backoff_s: float
    session_s: Mapping[Provider, float]
    poll_interval_s: float
    concurrency: int
    lease_s: float
    watch_s: float
    callback_concurrency: int
    callback_queue: int

    def next_check_s(self, checks: int) -> float:
        return min(self.max_backoff_s, self.first_check_s * float(2 ** min(checks, 30)))


def order_ref(row: asyncpg.Record) -> OrderRef:
    return OrderRef(row["topup_id"], row["provider_order_id"], row["provider_session_id"],
                    row["amount_tiyn"], row["gateway_ref"], row["provider_transaction_id"])


class Topups:
    def __init__(self, pool: asyncpg.Pool, acquirers: Mapping[Provider, Acquirer],
                 callback_base_url: str, policy: Policy, limits: Limits,
                 journal: Journal) -> None:
        self._pool = pool
        self._journal = journal
        self._limits = limits
        self._acquirers = acquirers
        self._base_url = callback_base_url
        self.policy = policy
        self._checking: set[str] = set()  # top-ups this process is checking now
        self._again: set[str] = set()     # ... and a callback came meanwhile
        self._tasks: set[asyncio.Task[None]] = set()
        # Callbacks waiting for a check, by what they name (coalesced), at most
        # policy.callback_queue; at most policy.callback_concurrency checked at once.
        self._callbacks: dict[tuple[str, str, str], CallbackClaim] = {}
        self._callback_slots = asyncio.Semaphore(policy.callback_concurrency)
        self._journal_lookups = 0  # callbacks' journal rows waiting for their top-up
        # Our payment pages (acquiring listener, reachable from the internet): as many
        # reads at once, each waiting at most the lease for its turn.
        self._page_slots = asyncio.Semaphore(policy.callback_concurrency)

    def callback_url(self, provider: Provider) -> str:
        return f"{self._base_url}/callbacks/{provider.value}"

    def page_url(self, provider: Provider, page_key: str) -> str:
        """Our own payment page (acquiring listener), for acquirers whose page is opened
        by their script on a page of the merchant's (Halyk's widget)."""
        return f"{self._base_url}/pay/{provider.value}/{page_key}"

    # ---- phases 1 and 2: the row, then the acquirer's order ------------------------

    async def create(self, topup_id: str, customer_id: str, provider: Provider,
                     amount_tiyn: int) -> tuple[asyncpg.Record, bool]:
        """The top-up and its payment page; (row, created). Idempotent on topupId
        (topup_create, sql/functions/topups.sql): the same arguments answer the same
        top-up (creating its order if an earlier try could not), other arguments
        IdempotencyConflict; over the balance cap (open top-ups count), LimitExceeded
        before the card is charged, nothing recorded (a credit that finds the balance
        over it later is made and counted: docs/topups.md)."""
        assert amount_tiyn > 0
        charged_in = self._acquirers[provider].currency
        if charged_in != WALLET_CURRENCY:
            raise ValidationFailed(f"{provider} charges the card in {charged_in}, the wallet "
                                   f"holds {WALLET_CURRENCY}: another currency is never "
                                   "credited as tenge (docs/topups.md)")
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
        if applied["payment_url"] is not None or applied["status"] != "CREATED":
            return applied, created
        return await self._place_order(topup_id), created

    async def _place_order(self, topup_id: str) -> asyncpg.Record:
        """One order per topupId: the caller holding the order's lease places it; a
        concurrent repeat waits (bounded) for the page it stores."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.lease_s
        while True:
            claimed = await self._order_step("topup_order_claim($1, $2)", topup_id,
                                             self.policy.lease_s)
            outcome = TopupOrderOutcome(claimed["outcome"])
            if outcome is TopupOrderOutcome.CLAIMED:
                return await self._place_claimed(claimed)
            if outcome is not TopupOrderOutcome.BUSY:
                return claimed  # PLACED, or FINAL (answered without a page)
            if loop.time() >= deadline:
                raise AcquirerUnavailable("the order is being placed by another request; "
                                          "repeat the request")
            await asyncio.sleep(ORDER_POLL_S)

    async def _order_step(self, call: str, *args: object) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT a.outcome, (a.topup).* FROM {call} a", *args)
        assert row is not None
        return row

    async def _place_claimed(self, row: asyncpg.Record) -> asyncpg.Record:
        provider = Provider(row["provider"])
        request = OrderRequest(row["topup_id"], row["amount_tiyn"], row["gateway_ref"],
                               row["order_attempts"], self.callback_url(provider))
        try:
            with concerning(Refs(topup_id=row["topup_id"])):
                order = await self._acquirers[provider].create_order(request)
        except AcquirerNoAnswer as exc:
            # The row stays CREATED without a page: nobody can pay it; a repeat of the
            # request tries again, and it expires with its session otherwise.
            await self._order_step("topup_order_not_placed($1, false, $2)", row["topup_id"],
                                   exc.reason)
            raise AcquirerUnavailable(f"{provider} did not answer ({exc.reason}); "
                                      "repeat the request") from exc
        except AcquirerRefused as exc:
            return await self._order_refused(row, exc)
        return await self._store_order(row, order)

    async def _order_refused(self, row: asyncpg.Record, exc: AcquirerRefused) -> asyncpg.Record:
        provider = row["provider"]
        kept = await self._order_step("topup_order_not_placed($1, true, $2)", row["topup_id"],
                                      exc.reason)
        if TopupOrderOutcome(kept["outcome"]) is TopupOrderOutcome.FAILED:
            TOPUPS.labels(provider, "FAILED").inc()
            raise AcquirerRefusedOrder(f"{provider} refused the order: {exc.reason}") from exc
        # An earlier try may have placed it (the refusal: "a duplicate"): kept CREATED,
        # asked about by the poller, decided by its session's end.
        log.warning("the acquirer refused a repeated order; the top-up stays CREATED",
                    extra={"topup_id": row["topup_id"], "provider": provider,
                           "reason": exc.reason})
        raise AcquirerUnavailable(f"{provider} refused a repeated order ({exc.reason}); the "
                                  "top-up stays CREATED until its session ends") from exc

    async def _store_order(self, row: asyncpg.Record, order: Order) -> asyncpg.Record:
        provider = Provider(row["provider"])
        page_key = secrets.token_urlsafe(24) if order.payment_url is None else None
        payment_url = order.payment_url or self.page_url(provider, str(page_key))
        async with self._pool.acquire() as conn:
            stored = await conn.fetchrow(
                """SELECT a.outcome, (a.topup).*
                   FROM topup_order_placed($1, $2, $3, $4, $5, $6,
                                           coalesce($7, now() + make_interval(secs => $8))) a""",
                row["topup_id"], order.order_id, order.session_id, payment_url, page_key,
                order.page_data, order.session_end, float(self.policy.session_s[provider]))
        assert stored is not None
        if TopupOrderOutcome(stored["outcome"]) is TopupOrderOutcome.STORED:
            TOPUPS.labels(provider.value, "CREATED").inc()
        return stored

    async def page(self, provider: Provider, page_key: str) -> asyncpg.Record | None:
        """The top-up our payment page `page_key` is for, None if none; bounded, so a
        flood of page hits cannot take the connections the wallet API needs."""
        try:
            async with asyncio.timeout(self.policy.lease_s):
                await self._page_slots.acquire()
        except TimeoutError as exc:
            raise AcquirerUnavailable("too many payment pages asked at once") from exc
        try:
            async with self._pool.acquire() as conn:
                return await conn.fetchrow(
                    "SELECT * FROM topups WHERE page_key = $1 AND provider = $2",
                    page_key, provider.value)
        finally:
            self._page_slots.release()

    async def get(self, topup_id: str) -> asyncpg.Record:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM topups WHERE topup_id = $1", topup_id)
        if row is None:
            raise NotFound(f"no top-up {topup_id!r}")
        return row

    # ---- phase 3: the status API's verdict, applied once ---------------------------

    async def check(self, topup_id: str, trigger: str, *,
                    claims_paid: bool = False) -> asyncpg.Record | None:
        """Claim the check, ask the acquirer with no connection held, apply its answer.
        Returns the row, or None when another process is checking it (it checks once
        more after) or nothing is left to check."""
        async with self._pool.acquire() as conn:
            claimed = await conn.fetchrow(
                "SELECT a.outcome, (a.topup).* FROM topup_check_claim($1, $2) a",
                topup_id, self.policy.lease_s)
        assert claimed is not None
        if TopupCheckOutcome(claimed["outcome"]) is not TopupCheckOutcome.CLAIMED:
            return None
        provider = Provider(claimed["provider"])
        if claimed["provider_order_id"] is None:
            # No page was ever handed out: nobody can have paid; its session decides.
            return await self._apply(claimed, Status(Verdict.WAITING), trigger)
        try:
            with concerning(Refs(topup_id=topup_id)):
                status = await self._acquirers[provider].status(order_ref(claimed))
        except AcquirerNoAnswer as exc:
            TOPUP_STATUS_CHECKS.labels(provider.value, trigger, NO_ANSWER).inc()
            return await self._apply(claimed, Status(Verdict.WAITING, reason=exc.reason),
                                     trigger, no_answer=True)
        TOPUP_STATUS_CHECKS.labels(provider.value, trigger, status.verdict.value).inc()
        if claims_paid and status.verdict is not Verdict.PAID:
            TOPUP_CALLBACK_DISAGREEMENTS.labels(provider.value).inc()
            log.warning("a callback claimed a payment the status API does not confirm",
                        extra={"topup_id": topup_id, "provider": provider.value,
                               "verdict": status.verdict.value})
        return await self._apply(claimed, status, trigger)

    async def _apply(self, row: asyncpg.Record, status: Status, trigger: str,
                     *, no_answer: bool = False) -> asyncpg.Record:
        topup_id = row["topup_id"]
        async with self._pool.acquire() as conn:
            applied = await conn.fetchrow(
                "SELECT a.outcome, (a.topup).* "
                "FROM topup_apply_status($1, $2, $3, $4, $5, $6, $7, $8, $9) a",
                topup_id, NO_ANSWER if no_answer else status.verdict.value, status.reason,
                status.paid_tiyn, status.paid_currency, status.transaction_id,
                ledger.shard_for(topup_id), self.policy.next_check_s(row["checks"] + 1),
                self.policy.watch_s)
            assert applied is not None
            outcome = TopupOutcome(applied["outcome"])
            if outcome.credited:
                await self._count_over_cap(conn, row["customer_id"])
        self._account(row, outcome, status, trigger)
        return applied

    def _account(self, row: asyncpg.Record, outcome: TopupOutcome, status: Status,
                 trigger: str) -> None:
        """The metrics and log lines of an applied verdict."""
        provider = row["provider"]
        if outcome.final:
            TOPUPS.labels(provider, outcome.value).inc()
            log.info("top-up decided", extra={
                "topup_id": row["topup_id"], "provider": provider, "outcome": outcome.value,
                "trigger": trigger, "customer": mask_customer(row["customer_id"])})
        if outcome is TopupOutcome.LATE_CREDITED:
            TOPUP_LATE_CREDITS.labels(provider).inc()
            log.warning("the acquirer took the money after the top-up was over; credited "
                        "late", extra={"topup_id": row["topup_id"], "provider": provider,
                                       "was": row["status"]})
        if outcome in _ALARMS:
            MONEY_ALARMS.labels(_ALARMS[outcome]).inc()
            log.error("the acquirer took another amount or currency than ordered; nothing "
                      "credited", extra={"topup_id": row["topup_id"],
                                         "paid_tiyn": status.paid_tiyn,
                                         "paid_currency": status.paid_currency,
                                         "amount_tiyn": row["amount_tiyn"]})

    async def _count_over_cap(self, conn: Conn, customer_id: str) -> None:
        if await conn.fetchval("SELECT balance_over_cap($1, $2)", customer_id,
                               self._limits.sql_arg):
            BALANCE_OVER_CAP.inc()
            log.warning("a top-up credit left the balance over the cap",
                        extra={"customer": mask_customer(customer_id)})

    # ---- what triggers checks: callbacks and the poller ---------------------------

    def on_callback(self, provider: Provider, claim: CallbackClaim) -> None:
        """A callback arrived (answered already): check its top-up in the background.
        Callbacks naming the same order wait as one; at most policy.callback_queue wait
        and policy.callback_concurrency are checked at once, so forged callbacks and a
        slow acquirer cannot take the connections the wallet API needs (the poller finds
        what is dropped)."""
        key = (provider.value, claim.order_id or "", claim.topup_id or "")
        waiting = self._callbacks.get(key)
        if waiting is not None:
            if claim.claims_paid and not waiting.claims_paid:
                self._callbacks[key] = claim
            return
        if len(self._callbacks) >= self.policy.callback_queue:
            TOPUP_CALLBACKS_DROPPED.labels(provider.value).inc()
            log.warning("too many callbacks waiting for a check; the poller will check it",
                        extra={"provider": provider.value})
            return
        self._callbacks[key] = claim
        self._spawn(self._callback_check(provider, key))

    def journal_callback(self, provider: Provider, claim: CallbackClaim | None,
                         exchange: Exchange) -> None:
        """A callback's row in the exchange journal, with the top-up it names: looked up
        in the background within the callbacks' bounds (the listener's request takes no
        connection); a callback naming nothing of ours (Halyk's without its secret_hash),
        or one beyond policy.callback_queue, goes with what it says itself."""
        if claim is None or (claim.order_id is None and claim.topup_id is None) \
                or self._journal_lookups >= self.policy.callback_queue:
            self._journal.record(exchange)
            return
        self._journal_lookups += 1
        self._spawn(self._journal_with_topup(provider, claim, exchange))

    async def _journal_with_topup(self, provider: Provider, claim: CallbackClaim,
                                  exchange: Exchange) -> None:
        topup_id = claim.topup_id
        try:
            async with self._callback_slots:
                topup_id = await self._topup_of(provider, claim) or topup_id
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("callback: its top-up not looked up for the journal",
                        extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._journal_lookups -= 1
            self._journal.record(replace(exchange, refs=Refs(topup_id=topup_id)))

    async def _topup_of(self, provider: Provider, claim: CallbackClaim) -> str | None:
        """The top-up a callback names (by the acquirer's order id, or ours)."""
        async with self._pool.acquire() as conn:
            topup_id: str | None = await conn.fetchval(
                _ORDER_OF_CALLBACK, provider.value, claim.order_id, claim.topup_id)
        return topup_id

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _callback_check(self, provider: Provider, key: tuple[str, str, str]) -> None:
        async with self._callback_slots:
            claim = self._callbacks.pop(key)
            try:
                topup_id = await self._topup_of(provider, claim)
                if topup_id is None:
                    log.warning("a callback for no top-up of ours",
                                extra={"provider": provider.value, "order_id": claim.order_id})
                    if claim.claims_paid:
                        TOPUP_CALLBACK_DISAGREEMENTS.labels(provider.value).inc()
                    return
                await self._coalesced(topup_id, "callback", claims_paid=claim.claims_paid)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("callback check failed; the poller will check it")

    async def _coalesced(self, topup_id: str, trigger: str, *,
                         claims_paid: bool = False) -> None:
        if topup_id in self._checking:
            self._again.add(topup_id)  # the running check runs once more after
            return
        self._checking.add(topup_id)
        try:
            while True:
                self._again.discard(topup_id)
                row = await self.check(topup_id, trigger, claims_paid=claims_paid)
                if topup_id not in self._again or row is None:
                    return
        finally:
            self._checking.discard(topup_id)
            self._again.discard(topup_id)

    async def run_poller(self) -> None:
        """Background: check every top-up that is due (the first check within
        TOPUP_FIRST_CHECK_MS of creation, then with backoff; FAILED and EXPIRED ones
        while watched), forever."""

        async def poll(topup_id: str) -> None:
            await self._coalesced(topup_id, "poll")

        await run_due(self._pool, _DUE_IDS, poll, what="top-up status check",
                      concurrency=self.policy.concurrency,
                      poll_interval_s=self.policy.poll_interval_s, each_round=_count_overdue)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
