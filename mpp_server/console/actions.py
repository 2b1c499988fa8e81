"""What an operator does, each action one transaction with its audit journal row: the
change and the record of who made it commit together, or neither does.

The money rules are not the console's: setting an identification level is the very
function the deposit-token API calls (domain/accounts.py set_level), acknowledging a
discrepancy the one `reconcile ack` calls (reconcile/store.py acknowledge). "Try again
now" never calls Kaspi or an acquirer from the operator's request: it makes the row the
background worker takes due now (sql/functions/console.sql).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from mpp_server import audit
from mpp_server.audit import Action, Actor
from mpp_server.console import operators
from mpp_server.db import Conn
from mpp_server.domain import accounts
from mpp_server.domain.limits import Level
from mpp_server.domain.outcomes import DueNow
from mpp_server.reconcile import store

MAX_REASON_CHARS = 2000
# An admin's action on another operator (disable, unlock): (conn, actor, login).
OperatorAction = Callable[[Conn, Actor, str], Awaitable[None]]


class ActionRefused(ValueError):
    """The action cannot be done as asked (nothing was written): the message says why."""


def check_reason(reason: str) -> str:
    """A reason a person typed: kept as typed, within bounds."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise ActionRefused(f"a reason is 1-{MAX_REASON_CHARS} characters")
    if any(not (c.isprintable() or c in "\n\r\t") for c in reason):
        raise ActionRefused("a reason must not contain control characters")
    return reason


async def acknowledge_discrepancy(conn: Conn, actor: Actor, item_id: int,
                                  reason: str) -> asyncpg.Record:
    """store.NotFound, store.AlreadyResolved (nothing written)."""
    return await store.acknowledge(conn, item_id, actor, check_reason(reason))


@dataclass(frozen=True)
class Retry:
    """Work a background worker does, which an operator may make due now: the row
    (table, key; the journal's subject kind) and the SQL function (console.sql)."""

    subject: str
    what: str  # as the operator calls it
    table: str
    key: str
    due_now: str
    action: Action


NOTIFY = Retry("payment", "payment", "payments", "payment_id", "notify_due_now",
               Action.NOTIFY_RETRY)
TOPUP_CHECK = Retry("topup", "top-up", "topups", "topup_id", "topup_check_due_now",
                    Action.TOPUP_STATUS_CHECK)


async def retry_now(conn: Conn, actor: Actor, retry: Retry, row_id: str) -> DueNow | None:
    """None (nothing written) when there is no such payment or top-up."""
    async with conn.transaction():
        if not await conn.fetchval(f"SELECT 1 FROM {retry.table} WHERE {retry.key} = $1",
                                   row_id):
            return None
        outcome = DueNow(await conn.fetchval(f"SELECT {retry.due_now}($1)", row_id))
        await audit.append(conn, actor, retry.action, f"{retry.subject}:{row_id}",
                             {"outcome": outcome.value})
    return outcome


async def set_identification(conn: Conn, actor: Actor, customer_id: str, level: Level,
                             reason: str = "") -> Level:
    """The deposit-token API's rule (accounts.set_level: an unknown customer gets an
    empty account at that level), with the level before it in the journal, and the
    reason when one was given (the contract's form has only `level`)."""
    reason = check_reason(reason) if reason.strip() else ""
    async with conn.transaction():
        before = await conn.fetchval(
            "SELECT identification_level FROM accounts WHERE customer_id = $1 FOR UPDATE",
            customer_id)
        stored = await accounts.set_level(conn, customer_id, level)
        await audit.append(conn, actor, Action.IDENTIFICATION_LEVEL_SET,
                             f"customer:{customer_id}",
                             {"from": before, "to": stored.value}
                             | ({"reason": reason} if reason else {}))
    return stored


async def disable_operator(conn: Conn, actor: Actor, login: str) -> None:
    """operators.OperatorError when there is no such enabled operator."""
    async with conn.transaction():
        row = await operators.disable(conn, login)
        await audit.append(conn, actor, Action.OPERATOR_DISABLED, f"operator:{login}",
                             {"role": row["role"]})


async def unlock_operator(conn: Conn, actor: Actor, login: str) -> None:
    async with conn.transaction():
        await operators.unlock(conn, login)
        await audit.append(conn, actor, Action.OPERATOR_UNLOCKED, f"operator:{login}", {})


async def add_operator(conn: Conn, actor: Actor, login: str, role: operators.Role,
                       password_hash: str) -> int:
    async with conn.transaction():
        operator_id = await operators.add(conn, login, role, password_hash)
        await audit.append(conn, actor, Action.OPERATOR_ADDED, f"operator:{login}",
                             {"role": role.value})
    return operator_id


async def set_operator_password(conn: Conn, actor: Actor, login: str,
                                password_hash: str) -> None:
    async with conn.transaction():
        await operators.set_password(conn, login, password_hash)
        await audit.append(conn, actor, Action.OPERATOR_PASSWORD_SET, f"operator:{login}",
                             {})
