"""Deposits: money entering a wallet from the bank's core (`POST .../deposits`), once per
depositId (deposit_apply, sql/functions/deposits.sql: the idempotency idiom of
docs/design.md, "Idempotency")."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from mpp_server.domain import ledger
from mpp_server.domain.accounts import balance_cap_refusal
from mpp_server.domain.limits import Limits
from mpp_server.domain.outcomes import DepositOutcome
from mpp_server.errors import IdempotencyConflict


@dataclass(frozen=True)
class Deposit:
    customer_id: str
    balance_tiyn: int  # right after this deposit: a repeat answers the same
    created: bool


async def deposit(pool: asyncpg.Pool, deposit_id: str, customer_id: str,
                  amount_tiyn: int, limits: Limits) -> Deposit:
    """Credit a customer from the funding account, once per depositId; refused with
    LimitExceeded, nothing written, when it would lift the balance over the cap of the
    customer's identification level."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM deposit_apply($1, $2, $3, $4, $5)",
                                  deposit_id, customer_id, amount_tiyn,
                                  ledger.shard_for(deposit_id), limits.sql_arg)
    assert row is not None
    outcome = DepositOutcome(row["outcome"])
    if outcome is DepositOutcome.CONFLICT:
        raise IdempotencyConflict(
            f"depositId {deposit_id!r} was already used with another customer or amount")
    if outcome is DepositOutcome.LIMIT_EXCEEDED:
        raise balance_cap_refusal(limits, row["level"], "deposit")
    return Deposit(customer_id, row["balance_tiyn"],
                   created=outcome is DepositOutcome.DEPOSITED)
