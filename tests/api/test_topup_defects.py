"""Regressions of issue 22: the money defects of top-ups under a flaky acquirer, each over
real PostgreSQL and the simulator's acquirers (their faults: an answer that comes after
the operation applied, a status in another currency, a create refused as a duplicate).
Each test failed on the code before the fix (docs/topups.md states each rule)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from mpp_server import topups_cli
from tests.support.helpers import call, counted, deposit, metric_value, new_customer, sim
from tests.support.stack import DEPOSIT_TOKEN, Stack
from tests.support.topups import (
    PROVIDERS,
    WAIT_S,
    account_balance,
    acquirer_fault,
    create,
    credited,
    event_types,
    no_acquirer_faults,
    pay,
    refund,
    send_callback,
    sim_order,
    stack_of_its_own,
    transfers,
    until,
    wait_for,
    wait_refund,
)

pytestmark = pytest.mark.usefixtures(no_acquirer_faults.__name__)
# Longer than the tests' ACQUIRER_TIMEOUT_MS (1 s): the answer comes after we gave up.
LATE_MS = 2500


async def expire_now(stack: Stack, topup_id: str) -> None:
    """Our clock passes the top-up's session end (minutes long in the settings)."""
    async with stack.pool.acquire() as conn:
        await conn.execute("UPDATE topups SET expires_at = now(), next_check_at = now() "
                           "WHERE topup_id = $1", topup_id)


# ---- 1. a refund whose outcome is unknown is never given back unasked -----------------

async def test_halyk_refund_answered_after_the_timeout_is_completed_not_returned(
        stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "1000.00")
    await acquirer_fault(stack, "halyk-epay", "refund", "late_answer", delay_ms=LATE_MS)
    status, answer = await refund(stack, topup, "1000.00")
    assert status == 201, answer
    done = await wait_refund(stack, topup, answer["refundId"], "COMPLETED")
    assert done["status"] == "COMPLETED"
    assert len((await sim_order(stack, topup))["refunds"]) == 1
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup_refund_return", answer["refundId"]) == 0


async def test_kapital_reverse_answered_late_is_completed_once(stack: Stack) -> None:
    topup = await credited(stack, "kapital", "800.00")
    await acquirer_fault(stack, "kapital", "refund", "late_answer", delay_ms=LATE_MS)
    status, answer = await refund(stack, topup, "800.00")
    assert status == 201, answer
    await wait_refund(stack, topup, answer["refundId"], "COMPLETED")
    assert [r["operation"] for r in (await sim_order(stack, topup))["refunds"]] == ["Reverse"]
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup_refund_return", answer["refundId"]) == 0


async def test_kapital_partial_refund_answered_late_is_not_sent_twice(stack: Stack) -> None:
    topup = await credited(stack, "kapital", "1500.00")
    await acquirer_fault(stack, "kapital", "refund", "late_answer", delay_ms=LATE_MS)
    status, answer = await refund(stack, topup, "500.00")
    assert status == 201, answer
    await wait_refund(stack, topup, answer["refundId"], "COMPLETED")
    refunds = (await sim_order(stack, topup))["refunds"]
    assert sum(r["amountTiyn"] for r in refunds) == 50000, refunds
    assert await account_balance(stack, topup["customerId"]) == "1000.00"


