"""The customer's account as the wallet shows it: balance and identification level, the
statement, and setting the level (docs/money.md, "Identification, limits and the
statement").

The statement is the ledger's own entries on the customer's account (each carries the
balance after it), not a copy. Its cursor is the entry id, and that is safe while
postings are written concurrently: every entry of a customer's account is written by
ledger_transfer while it holds the account's row lock (FOR UPDATE, to its commit), and
takes its id from the sequence only after it got the lock. So for one account, a later
entry has a larger id *and* its transaction began writing only after every earlier
entry had committed: whatever a reader's snapshot sees of an account is a prefix of its
entries in id order, and an entry committed later always sorts after any cursor already
handed out. (It relies on entries_id_seq handing out ids in call order, CACHE 1, which
tests/db/test_accounts.py checks.) A cursor beyond the account's last entry is refused
(mpp_server/cursors.py): an entry written later could get a smaller id than it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mpp_server import cursors
from mpp_server.db import Conn
from mpp_server.domain.limits import BALANCE, Level, Limits
from mpp_server.errors import LimitExceeded, NotFound
from mpp_server.metrics import LIMIT_REFUSALS

# transfers.kind -> the statement's type and the id field its reference fills. Every
# kind the transfers table allows must be here (tests/db/test_accounts.py checks it). A
# refund to the card is debited as `topup_refund` and, when the acquirer finally refuses
# it, returned as `topup_refund` too (a positive amount), both under the refund's id.
STATEMENT_TYPES: dict[str, tuple[str, str]] = {
    "deposit": ("deposit", "depositId"),
    "topup": ("topup", "topupId"),
    "topup_refund": ("topup_refund", "refundId"),
    "topup_refund_return": ("topup_refund", "refundId"),
    "payment_debit": ("payment", "paymentId"),
    "payment_return": ("payment_return", "paymentId"),
    "refund_credit": ("refund", "refundId"),
}


@dataclass(frozen=True)
class Account:
    customer_id: str
    balance_tiyn: int
    level: Level


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    type: str
    amount_tiyn: int  # signed: a debit is negative
    balance_after_tiyn: int
    ids: dict[str, str]  # paymentId / refundId / depositId / topupId
    created_at: datetime


async def get(pool: asyncpg.Pool, customer_id: str) -> Account:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT balance_tiyn, identification_level FROM accounts WHERE customer_id = $1",
            customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id[:4]}… has no account")
    return Account(customer_id, row["balance_tiyn"], Level(row["identification_level"]))


async def set_level(conn: Conn, customer_id: str, level: Level) -> Level:
    """Set the level the bank's core identified the customer at (the deposit-token API;
    an operator in the console, in the transaction that journals it). An account that
    does not exist yet is created (empty, at that level): the bank may identify a
    customer before their first deposit, and the deposit then meets the right balance
    cap. The update takes the account's row lock, the lock every debit checks its limits
    under, so the next confirm sees the new level."""
    stored: str = await conn.fetchval(
        """INSERT INTO accounts (kind, customer_id, identification_level,
                                 identification_changed_at)
           VALUES ('customer', $1, $2, now())
           ON CONFLICT (customer_id) DO UPDATE
              SET identification_level = EXCLUDED.identification_level,
                  identification_changed_at = CASE
                      WHEN accounts.identification_level = EXCLUDED.identification_level
                      THEN accounts.identification_changed_at ELSE now() END
           RETURNING identification_level""", customer_id, level.value)
    return Level(stored)


# The statement's lines of one account ($1): the entries with their transfer, and for a
# refund the payment it refunds.
_LINES = """SELECT e.id, e.amount_tiyn, e.balance_after_tiyn, t.kind, t.reference,
                   t.created_at, r.payment_id AS refunded_payment_id
              FROM entries e
              JOIN transfers t ON t.id = e.transfer_id
              LEFT JOIN refunds r ON t.kind = 'refund_credit' AND r.refund_id = t.reference
             WHERE e.account_id = $1"""


async def _account_id(conn: Conn, customer_id: str) -> int:
    account_id: int | None = await conn.fetchval(
        "SELECT id FROM accounts WHERE customer_id = $1", customer_id)
    if account_id is None:
        raise NotFound(f"customer {customer_id[:4]}… has no account")
    return account_id


async def statement(pool: asyncpg.Pool, customer_id: str, after_id: int,
                    limit: int) -> tuple[list[StatementLine], str]:
    """The account's postings after the cursor (an entry id), oldest first, and the cursor
    that follows them (the same cursor when there are none yet: poll with it)."""
    async with pool.acquire() as conn:
        account_id = await _account_id(conn, customer_id)
        rows = await conn.fetch(_LINES + " AND e.id > $2 ORDER BY e.id LIMIT $3",
                                account_id, after_id, limit)
        if not rows:
            last: int = await conn.fetchval(
                "SELECT coalesce(max(id), 0) FROM entries WHERE account_id = $1", account_id)
            cursors.refuse_beyond_end(after_id, last, "the account's statement")
    lines = [_line(r) for r in rows]
    return lines, str(lines[-1].entry_id if lines else after_id)


async def statement_newest(conn: Conn, customer_id: str, before_id: int | None,
                           limit: int) -> list[StatementLine]:
    """The same lines newest first, before an entry id (the operators' console pages
    back through them)."""
    rows = await conn.fetch(
        _LINES + " AND ($2::bigint IS NULL OR e.id < $2) ORDER BY e.id DESC LIMIT $3",
        await _account_id(conn, customer_id), before_id, limit)
    return [_line(r) for r in rows]


def _line(row: asyncpg.Record) -> StatementLine:
    line_type, id_field = STATEMENT_TYPES[row["kind"]]
    ids = {id_field: row["reference"]}
    if row["refunded_payment_id"] is not None:
        ids["paymentId"] = row["refunded_payment_id"]  # a refund: of which payment
    return StatementLine(row["id"], line_type, row["amount_tiyn"], row["balance_after_tiyn"],
                         ids, row["created_at"])


def balance_cap_refusal(limits: Limits, level: str, credit: str) -> LimitExceeded:
    """The refusal of a credit (a deposit, a top-up: `credit` names it) that would lift the
    balance over the cap of the customer's level (customer_credit_check,
    sql/functions/accounts.sql), counted; the SQL step recorded nothing."""
    LIMIT_REFUSALS.labels(BALANCE, level).inc()
    return LimitExceeded(f"the {credit} would lift the balance over "
                         f"{limits.describe(level, BALANCE)}; nothing was recorded")
