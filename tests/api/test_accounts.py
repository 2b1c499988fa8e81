"""The customer's account (issue 15): the statement, the identification level and the
limits per level, end to end: real PostgreSQL, the simulator over real HTTP.

Limits are tested on a stack of their own (its own database, so no other server's worker
touches its outbox) configured with MCI_TENGE=100, so 1 MCI = 100.00 KZT and the figures
below read as hundreds of tenge. Day and month windows are moved by back-dating earlier
payments' debit time (payments.confirmed_at) in SQL: no sleeping, no clock faked.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from mpp_server import db
from mpp_server.devtools.devdb import fresh_database
from tests.support.helpers import (
    assert_books_balanced,
    balance,
    call,
    confirm,
    confirmed,
    deposit,
    fault,
    new_customer,
    new_qr,
    payment,
    scan,
    sim,
    sim_payment,
    transfers_of,
    wait_status,
)
from tests.support.stack import DEPOSIT_TOKEN, Stack, running_stack

pytestmark = pytest.mark.usefixtures("clean_faults")

LIMITS_MCI = {"NONE": {"payment": 5, "daily": 8, "monthly": 20, "balance": 15},
              "SIMPLIFIED": {"daily": 10},
              "FULL": {"monthly": 30}}


@pytest.fixture(scope="module")
async def limited(admin_dsn: str) -> AsyncIterator[Stack]:
    async with fresh_database(admin_dsn, "mpp_limits") as dsn:
        pool = await db.create_pool(dsn, min_size=1, max_size=10)
        try:
            async with running_stack(dsn, pool, LIMITS_MCI=json.dumps(LIMITS_MCI),
                                     MCI_TENGE="100") as running:
                yield running
        finally:
            await pool.close()


# ---- helpers ------------------------------------------------------------------------

async def set_level(stack: Stack, customer: str, level: str) -> None:
    status, body = await call(stack, "PUT", f"/v1/accounts/{customer}/identification",
                              {"level": level}, token=DEPOSIT_TOKEN)
    assert status == 200 and body == {"customerId": customer, "level": level}, body


async def scanned(stack: Stack, customer: str, amount: str) -> str:
    qr = await new_qr(stack, "Dynamic", amount=amount)
    return str((await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"])


async def pay(stack: Stack, customer: str, amount: str) -> tuple[int, Any, str]:
    payment_id = await scanned(stack, customer, amount)
    status, body = await confirm(stack, payment_id, customer)
    return status, body, payment_id


async def paid(stack: Stack, customer: str, amount: str) -> str:
    payment_id = await scanned(stack, customer, amount)
    await confirmed(stack, payment_id, customer)
    return payment_id


async def refused(stack: Stack, customer: str, amount: str, limit_words: str) -> str:
    """A confirm over a limit: 409 naming the limit, nothing debited, Kaspi told it
    failed, the payment DECLINED with LIMIT_EXCEEDED; a repeat answers the same."""
    before = await balance(stack, customer)
    status, body, payment_id = await pay(stack, customer, amount)
    assert status == 409 and body["error"]["code"] == "LIMIT_EXCEEDED", body
    assert limit_words in body["error"]["message"], body
    assert await balance(stack, customer) == before
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    shown = await payment(stack, payment_id)
    assert shown["status"] == "DECLINED" and shown["declineReason"] == "LIMIT_EXCEEDED"
    kaspi = await sim_payment(stack, payment_id)
    assert kaspi["status"] == "FAILED" and kaspi["notifyCount"] == 1, kaspi
    again_status, again = await confirm(stack, payment_id, customer)
    assert (again_status, again) == (status, body)
    return payment_id


async def deposit_as(stack: Stack, customer: str, amount: str,
                     deposit_id: str | None = None) -> tuple[int, Any]:
    return await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                      {"depositId": deposit_id or "dep-" + uuid.uuid4().hex[:16],
                       "amount": amount}, token=stack.deposit_token)


async def windows(stack: Stack) -> tuple[datetime, datetime]:
    """The database's start of today and of this month in Kazakhstan time."""
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT kz_day_start(now()) AS d, kz_month_start(now()) AS m")
    assert row is not None
    return row["d"], row["m"]


async def debited_at(stack: Stack, payment_id: str, at: datetime) -> None:
    """The payment as if debited at `at`, and its customer's running totals of the day
    and month recounted from the payments (account_paid_recount), as they would stand."""
    async with stack.pool.acquire() as conn, conn.transaction():
        done = await conn.execute("UPDATE payments SET confirmed_at = $2 WHERE payment_id = $1",
                                  payment_id, at)
        await conn.execute(
            """SELECT account_paid_recount(a.id, now()) FROM accounts a
                JOIN payments p ON p.customer_id = a.customer_id WHERE p.payment_id = $1""",
            payment_id)
    assert done == "UPDATE 1"


