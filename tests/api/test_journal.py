"""The exchange journal (issue 26): every exchange with Kaspi and the acquirers, each
attempt, in both directions, is a row with its ids, bodies, status or transport error,
duration and request id; secrets and card data never reach it; customer ids do, as the
protocol carries them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mpp_server.journal import Direction, Exchange, Journal, Refs, Started
from mpp_server.metrics import REGISTRY
from tests.api.test_topups import create, credited, pay, refund, wait_for
from tests.support.helpers import complete_payment, fault, journal_rows, new_customer, sim
from tests.support.stack import Stack


async def test_payment_exchanges_with_kaspi_are_journaled(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "12.00")
    payment_id = done["paymentId"]
    rows = await journal_rows(stack, "payment_id", payment_id, 2)
    scan, notify = rows
    assert (scan["direction"], scan["counterparty"], scan["operation"]) == (
        Direction.OUT, "kaspi", "scan")
    assert scan["http_status"] == 200 and scan["transport_error"] is None
    assert scan["target"].startswith("POST http") and scan["target"].endswith("/qr/scan")
    # Customer ids as the protocol carries them (the journal is read by the console and
    # the database only).
    assert customer in scan["request_body"] and payment_id in scan["response_body"]
    assert notify["operation"] == "notifyPayment" and notify["http_status"] == 200
    assert '"SUCCESS"' in notify["request_body"] and customer in notify["request_body"]
    assert '"resultCode":"SUCCESS"' in notify["response_body"].replace(" ", "")
    assert len(notify["request_id"]) == 32 and notify["request_id"] != scan["request_id"]
    assert scan["duration_ms"] >= 0 and scan["occurred_at"] <= notify["occurred_at"]


@pytest.mark.usefixtures("clean_faults")
async def test_every_notify_attempt_is_a_row_with_its_transport_error(stack: Stack) -> None:
    await fault(stack, "notifyPayment", "timeout", 1, delayMs=1500)  # outlasts 1 s
    done = await complete_payment(stack, new_customer(), "13.00")
    rows = await journal_rows(stack, "payment_id", done["paymentId"], 3)
    attempts = [r for r in rows if r["operation"] == "notifyPayment"]
    assert [(r["http_status"], r["transport_error"]) for r in attempts] == [
        (None, "TIMEOUT"), (200, None)]
    assert attempts[0]["response_body"] is None and attempts[0]["duration_ms"] >= 900


async def test_inbound_refund_is_journaled_with_our_answer(stack: Stack) -> None:
    customer = new_customer()
    done = await complete_payment(stack, customer, "20.00")
    status, answer = await sim(stack, "POST", "/sim/refunds",
                               {"paymentId": done["paymentId"], "amount": "5.00"})
    assert status == 200 and answer["resultCode"] == "SUCCESS", answer
    [row] = await journal_rows(stack, "refund_id", answer["refundId"], 1)
    assert (row["direction"], row["counterparty"], row["operation"]) == (
        Direction.IN, "kaspi", "refund")
    assert row["payment_id"] == done["paymentId"] and row["http_status"] == 200
    assert row["target"] == "POST /refund" and row["request_id"]
    assert customer in row["request_body"] and "SUCCESS" in row["response_body"]
    # The inbound request log masks the customer; the journal keeps it.
    async with stack.pool.acquire() as conn:
        logged = await conn.fetchval("SELECT body_masked FROM inbound_requests "
                                     "WHERE body_masked LIKE '%' || $1 || '%'",
                                     answer["refundId"])
    assert customer not in logged


async def test_unreadable_refund_is_journaled_without_ids(stack: Stack) -> None:
    marker = "unreadable-" + uuid.uuid4().hex
    async with stack.http.post(stack.kaspi_url + "/refund", data=b'{"' + marker.encode(),
                               headers={"X-Request-ID": marker[:64]}) as resp:
        assert resp.status == 400
    [row] = await journal_rows(stack, "request_id", marker[:64], 1)
    assert row["http_status"] == 400 and row["payment_id"] is None
    assert marker in row["request_body"] and "PARAM_ILLEGAL" in row["response_body"]


async def test_halyk_exchanges_are_journaled_with_secrets_redacted(stack: Stack) -> None:
    topup = await create(stack, "halyk-epay", "300.00")
    await pay(stack, topup)
    await wait_for(stack, topup["topupId"], "CREDITED")
    rows = await journal_rows(stack, "topup_id", topup["topupId"], 3)
    operations = {r["operation"] for r in rows}
    assert {"create", "status", "callback"} <= operations, operations
    assert all(r["counterparty"] == "halyk-epay" for r in rows)
    [callback] = [r for r in rows if r["operation"] == "callback"]
    assert callback["direction"] == Direction.IN and callback["http_status"] == 200
    async with stack.pool.acquire() as conn:
        tokens = await conn.fetch("SELECT * FROM exchange_journal WHERE counterparty = "
                                  "'halyk-epay' AND operation = 'token'")
    assert tokens, "the token call is a row too"
    settings = stack.runtime.settings
    for row in [*rows, *tokens]:
        text = " ".join(str(row[c]) for c in ("target", "request_body", "response_body"))
        assert settings.halyk_epay_client_secret not in text
    assert all("client_secret=[REDACTED]" in t["request_body"] for t in tokens)
    assert all('"access_token":"[REDACTED]"' in t["response_body"] for t in tokens
               if t["http_status"] == 200)


async def test_kapital_callback_is_journaled_under_its_topup(stack: Stack) -> None:
    """Kapital's callback names only its own OrderId: the row carries our topupId."""
    topup = await create(stack, "kapital", "400.00")
    await pay(stack, topup)
    await wait_for(stack, topup["topupId"], "CREDITED")
    rows = await journal_rows(stack, "topup_id", topup["topupId"], 3)
    [callback] = [r for r in rows if r["operation"] == "callback"]
    assert topup["providerOrderId"] in callback["target"] + (callback["request_body"] or "")
    create_row = next(r for r in rows if r["operation"] == "create")
    assert create_row["request_body"].startswith("<?xml") and "<TKKPG>" in (
        create_row["response_body"])


