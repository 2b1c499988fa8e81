"""Top-ups by card through the simulator's acquirers (Halyk ePay, Kapital, Kaspi
e-commerce), over real HTTP, on real PostgreSQL: credited once, only on the acquirer's
status API; refunds to the card through the outbox; bad input writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from mpp_server import db
from mpp_server.acquirers import kapital as kapital_client
from mpp_server.domain import ledger
from tests.support.helpers import (
    call,
    confirmed,
    counted,
    metric_value,
    new_customer,
    new_qr,
    scan,
    sim,
)
from tests.support.stack import DEPOSIT_TOKEN, Stack, running_stack
from tests.support.topups import (
    PROVIDERS,
    REFUNDABLE,
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
    transfers,
    wait_for,
    wait_refund,
)

pytestmark = pytest.mark.usefixtures(no_acquirer_faults.__name__)


# ---- credited once, on the status API only ---------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("callback", ["send", "twice", "skip"])
async def test_paid_topup_is_credited_once(stack: Stack, provider: str, callback: str) -> None:
    """One callback, two, or none (the status poller finds it): credited exactly once."""
    topup = await create(stack, provider, "1500.00")
    paid = await pay(stack, topup, "success", callback)
    assert paid["status"] == "PAID"
    done = await wait_for(stack, topup["topupId"], "CREDITED")
    assert done["creditedAt"] and done["amount"] == "1500.00"
    assert done["refundedAmount"] == "0.00"
    # Late callbacks after the credit change nothing.
    assert await send_callback(stack, topup) == 200
    await pay(stack, topup, "success", "twice")
    assert (await sim_order(stack, topup))["status"] == "PAID"
    assert await account_balance(stack, topup["customerId"]) == "1500.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 1
    assert await event_types(stack, topup["topupId"]) == ["topup.credited"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_declined_topup_fails_with_the_acquirers_reason(stack: Stack,
                                                              provider: str) -> None:
    topup = await create(stack, provider, "700.00")
    await pay(stack, topup, "decline", "send")
    failed = await wait_for(stack, topup["topupId"], "FAILED")
    assert failed["failureReason"]
    assert "creditedAt" not in failed
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 0
    assert await event_types(stack, topup["topupId"]) == ["topup.failed"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unpaid_topup_expires_when_its_session_ends(stack: Stack, provider: str) -> None:
    topup = await create(stack, provider, "300.00")
    # The session's end, moved to now (the setting is minutes long): the last check finds
    # it unpaid.
    async with stack.pool.acquire() as conn:
        await conn.execute("UPDATE topups SET expires_at = now(), next_check_at = now() "
                           "WHERE topup_id = $1", topup["topupId"])
    expired = await wait_for(stack, topup["topupId"], "EXPIRED")
    assert expired["failureReason"] == "EXPIRED"
    assert (await sim_order(stack, topup))["statusChecks"] >= 1
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 0
    assert await event_types(stack, topup["topupId"]) == ["topup.failed"]


@pytest.mark.parametrize(("provider", "ends"), [("kapital", "EXPIRED"),
                                                ("kaspi-ecom", "FAILED")])
async def test_session_the_acquirer_ends_expires_the_topup(stack: Stack, provider: str,
                                                          ends: str) -> None:
    """Kapital says EXPIRED; Kaspi's expired link is Error, as a declined one."""
    topup = await create(stack, provider, "300.00")
    status, _ = await sim(stack, "POST", "/sim/acquiring/expire",
                          {"paymentUrl": topup["paymentUrl"]})
    assert status == 200
    await wait_for(stack, topup["topupId"], ends)
    assert await transfers(stack, "topup", topup["topupId"]) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_forged_success_callback_credits_nothing(stack: Stack, provider: str) -> None:
    topup = await create(stack, provider, "999.00")
    before = metric_value("mpp_topup_callback_disagreements_total", provider=provider)
    assert await send_callback(stack, topup) == 200
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while metric_value("mpp_topup_callback_disagreements_total", provider=provider) <= before:
        assert asyncio.get_running_loop().time() < deadline, "the callback was never checked"
        await asyncio.sleep(0.05)
    status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
    assert status == 200 and shown["status"] == "CREATED"
    assert (await sim_order(stack, topup))["status"] == "NEW"
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 0
    assert await event_types(stack, topup["topupId"]) == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_twenty_concurrent_callbacks_credit_once(stack: Stack, provider: str) -> None:
    topup = await create(stack, provider, "2000.00")
    await pay(stack, topup, "success", "skip")
    answers = await asyncio.gather(*(send_callback(stack, topup) for _ in range(20)))
    assert answers == [200] * 20
    await wait_for(stack, topup["topupId"], "CREDITED")
    assert await account_balance(stack, topup["customerId"]) == "2000.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 1
    assert await event_types(stack, topup["topupId"]) == ["topup.credited"]