async def metric(stack: Stack, name: str) -> float:
    async with stack.http.get(stack.wallet_url + "/metrics") as resp:
        text = await resp.text()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


async def whole_statement(stack: Stack, customer: str, page: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, body = await call(stack, "GET", f"/v1/accounts/{customer}/statement"
                                                f"?after={cursor}&limit={page}")
        assert status == 200, body
        assert len(body["entries"]) <= page
        lines += body["entries"]
        if not body["entries"]:
            assert body["next"] == (cursor or "0")  # an empty page keeps the cursor
            return lines
        cursor = body["next"]
        assert cursor == str(body["entries"][-1]["id"])


def cents(amount: str) -> int:
    sign = -1 if amount.startswith("-") else 1
    tenge, tiyn = amount.lstrip("-").split(".")
    return sign * (int(tenge) * 100 + int(tiyn))


def assert_chained(lines: list[dict[str, Any]], final_balance: str) -> None:
    """Oldest first, each balanceAfter the previous plus amount, the last the balance."""
    running = 0
    for line in lines:
        running += cents(line["amount"])
        assert cents(line["balanceAfter"]) == running, line
    assert [line["id"] for line in lines] == sorted({line["id"] for line in lines})
    assert running == cents(final_balance)


# ---- the statement --------------------------------------------------------------------

async def test_statement_lists_deposits_payments_a_decline_and_partial_refunds(
        stack: Stack) -> None:
    customer = new_customer()
    deposit_id = "dep-st-" + uuid.uuid4().hex[:12]
    status, _ = await deposit_as(stack, customer, "1000.00", deposit_id)
    assert status == 201
    kept = await paid(stack, customer, "300.00")
    declined = await scanned(stack, customer, "200.00")
    await fault(stack, "notifyPayment", "error_code", 1, resultCode="RISK_REJECT")
    await confirmed(stack, declined, customer, wanted="DECLINED")
    refunds = []
    for amount in ("100.00", "50.00"):
        status, answer = await sim(stack, "POST", "/sim/refunds",
                                   {"paymentId": kept, "amount": amount})
        assert status == 200 and answer["resultCode"] == "SUCCESS", answer
        refunds.append(answer["refundId"])

    lines = await whole_statement(stack, customer, 100)
    assert [(line["type"], line["amount"], line["balanceAfter"]) for line in lines] == [
        ("deposit", "1000.00", "1000.00"), ("payment", "-300.00", "700.00"),
        ("payment", "-200.00", "500.00"), ("payment_return", "200.00", "700.00"),
        ("refund", "100.00", "800.00"), ("refund", "50.00", "850.00")]
    ids = [{k: v for k, v in line.items() if k.endswith("Id")} for line in lines]
    assert ids == [{"depositId": deposit_id}, {"paymentId": kept}, {"paymentId": declined},
                   {"paymentId": declined}, {"refundId": refunds[0], "paymentId": kept},
                   {"refundId": refunds[1], "paymentId": kept}]
    assert all(datetime.fromisoformat(line["createdAt"]).utcoffset() == timedelta(hours=5)
               for line in lines)
    assert_chained(lines, await balance(stack, customer))


async def test_paging_by_1_2_and_500_gives_the_same_lines(stack: Stack) -> None:
    customer = new_customer()
    for amount in ("10.00", "20.00", "30.00", "40.00"):
        await deposit(stack, customer, amount)
    await paid(stack, customer, "15.00")
    await paid(stack, customer, "25.00")
    by_one = await whole_statement(stack, customer, 1)
    assert len(by_one) == 6
    assert await whole_statement(stack, customer, 2) == by_one
    assert await whole_statement(stack, customer, 500) == by_one
    assert_chained(by_one, await balance(stack, customer))
    status, end = await call(stack, "GET", f"/v1/accounts/{customer}/statement"
                                           f"?after={by_one[-1]['id']}")
    assert status == 200 and end == {"entries": [], "next": str(by_one[-1]["id"])}


async def test_lines_written_while_paging_are_neither_skipped_nor_repeated(
        stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "1.00")
    writing = True

    async def writer() -> None:
        nonlocal writing
        try:
            await asyncio.gather(*(deposit(stack, customer, "1.00") for _ in range(40)),
                                 *(paid(stack, customer, "0.50") for _ in range(5)))
        finally:
            writing = False

    async def reader() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        cursor = ""
        while True:
            still_writing = writing
            status, body = await call(stack, "GET", f"/v1/accounts/{customer}/statement"
                                                    f"?after={cursor}&limit=1")
            assert status == 200, body
            seen += body["entries"]
            cursor = body["next"]
            if not body["entries"] and not still_writing:
                return seen
            await asyncio.sleep(0)

    _, seen = await asyncio.gather(writer(), reader())
    assert len(seen) == 1 + 40 + 5
    assert seen == await whole_statement(stack, customer, 1000)
    assert_chained(seen, await balance(stack, customer))


async def test_statement_refuses_bad_input_and_unknown_customers(stack: Stack) -> None:
    customer = new_customer()
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}/statement")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    await deposit(stack, customer, "1.00")
    for query in ("?after=abc", "?after=-1", "?limit=0", "?limit=1001", "?cursor=5"):
        status, body = await call(stack, "GET", f"/v1/accounts/{customer}/statement{query}")
        assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", (query, body)


