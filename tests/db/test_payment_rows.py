"""The payments table's bookkeeping columns (migration 023): open_until is set while a
payment is open to a confirm and cleared by every step that closes it, so the expiry sweep
finds only open payments; a PENDING payment always has its notify outbox row, where the
PENDING gauge and the console find it; and no index names a column Kaspi's answer
changes, so PostgreSQL can write that update in place (HOT, docs/performance.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from mpp_server import db
from mpp_server.db import Conn
from mpp_server.domain import deposits, ledger, payments
from mpp_server.domain.limits import parse_limits
from tests.support.helpers import new_customer

MERCHANT = json.dumps({"merchantId": "1", "merchantName": "M", "merchantMCC": "5812"})
AMOUNT = 50_000
# What apply_notify_answer_once's last update assigns (sql/functions/notify.sql).
ANSWER_WRITES = {"status", "link_receipt", "kaspi_result_code", "kaspi_result_message",
                 "kaspi_acknowledged", "updated_at"}


async def _scanned(conn: Conn, customer: str, qr_type: str = "Dynamic") -> str:
    payment_id = "row-" + uuid.uuid4().hex[:16]
    until = datetime.now(UTC) + timedelta(minutes=5)
    await conn.execute(
        "SELECT s.created FROM payment_scanned($1, $2, $3, $4, $5, $6::text::jsonb, NULL, "
        "'ru-RU') s",
        payment_id, customer, qr_type, AMOUNT, until, MERCHANT)
    assert await _open_until(conn, payment_id) == until
    return payment_id


async def _open_until(conn: Conn, payment_id: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT open_until FROM payments WHERE payment_id = $1", payment_id)
    return value


async def _confirm(conn: Conn, payment_id: str, customer: str) -> str:
    outcome, _ = await payments.confirm_statement(conn, payment_id, customer, None, None, 0,
                                                  "{}", 0)
    return outcome


async def _cancel(conn: Conn, payment_id: str, customer: str) -> str:
    outcome: str = await conn.fetchval(
        "SELECT outcome FROM payment_cancel($1, 'CANCELLED_BY_CLIENT', 'm', 0)", payment_id)
    return outcome


async def _expire(conn: Conn, payment_id: str, customer: str) -> str:
    moved = await conn.fetchval("SELECT payment_expire($1, 'SCANNED')", payment_id)
    return "EXPIRED" if moved else "NOT MOVED"


async def _checkout_refused(conn: Conn, payment_id: str, customer: str) -> str:
    outcome: str = await conn.fetchval(
        "SELECT outcome FROM payment_checkout_refused($1, 'PROCESS_FAIL', 'm')", payment_id)
    return outcome


Step = Callable[[Conn, str, str], Awaitable[str]]


@pytest.mark.parametrize(("step", "funded", "expected", "status"), [
    (_confirm, True, "DEBITED", "PENDING"),
    (_confirm, False, "INSUFFICIENT_FUNDS", "DECLINED"),
    (_cancel, True, "CANCELLED", "CANCELLED"),
    (_expire, True, "EXPIRED", "EXPIRED"),
    (_checkout_refused, True, "FAILED", "FAILED"),
], ids=["debit", "decline", "cancel", "expire", "checkout-refused"])
async def test_every_step_that_closes_a_payment_clears_open_until(
        pool: db.Pool, step: Step, funded: bool, expected: str, status: str) -> None:
    customer = new_customer()
    if funded:
        await deposits.deposit(pool, "dep-" + uuid.uuid4().hex, customer, 10 * AMOUNT,
                               parse_limits("{}", 1))
    async with pool.acquire() as conn:
        payment_id = await _scanned(conn, customer)
        assert await step(conn, payment_id, customer) == expected
        row = await conn.fetchrow(
            "SELECT status, open_until, EXISTS (SELECT FROM notify_outbox o "
            "WHERE o.payment_id = p.payment_id) AS staged FROM payments p "
            "WHERE payment_id = $1", payment_id)
    assert row is not None
    assert (row["status"], row["open_until"]) == (status, None)
    if status == "PENDING":
        assert row["staged"], "a PENDING payment without its outbox row"


async def test_checkout_moves_open_until_with_kaspis_new_deadline(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        payment_id = await _scanned(conn, new_customer(), "Custom")
        later = datetime.now(UTC) + timedelta(minutes=30)
        assert await conn.fetchval(
            "SELECT outcome FROM payment_checkout($1, $2, $3, '{}')",
            payment_id, AMOUNT, later) == "CHECKED_OUT"
        assert await _open_until(conn, payment_id) == later


async def test_the_sweep_expires_an_open_payment_past_its_deadline_only(
        pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        stale, fresh = await _scanned(conn, new_customer()), await _scanned(conn, new_customer())
        await conn.execute("UPDATE payments SET can_confirm_until = now() - interval '1 s', "
                           "open_until = now() - interval '1 s' WHERE payment_id = $1", stale)
        assert await conn.fetchval("SELECT payments_expire_stale()") >= 1
        rows = await conn.fetch(
            "SELECT payment_id, status FROM payments WHERE payment_id = ANY($1::text[])",
            [stale, fresh])
        statuses = {row["payment_id"]: row["status"] for row in rows}
    assert statuses == {stale: "EXPIRED", fresh: "SCANNED"}


async def test_no_index_names_a_column_kaspis_answer_changes(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.relname AS index, a.attname AS col
                 FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0
                WHERE i.indrelid = 'payments'::regclass
                  AND (a.attnum = ANY (i.indkey)
                       OR pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M')
                       OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\\m' || a.attname || '\\M'))""")
    named = {(row["index"], row["col"]) for row in rows}
    assert named, "the catalog query found no index at all"
    assert {(index, col) for index, col in named if col in ANSWER_WRITES} == set()


async def test_kaspis_answer_is_written_in_place(pool: db.Pool) -> None:
    """The answer's update is HOT when the page has room (fillfactor 90 leaves it): counted
    in the answer's own transaction."""
    customer = new_customer()
    await deposits.deposit(pool, "dep-" + uuid.uuid4().hex, customer, 10 * AMOUNT,
                           parse_limits("{}", 1))
    async with pool.acquire() as conn:
        payment_id = await _scanned(conn, customer)
        assert await _confirm(conn, payment_id, customer) == "DEBITED"
        counts = ("SELECT pg_stat_get_xact_tuples_updated('payments'::regclass), "
                  "pg_stat_get_xact_tuples_hot_updated('payments'::regclass)")
        async with conn.transaction():
            # This backend's counts not yet reported to the statistics: read before and
            # after, the difference is the answer's.
            before = await conn.fetchrow(counts)
            assert await conn.fetchval(
                "SELECT outcome FROM apply_notify_answer_once($1, 'SUCCESS', 'SUCCESS', "
                "'m', 'https://r', $2)", payment_id, ledger.shard_for(payment_id)) \
                == "COMPLETED"
            after = await conn.fetchrow(counts)
    assert before is not None and after is not None
    updated, hot = after[0] - before[0], after[1] - before[1]
    assert (updated, hot) == (1, 1)
