"""Console sessions, kept server-side in PostgreSQL (console_sessions), so that every
server process behind one address knows every session, a sign-out or a disabled
operator ends it everywhere at once, and nothing but a random token is in the browser.

The cookie holds 32 random bytes; the table holds their SHA-256 (reading it gives no
usable cookie). A session ends after IDLE without a request, after LIFETIME in any case,
at sign-out, or when its operator is disabled. Each carries its own CSRF token, which
every form that changes something sends back (console/web.py).

How the operator proved who they are is the session's `signed_in_by`: a password at
/login today. A reverse proxy's single sign-on (X-Remote-User from a trusted address)
would create the same session for the operator it names (docs/operations.md): pages,
CSRF and the journal only ever see a `Session`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import asyncpg

from mpp_server.console.operators import Role
from mpp_server.db import Conn

COOKIE = "mpp_console_session"
IDLE = timedelta(minutes=15)
LIFETIME = timedelta(hours=12)
_TOKEN_BYTES = 32


class SignedInBy(StrEnum):
    PASSWORD = "password"
    PROXY = "proxy"


@dataclass(frozen=True)
class Session:
    token_sha256: bytes
    operator_id: int
    login: str
    role: Role
    csrf_token: str
    signed_in_by: SignedInBy


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create(conn: Conn, operator_id: int, signed_in_by: SignedInBy,
                 source_ip: str | None) -> str:
    """A new session (in the sign-in's transaction); returns the cookie's token. Sessions
    over their time are purged here, so the table holds only live ones."""
    await conn.execute(
        """DELETE FROM console_sessions
            WHERE last_seen_at < now() - make_interval(secs => $1)
               OR created_at < now() - make_interval(secs => $2)""",
        IDLE.total_seconds(), LIFETIME.total_seconds())
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    await conn.execute(
        """INSERT INTO console_sessions (token_sha256, operator_id, csrf_token, signed_in_by,
                                         source_ip)
           VALUES ($1, $2, $3, $4, $5)""",
        token_hash(token), operator_id, secrets.token_urlsafe(_TOKEN_BYTES),
        signed_in_by.value, source_ip)
    return token


class Resumed(StrEnum):
    NONE = "none"        # no such session (never was, or signed out)
    EXPIRED = "expired"  # it was, and is over (idle, lifetime, operator disabled)


async def resume(pool: asyncpg.Pool, token: str) -> Session | Resumed:
    """The live session the cookie names, its idle clock restarted; or why there is
    none (an expired one is deleted)."""
    digest = token_hash(token)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """UPDATE console_sessions s SET last_seen_at = now()
                 FROM operators o
                WHERE s.token_sha256 = $1 AND o.id = s.operator_id
                  AND o.disabled_at IS NULL
                  AND s.last_seen_at >= now() - make_interval(secs => $2)
                  AND s.created_at >= now() - make_interval(secs => $3)
               RETURNING s.*, o.login, o.role""",
            digest, IDLE.total_seconds(), LIFETIME.total_seconds())
        if row is None:
            gone = await conn.fetchval(
                "DELETE FROM console_sessions WHERE token_sha256 = $1 RETURNING 1", digest)
            return Resumed.EXPIRED if gone else Resumed.NONE
    return Session(row["token_sha256"], row["operator_id"], row["login"], Role(row["role"]),
                   row["csrf_token"], SignedInBy(row["signed_in_by"]))


async def end(conn: Conn, session: Session) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE token_sha256 = $1",
                       session.token_sha256)
