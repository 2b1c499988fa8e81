"""Issue 14 (hardening): Kaspi's answers, inputs, credentials and configuration. Each
test failed on the code before the fix it names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from mpp_server import db
from mpp_server.devtools.launcher import Listeners, free_port
from tests.api.test_refunds import post_refund
from tests.support.helpers import (
    balance,
    call,
    complete_payment,
    confirm,
    deposit,
    fault,
    new_customer,
    new_qr,
    payment,
    scan,
    transfers_of,
    wait_status,
)
from tests.support.stack import running_stack, server_env


async def refund_at(stack: Any, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with stack.http.post(url + "/refund", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


# ---- item 8: KASPI_ALLOWED_NETWORKS ------------------------------------------------------

@pytest.mark.parametrize("networks", ["10.1.2.3/0", "127.0.0.0/8,not-a-network",
                                      "10.0.0.0/33", "::1/129"])
def test_allowed_networks_with_host_bits_or_garbage_stop_the_server(networks: str) -> None:
    # The database is unreachable on purpose: the server must stop before it tries it.
    env = {**os.environ, **server_env(f"postgresql://mpp@127.0.0.1:{free_port()}/none",
                                      "http://127.0.0.1:9", Listeners.free()),
           "KASPI_ALLOWED_NETWORKS": networks}
    done = subprocess.run([sys.executable, "-m", "mpp_server", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "KASPI_ALLOWED_NETWORKS" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


async def test_ipv4_mapped_peer_is_matched_against_ipv4_networks(
        database_url: str, pool: db.Pool) -> None:
    # A dual-stack listener: an IPv4 peer arrives as ::ffff:127.0.0.1.
    async with running_stack(database_url, pool,
                             KASPI_LISTEN=f"[::ffff:127.0.0.1]:{free_port()}") as stack:
        assert "[::ffff:127.0.0.1]" in stack.kaspi_url
        status, body = await refund_at(stack, stack.kaspi_url, {
            "customerId": new_customer(), "paymentId": "mapped-unknown",
            "refundAmount": "1.00", "refundId": "mapped-" + new_customer(),
            "linkReceipt": "https://receipt"})
    # Allowed in: a business answer (an unknown payment), not 403.
    assert status == 200, body
    assert body["result"]["resultCode"] == "PARAM_ILLEGAL"
    assert body["result"]["resultMessage"] == "unknown paymentId"


# ---- item 6: /refund's ambiguous and incomplete bodies -----------------------------------

def metric_value(name: str, **labels: str) -> float:
    from mpp_server.metrics import REGISTRY
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_refund_with_refund_amount_given_twice_is_param_illegal(stack: Any) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "50.00")
    refund_id = "dup-" + new_customer()
    raw = (f'{{"customerId": "{customer}", "paymentId": "{done["paymentId"]}", '
           f'"refundAmount": "1.00", "refundId": "{refund_id}", "linkReceipt": "l", '
           f'"refundAmount": "50.00"}}').encode()
    status, body = await post_refund(stack, raw=raw)
    assert status == 400 and body["result"]["resultCode"] == "PARAM_ILLEGAL", body
    assert "refundAmount" in body["result"]["resultMessage"]
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE refund_id = $1",
                                   refund_id) == 0
    assert await balance(stack, customer) == "0.00"


@pytest.mark.parametrize("link", [None, ""])
async def test_refund_without_link_receipt_is_credited_and_counted(
        stack: Any, link: str | None) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "30.00")
    body = {"customerId": customer, "paymentId": done["paymentId"],
            "refundAmount": "30.00", "refundId": "nolink-" + new_customer()}
    if link is not None:
        body["linkReceipt"] = link
    counted = metric_value("mpp_kaspi_defects_total", message="refund",
                           field="linkReceipt", defect="missing")
    status, answer = await post_refund(stack, body)
    assert status == 200 and answer["result"]["resultCode"] == "SUCCESS", answer
    assert await balance(stack, customer) == "30.00"
    assert await transfers_of(stack, "refund_credit", body["refundId"]) == 1
    assert metric_value("mpp_kaspi_defects_total", message="refund", field="linkReceipt",
                        defect="missing") == counted + 1
    # A repeat: the same answer, no second credit.
    assert await post_refund(stack, body) == (status, answer)
    assert await balance(stack, customer) == "30.00"


# ---- item 7: who may create money ---------------------------------------------------------

async def test_wallet_token_cannot_deposit(stack: Any) -> None:
    customer = new_customer()
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "steal-" + customer, "amount": "1000.00"})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404  # no account, no money


async def test_deposit_token_deposits_but_makes_no_wallet_calls(stack: Any) -> None:
    customer = new_customer()
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "core-" + customer, "amount": "25.00"},
                              token=stack.deposit_token)
    assert status == 201 and body["balance"] == "25.00", body
    status, body = await call(stack, "GET", f"/v1/accounts/{customer}",
                              token=stack.deposit_token)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN", body
    assert await balance(stack, customer) == "25.00"


async def test_deposit_above_deposit_max_amount_is_refused(stack: Any) -> None:
    customer = new_customer()
    limit = stack.runtime.settings.deposit_max_amount
    assert limit == "1000000.00"  # the default
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "big-" + customer, "amount": "1000000.01"},
                              token=stack.deposit_token)
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR", body
    assert "DEPOSIT_MAX_AMOUNT" in body["error"]["message"]
    status, _ = await call(stack, "GET", f"/v1/accounts/{customer}")
    assert status == 404
    # The largest deposit is far over an unidentified customer's balance cap.
    status, _ = await call(stack, "PUT", f"/v1/accounts/{customer}/identification",
                           {"level": "FULL"}, token=stack.deposit_token)
    assert status == 200
    status, body = await call(stack, "POST", f"/v1/accounts/{customer}/deposits",
                              {"depositId": "max-" + customer, "amount": limit},
                              token=stack.deposit_token)
    assert status == 201 and body["balance"] == limit, body



# ---- item 3: canConfirmUntil is enforced by the debit itself -----------------------------

async def wait_until_blocked(pool: db.Pool, text: str) -> None:
    """Until a statement containing `text` waits on a lock in this database. (Asked
    outside the lock holder's transaction: pg_stat_activity is a snapshot taken once
    per transaction.)"""
    for _ in range(400):
        waiting = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'
                 AND query LIKE '%' || $1 || '%'""", text)
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no statement with {text!r} ever waited on a lock")


