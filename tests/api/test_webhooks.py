"""Webhooks to the wallet backend (issue 25): every event POSTed to WEBHOOK_URL, signed
the Standard Webhooks way (checked with the reference verifier), at least once, retried
with backoff, given up after WEBHOOK_MAX_AGE_S and replayed by the command.

Each test runs its own server and simulator on a database of its own, with a real
receiver on a real port (tests/support/webhooks.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import jsonschema_rs

from mpp_server import db
from mpp_server.metrics import REGISTRY
from tests.support.helpers import (
    complete_payment,
    confirm,
    deposit,
    drain_events,
    journal_rows,
    new_customer,
    new_qr,
    payment,
    scan,
    sim_refund,
)
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import HANG, Receiver, always, failing_first

# Quick retries, so a test sees several attempts in a second or two.
QUICK = {"WEBHOOK_BACKOFF_INITIAL_MS": "100", "WEBHOOK_BACKOFF_MAX_MS": "400",
         "WEBHOOK_TIMEOUT_MS": "1000", "WEBHOOK_POLL_INTERVAL_MS": "50"}


@asynccontextmanager
async def webhook_stack(database_url: str, receiver: Receiver,
                        **env: str) -> AsyncIterator[Stack]:
    pool = await db.create_pool(database_url, min_size=1, max_size=4)
    try:
        async with running_stack(database_url, pool, WEBHOOK_URL=receiver.url,
                                 WEBHOOK_SECRET=receiver.secret, **{**QUICK, **env}) as stack:
            yield stack
    finally:
        await pool.close()


async def deliveries(stack: Stack) -> dict[int, asyncpg.Record]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM webhook_deliveries")
    return {row["event_id"]: row for row in rows}


async def wait_deliveries(stack: Stack, wanted: Callable[[dict[int, asyncpg.Record]], bool],
                          what: str, timeout_s: float = 20.0) -> dict[int, asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        rows = await deliveries(stack)
        if wanted(rows):
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"{what}: {dict(rows)}"
        await asyncio.sleep(0.05)


def all_delivered(count: int) -> Callable[[dict[int, asyncpg.Record]], bool]:
    return lambda rows: len(rows) == count and all(
        r["status"] == "DELIVERED" for r in rows.values())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def kazakh_payment_refunded(stack: Stack, customer: str) -> tuple[str, str]:
    """A payment made in kk-KZ, then partly refunded by Kaspi: (paymentId, refundId)."""
    await deposit(stack, customer, "100.00")
    qr = await new_qr(stack, "Dynamic", amount="40.00", merchantName="Coffee <Bar>")
    scanned = await scan(stack, qr["qrCode"], customer, headers={"X-Locale": "kk-KZ"})
    payment_id = scanned["payment"]["paymentId"]
    status, paid = await confirm(stack, payment_id, customer)
    assert status == 200 and paid["status"] == "COMPLETED", paid
    refund = await sim_refund(stack, payment_id, "15.00")
    assert refund["resultCode"] == "SUCCESS", refund
    return payment_id, refund["refundId"]


async def test_every_event_is_posted_signed_with_its_receipt_in_the_customers_language(
        isolated_db: str) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        async with webhook_stack(isolated_db, receiver) as stack:
            customer = new_customer()
            payment_id, refund_id = await kazakh_payment_refunded(stack, customer)
            await receiver.wait_for(lambda: len(receiver.accepted_ids()) == 2, "2 webhooks")
            feed, _ = await drain_events(stack, "0")
            shown = await payment(stack, payment_id)
            async with stack.http.get(stack.wallet_url + "/openapi.json") as resp:
                described = await resp.json()
    finally:
        await receiver.stop()
    assert all(r.verified for r in receiver.received)
    schema = described["webhooks"]["event"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": described["components"]}, validate_formats=True)
    assert all(validator.is_valid(r.payload) for r in receiver.received)  # as described
    by_type = {r.payload["type"]: r for r in receiver.received}
    assert set(by_type) == {"payment.completed", "refund.credited"}
    for event in feed:  # the feed and the webhooks say the same, the id is the webhook-id
        hook = by_type[event["type"]]
        assert hook.webhook_id == str(event["id"])
        assert hook.payload["data"] == event
        assert hook.payload["timestamp"] == event["createdAt"]
    completed = by_type["payment.completed"].payload["data"]
    assert completed["linkReceipt"] == shown["linkReceipt"]
    assert completed["linkReceipt"].endswith("&locale=kk")
    assert completed["merchantName"] == "Coffee <Bar>" and completed["amount"] == "40.00"
    refunded = by_type["refund.credited"].payload["data"]
    assert refunded["refundId"] == refund_id and refunded["amount"] == "15.00"
    assert refunded["linkReceipt"].endswith("&locale=kk")
    assert shown["refunds"] == [{"refundId": refund_id, "amount": "15.00",
                                 "createdAt": shown["refunds"][0]["createdAt"],
                                 "linkReceipt": refunded["linkReceipt"]}]


async def test_a_receiver_that_fails_twice_then_accepts_gets_the_same_webhook_three_times(
        isolated_db: str) -> None:
    receiver = Receiver(plan=failing_first(2, status=500))
    await receiver.start()
    failed_before = sample("mpp_webhook_attempts_total", result="HTTP_500")
    delivered_before = sample("mpp_webhook_deliveries_total", outcome="delivered")
    try:
        async with webhook_stack(isolated_db, receiver) as stack:
            paid = await complete_payment(stack, new_customer(), "10.00")
            rows = await wait_deliveries(stack, all_delivered(1), "delivered")
            # Each attempt is a row of the exchange journal (issue 26), the payment's
            # calls to Kaspi before them: scan, notifyPayment, then the three POSTs.
            journaled = await journal_rows(stack, "payment_id", paid["paymentId"], 5)
    finally:
        await receiver.stop()
    (event_id, row), = rows.items()
    tries = receiver.by_id()[str(event_id)]
    assert [t.answered for t in tries] == [500, 500, 200]
    posts = [r for r in journaled if r["counterparty"] == "webhook"]
    assert [(r["operation"], r["http_status"], r["request_id"]) for r in posts] == [
        ("deliver", status, str(event_id)) for status in (500, 500, 200)]
    assert posts[0]["request_body"].encode() == tries[0].body
    assert len({t.body for t in tries}) == 1 and all(t.verified for t in tries)
    assert row["attempts"] == 3 and row["last_result"] == "HTTP_500"
    assert sample("mpp_webhook_attempts_total", result="HTTP_500") == failed_before + 2
    assert sample("mpp_webhook_deliveries_total", outcome="delivered") == delivered_before + 1


async def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_back(
        isolated_db: str) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    async with webhook_stack(isolated_db, receiver) as stack:
        for _ in range(3):
            await complete_payment(stack, new_customer(), "10.00")
        await wait_deliveries(stack, lambda rows: len(rows) == 3 and all(
            r["attempts"] >= 3 and r["last_result"] == "CONNECTION_ERROR"
            for r in rows.values()), "three refused attempts each")
        await receiver.start()
        try:
            rows = await wait_deliveries(stack, all_delivered(3), "delivered")
        finally:
            await receiver.stop()
    assert receiver.accepted_ids() == {str(event_id) for event_id in rows}
    assert len(receiver.received) == 3  # nothing reached it while it was down


async def test_a_receiver_slower_than_the_timeout_is_tried_again(isolated_db: str) -> None:
    receiver = Receiver(plan=lambda webhook_id, n: HANG if n == 1 else 204)
    await receiver.start()
    timeouts_before = sample("mpp_webhook_attempts_total", result="TIMEOUT")
    try:
        async with webhook_stack(isolated_db, receiver, WEBHOOK_TIMEOUT_MS="300") as stack:
            await complete_payment(stack, new_customer(), "10.00")
            rows = await wait_deliveries(stack, all_delivered(1), "delivered")
    finally:
        await receiver.stop()
    (event_id, row), = rows.items()
    assert [t.answered for t in receiver.by_id()[str(event_id)]] == [HANG, 204]
    assert row["attempts"] == 2 and row["last_result"] == "TIMEOUT"
    assert sample("mpp_webhook_attempts_total", result="TIMEOUT") == timeouts_before + 1


def run_command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpp_server", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "DATABASE_URL": database_url})


async def test_a_delivery_given_up_after_max_age_is_alerted_and_replayed_by_the_command(
        isolated_db: str) -> None:
    receiver = Receiver(plan=always(503))
    await receiver.start()
    given_up_before = sample("mpp_webhook_deliveries_total", outcome="given_up")
    try:
        async with webhook_stack(isolated_db, receiver, WEBHOOK_MAX_AGE_S="2") as stack:
            await complete_payment(stack, new_customer(), "10.00")
            rows = await wait_deliveries(stack, lambda rows: len(rows) == 1 and all(
                r["status"] == "GIVEN_UP" for r in rows.values()), "given up")
            (event_id, row), = rows.items()
            assert row["last_result"] == "HTTP_503" and row["attempts"] >= 3
            assert (sample("mpp_webhook_deliveries_total", outcome="given_up")
                    == given_up_before + 1)
            listed = await asyncio.to_thread(run_command, isolated_db, "webhooks", "list")
            assert listed.returncode == 0 and f"{event_id}\tpayment.completed" in listed.stdout

            receiver.plan = always(200)
            replayed = await asyncio.to_thread(run_command, isolated_db, "webhooks",
                                               "replay", str(event_id))
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            rows = await wait_deliveries(stack, all_delivered(1), "delivered after replay")
            unknown = await asyncio.to_thread(run_command, isolated_db, "webhooks",
                                              "replay", "987654321")
    finally:
        await receiver.stop()
    assert rows[event_id]["replays"] == 1
    assert receiver.accepted_ids() == {str(event_id)}
    assert len({r.body for r in receiver.received}) == 1  # the same webhook, replayed
    assert unknown.returncode == 1 and "no webhook delivery" in unknown.stdout


async def test_without_a_webhook_url_deliveries_wait_and_the_feed_still_works(
        stack: Stack) -> None:
    """The session's server has no WEBHOOK_URL: an event's delivery is staged with it
    (in its transaction) and waits; nothing is sent."""
    done = await complete_payment(stack, new_customer(), "10.00")
    feed, _ = await drain_events(stack, "0")
    assert any(e["type"] == "payment.completed" and e["paymentId"] == done["paymentId"]
               for e in feed)
    async with stack.pool.acquire() as conn:
        event_id = await conn.fetchval(
            "SELECT id FROM events WHERE payment_id = $1 AND type = 'payment.completed'",
            done["paymentId"])
        staged = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE event_id = $1",
                                     event_id)
    assert staged is not None and staged["status"] == "PENDING" and staged["attempts"] == 0

