"""The connection pool and the migration runner (`python -m mpp_server migrate`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mpp_server.metrics import DB_QUERIES

# The checkout's sql/; an installed package (a container image) sets MPP_SQL_DIR.
SQL_DIR = Path(os.environ.get("MPP_SQL_DIR")
               or Path(__file__).resolve().parent.parent / "sql")
# Any constant: every migrator takes this advisory lock, so two processes starting at
# once apply each file exactly once.
MIGRATION_LOCK_KEY = 7_316_204_001

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


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    return sorted(p for p in sql_dir.glob("*.sql") if p.name[:3].isdigit())


async def migrate(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every file not applied yet, each in its own transaction. Returns their names."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            name text PRIMARY KEY, sha256 text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            done: dict[str, str] = {r["name"]: r["sha256"] for r in
                                    await conn.fetch("SELECT name, sha256 FROM schema_migrations")}
            for path in migration_files(sql_dir):
                text = path.read_text()
                digest = hashlib.sha256(text.encode()).hexdigest()
                if path.name in done:
                    if done[path.name] != digest:
                        print(f"warning: {path.name} changed after it was applied",
                              file=sys.stderr)
                    continue
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)",
                        path.name, digest)
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied


async def pending_migrations(conn: Any, sql_dir: Path = SQL_DIR) -> list[str]:
    """Names of migration files not yet applied (used by /readyz)."""
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return [p.name for p in migration_files(sql_dir)]
    done = {r["name"] for r in rows}
    return [p.name for p in migration_files(sql_dir) if p.name not in done]


def main(argv: list[str]) -> int:
    from mpp_server.config import Settings

    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m mpp_server migrate\n\napplies sql/*.sql to DATABASE_URL")
        return 0
    applied = asyncio.run(migrate(Settings().database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0
