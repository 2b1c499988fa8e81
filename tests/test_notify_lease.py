"""The leased first notifyPayment (notifier.py, sql/007): an answer applies once even
when two senders got it, and the leased call ends within the time it was given."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from mpp_server import db, ledger
from mpp_server.kaspi.client import KaspiClient, KaspiNoAnswer
from mpp_server.kaspi.models import NotifyResponse, Result
from mpp_server.metrics import MONEY_ALARMS
from mpp_server.notifier import Notice, _apply_answer
from tests.conftest import CALLER_NAME
from tests.helpers import fault, new_customer


async def _pending_payment(pool: db.Pool, amount_tiyn: int) -> Notice:
    """A debited PENDING payment whose outbox row is leased for an hour (no worker here)."""
    customer, payment_id = new_customer(), "lease-" + uuid.uuid4().hex[:12]
    await ledger.deposit(pool, "dep-" + payment_id, customer, 10_000)
    async with pool.acquire() as conn:
        mpp_id = await conn.fetchval(
            """INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn,
                                     merchant)
               VALUES ($1, $2, 'Dynamic', 'SCANNED', $3, '{}') RETURNING mpp_payment_id""",
            payment_id, customer, amount_tiyn)
        debited = await conn.fetchval(
            "SELECT payment_debit($1, $2, 'SCANNED', $3, $4, NULL, 3600)",
            payment_id, customer, amount_tiyn, ledger.shard_for(payment_id))
    assert debited == "DEBITED"
    return Notice(payment_id, str(mpp_id), customer, amount_tiyn, "SUCCESS", "success",
                  "ru-RU")


async def _apply_twice(pool: db.Pool, notice: Notice, answer: NotifyResponse) -> list[str]:
    async def apply() -> str:
        async with pool.acquire() as conn:
            outcome: str = (await _apply_answer(conn, notice, answer))["outcome"]
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
        assert row["status"] == applied and row["kaspi_acknowledged"]
        assert kinds == ["payment_debit"] + ([transfer] if transfer else [])
        assert balance == (10_000 if transfer else 7_000)
        assert events == 1 and outbox == 0 and report.ok
        assert _alarms("notify_declined_completed_payment") == contradicted
    finally:
        await pool.close()


@pytest.mark.usefixtures("clean_faults")
async def test_a_leased_call_gives_up_within_the_time_it_was_given(stack: Any) -> None:
    # The configured timeout (30 s) would outlast Kaspi's 3 s delay and get an answer;
    # the leased call is given 0.2 s and must come back without one.
    await fault(stack, "notifyPayment", "timeout", 1, delayMs=3000)
    notice = Notice("p-" + uuid.uuid4().hex[:8], str(uuid.uuid4()), new_customer(), 100,
                    "SUCCESS", "success", "ru-RU")
    async with aiohttp.ClientSession() as http:
        client = KaspiClient(http, stack.sim_url, CALLER_NAME, timeout_ms=30_000)
        with pytest.raises(KaspiNoAnswer) as caught:
            await client.notify_payment(notice.request(), "ru-RU", timeout_s=0.2)
    assert caught.value.reason == "TIMEOUT"