# ---- identification -----------------------------------------------------------------

async def test_only_a_deposit_token_sets_the_level(stack: Stack) -> None:
    customer = new_customer()
    path = f"/v1/accounts/{customer}/identification"
    status, body = await call(stack, "PUT", path, {"level": "FULL"})  # a wallet token
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    status, body = await call(stack, "PUT", path, {"level": "FULL"}, token=None)
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    for bad in ({"level": "PARTIAL"}, {"level": "full"}, {}, {"level": "FULL", "x": 1}):
        status, body = await call(stack, "PUT", path, bad, token=DEPOSIT_TOKEN)
        assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", (bad, body)
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404  # nothing was written

    # A deposit token only does what it is for.
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}", token=DEPOSIT_TOKEN)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"

    await set_level(stack, customer, "SIMPLIFIED")  # creates the account
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 200 and body == {"customerId": customer, "balance": "0.00",
                                      "currency": "KZT", "identificationLevel": "SIMPLIFIED"}
    await set_level(stack, customer, "SIMPLIFIED")  # a repeat answers the same
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}/statement")
    assert status == 200 and body["entries"] == []


async def test_new_accounts_are_not_identified(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "5.00")
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 200 and body["identificationLevel"] == "NONE"


# ---- limits -------------------------------------------------------------------------

async def test_a_payment_exactly_at_the_limit_passes_one_tiyn_over_is_refused(
        limited: Any) -> None:
    customer = new_customer()
    await deposit(limited, customer, "1500.00")
    await paid(limited, customer, "500.00")
    await refused(limited, customer, "500.01", "per-payment limit of identification level "
                                               "NONE (5 MCI = 500.00 KZT)")
    assert await balance(limited, customer) == "1000.00"


async def test_daily_limit_counts_the_kazakh_calendar_day(limited: Any) -> None:
    customer = new_customer()
    await deposit(limited, customer, "1500.00")
    before_midnight = await paid(limited, customer, "500.00")
    at_midnight = await paid(limited, customer, "300.00")  # 800.00: the daily limit
    await refused(limited, customer, "0.01", "daily payment limit")

    today, _ = await windows(limited)
    await debited_at(limited, before_midnight, today - timedelta(microseconds=1))
    await debited_at(limited, at_midnight, today)
    await paid(limited, customer, "500.00")  # 300.00 + 500.00 today
    await refused(limited, customer, "0.01", "daily payment limit")
    assert await balance(limited, customer) == "200.00"


async def test_monthly_limit_counts_the_kazakh_calendar_month(limited: Any) -> None:
    customer = new_customer()
    await set_level(limited, customer, "FULL")  # FULL: 30 MCI a month, nothing else
    await deposit(limited, customer, "6000.00")
    last_month = await paid(limited, customer, "2000.00")
    first_of_month = await paid(limited, customer, "1000.00")
    await refused(limited, customer, "0.01", "monthly payment limit (Kazakhstan calendar "
                                             "month, UTC+5) of identification level FULL "
                                             "(30 MCI = 3000.00 KZT)")

    _, month = await windows(limited)
    await debited_at(limited, last_month, month - timedelta(microseconds=1))
    await debited_at(limited, first_of_month, month)
    await paid(limited, customer, "2000.00")
    await refused(limited, customer, "0.01", "monthly payment limit")
    assert await balance(limited, customer) == "1000.00"


