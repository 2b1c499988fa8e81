"""The leased first notifyPayment (domain/outbox.py, sql/functions/notify.sql): an answer
applies once even when two senders got it, and the leased call ends within the time it
was given."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import aiohttp
import pytest

from mpp_server import db
from mpp_server.devtools.launcher import CALLER_NAME
from mpp_server.domain import deposits, ledger, payments
from mpp_server.domain.limits import parse_limits
from mpp_server.domain.outbox import Notice, apply_answer
from mpp_server.kaspi_client.client import KaspiClient, KaspiNoAnswer
from mpp_server.kaspi_client.models import NotifyResponse, Result
from mpp_server.metrics import MONEY_ALARMS
from tests.support.helpers import (
    confirm,
    deposit,
    fault,
    new_customer,
    new_qr,
    scan,
    until_faults_left,
)
from tests.support.stack import Stack, running_stack


async def _pending_payment(pool: db.Pool, amount_tiyn: int) -> Notice:
    """A debited PENDING payment whose outbox row is leased for an hour (no worker here)."""
    customer, payment_id = new_customer(), "lease-" + uuid.uuid4().hex[:12]
    await deposits.deposit(pool, "dep-" + payment_id, customer, 10_000,
                           parse_limits("{}", 1))
    async with pool.acquire() as conn:
        mpp_id = await conn.fetchval(
            """INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn,
                                     merchant)
               VALUES ($1, $2, 'Dynamic', 'SCANNED', $3, '{}') RETURNING mpp_payment_id""",
            payment_id, customer, amount_tiyn)
        debited, _ = await payments.confirm_statement(conn, payment_id, customer, None, None,
                                                      3600, "{}", 0)
    assert debited == "DEBITED"
    return Notice(payment_id, str(mpp_id), customer, amount_tiyn, "SUCCESS", "success",
                  "ru-RU")


async def _apply_twice(pool: db.Pool, notice: Notice, answer: NotifyResponse) -> list[str]:
    async def apply() -> str:
        async with pool.acquire() as conn:
            outcome: str = (await apply_answer(conn, notice, answer))["outcome"]
            return outcome

    return sorted(await asyncio.gather(apply(), apply()))


def _alarms(kind: str) -> float:
    return float(MONEY_ALARMS.labels(kind)._value.get())


@pytest.mark.parametrize(("code", "applied", "transfer"), [
    ("RISK_REJECT", "DECLINED", "payment_return"),
    ("SUCCESS", "COMPLETED", None),
])
async def test_an_answer_two_senders_got_is_applied_once(isolated_db: str, code: str,
                                                          applied: str,
                                                          transfer: str | None) -> None:
    pool = await db.create_pool(isolated_db, min_size=2, max_size=4)
    try:
        notice = await _pending_payment(pool, 3_000)
        contradicted = _alarms("notify_declined_completed_payment")
        answer = NotifyResponse(result=Result(resultCode=code, resultMessage="x"),
                                linkReceipt="https://kaspi.example/r?id=1")
        assert await _apply_twice(pool, notice, answer) == ["ALREADY_APPLIED", applied]
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1",
                                      notice.payment_id)
            kinds = [r["kind"] for r in await conn.fetch(
                "SELECT kind FROM transfers WHERE reference = $1 ORDER BY id",
                notice.payment_id)]
            events = await conn.fetchval("SELECT count(*) FROM events WHERE payment_id = $1",
                                         notice.payment_id)
            balance = await conn.fetchval("SELECT balance_tiyn FROM accounts "
                                          "WHERE customer_id = $1", notice.customer_id)
            outbox = await conn.fetchval("SELECT count(*) FROM notify_outbox")
            report = await ledger.check_invariants(conn)
        assert row is not None and row["status"] == applied and row["kaspi_acknowledged"]
        assert kinds == ["payment_debit"] + ([transfer] if transfer else [])
        assert balance == (10_000 if transfer else 7_000)
        assert events == 1 and outbox == 0 and report.ok
        assert _alarms("notify_declined_completed_payment") == contradicted
    finally:
        await pool.close()


@pytest.mark.usefixtures("clean_faults")
async def test_a_leased_call_gives_up_within_the_time_it_was_given(stack: Stack) -> None:
    # The configured timeout (30 s) would outlast Kaspi's 3 s delay and get an answer;
    # the leased call is given 0.2 s and must come back without one.
    await fault(stack, "notifyPayment", "timeout", 1, delayMs=3000)
    notice = Notice("p-" + uuid.uuid4().hex[:8], str(uuid.uuid4()), new_customer(), 100,
                    "SUCCESS", "success", "ru-RU")
    async with aiohttp.ClientSession() as http:
        client = KaspiClient(http, stack.sim_url, CALLER_NAME, timeout_ms=30_000,
                             journal=stack.services.journal)
        with pytest.raises(KaspiNoAnswer) as caught:
            await client.notify_payment(notice.request(), "ru-RU", timeout_s=0.2)
    assert caught.value.reason == "TIMEOUT"


async def test_the_confirming_request_retries_within_its_lease_holding_no_lock(
        isolated_db: str) -> None:
    # A database of its own and a worker that polls once a minute: nothing but the
    # confirming request touches the outbox row during the test.
    pool = await db.create_pool(isolated_db, min_size=1, max_size=4)
    try:
        async with running_stack(isolated_db, pool, NOTIFY_POLL_INTERVAL_MS="60000") as stack:
            customer = new_customer()
            await deposit(stack, customer, "100.00")
            qr = await new_qr(stack, "Dynamic", amount="10.00")
            payment_id = (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]
            # Kaspi holds every notify 3 s; the client gives up after 1 s (KASPI_TIMEOUT_MS),
            # the request after CONFIRM_BUDGET_MS (3 s).
            await fault(stack, "notifyPayment", "timeout", 20, delayMs=3000)
            confirming = asyncio.create_task(confirm(stack, payment_id, customer))
            await _until_attempted(stack, payment_id)
            async with pool.acquire() as conn:
                leased_until = await conn.fetchval(
                    "SELECT next_attempt_at FROM notify_outbox WHERE payment_id = $1",
                    payment_id)
            async with pool.acquire() as conn, conn.transaction():
                # While the request waits on Kaspi, nobody holds the row.
                locked = await conn.fetchval("SELECT payment_id FROM notify_outbox "
                                             "WHERE payment_id = $1 FOR UPDATE NOWAIT",
                                             payment_id)
            assert locked == payment_id
            status, body = await confirming
            assert status == 200 and body["status"] == "PENDING", body
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    """SELECT o.attempts, o.last_error, o.next_attempt_at,
                              o.next_attempt_at - p.confirmed_at AS lease
                       FROM notify_outbox o JOIN payments p USING (payment_id)
                       WHERE payment_id = $1""", payment_id)
            # Several attempts, all inside the lease, which they left as it was. (The
            # lease runs from the debit's statement start, CONFIRM_BUDGET_MS; confirmed_at
            # is the clock at the debit itself, a little later: issue 14 item 3.)
            assert row is not None
            assert row["attempts"] >= 2 and row["last_error"] == "TIMEOUT", dict(row)
            assert row["next_attempt_at"] == leased_until
            assert timedelta(0) < row["lease"] <= timedelta(seconds=3)
    finally:
        await pool.close()


async def _until_attempted(stack: Stack, payment_id: str) -> None:
    """Until the outbox row exists (the debit committed) and its first call is under way
    (it took the first of the 20 timeout faults)."""
    await until_faults_left(stack, "notifyPayment", 19)
    async with stack.pool.acquire() as conn:
        staged = await conn.fetchval("SELECT 1 FROM notify_outbox WHERE payment_id = $1",
                                     payment_id)
    assert staged, "the confirm called Kaspi without staging its notify"


async def test_a_worker_whose_lease_ran_out_leaves_the_next_claim_alone(
        isolated_db: str) -> None:
    """A worker claims a due row with a lease (notify_claim) and holds nothing while
    Kaspi is asked. If its lease runs out (a stalled process), another worker claims the
    row; the first one's failure, recorded late, must not cut the second one's lease
    short (notify_attempt_failed checks the claim it made)."""
    pool = await db.create_pool(isolated_db, min_size=1, max_size=2)
    try:
        notice = await _pending_payment(pool, 700)
        async with pool.acquire() as conn:
            await conn.execute("UPDATE notify_outbox SET next_attempt_at = now() "
                               "WHERE payment_id = $1", notice.payment_id)
            # A lease of 0 has run out by the next statement (its now() is later).
            first = await conn.fetchrow("SELECT * FROM notify_claim($1, 0)",
                                        notice.payment_id)
            assert first is not None
            second = await conn.fetchrow("SELECT * FROM notify_claim($1, 60)",
                                         notice.payment_id)
            assert second is not None and second["claimed_until"] > first["claimed_until"]
            assert await conn.fetchrow("SELECT * FROM notify_claim($1, 60)",
                                       notice.payment_id) is None  # leased: not due
            late = await conn.fetchval("SELECT notify_attempt_failed($1, $2, 'TIMEOUT', 0)",
                                       notice.payment_id, first["claimed_until"])
            assert late is None
            row = await conn.fetchrow("SELECT attempts, next_attempt_at FROM notify_outbox "
                                      "WHERE payment_id = $1", notice.payment_id)
            assert row is not None and row["attempts"] == 0
            assert row["next_attempt_at"] == second["claimed_until"]
            counted = await conn.fetchval("SELECT notify_attempt_failed($1, $2, 'TIMEOUT', 0)",
                                          notice.payment_id, second["claimed_until"])
            assert counted == 1
    finally:
        await pool.close()