# Kaspi's link is made for one amount in tenge, and its status names none to compare.
@pytest.mark.parametrize("provider", REFUNDABLE)
async def test_paid_another_amount_credits_nothing_and_raises_the_alarm(
        stack: Stack, provider: str) -> None:
    topup = await create(stack, provider, "1500.00")
    alarms = metric_value("mpp_money_alarms_total", kind="topup_amount_mismatch")
    status, paid = await sim(stack, "POST", "/sim/acquiring/pay", {
        "paymentUrl": topup["paymentUrl"], "outcome": "success", "callback": "send",
        "chargedAmount": "1400.00"})
    assert status == 200 and paid["status"] == "PAID"
    failed = await wait_for(stack, topup["topupId"], "FAILED")
    assert failed["failureReason"].startswith("AMOUNT_MISMATCH")
    await counted("mpp_money_alarms_total", alarms + 1, kind="topup_amount_mismatch")
    assert await account_balance(stack, topup["customerId"]) == "0.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 0


async def test_status_without_answer_never_expires_and_credits_once_it_answers(
        stack: Stack) -> None:
    """Past the session's end, a status API that does not answer leaves the top-up
    CREATED (the card may be charged); when it answers again, it is credited."""
    topup = await create(stack, "halyk-epay", "450.00")
    await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": "halyk-epay", "operation": "status", "mode": "http500", "times": 1000})
    await pay(stack, topup, "success", "skip")
    async with stack.pool.acquire() as conn:
        await conn.execute("UPDATE topups SET expires_at = now(), next_check_at = now() "
                           "WHERE topup_id = $1", topup["topupId"])

    async def failed_checks() -> int:
        async with stack.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, checks, last_check_error FROM topups "
                                      "WHERE topup_id = $1", topup["topupId"])
        assert row is not None and row["status"] == "CREATED", dict(row or {})
        return int(row["checks"]) if row["last_check_error"] == "HTTP_500" else 0

    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await failed_checks() < 3:
        assert asyncio.get_running_loop().time() < deadline, "no failed checks"
        await asyncio.sleep(0.05)
    await sim(stack, "DELETE", "/sim/acquiring/faults")
    await wait_for(stack, topup["topupId"], "CREDITED")
    assert await account_balance(stack, topup["customerId"]) == "450.00"
    assert await transfers(stack, "topup", topup["topupId"]) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_status_call_timing_out_is_asked_again(stack: Stack, provider: str) -> None:
    topup = await create(stack, provider, "80.00")
    # Past ACQUIRER_TIMEOUT_MS (1 s in the tests), on this top-up's calls only.
    await acquirer_fault(stack, provider, "status", "timeout", 2, 3000,
                         topup["providerOrderId"])
    await pay(stack, topup, "success", "send")
    await wait_for(stack, topup["topupId"], "CREDITED")
    assert metric_value("mpp_acquirer_calls_total", provider=provider, operation="status",
                  outcome="TIMEOUT") >= 1
    assert await transfers(stack, "topup", topup["topupId"]) == 1


async def test_halyk_token_expiring_mid_run_is_refreshed(stack: Stack) -> None:
    async def token_calls() -> int:
        _, recorded = await sim(stack, "GET", "/sim/acquiring/requests?provider=halyk-epay")
        return sum(1 for r in recorded["requests"] if r["operation"] == "token")

    topup = await create(stack, "halyk-epay", "1200.00")
    fetched = await token_calls()
    status, expired = await sim(stack, "POST", "/sim/acquiring/tokens/expire")
    assert status == 200 and expired["expired"] >= 1
    await pay(stack, topup, "success", "send")
    await wait_for(stack, topup["topupId"], "CREDITED")
    assert await token_calls() > fetched  # a 401, a new token, the call again
    # And a token that expires between two calls (the acquirer's fault) is refreshed too.
    second = await create(stack, "halyk-epay", "100.00", topup["customerId"])
    status, _ = await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": "halyk-epay", "operation": "status", "mode": "expired_token"})
    assert status == 200
    await pay(stack, second, "success", "send")
    await wait_for(stack, second["topupId"], "CREDITED")
    assert await account_balance(stack, topup["customerId"]) == "1300.00"


