"""The ledger: accounts and balanced transfers. SQL only, no HTTP.

Every function takes a connection already inside the caller's transaction, so that a
money movement commits together with the state change it belongs to.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import asyncpg

from mpp_server.db import Conn
from mpp_server.errors import InsufficientFunds

SYSTEM_SHARDS = 16


def shard_for(reference: str) -> int:
    """Spread system-account legs over shards so payments do not queue on one row."""
    return zlib.crc32(reference.encode()) % SYSTEM_SHARDS


async def system_account(conn: Conn, kind: str, reference: str) -> int:
    account_id: int = await conn.fetchval(
        "SELECT id FROM accounts WHERE kind = $1 AND shard = $2 AND customer_id IS NULL",
        kind, shard_for(reference))
    return account_id


async def transfer(conn: Conn, kind: str, reference: str, debit_account: int,
                   credit_account: int, amount_tiyn: int) -> int:
    """Move money; raises InsufficientFunds when a customer's balance would go negative
    (the caller's transaction is then aborted: callers check the balance first)."""
    assert amount_tiyn > 0, "transfers move a positive amount"
    try:
        transfer_id: int = await conn.fetchval(
            "SELECT ledger_transfer($1, $2, $3, $4, $5)",
            kind, reference, debit_account, credit_account, amount_tiyn)
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name == "customer_balance_not_negative":
            raise InsufficientFunds("insufficient funds") from exc
        raise
    return transfer_id


async def customer_account(conn: Conn, customer_id: str,
                           *, for_update: bool = False) -> tuple[int, int] | None:
    """(account id, balance) or None when the customer has no account yet."""
    row = await conn.fetchrow(
        "SELECT id, balance_tiyn FROM accounts WHERE customer_id = $1"
        + (" FOR UPDATE" if for_update else ""), customer_id)
    return None if row is None else (row["id"], row["balance_tiyn"])


async def ensure_customer_account(conn: Conn, customer_id: str) -> int:
    account_id: int = await conn.fetchval(
        """INSERT INTO accounts (kind, customer_id) VALUES ('customer', $1)
           ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
           RETURNING id""", customer_id)
    return account_id


@dataclass(frozen=True)
class InvariantReport:
    unbalanced_transfers: int
    balance_mismatches: int
    negative_customer_balances: int
    entries_sum_tiyn: int

    @property
    def ok(self) -> bool:
        return (self.unbalanced_transfers == 0 and self.balance_mismatches == 0
                and self.negative_customer_balances == 0 and self.entries_sum_tiyn == 0)


async def check_invariants(conn: Conn) -> InvariantReport:
    """The books' invariants: every transfer sums to zero, every stored balance equals
    the sum of its entries, no customer below zero, all entries sum to zero."""
    row = await conn.fetchrow("""
        SELECT
          (SELECT count(*) FROM (SELECT transfer_id FROM entries GROUP BY transfer_id
                                 HAVING sum(amount_tiyn) <> 0 OR count(*) <> 2) u) AS unbalanced,
          (SELECT count(*) FROM accounts a
             LEFT JOIN (SELECT account_id, sum(amount_tiyn) AS s FROM entries
                        GROUP BY account_id) e ON e.account_id = a.id
            WHERE a.balance_tiyn <> coalesce(e.s, 0)) AS mismatched,
          (SELECT count(*) FROM accounts WHERE kind = 'customer' AND balance_tiyn < 0)
            AS negative,
          (SELECT coalesce(sum(amount_tiyn), 0) FROM entries) AS total""")
    assert row is not None
    return InvariantReport(row["unbalanced"], row["mismatched"], row["negative"],
                           int(row["total"]))
