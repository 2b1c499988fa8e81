"""Operators of the console: their logins, roles and Argon2id password hashes
(sql/migrations/014_console.sql, operators). Created, disabled and listed from the
command line (console/operators_cli.py); an admin may also disable and unlock them in
the console. Never deleted: the audit journal names them."""

from __future__ import annotations

import asyncio
import re
import threading
from enum import StrEnum
from functools import cache

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mpp_server.db import Conn

LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
_LOGIN = re.compile(LOGIN_PATTERN)
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # Argon2 takes any length; an unbounded one costs us to hash

# argon2-cffi's defaults: Argon2id with RFC 9106's low-memory parameters (t=3, 64 MiB,
# p=4), written into each hash, so raising them later rehashes at the next sign-in.
_HASHER = PasswordHasher()
# Each hash holds 64 MiB while it runs: at most this many at once per process.
_HASHING = threading.BoundedSemaphore(2)


class Role(StrEnum):
    VIEWER = "viewer"      # looks at every page
    OPERATOR = "operator"  # and acts: acknowledge, retry now, set an identification level
    ADMIN = "admin"        # and manages operators (disable, unlock) and reads /operators

    def may(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class OperatorError(ValueError):
    """A login, role or password refused, or an operator that does not exist."""


def normalize_login(typed: str) -> str:
    return typed.strip().lower()


def check_login(login: str) -> str:
    if not _LOGIN.match(login):
        raise OperatorError("a login is 1-64 characters: lower-case letters, digits and "
                            "._@- (starting with a letter or digit)")
    return login


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise OperatorError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} "
                            "characters")
    if "\x00" in password:
        raise OperatorError("a password must not contain NUL")
    return password


def _hash(password: str) -> str:
    with _HASHING:
        return _HASHER.hash(password)


def _verify(stored_hash: str, password: str) -> tuple[bool, bool]:
    with _HASHING:
        try:
            _HASHER.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
    return True, _HASHER.check_needs_rehash(stored_hash)


async def hash_password(password: str) -> str:
    """In a thread: a hash takes a CPU for a good part of a second."""
    return await asyncio.to_thread(_hash, check_password(password))


async def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs a new hash). `stored_hash` None (no such login) is checked against
    a hash of nothing anyone knows, so a wrong login costs the time a wrong password
    does: the answer's timing does not tell which logins exist."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False, False
    if stored_hash is None:
        await asyncio.to_thread(_verify, await _unknown_login_hash(), password)
        return False, False
    return await asyncio.to_thread(_verify, stored_hash, password)


@cache
def _unknown_login_hash_sync() -> str:
    return _hash("no operator has this password: it is never stored")


async def _unknown_login_hash() -> str:
    return await asyncio.to_thread(_unknown_login_hash_sync)


async def add(conn: Conn, login: str, role: Role, password_hash: str) -> int:
    """OperatorError when the login is taken (by an enabled or a disabled operator)."""
    try:
        operator_id: int = await conn.fetchval(
            """INSERT INTO operators (login, role, password_hash) VALUES ($1, $2, $3)
               RETURNING id""", check_login(login), role.value, password_hash)
    except asyncpg.UniqueViolationError as exc:
        raise OperatorError(f"operator {login!r} exists already") from exc
    return operator_id


async def by_login(conn: Conn, login: str) -> asyncpg.Record | None:
    """The operator, with `locked` (locked_until is in the future) and `disabled`."""
    return await conn.fetchrow(
        """SELECT *, coalesce(locked_until > now(), false) AS locked,
                  disabled_at IS NOT NULL AS disabled
             FROM operators WHERE login = $1""", login)


async def list_all(conn: Conn) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT o.*, coalesce(o.locked_until > now(), false) AS locked,
                  (SELECT count(*) FROM console_sessions s WHERE s.operator_id = o.id)
                    AS sessions
             FROM operators o ORDER BY o.disabled_at IS NOT NULL, o.login"""))


async def disable(conn: Conn, login: str) -> asyncpg.Record:
    """Disabled at once: its sessions end (a disabled operator's cookie no longer works
    either way: sessions.resume checks). OperatorError when unknown or disabled."""
    row = await conn.fetchrow(
        """UPDATE operators SET disabled_at = now()
            WHERE login = $1 AND disabled_at IS NULL RETURNING *""", login)
    if row is None:
        raise OperatorError(f"no enabled operator {login!r}")
    await conn.execute("DELETE FROM console_sessions WHERE operator_id = $1", row["id"])
    return row


async def set_password(conn: Conn, login: str, password_hash: str) -> asyncpg.Record:
    """A new password (forgotten, or leaked): the operator's sessions end, a lockout too."""
    row = await conn.fetchrow(
        """UPDATE operators SET password_hash = $2, locked_until = NULL, failed_sign_ins = 0
            WHERE login = $1 RETURNING *""", login, password_hash)
    if row is None:
        raise OperatorError(f"no operator {login!r}")
    await conn.execute("DELETE FROM console_sessions WHERE operator_id = $1", row["id"])
    return row


async def unlock(conn: Conn, login: str) -> asyncpg.Record:
    """End a lockout (five failed sign-ins) before its 15 minutes are over."""
    row = await conn.fetchrow(
        """UPDATE operators SET locked_until = NULL, failed_sign_ins = 0
            WHERE login = $1 RETURNING *""", login)
    if row is None:
        raise OperatorError(f"no operator {login!r}")
    return row
