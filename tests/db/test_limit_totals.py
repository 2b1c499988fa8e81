"""The limits' running totals (issue 28; accounts.paid_*, sql/functions/accounts.sql) are
what a full recount of the payments says, whatever happens: random debits, Kaspi's
declines, refunds, and the clock crossing Kazakhstan midnights and month ends; and 20
confirms at once on one account never pass a limit together."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from mpp_server import db
from mpp_server.domain import deposits, ledger, payments
from mpp_server.domain.limits import parse_limits
from tests.support.helpers import new_customer
from tests.support.machine import DatabaseMachine

MERCHANT = {"merchantId": "1", "merchantName": "M", "merchantMCC": "5812"}
# No limit at all: the totals are kept whatever the limits, and a refusal would hide a
# debit the totals must count.
NO_LIMITS = "{}"
# 18:30 UTC is 23:30 in Kazakhstan: steps of 20 to 90 minutes cross midnight often, and
# the last days of a month cross its end.
START = datetime(2026, 1, 30, 18, 30, tzinfo=UTC)
steps_min = st.integers(min_value=20, max_value=90)
days = st.integers(min_value=1, max_value=40)


class TotalsMachine(DatabaseMachine):
    debited = Bundle("debited")

    def __init__(self) -> None:
        super().__init__()
        self.customers = [new_customer(), new_customer()]
        self.now = START

    @initialize()
    def fund(self) -> None:
        async def go() -> None:
            pool = await db.create_pool(self.dsn, min_size=1, max_size=1)
            try:
                for customer in self.customers:
                    await deposits.deposit(pool, "dep-" + uuid.uuid4().hex, customer,
                                           10**12, parse_limits("{}", 1))
            finally:
                await pool.close()

        self.run(go())

    @rule(minutes=steps_min)
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(days_=days)
    def days_pass(self, days_: int) -> None:
        self.now += timedelta(days=days_)

    @rule(target=debited, which=st.integers(0, 1), amount=st.integers(1, 10**6))
    def debit(self, which: int, amount: int) -> str:
        customer, payment_id = self.customers[which], "tot-" + uuid.uuid4().hex[:16]

        async def go() -> str:
            await self.conn.execute(
                "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, "
                "amount_tiyn, merchant) VALUES ($1, $2, 'Dynamic', 'SCANNED', $3, $4)",
                payment_id, customer, amount, MERCHANT)
            outcome, _ = await payments.confirm_statement(
                self.conn, payment_id, customer, None, None, 0, NO_LIMITS, 0, self.now)
            return outcome

        assert self.run(go()) == "DEBITED"
        return payment_id

    @rule(payment_id=debited)
    def kaspi_declines(self, payment_id: str) -> None:
        self.run(self.conn.fetchval(
            "SELECT outcome FROM apply_notify_answer_once($1, 'SUCCESS', 'RISK_REJECT', 'm', "
            "NULL, $2)", payment_id, ledger.shard_for(payment_id)))

    @rule(payment_id=debited)
    def kaspi_completes(self, payment_id: str) -> None:
        self.run(self.conn.fetchval(
            "SELECT outcome FROM apply_notify_answer_once($1, 'SUCCESS', 'SUCCESS', 'm', "
            "'https://r', $2)", payment_id, ledger.shard_for(payment_id)))

    @rule(payment_id=debited, part=st.integers(1, 100))
    def kaspi_refunds(self, payment_id: str, part: int) -> None:
        async def go() -> None:
            row = await self.conn.fetchrow(
                "SELECT customer_id, amount_tiyn, refunded_tiyn FROM payments "
                "WHERE payment_id = $1", payment_id)
            assert row is not None
            amount = max(1, (row["amount_tiyn"] - row["refunded_tiyn"]) * part // 100)
            await self.conn.fetchval(
                "SELECT code FROM refund_apply($1, $2, $3, $4, 'https://r', $5)",
                "ref-" + uuid.uuid4().hex[:16], payment_id, row["customer_id"], amount,
                ledger.shard_for(payment_id))

        self.run(go())

    @invariant()
    def totals_are_the_recount(self) -> None:
        for customer in self.customers:
            stored, recounted = self.run(totals_and_recount(self.conn, customer, self.now))
            assert stored == recounted, (customer, self.now)


async def totals_and_recount(conn: db.Conn | asyncpg.Connection, customer: str,
                             now: datetime) -> tuple[tuple[int, int], tuple[int, int]]:
    """(day, month) as the running totals say, and as the payments say, at `now`."""
    row = await conn.fetchrow(
        """SELECT (paid_in_windows(a, $2)).*,
                  (SELECT coalesce(sum(amount_tiyn) FILTER (
                              WHERE confirmed_at >= kz_day_start($2)), 0)
                     FROM payments p WHERE p.customer_id = a.customer_id
                      AND status IN ('PENDING', 'COMPLETED')
                      AND confirmed_at >= kz_month_start($2) AND confirmed_at <= $2)
                    AS day_recount,
                  (SELECT coalesce(sum(amount_tiyn), 0) FROM payments p
                    WHERE p.customer_id = a.customer_id AND status IN ('PENDING', 'COMPLETED')
                      AND confirmed_at >= kz_month_start($2) AND confirmed_at <= $2)
                    AS month_recount
             FROM accounts a WHERE customer_id = $1""", customer, now)
    assert row is not None
    return ((row["day_tiyn"], row["month_tiyn"]),
            (row["day_recount"], row["month_recount"]))


def test_running_totals_are_the_recount(isolated_db: str) -> None:
    # A database of its own, as every test that debits without the server: the session
    # stack's notify worker declines such PENDING payments (ORDER_NOT_EXIST from its
    # simulator), returning their money and their share of the totals.
    TotalsMachine.dsn = isolated_db
    run_state_machine_as_test(TotalsMachine, settings=settings(
        max_examples=30, stateful_step_count=25, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow]))


async def test_twenty_confirms_at_once_count_one_after_another(isolated_db: str) -> None:
    """Each debit reads and moves the totals under the account's row lock: 20 at once
    against a daily limit of 14 of them pass exactly 14, and the totals equal the
    recount. (A database of its own: in the session's, the stack's notify worker
    declined the debited payments meanwhile, and up to 20 passed.)"""
    customer = new_customer()
    pool = await db.create_pool(isolated_db, min_size=1, max_size=21)
    daily = json.dumps({"NONE": {"daily": 14 * 7_000}})
    try:
        await deposits.deposit(pool, "dep-" + uuid.uuid4().hex, customer, 10**9,
                               parse_limits("{}", 1))
        ids = ["par-" + uuid.uuid4().hex[:16] for _ in range(20)]
        async with pool.acquire() as conn:
            for payment_id in ids:
                await conn.execute(
                    "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, "
                    "merchant) VALUES ($1, $2, 'Static', 'SCANNED', $3)", payment_id,
                    customer, MERCHANT)

        async def confirm(payment_id: str) -> str:
            async with pool.acquire() as conn:
                outcome, _ = await payments.confirm_statement(conn, payment_id, customer,
                                                              7_000, None, 0, daily, 0)
                return outcome

        outcomes = await asyncio.gather(*(confirm(p) for p in ids))
        assert sorted(outcomes).count("DEBITED") == 14
        assert sorted(outcomes).count("LIMIT_EXCEEDED") == 6
        async with pool.acquire() as conn:
            now = await conn.fetchval("SELECT clock_timestamp()")
            stored, recounted = await totals_and_recount(conn, customer, now)
        assert stored == recounted == (14 * 7_000, 14 * 7_000)
    finally:
        await pool.close()
