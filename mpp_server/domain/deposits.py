"""Deposits: money entering a wallet from the bank's core (`POST .../deposits`), once per
depositId. Each deposit owns its transaction (the ledger's functions run inside it)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from mpp_server.domain import accounts, ledger
from mpp_server.domain.limits import Limits
from mpp_server.errors import IdempotencyConflict


@dataclass(frozen=True)
class Deposit:
    customer_id: str
    balance_tiyn: int
    created: bool


async def deposit(pool: asyncpg.Pool, deposit_id: str, customer_id: str,
                  amount_tiyn: int, limits: Limits) -> Deposit:
    """Credit a customer from the funding account, once per depositId; refused with
    LimitExceeded, nothing written, when it would lift the balance over the cap of the
    customer's identification level (balance_cap_exceeded, sql/functions/accounts.sql)."""
    async with pool.acquire() as conn, conn.transaction():
        # The advisory lock serializes the same depositId across processes, so the
        # duplicate waits and then sees the first one's transfer.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 42))",
                           deposit_id)
        existing = await conn.fetchrow(
            """SELECT t.amount_tiyn, a.customer_id FROM transfers t
               JOIN accounts a ON a.id = t.credit_account_id
               WHERE t.kind = 'deposit' AND t.reference = $1""", deposit_id)
        if existing is not None:
            if existing["customer_id"] != customer_id or existing["amount_tiyn"] != amount_tiyn:
                raise IdempotencyConflict(
                    f"depositId {deposit_id!r} was already used with another customer or amount")
            balance = await ledger.customer_account(conn, customer_id)
            assert balance is not None
            return Deposit(customer_id, balance[1], created=False)
        account_id = await ledger.ensure_customer_account(conn, customer_id)
        await accounts.refuse_over_balance_cap(conn, account_id, amount_tiyn, limits,
                                               "deposit")
        funding = await ledger.system_account(conn, "funding", deposit_id)
        await ledger.transfer(conn, "deposit", deposit_id, funding, account_id, amount_tiyn)
        balance = await ledger.customer_account(conn, customer_id)
        assert balance is not None
        return Deposit(customer_id, balance[1], created=True)
