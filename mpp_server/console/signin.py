"""Signing in with a password, and out; each one transaction with its journal row.

Five failed sign-ins in a row lock the login for 15 minutes: while it is locked the
password is not even checked (a correct one is refused too), and the count starts again
after it. An unknown or disabled login is refused like a wrong password, in about the
same time (console/operators.py verify_password), and journaled as typed. The password
hash is checked before any transaction opens: no lock is held for the (slow) hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from mpp_server import audit
from mpp_server.audit import Action, Actor, Via
from mpp_server.console import operators, sessions
from mpp_server.console.sessions import Session, SignedInBy

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)


class Refusal(StrEnum):
    WRONG = "wrong_login_or_password"  # unknown, disabled, or the wrong password
    LOCKED = "locked"                  # too many failures: wait, or ask an admin


@dataclass(frozen=True)
class SignedIn:
    token: str  # the session cookie's value


@dataclass(frozen=True)
class Refused:
    why: Refusal
    locked_until: datetime | None = None


async def sign_in(pool: asyncpg.Pool, typed_login: str, password: str,
                  source_ip: str | None) -> SignedIn | Refused:
    login = audit.printable(operators.normalize_login(typed_login))[:100]
    async with pool.acquire() as conn:
        operator = await operators.by_login(conn, login) if len(login) <= 64 else None
    where = {"source_ip": source_ip}
    if operator is None or operator["disabled"]:
        await operators.verify_password(None, password)
        reason = "unknown_login" if operator is None else "disabled"
        await _journal_refusal(pool, login or "(empty)", None if operator is None
                               else operator["id"], {"reason": reason, **where})
        return Refused(Refusal.WRONG)
    if operator["locked"]:
        await _journal_refusal(pool, login, operator["id"], {"reason": "locked", **where})
        return Refused(Refusal.LOCKED, operator["locked_until"])
    matches, rehash = await operators.verify_password(operator["password_hash"], password)
    if not matches:
        return await _count_failure(pool, operator, where)
    new_hash = await operators.hash_password(password) if rehash else None
    async with pool.acquire() as conn, conn.transaction():
        # Disabled or locked since it was read (by a concurrent failure): refused.
        still = await conn.fetchrow(
            """UPDATE operators SET failed_sign_ins = 0, last_sign_in_at = now(),
                      password_hash = coalesce($2, password_hash)
                WHERE id = $1 AND disabled_at IS NULL
                  AND (locked_until IS NULL OR locked_until <= now())
               RETURNING id""", operator["id"], new_hash)
        if still is not None:
            token = await sessions.create(conn, operator["id"], SignedInBy.PASSWORD,
                                          source_ip)
            await audit.append(conn, Actor(login, Via.CONSOLE, operator["id"]),
                                 Action.SIGN_IN, f"operator:{login}",
                                 {"method": SignedInBy.PASSWORD.value, **where})
            return SignedIn(token)
    await _journal_refusal(pool, login, operator["id"], {"reason": "changed", **where})
    return Refused(Refusal.WRONG)


async def _count_failure(pool: asyncpg.Pool, operator: asyncpg.Record,
                         where: dict[str, str | None]) -> Refused:
    """One more failure; the fifth locks the login (and the count starts again)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE operators
                  SET failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= $2 THEN 0
                                             ELSE failed_sign_ins + 1 END,
                      locked_until = CASE WHEN failed_sign_ins + 1 >= $2
                                          THEN now() + make_interval(secs => $3)
                                          ELSE locked_until END
                WHERE id = $1
               RETURNING failed_sign_ins, locked_until,
                         coalesce(locked_until > now(), false) AS locked""",
            operator["id"], MAX_FAILURES, LOCKOUT.total_seconds())
        assert row is not None
        failures = MAX_FAILURES if row["locked"] else row["failed_sign_ins"]
        await audit.append(conn, Actor(operator["login"], Via.CONSOLE, operator["id"]),
                             Action.SIGN_IN_FAILED, f"operator:{operator['login']}",
                             {"reason": "wrong_password", "failures": failures,
                              "locked": bool(row["locked"]), **where})
    if row["locked"]:
        return Refused(Refusal.LOCKED, row["locked_until"])
    return Refused(Refusal.WRONG)


async def _journal_refusal(pool: asyncpg.Pool, login: str, operator_id: int | None,
                           details: dict[str, str | None]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await audit.append(conn, Actor(login, Via.CONSOLE, operator_id),
                             Action.SIGN_IN_FAILED, f"operator:{login}",
                             details)


async def sign_out(pool: asyncpg.Pool, session: Session, source_ip: str | None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await sessions.end(conn, session)
        await audit.append(conn, Actor(session.login, Via.CONSOLE, session.operator_id),
                             Action.SIGN_OUT, f"operator:{session.login}",
                             {"source_ip": source_ip})
