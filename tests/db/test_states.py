"""The database refuses a status move its table does not list (sql/functions/states.sql),
whoever writes it, and each status column accepts every declared status."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from mpp_server import db
from mpp_server.db import Conn
from mpp_server.domain.outcomes import MACHINES, PaymentStatus, TopupStatus
from tests.support.helpers import new_customer
from tests.support.schema import allowed_values


async def _new_payment(conn: Conn, status: str) -> str:
    payment_id = "st-" + uuid.uuid4().hex[:12]
    await conn.execute(
        "INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn, "
        "merchant) VALUES ($1, $2, 'Static', $3, 100, '{}')",
        payment_id, new_customer(), status)
    return payment_id


async def test_a_payment_cannot_skip_its_debit(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        payment_id = await _new_payment(conn, PaymentStatus.SCANNED)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError,
                           match="illegal payment status move: SCANNED -> COMPLETED"):
            await conn.execute("UPDATE payments SET status = 'COMPLETED' "
                               "WHERE payment_id = $1", payment_id)
        assert await conn.fetchval("SELECT status FROM payments WHERE payment_id = $1",
                                   payment_id) == "SCANNED"


async def test_a_final_payment_never_moves_again(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        payment_id = await _new_payment(conn, PaymentStatus.SCANNED)
        assert await conn.fetchval("SELECT payment_expire($1, 'SCANNED')", payment_id)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError,
                           match="EXPIRED -> SCANNED"):
            await conn.execute("UPDATE payments SET status = 'SCANNED' "
                               "WHERE payment_id = $1", payment_id)


async def test_a_record_starts_only_in_its_first_status(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError,
                           match=r"illegal payment status move: \(new\) -> PENDING"):
            await _new_payment(conn, PaymentStatus.PENDING)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError,
                           match=r"illegal topup status move: \(new\) -> CREDITED"):
            await conn.execute(
                "INSERT INTO topups (topup_id, customer_id, provider, amount_tiyn, status, "
                "expires_at, next_check_at, credited_at) VALUES ($1, $2, 'kapital', 100, "
                "$3, now(), now(), now())", "st-" + uuid.uuid4().hex[:12], new_customer(),
                TopupStatus.CREDITED)


@pytest.mark.parametrize("machine", sorted(MACHINES))
async def test_each_status_column_accepts_every_declared_status(pool: db.Pool,
                                                                 machine: str) -> None:
    enum, table = MACHINES[machine]
    async with pool.acquire() as conn:
        allowed = await allowed_values(conn, table, "status")
    assert allowed == {status.value for status in enum}