async def test_kapital_xml_is_utf8_without_bom_with_its_content_type(stack: Stack) -> None:
    topup = await create(stack, "kapital", "1500.00")
    assert "ORDERID=" in topup["paymentUrl"] and "SESSIONID=" in topup["paymentUrl"]
    await pay(stack, topup, "success", "send")
    await wait_for(stack, topup["topupId"], "CREDITED")
    _, recorded = await sim(stack, "GET", "/sim/acquiring/requests?provider=kapital")
    ours = [r for r in recorded["requests"] if topup["topupId"] in r["body"]
            or topup["providerOrderId"] in r["body"]]
    assert {r["operation"] for r in ours} >= {"create", "status"}
    for request in ours:
        assert request["contentType"] == "text/xml; charset=utf-8"
        assert request["bom"] is False and not request["bodyHead"].startswith("efbbbf")
        assert request["body"].startswith("<?xml version='1.0' encoding='utf-8'?>")
    created = next(r for r in ours if r["operation"] == "create")["body"]
    assert "<Amount>150000</Amount>" in created and "<Currency>398</Currency>" in created
    assert "Пополнение кошелька" in created  # Cyrillic, as UTF-8
    assert not kapital_client.encode(kapital_client.request_xml("GetOrderStatus")[0]).startswith(
        b"\xef\xbb\xbf")


async def test_order_not_created_answers_503_and_a_repeat_creates_it(stack: Stack) -> None:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "halyk-epay", "amount": "50.00"}
    await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": "halyk-epay", "operation": "create", "mode": "http500"})
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 503 and answer["error"]["code"] == "ACQUIRER_UNAVAILABLE"
    status, kept = await call(stack, "GET", f"/v1/topups/{body['topupId']}")
    assert status == 200 and kept["status"] == "CREATED" and "paymentUrl" not in kept
    status, again = await call(stack, "POST", "/v1/topups", body)
    assert status == 200 and again["paymentUrl"]
    status, same = await call(stack, "POST", "/v1/topups", body)
    assert status == 200 and same["paymentUrl"] == again["paymentUrl"]
    status, other = await call(stack, "POST", "/v1/topups", {**body, "amount": "51.00"})
    assert status == 409 and other["error"]["code"] == "IDEMPOTENCY_CONFLICT"


# ---- money back to the card ---------------------------------------------------------