@asynccontextmanager
async def confirm_waiting_on_the_account(
        stack: Any, payment_id: str, customer: str
) -> AsyncIterator[tuple[asyncpg.Connection, asyncio.Task[tuple[int, Any]]]]:
    """A confirm whose debit waits for the customer's account, which another transaction
    holds (as a concurrent refund would): it took the payment row before the deadline,
    and the deadline is checked again once the account is held. Yields the holder (roll
    it back to release) and the confirm."""
    holder = await asyncpg.connect(stack.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM accounts WHERE customer_id = $1 FOR UPDATE",
                             customer)
        confirming = asyncio.create_task(confirm(stack, payment_id, customer))
        await wait_until_blocked(stack.pool, "payment_confirm")
        yield holder, confirming
        await held.rollback()
    finally:
        await holder.close()


async def test_confirm_that_waits_past_the_deadline_is_expired_not_debited(
        stack: Any) -> None:
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="10.00", ttlSeconds=3)
    scanned = await scan(stack, qr["qrCode"], customer)
    payment_id = scanned["payment"]["paymentId"]
    async with confirm_waiting_on_the_account(stack, payment_id, customer) as (_, confirming):
        until = datetime.fromisoformat(scanned["payment"]["canConfirmUntil"])
        # Let the deadline pass while it waits.
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.1)
    status, body = await confirming
    assert status == 409 and body["error"]["code"] == "PAYMENT_EXPIRED", body
    assert await balance(stack, customer) == "100.00"
    assert await transfers_of(stack, "payment_debit", payment_id) == 0
    assert (await payment(stack, payment_id))["status"] == "EXPIRED"
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM notify_outbox WHERE payment_id = $1",
                                   payment_id) == 0


