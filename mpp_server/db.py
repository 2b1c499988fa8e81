"""The connection pool. The schema (sql/) is applied by migrate.py.

The database may go away: stalled, restarting, or failed over to another node (docs/
high-availability.md). Every wait on it is bounded: a connection is waited for at most
the pool's acquire timeout (DB_ACQUIRE_TIMEOUT_MS), a statement at most its command
timeout (DB_STATEMENT_TIMEOUT_MS); past either, or when the connection is refused or
dies, the caller gets one of the errors `is_unavailable` recognises, which the wallet API
answers 503 DATABASE_UNAVAILABLE (http/availability.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from asyncpg import exceptions as pg_errors
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from mpp_server.metrics import DB_QUERIES, DB_UNAVAILABLE

log = logging.getLogger(__name__)
T = TypeVar("T")

# A plain connection or one borrowed from the pool: the domain code takes either.
Conn = asyncpg.Connection | PoolConnectionProxy

# What "the database is not there" looks like from the client, whatever the cause: a
# refused or reset socket, a wait past its bound, the server shutting down or not yet
# accepting (a failover, a restart), a node that is not the primary (any more).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,                                  # refused, reset, unreachable
    TimeoutError,                             # acquire or statement past its bound
    pg_errors.PostgresConnectionError,        # class 08: the connection died mid-way
    pg_errors.OperatorInterventionError,      # class 57: admin/crash shutdown, starting up
    pg_errors.ReadOnlySQLTransactionError,    # a standby (a demoted primary)
    # No host listed is the primary (TargetServerAttributeNotMatched), or asyncpg's own
    # state errors, seen on a connection the server is ending ("another operation is in
    # progress" while it consumes the server's FATAL before the socket closes).
    pg_errors.InternalClientError,
    pg_errors.TooManyConnectionsError,
)
# Failures of a connection attempt that a new attempt may cure once a primary is back.
_RETRY_CONNECT_PAUSE_S = (0.05, 0.1, 0.2, 0.4)


def is_unavailable(exc: BaseException) -> bool:
    """The database is unreachable, stalled or not the primary (as opposed to a bug, or a
    statement the database refused)."""
    # asyncpg raises the plain InterfaceError on a closed connection; its subclasses
    # (DataError, ...) are usage errors.
    return type(exc) is pg_errors.InterfaceError or isinstance(exc, _UNAVAILABLE)


def connection_lost(exc: BaseException) -> bool:
    """The connection died under a statement (the server was killed or shut down): its
    outcome is unknown, and a new connection may find the (new) primary."""
    return (type(exc) is pg_errors.InterfaceError
            or isinstance(exc, (pg_errors.PostgresConnectionError,
                                pg_errors.AdminShutdownError, pg_errors.CrashShutdownError)))


def background_failure(where: str, exc: Exception) -> None:
    """A round of a background task (notify worker, housekeeping) failed: log and count
    it; the task carries on with its next round, which succeeds once the database is
    back."""
    if is_unavailable(exc):
        DB_UNAVAILABLE.labels(where).inc()
        log.warning("database unavailable", extra={"task": where,
                                                   "error": f"{type(exc).__name__}: {exc}"})
    else:
        log.error(f"{where} failed", exc_info=exc)


class Pool(asyncpg.Pool):
    """asyncpg's pool, with a default bound on `acquire()` (DB_ACQUIRE_TIMEOUT_MS): the
    domain code's `pool.acquire()` never waits longer. Within that bound a connection
    attempt that fails (refused: no primary yet during a failover) is retried, so a
    switchover shorter than the bound costs a wallet call some latency and no error.
    Only connecting is retried: nothing has been sent yet, so nothing can happen twice."""

    def __init__(self, *args: Any, acquire_timeout_s: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return _Acquire(self, self.acquire_timeout_s if timeout is None else timeout)

    async def acquire_within(self, timeout_s: float | None) -> PoolConnectionProxy:
        if timeout_s is None:
            return await asyncpg.Pool.acquire(self)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            try:
                return await asyncpg.Pool.acquire(self, timeout=max(remaining, 0.001))
            except Exception as exc:
                pause_s = _RETRY_CONNECT_PAUSE_S[min(attempt, len(_RETRY_CONNECT_PAUSE_S) - 1)]
                if (isinstance(exc, TimeoutError) or not is_unavailable(exc)
                        or loop.time() + pause_s >= deadline):
                    raise
            await asyncio.sleep(pause_s)
            attempt += 1


class _Acquire(PoolAcquireContext):
    __slots__ = ()

    async def __aenter__(self) -> PoolConnectionProxy:
        assert isinstance(self.pool, Pool)
        self.connection = await self.pool.acquire_within(self.timeout)
        return self.connection

    def __await__(self) -> Any:
        return self.__aenter__().__await__()

    async def __aexit__(self, *exc: object) -> None:
        con, self.connection = self.connection, None
        assert con is not None
        # Bounded too: a connection whose statement timed out waits for its
        # cancellation at most this long, then is dropped.
        await self.pool.release(con, timeout=self.timeout)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


def _count_query(record: object) -> None:
    DB_QUERIES.inc()


async def _init_counting(conn: asyncpg.Connection) -> None:
    await _init_connection(conn)
    conn.add_query_logger(_count_query)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (one round trip per release).
    Safe because the code never changes session state: no SET, no LISTEN, no cursors,
    advisory locks only transaction-scoped; an open transaction is still rolled back."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20, *,
                      count_queries: bool = False, acquire_timeout_ms: int | None = None,
                      statement_timeout_ms: int = 30_000) -> Pool:
    """`acquire_timeout_ms` None: acquire waits as long as it takes (command-line tools).
    Connections go only to a primary (`target_session_attrs=read-write` unless the DSN
    says otherwise): every pool of ours writes, and through a balancer that still
    routes to a demoted node the check refuses it at connect."""
    extra: dict[str, Any] = {}
    if "target_session_attrs=" not in dsn:
        extra["target_session_attrs"] = "read-write"
    pool = Pool(
        dsn, min_size=min_size, max_size=max_size, max_queries=50_000,
        max_inactive_connection_lifetime=300.0, loop=None,
        connection_class=asyncpg.Connection, record_class=asyncpg.Record,
        command_timeout=statement_timeout_ms / 1000,
        acquire_timeout_s=None if acquire_timeout_ms is None else acquire_timeout_ms / 1000,
        init=_init_counting if count_queries else _init_connection, reset=_keep_session,
        **extra)
    await pool
    return pool


async def with_connection(dsn: str, work: Callable[[Conn], Awaitable[T]]) -> T:
    """A command-line tool's one connection, set up as the server's are (jsonb read and
    written as JSON), waiting as long as connecting takes."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()