@pytest.mark.parametrize("provider", REFUNDABLE)
async def test_refunds_partial_then_full_never_more_than_credited(stack: Stack,
                                                                  provider: str) -> None:
    topup = await credited(stack, provider, "1500.00")
    customer = topup["customerId"]
    status, first = await refund(stack, topup, "500.00", "rf-a-" + topup["topupId"])
    assert status == 201 and first["status"] == "COMPLETED", first
    assert await account_balance(stack, customer) == "1000.00"
    status, over = await refund(stack, topup, "1000.01")
    assert status == 409 and over["error"]["code"] == "REFUND_EXCEEDS_CREDITED"
    assert await account_balance(stack, customer) == "1000.00"
    status, repeat = await refund(stack, topup, "500.00", "rf-a-" + topup["topupId"])
    assert status == 200 and repeat["status"] == "COMPLETED"
    status, conflict = await refund(stack, topup, "400.00", "rf-a-" + topup["topupId"])
    assert status == 409 and conflict["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    status, rest = await refund(stack, topup, "1000.00")
    assert status == 201 and rest["status"] == "COMPLETED"
    assert await account_balance(stack, customer) == "0.00"
    status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
    assert shown["refundedAmount"] == "1500.00" and shown["status"] == "CREDITED"
    order = await sim_order(stack, topup)
    assert sum(r["amountTiyn"] for r in order["refunds"]) == 150000
    if provider == "kapital":  # partial on the day: Refund, never Reverse
        assert [r["operation"] for r in order["refunds"]] == ["Refund", "Refund"]
    assert await transfers(stack, "topup_refund", first["refundId"]) == 1


async def test_refund_answers_the_acquirers_answer_however_eager_the_worker(
        isolated_db: str) -> None:
    """The request tells the acquirer itself, right after staging. The refund worker
    (here polling every 10 ms) took the just-staged row first now and then, and the
    request answered PENDING though the acquirer answered at once; the request's claim
    commits with the staging and keeps the worker off the row."""
    pool = await db.create_pool(isolated_db, min_size=1, max_size=4)
    try:
        async with running_stack(isolated_db, pool, TOPUP_POLL_INTERVAL_MS="10") as eager:
            topup = await credited(eager, "halyk-epay", "200.00")
            answers = [await refund(eager, topup, "10.00") for _ in range(20)]
    finally:
        await pool.close()
    assert [(status, answer["status"]) for status, answer in answers] == [
        (201, "COMPLETED")] * 20


async def test_kapital_full_refund_on_the_day_is_a_reverse(stack: Stack) -> None:
    topup = await credited(stack, "kapital", "800.00")
    status, answer = await refund(stack, topup, "800.00")
    assert status == 201 and answer["status"] == "COMPLETED"
    assert answer["operation"] == "Reverse"
    assert [r["operation"] for r in (await sim_order(stack, topup))["refunds"]] == ["Reverse"]
    assert await account_balance(stack, topup["customerId"]) == "0.00"


async def test_refund_the_wallet_cannot_cover_is_refused(stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "1500.00")
    customer = topup["customerId"]
    qr = await new_qr(stack, "Dynamic", amount="1000.00")
    payment = (await scan(stack, qr["qrCode"], customer))["payment"]
    await confirmed(stack, payment["paymentId"], customer)
    status, answer = await refund(stack, topup, "1500.00")
    assert status == 409 and answer["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert await account_balance(stack, customer) == "500.00"
    status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
    assert shown["refundedAmount"] == "0.00"
    assert (await sim_order(stack, topup))["refunds"] == []


async def test_refund_without_answer_is_retried_until_the_acquirer_answers(
        stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "600.00")
    await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": "halyk-epay", "operation": "refund", "mode": "http500", "times": 3})
    status, answer = await refund(stack, topup, "600.00")
    # An unanswered attempt may have been done: UNKNOWN, until the acquirer's books say.
    assert status == 201 and answer["status"] == "UNKNOWN"
    assert await account_balance(stack, topup["customerId"]) == "0.00"  # debited first
    await wait_refund(stack, topup, answer["refundId"], "COMPLETED")
    assert len((await sim_order(stack, topup))["refunds"]) == 1


@pytest.mark.parametrize("provider", REFUNDABLE)
async def test_refund_the_acquirer_refuses_returns_the_money(stack: Stack,
                                                             provider: str) -> None:
    topup = await credited(stack, provider, "900.00")
    await sim(stack, "POST", "/sim/acquiring/faults", {
        "provider": provider, "operation": "refund", "mode": "refuse"})
    status, answer = await refund(stack, topup, "300.00")
    assert status == 201 and answer["status"] == "REFUSED" and answer["reason"]
    assert await account_balance(stack, topup["customerId"]) == "900.00"
    status, shown = await call(stack, "GET", f"/v1/topups/{topup['topupId']}")
    assert shown["refundedAmount"] == "0.00"
    assert await transfers(stack, "topup_refund_return", answer["refundId"]) == 1
    # The money is back, so it can be refunded again.
    status, again = await refund(stack, topup, "900.00")
    assert status == 201 and again["status"] == "COMPLETED"


async def test_refund_of_an_uncredited_or_kaspi_topup_is_refused(stack: Stack) -> None:
    pending = await create(stack, "halyk-epay", "100.00")
    status, answer = await refund(stack, pending, "100.00")
    assert status == 409 and answer["error"]["code"] == "INVALID_STATE"
    kaspi = await credited(stack, "kaspi-ecom", "100.00")
    status, answer = await refund(stack, kaspi, "100.00")
    assert status == 409 and answer["error"]["code"] == "INVALID_STATE"
    assert await account_balance(stack, kaspi["customerId"]) == "100.00"
    status, answer = await refund(stack, {"topupId": "no-such-topup"}, "1.00")
    assert status == 404


# ---- bad input: 422, nothing written -----------------------------------------------

@pytest.mark.parametrize("change", [
    {"provider": "visa-direct"}, {"amount": "0.00"}, {"amount": "-5.00"}, {"amount": -5},
    {"amount": "10.005"}, {"provider": "kaspi-ecom", "amount": "10.50"},
    {"customerId": "1234567890123"}, {"topupId": ""}, {"extra": 1},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
async def test_bad_topup_is_refused_with_nothing_written(stack: Stack,
                                                         change: dict[str, Any]) -> None:
    body = {"topupId": "tu-" + uuid.uuid4().hex[:16], "customerId": new_customer(),
            "provider": "halyk-epay", "amount": "10.00", **change}
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR", answer
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM topups WHERE topup_id = $1",
                                   body["topupId"]) == 0
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE customer_id = $1",
                                   body["customerId"]) == 0


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b'{"topupId": '])
async def test_topup_body_that_is_not_a_json_object_is_refused(stack: Stack,
                                                               raw: bytes) -> None:
    async with stack.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM topups")
    status, answer = await call(stack, "POST", "/v1/topups", raw=raw)
    assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR"
    status, answer = await call(stack, "POST", "/v1/topups/x/refunds", raw=raw)
    assert status == 422
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM topups") == before
        assert await conn.fetchval("SELECT count(*) FROM topup_refunds WHERE topup_id = 'x'") == 0