async def test_refund_to_the_card_is_journaled_with_its_refund_id(stack: Stack) -> None:
    topup = await credited(stack, "halyk-epay", "250.00")
    refund_id = "rf-j-" + uuid.uuid4().hex[:12]
    status, answer = await refund(stack, topup, "50.00", refund_id)
    assert status == 201, answer
    rows = await journal_rows(stack, "refund_id", refund_id, 1)
    assert [(r["operation"], r["topup_id"]) for r in rows if r["operation"] == "refund"] == [
        ("refund", topup["topupId"])]


# ---- the recorder itself -------------------------------------------------------------

def _exchange(marker: str) -> Exchange:
    return Exchange(Direction.OUT, "webhook", "deliver", Started(), 3, refs=Refs(
        payment_id=marker), request_id=marker[:64], http_status=204, request_body="{}")


def _rows(name: str) -> float:
    return REGISTRY.get_sample_value("mpp_exchange_journal_rows_total",
                                     {"outcome": name}) or 0.0


async def _count(pool: Any, marker: str) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM exchange_journal WHERE payment_id = $1", marker)
    return count


async def test_a_full_queue_drops_and_counts_and_close_writes_the_rest(stack: Stack) -> None:
    journal = Journal(stack.pool, max_rows=2)
    marker = "full-" + uuid.uuid4().hex
    dropped_before, written_before = _rows("queue_full"), _rows("written")
    for _ in range(3):
        journal.record(_exchange(marker))
    assert journal.queued() == 2 and _rows("queue_full") == dropped_before + 1
    await journal.close()  # never started: close alone writes what is queued
    assert await _count(stack.pool, marker) == 2 and journal.queued() == 0
    assert _rows("written") == written_before + 2
