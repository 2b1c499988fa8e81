"""What Kaspi answers to notifyPayment, at the edges: over-long, NUL and lone-surrogate
text still decides the payment (the defect counted); an unreadable answer, or a failure
while applying one, is counted and retried with backoff, never a 500."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from mpp_server import db
from tests.support.helpers import (
    balance,
    confirm,
    confirmed,
    counted,
    fault,
    metric_value,
    scanned_payment,
    wait_status,
)
from tests.support.stack import Stack, running_stack


async def stored_answer(stack: Stack, payment_id: str) -> asyncpg.Record:
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, kaspi_result_code, kaspi_result_message, link_receipt, "
            "kaspi_acknowledged FROM payments WHERE payment_id = $1", payment_id)
    assert row is not None
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
async def test_final_decline_with_over_long_message_decides_the_payment(stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    # Kaspi repeats the same answer: without the fix it was "no answer", for ever.
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("PROCESS_FAIL", "m" * 300))
    counted = defects("resultMessage", "too_long")
    await confirmed(stack, payment_id, customer, wanted="DECLINED")
    assert await balance(stack, customer) == "100.00"  # the debit returned
    row = await stored_answer(stack, payment_id)
    assert row["kaspi_result_code"] == "PROCESS_FAIL"
    assert row["kaspi_result_message"] == "m" * 256
    assert defects("resultMessage", "too_long") == counted + 1


@pytest.mark.usefixtures("clean_faults")
async def test_success_with_over_long_link_completes_without_the_link(stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "success", "https://r.kaspi.kz/" + "a" * 2100))
    counted = defects("linkReceipt", "too_long")
    body = await confirmed(stack, payment_id, customer)
    assert "linkReceipt" not in body
    assert await balance(stack, customer) == "90.00"
    assert defects("linkReceipt", "too_long") == counted + 1


@pytest.mark.usefixtures("clean_faults")
async def test_success_with_over_long_message_keeps_a_usable_link(stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    link = "https://receipt-test.kaspi.kz/web?extTranId=QR1"
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "s" * 1000, link))
    body = await confirmed(stack, payment_id, customer)
    assert body["linkReceipt"] == link
    assert (await stored_answer(stack, payment_id))["kaspi_result_message"] == "s" * 256


@pytest.mark.usefixtures("clean_faults")
async def test_nul_in_link_receipt_completes_without_the_link(stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("SUCCESS", "ok\\u0000", "https://r\\u0000x"))
    counted = defects("linkReceipt", "unstorable")
    body = await confirmed(stack, payment_id, customer)
    assert "linkReceipt" not in body
    row = await stored_answer(stack, payment_id)
    assert row["kaspi_result_message"] == "ok\ufffd" and row["link_receipt"] is None
    assert defects("linkReceipt", "unstorable") == counted + 1
    assert await balance(stack, customer) == "90.00"


@pytest.mark.usefixtures("clean_faults")
async def test_lone_surrogate_in_decline_message_is_sanitised_and_decides(stack: Stack) -> None:
    customer, payment_id = await scanned_payment(stack)
    await fault(stack, "notifyPayment", "replace_answer", 20,
                rawBody=answer_text("RISK_REJECT", "risk \\ud800 rejected"))
    await confirmed(stack, payment_id, customer, wanted="DECLINED")
    assert (await stored_answer(stack, payment_id))["kaspi_result_message"] == (
        "risk \ufffd rejected")
    assert await balance(stack, customer) == "100.00"


async def outbox_row(stack: Stack, payment_id: str) -> asyncpg.Record | None:
    async with stack.pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT attempts, last_error FROM notify_outbox WHERE payment_id = $1",
            payment_id)
    return row


@pytest.mark.usefixtures("clean_faults")
@pytest.mark.parametrize("extra", ["1" * 5000, "[" * 30_000 + "]" * 30_000],
                         ids=["5000-digit integer", "nested 30000 deep"])
async def test_unreadable_answer_is_counted_and_waits_its_backoff(stack: Stack,
                                                                  extra: str) -> None:
    customer, payment_id = await scanned_payment(stack)
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
            customer, payment_id = await scanned_payment(stack)
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
            # The worker counts its attempt after the row's update commits.
            await counted("mpp_notify_retries_total", retried + 2, at_least=True,
                          reason="INTERNAL_ERROR")
            async with stack.http.delete(stack.sim_url + "/sim/faults"):
                pass
            await wait_status(stack, payment_id, "COMPLETED")
            assert await balance(stack, customer) == "90.00"
    finally:
        await pool.close()