async def test_confirmed_at_is_the_clock_at_the_debit_not_the_transaction_start(
        stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    async with confirm_waiting_on_the_account(stack, payment_id, customer) as (holder,
                                                                             confirming):
        released_at = await holder.fetchval("SELECT clock_timestamp()")
    status, body = await confirming
    assert status == 200 and body["status"] == "COMPLETED", body
    async with stack.pool.acquire() as conn:
        confirmed_at = await conn.fetchval(
            "SELECT confirmed_at FROM payments WHERE payment_id = $1", payment_id)
    # The debit happened after the lock it waited for was released.
    assert confirmed_at > released_at


# ---- items 1 and 2: Kaspi's notifyPayment answers as they come -------------------------

async def pending_payment(stack: Any, amount: str = "10.00") -> tuple[str, str]:
    """A customer with 100.00 and a scanned Dynamic payment of `amount`, not confirmed."""
    customer = new_customer()
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount=amount)
    return customer, (await scan(stack, qr["qrCode"], customer))["payment"]["paymentId"]


async def stored_answer(stack: Any, payment_id: str) -> asyncpg.Record:
    async with stack.pool.acquire() as conn:
        row: asyncpg.Record = await conn.fetchrow(
            "SELECT status, kaspi_result_code, kaspi_result_message, link_receipt, "
            "kaspi_acknowledged FROM payments WHERE payment_id = $1", payment_id)
    return row


def defects(field: str, kind: str) -> float:
    return metric_value("mpp_kaspi_defects_total", message="notifyPayment", field=field,
                        defect=kind)


def answer_text(code: str, message: str, link: str | None = None) -> str:
    """A notifyPayment answer as JSON text: `message` and `link` are inserted as written,
    so JSON escapes (\\u0000, \\ud800) reach the server."""
    text = f'{{"result": {{"resultCode": "{code}", "resultMessage": "{message}"}}'
    return text + (f', "linkReceipt": "{link}"}}' if link is not None else "}")


@pytest.mark.usefixtures("clean_faults")
async def test_final_decline_with_over_long_message_decides_the_payment(stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    # Kaspi repeats the same answer: without the fix it was "no answer", for ever.
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("PROCESS_FAIL", "m" * 300))
    counted = defects("resultMessage", "too_long")
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "DECLINED", body
    assert await balance(stack, customer) == "100.00"  # the debit returned
    row = await stored_answer(stack, payment_id)
    assert row["kaspi_result_code"] == "PROCESS_FAIL"
    assert row["kaspi_result_message"] == "m" * 256
    assert defects("resultMessage", "too_long") == counted + 1


@pytest.mark.usefixtures("clean_faults")
async def test_success_with_over_long_link_completes_without_the_link(stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "success", "https://r.kaspi.kz/" + "a" * 2100))
    counted = defects("linkReceipt", "too_long")
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "COMPLETED", body
    assert "linkReceipt" not in body
    assert await balance(stack, customer) == "90.00"
    assert defects("linkReceipt", "too_long") == counted + 1


@pytest.mark.usefixtures("clean_faults")
async def test_success_with_over_long_message_keeps_a_usable_link(stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    link = "https://receipt-test.kaspi.kz/web?extTranId=QR1"
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "s" * 1000, link))
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "COMPLETED", body
    assert body["linkReceipt"] == link
    assert (await stored_answer(stack, payment_id))["kaspi_result_message"] == "s" * 256


@pytest.mark.usefixtures("clean_faults")
async def test_nul_in_link_receipt_completes_without_the_link(stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "ok\\u0000", "https://r\\u0000x"))
    counted = defects("linkReceipt", "unstorable")
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "COMPLETED", body
    assert "linkReceipt" not in body
    row = await stored_answer(stack, payment_id)
    assert row["kaspi_result_message"] == "ok\ufffd" and row["link_receipt"] is None
    assert defects("linkReceipt", "unstorable") == counted + 1
    assert await balance(stack, customer) == "90.00"