async def test_refund_whose_outcome_cannot_be_established_stays_unknown(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The acquirer's books show a refund of another amount (someone refunded in its
    cabinet) while ours timed out: neither sent nor not sent can be read from them, so
    the refund is UNKNOWN, the wallet stays debited, the gauge shows it, until a person
    who asked the bank resolves it (`topups resolve-refund`, journaled)."""
    topup = await credited(stack, "halyk-epay", "900.00")
    status, _ = await sim(stack, "POST", f"/sim/acquiring/orders/halyk-epay/"
                                         f"{topup['providerOrderId']}/refunds",
                          {"amount": "200.00"})
    assert status == 200
    await acquirer_fault(stack, "halyk-epay", "refund", "timeout", times=1000,
                         delay_ms=LATE_MS)
    status, answer = await refund(stack, topup, "300.00")
    assert status == 201 and answer["status"] in ("PENDING", "UNKNOWN"), answer
    await wait_refund(stack, topup, answer["refundId"], "UNKNOWN")

    async def counted() -> bool:
        return metric_value("mpp_topup_refunds_unknown", provider="halyk-epay") >= 1

    await until(counted, "the unknown refund to be counted")
    status, shown = await call(stack, "GET",
                               f"/v1/topups/{topup['topupId']}/refunds/{answer['refundId']}")
    assert status == 200 and shown["status"] == "UNKNOWN"
    assert await account_balance(stack, topup["customerId"]) == "600.00"
    assert await transfers(stack, "topup_refund_return", answer["refundId"]) == 0

    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    resolve = ["resolve-refund", answer["refundId"], "--not-done", "--by", "a.operator",
               "--reason", "Halyk support ticket 9431: never sent to the card"]
    assert await asyncio.to_thread(topups_cli.main, resolve) == 0
    await wait_refund(stack, topup, answer["refundId"], "REFUSED")
    assert await account_balance(stack, topup["customerId"]) == "900.00"
    assert await transfers(stack, "topup_refund_return", answer["refundId"]) == 1
    assert await asyncio.to_thread(topups_cli.main, resolve) == 2  # not UNKNOWN any more
    async with stack.pool.acquire() as conn:
        journaled = await conn.fetchval(
            "SELECT count(*) FROM audit_journal WHERE action = 'topup_refund_resolved' "
            "AND subject = $1", f"topup_refund:{answer['refundId']}")
    assert journaled == 1


# ---- 2. money the acquirer took is always checked and credited ------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
async def test_card_paid_after_our_session_expired_is_credited_late(stack: Stack,
                                                                    provider: str) -> None:
    topup = await create(stack, provider, "640.00")
    # The customer opens the page, and pays only after our clock called it over.
    status, _ = await sim(stack, "POST", "/sim/acquiring/open",
                          {"paymentUrl": topup["paymentUrl"]})
    assert status == 200
    await expire_now(stack, topup["topupId"])
    await wait_for(stack, topup["topupId"], "EXPIRED")
    late = metric_value("mpp_topup_late_credits_total", provider=provider)
    await pay(stack, topup, "success", "send")

    async def credited_late() -> bool:
        status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
        return bool(status == 200 and shown["status"] == "CREDITED")

    # Kaspi calls nobody back: the poller finds it, among the session's other top-ups.
    await until(credited_late, "the late payment to be credited", 3 * WAIT_S)
    await counted("mpp_topup_late_credits_total", late + 1, provider=provider)
    assert await account_balance(stack, topup["customerId"]) == "640.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 1
    assert await event_types(stack, topup["topupId"]) == ["topup.failed", "topup.credited"]


async def test_repeat_refused_as_a_duplicate_does_not_fail_a_payable_topup(
        stack: Stack) -> None:
    """Two identical creates at once: the acquirer answers the first slowly, so the
    second, were it sent, would be refused as a duplicate of it. The top-up stays payable
    and is credited when paid."""
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "kaspi-ecom", "amount": "700.00"}
    await acquirer_fault(stack, "kaspi-ecom", "create", "late_answer", delay_ms=400)
    answers = await asyncio.gather(call(stack, "POST", "/v1/topups", body),
                                   call(stack, "POST", "/v1/topups", body))
    statuses = sorted(s for s, _ in answers)
    assert statuses in ([200, 201], [201, 503]), answers
    status, shown = await call(stack, "GET", f"/v1/topups/{body['topupId']}")
    assert status == 200 and shown["status"] == "CREATED" and shown["paymentUrl"], shown
    await pay(stack, shown, "success", "send")
    await wait_for(stack, body["topupId"], "CREDITED")
    assert await account_balance(stack, body["customerId"]) == "700.00"


async def test_page_is_handed_out_only_while_the_topup_is_created(stack: Stack) -> None:
    topup = await create(stack, "halyk-epay", "120.00")
    await expire_now(stack, topup["topupId"])
    await wait_for(stack, topup["topupId"], "EXPIRED")
    body = {k: topup[k] for k in ("topupId", "customerId", "provider", "amount")}
    status, again = await call(stack, "POST", "/v1/topups", body)
    assert status == 200 and again["status"] == "EXPIRED", again
    assert "paymentUrl" not in again
    status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
    assert status == 200 and "paymentUrl" not in shown


# ---- 3. callbacks and a slow acquirer leave the wallet API its connections ------------

@pytest.fixture(scope="module")
async def small_pool(admin_dsn: str) -> AsyncIterator[Stack]:
    """A server with a pool of 6 connections, a short wait for one, and patience for a
    slow acquirer: what 40 callbacks met in production, scaled down."""
    async with stack_of_its_own(admin_dsn, "mpp_topup_pool", DB_POOL_MAX="6",
                                DB_POOL_MIN="1", DB_ACQUIRE_TIMEOUT_MS="500",
                                ACQUIRER_TIMEOUT_MS="8000",
                                TOPUP_FIRST_CHECK_MS="30000") as running:
        yield running


async def test_callbacks_during_a_slow_status_api_leave_the_wallet_api_working(
        small_pool: Stack) -> None:
    stack = small_pool
    await sim(stack, "DELETE", "/sim/acquiring/faults")
    customer = new_customer()
    # Kapital's: the browser's return carries no secret, so each triggers a check.
    topups = [await create(stack, "kapital", "10.00", customer) for _ in range(40)]
    await acquirer_fault(stack, "kapital", "status", "late_answer", times=1000,
                         delay_ms=3000)
    try:
        answers = await asyncio.gather(*(send_callback(stack, t) for t in topups))
        assert answers == [200] * 40

        async def slow_calls() -> int:
            _, recorded = await sim(stack, "GET", "/sim/acquiring/requests?provider=kapital")
            return sum(1 for r in recorded["requests"] if r["operation"] == "status")

        wallet: list[int] = []
        deadline = asyncio.get_running_loop().time() + WAIT_S
        # The wallet keeps calling while the acquirer is slow to answer the checks.
        while len(wallet) < 20 or await slow_calls() < 2:
            assert asyncio.get_running_loop().time() < deadline, "no status call came"
            status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
            wallet.append(status)
        assert set(wallet) == {200}, wallet
    finally:
        await sim(stack, "DELETE", "/sim/acquiring/faults")


# ---- 4. open top-ups count against the balance cap --------------------------------------

async def test_open_topups_count_against_the_balance_cap(stack: Stack) -> None:
    """The NONE level's cap is 50 MCI (196,600.00): one open top-up of 150,000.00 leaves
    no room for a second, nor for a deposit of 50,000.00."""
    customer = new_customer()
    first = await create(stack, "halyk-epay", "150000.00", customer)
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": customer,
            "provider": "kapital", "amount": "150000.00"}
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 409 and answer["error"]["code"] == "LIMIT_EXCEEDED", answer
    status, answer = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                                {"depositId": "d-" + uuid.uuid4().hex[:12],
                                 "amount": "50000.00"}, token=DEPOSIT_TOKEN)
    assert status == 409 and answer["error"]["code"] == "LIMIT_EXCEEDED", answer
    # Once the first is over unpaid, its amount is free again.
    await expire_now(stack, first["topupId"])
    await wait_for(stack, first["topupId"], "EXPIRED")
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 201, answer


async def test_concurrent_topups_never_lift_the_balance_over_the_cap(stack: Stack) -> None:
    customer = new_customer()
    await deposit(stack, customer, "1.00")

    async def one() -> int:
        status, _ = await call(stack, "POST", "/v1/topups", {
            "topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": customer,
            "provider": "halyk-epay", "amount": "15000.00"})
        return status

    statuses = await asyncio.gather(*(one() for _ in range(20)))
    assert set(statuses) <= {201, 409}, statuses
    # 1.00 + 13 x 15,000.00 = 195,001.00 fits under 196,600.00; a 14th would not.
    assert statuses.count(201) == 13, statuses


# ---- 5. another currency is never credited as tenge --------------------------------------

# Kaspi's QR API takes tenge only, and its status names no currency.
@pytest.mark.parametrize(("provider", "currency"), [("halyk-epay", "USD"), ("kapital", "840")])
async def test_status_in_another_currency_is_never_credited(stack: Stack, provider: str,
                                                            currency: str) -> None:
    topup = await create(stack, provider, "500.00")
    alarms = metric_value("mpp_money_alarms_total", kind="topup_currency_mismatch")
    status, paid = await sim(stack, "POST", "/sim/acquiring/pay", {
        "paymentUrl": topup["paymentUrl"], "outcome": "success", "callback": "send",
        "chargedCurrency": currency})
    assert status == 200 and paid["status"] == "PAID", paid
    failed = await wait_for(stack, topup["topupId"], "FAILED")
    assert failed["failureReason"].startswith("CURRENCY_MISMATCH"), failed
    await counted("mpp_money_alarms_total", alarms + 1, kind="topup_currency_mismatch")
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 0


# ---- 6. one order per topupId, a maximum per top-up ---------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
async def test_twenty_identical_creates_at_once_place_one_order(stack: Stack,
                                                                provider: str) -> None:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": provider, "amount": "300.00"}
    await acquirer_fault(stack, provider, "create", "late_answer", delay_ms=300)
    answers = await asyncio.gather(*(call(stack, "POST", "/v1/topups", body)
                                     for _ in range(20)))
    assert {s for s, _ in answers} <= {200, 201, 503}, answers
    assert [s for s, _ in answers].count(201) == 1, answers
    status, shown = await call(stack, "GET", f"/v1/topups/{body['topupId']}")
    assert status == 200 and shown["status"] == "CREATED", shown
    # Our name at the acquirer: Halyk's invoiceID; Kapital's description, Kaspi's
    # ExternalId carry the topupId.
    named = shown["providerOrderId"] if provider == "halyk-epay" else body["topupId"]
    status, found = await sim(stack, "GET", f"/sim/acquiring/orders?provider={provider}"
                                            f"&mentioning={named}")
    assert status == 200 and [o["placements"] for o in found["orders"]] == [1], found


async def test_topup_over_topup_max_amount_is_refused(stack: Stack) -> None:
    customer = new_customer()
    status, _ = await call(stack, "PUT", f"/v1/accounts/{customer}/identification",
                           {"level": "FULL"}, token=DEPOSIT_TOKEN)
    assert status == 200
    topup_id = "tu-" + uuid.uuid4().hex[:16]
    status, answer = await call(stack, "POST", "/v1/topups", {
        "topupId": topup_id, "customerId": customer, "provider": "halyk-epay",
        "amount": "10000000000000.00"})
    assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR", answer
    assert "TOPUP_MAX_AMOUNT" in answer["error"]["message"]
    status, _ = await call(stack, "GET", f"/v1/topups/{topup_id}")
    assert status == 404
