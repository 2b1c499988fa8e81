"""The connection pool. The schema (sql/) is applied by migrate.py."""

from __future__ import annotations

import json

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mpp_server.metrics import DB_QUERIES

Pool = asyncpg.Pool
# A plain connection or one borrowed from the pool: the domain code takes either.
Conn = asyncpg.Connection | PoolConnectionProxy


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
                      count_queries: bool = False) -> Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=30,
        init=_init_counting if count_queries else _init_connection, reset=_keep_session)
    assert pool is not None
    return pool