@pytest.mark.usefixtures("clean_faults")
async def test_lone_surrogate_in_decline_message_is_sanitised_and_decides(stack: Any) -> None:
    customer, payment_id = await pending_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("RISK_REJECT", "risk \\ud800 rejected"))
    status, body = await confirm(stack, payment_id, customer)
    assert status == 200 and body["status"] == "DECLINED", body
    assert (await stored_answer(stack, payment_id))["kaspi_result_message"] == (
        "risk \ufffd rejected")
    assert await balance(stack, customer) == "100.00"


async def outbox_row(stack: Any, payment_id: str) -> asyncpg.Record | None:
    async with stack.pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT attempts, last_error FROM notify_outbox WHERE payment_id = $1",
            payment_id)
    return row


@pytest.mark.usefixtures("clean_faults")
@pytest.mark.parametrize("extra", ["1" * 5000, "[" * 30_000 + "]" * 30_000],
                         ids=["5000-digit integer", "nested 30000 deep"])
async def test_unreadable_answer_is_counted_and_waits_its_backoff(stack: Any,
                                                                  extra: str) -> None:
    customer, payment_id = await pending_payment(stack)
    raw = answer_text("SUCCESS", "success")[:-1] + f', "extra": {extra}}}'
    await fault(stack, "notifyPayment", "replace_answer", 100_000, rawBody=raw)
    retried = metric_value("mpp_notify_retries_total", reason="BAD_RESPONSE")
    status, body = await confirm(stack, payment_id, customer)
    # Never a 500 after the debit: the payment as it stands.
    assert status == 200 and body["status"] == "PENDING", body
    assert await balance(stack, customer) == "90.00"
    row = await outbox_row(stack, payment_id)
    assert row is not None and row["attempts"] >= 1, row
    assert row["last_error"] == "BAD_RESPONSE"
    assert metric_value("mpp_notify_retries_total", reason="BAD_RESPONSE") >= retried + 1
    # After the lease the worker counts its attempts too (each sets the row's backoff).
    seen = row["attempts"]
    for _ in range(200):
        row = await outbox_row(stack, payment_id)
        assert row is not None
        if row["attempts"] > seen:
            break
        await asyncio.sleep(0.05)
    assert row["attempts"] > seen, row
    async with stack.http.delete(stack.sim_url + "/sim/faults"):
        pass
    await wait_status(stack, payment_id, "COMPLETED")


async def test_failure_applying_an_answer_is_counted_and_retried_never_a_500(
        isolated_db: str) -> None:
    """Whatever fails while an answer is applied (here the database itself refuses the
    update) is counted like no answer, in the confirming request and in the worker."""
    pool = await db.create_pool(isolated_db, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            await conn.execute("""
                CREATE FUNCTION test_refuse_answer() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.kaspi_result_message = 'refuse me' THEN
                        RAISE EXCEPTION 'the database refuses this answer';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER test_refuse_answer BEFORE UPDATE ON payments
                FOR EACH ROW EXECUTE FUNCTION test_refuse_answer();""")
        async with running_stack(isolated_db, pool) as stack:
            customer, payment_id = await pending_payment(stack)
            await fault(stack, "notifyPayment", "replace_answer", 100_000,
                        rawBody=answer_text("SUCCESS", "refuse me"))
            retried = metric_value("mpp_notify_retries_total", reason="INTERNAL_ERROR")
            status, body = await confirm(stack, payment_id, customer)
            assert status == 200 and body["status"] == "PENDING", body
            row = await outbox_row(stack, payment_id)
            assert row is not None and row["attempts"] >= 1, row
            assert row["last_error"].startswith("INTERNAL_ERROR"), row
            seen = row["attempts"]
            for _ in range(200):  # the worker, after the lease: counted too
                row = await outbox_row(stack, payment_id)
                assert row is not None
                if row["attempts"] > seen:
                    break
                await asyncio.sleep(0.05)
            assert row["attempts"] > seen and row["last_error"].startswith("INTERNAL_ERROR")
            assert metric_value("mpp_notify_retries_total",
                                reason="INTERNAL_ERROR") >= retried + 2
            async with stack.http.delete(stack.sim_url + "/sim/faults"):
                pass
            await wait_status(stack, payment_id, "COMPLETED")
            assert await balance(stack, customer) == "90.00"
    finally:
        await pool.close()