@pytest.mark.parametrize("amount", ["0.00", "-1.00", "1.001"])
async def test_bad_refund_amount_is_refused_with_nothing_written(stack: Stack,
                                                                 amount: str) -> None:
    topup = await credited(stack, "halyk-epay", "100.00")
    status, answer = await refund(stack, topup, amount)
    assert status == 422 and answer["error"]["code"] == "VALIDATION_ERROR"
    assert await account_balance(stack, topup["customerId"]) == "100.00"
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM topup_refunds WHERE topup_id = $1",
                                   topup["topupId"]) == 0


# ---- the books ---------------------------------------------------------------------

async def test_books_balance_with_the_clearing_accounts(stack: Stack) -> None:
    """After everything above: the ledger's invariants hold, and each acquirer's clearing
    account is exactly minus what its top-ups credited net of refunds kept."""
    await credited(stack, "kapital", "10.00")
    async with stack.pool.acquire() as conn:
        report = await ledger.check_invariants(conn)
        assert report.ok, report
        rows = await conn.fetch("""
            SELECT t.provider,
                   (SELECT coalesce(sum(balance_tiyn), 0) FROM accounts
                     WHERE kind = 'acquirer_clearing_' || replace(t.provider, '-', '_'))
                     AS clearing,
                   sum(t.amount_tiyn - t.refunded_tiyn) FILTER (WHERE t.status = 'CREDITED')
                     AS kept
            FROM topups t GROUP BY t.provider""")
    for row in rows:
        assert row["clearing"] == -(row["kept"] or 0), dict(row)


# ---- limits and the statement (the accounts issue wired to top-ups) -----------------

async def test_topup_over_the_balance_cap_is_refused_with_nothing_written(
        stack: Stack) -> None:
    """The default NONE cap is 50 MCI (196,600.00 KZT): a card top-up over it is refused
    before the acquirer hears of it; once the bank identified the customer, it passes."""
    customer = new_customer()
    topup_id = "tu-" + uuid.uuid4().hex[:16]
    body = {"topupId": topup_id, "customerId": customer, "provider": "halyk-epay",
            "amount": "196600.01"}
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 409 and answer["error"]["code"] == "LIMIT_EXCEEDED", answer
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM topups WHERE topup_id = $1",
                                   topup_id) == 0
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE customer_id = $1",
                                   customer) == 0
    status, answer = await call(stack, "PUT", f"/v1/accounts/{customer}/identification",
                                {"level": "FULL"}, token=DEPOSIT_TOKEN)
    assert status == 200, answer
    status, answer = await call(stack, "POST", "/v1/topups", body)
    assert status == 201 and answer["status"] == "CREATED", answer


async def test_statement_shows_topups_and_refunds_to_the_card(stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "1000.00")
    status, answer = await refund(stack, topup, "400.00", "rf-st-" + uuid.uuid4().hex[:8])
    assert status in (200, 201, 202), answer
    await wait_refund(stack, topup, answer["refundId"], "COMPLETED")
    status, statement = await call(stack, "GET",
                                   f"/v1/accounts/{topup['customerId']}/statement")
    assert status == 200, statement
    lines = [(e["type"], e["amount"], e["balanceAfter"], e.get("topupId"), e.get("refundId"))
             for e in statement["entries"]]
    assert lines == [("topup", "1000.00", "1000.00", topup["topupId"], None),
                     ("topup_refund", "-400.00", "600.00", None, answer["refundId"])]