async def test_a_level_change_applies_to_the_next_confirm(limited: Any) -> None:
    customer = new_customer()
    await deposit(limited, customer, "1500.00")
    await refused(limited, customer, "600.00", "per-payment limit")
    await set_level(limited, customer, "FULL")
    await paid(limited, customer, "600.00")
    await set_level(limited, customer, "NONE")
    await refused(limited, customer, "600.00", "per-payment limit")
    assert await balance(limited, customer) == "900.00"


async def test_twenty_concurrent_confirms_never_pass_the_daily_limit(limited: Any) -> None:
    customer = new_customer()
    await set_level(limited, customer, "SIMPLIFIED")  # 10 MCI = 1000.00 a day
    await deposit(limited, customer, "5000.00")
    payment_ids = [await scanned(limited, customer, "70.00") for _ in range(20)]
    answers = await asyncio.gather(*(confirm(limited, p, customer) for p in payment_ids))
    passed = [p for p, (status, _) in zip(payment_ids, answers, strict=True) if status == 200]
    codes = sorted(body["error"]["code"] for status, body in answers if status != 200)
    assert len(passed) == 14 and codes == ["LIMIT_EXCEEDED"] * 6, answers  # 14 x 70 = 980
    for payment_id in passed:
        await wait_status(limited, payment_id, "COMPLETED")
    assert await balance(limited, customer) == "4020.00"
    async with limited.pool.acquire() as conn:
        debited = await conn.fetchval(
            "SELECT sum(amount_tiyn) FROM transfers WHERE kind = 'payment_debit' "
            "AND reference = ANY($1::text[])", payment_ids)
    assert debited == 98_000 <= 100_000
    for payment_id in set(payment_ids) - set(passed):
        assert (await payment(limited, payment_id))["declineReason"] == "LIMIT_EXCEEDED"


async def test_a_declined_payment_frees_its_share_a_refund_does_not(limited: Any) -> None:
    customer = new_customer()
    await set_level(limited, customer, "SIMPLIFIED")  # 1000.00 a day
    await deposit(limited, customer, "2000.00")
    declined = await scanned(limited, customer, "600.00")
    await fault(limited, "notifyPayment", "error_code", 1, resultCode="RISK_REJECT")
    await confirmed(limited, declined, customer, wanted="DECLINED")
    kept = await paid(limited, customer, "1000.00")  # the declined 600.00 no longer counts
    status, answer = await sim(limited, "POST", "/sim/refunds",
                               {"paymentId": kept, "amount": "500.00"})
    assert status == 200 and answer["resultCode"] == "SUCCESS", answer
    await refused(limited, customer, "0.01", "daily payment limit")
    assert await balance(limited, customer) == "1500.00"


async def test_the_balance_cap_refuses_a_deposit_never_a_refund(limited: Any) -> None:
    newcomer = new_customer()
    status, body = await deposit_as(limited, newcomer, "1500.01")
    assert status == 409 and body["error"]["code"] == "LIMIT_EXCEEDED", body
    assert "balance cap of identification level NONE (15 MCI = 1500.00 KZT)" in (
        body["error"]["message"])
    status, _ = await call(limited, "GET", f"/v1/accounts/{newcomer}")
    assert status == 404  # nothing written, not even the account

    customer = new_customer()
    status, _ = await deposit_as(limited, customer, "1500.00")  # exactly the cap
    assert status == 201
    over = "dep-over-" + uuid.uuid4().hex[:8]
    status, body = await deposit_as(limited, customer, "0.01", over)
    assert status == 409 and body["error"]["code"] == "LIMIT_EXCEEDED", body
    assert await transfers_of(limited, "deposit", over) == 0
    kept = await paid(limited, customer, "500.00")
    status, _ = await deposit_as(limited, customer, "500.00")  # back at the cap
    assert status == 201

    counted = await metric(limited, "mpp_balance_over_cap_total")
    status, answer = await sim(limited, "POST", "/sim/refunds",
                               {"paymentId": kept, "amount": "500.00"})
    assert status == 200 and answer["resultCode"] == "SUCCESS", answer
    assert await balance(limited, customer) == "2000.00"  # over the cap, as it must be
    assert await metric(limited, "mpp_balance_over_cap_total") == counted + 1
    status, body = await deposit_as(limited, customer, "0.01")
    assert status == 409 and body["error"]["code"] == "LIMIT_EXCEEDED"
    assert_chained(await whole_statement(limited, customer, 2),
                   await balance(limited, customer))
    await assert_books_balanced(limited)
