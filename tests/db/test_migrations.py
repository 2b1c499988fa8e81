"""The schema runner: migrations applied once and never edited, functions re-applied when
their text changes (mpp_server/migrate.py, sql/README.md)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from mpp_server import db, migrate
from mpp_server.devtools.devdb import fresh_database

SQL = migrate.SQL_DIR


def _copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL, target)
    return target


async def test_migrations_are_applied_once(database_url: str, pool: db.Pool) -> None:
    again = await migrate.migrate(database_url)
    assert again.migrations == [] and not again.functions
    async with pool.acquire() as conn:
        assert await migrate.pending(conn) == []
        shards = await conn.fetchval("SELECT count(*) FROM accounts WHERE kind='settlement'")
    assert shards == 16


def test_released_migrations_are_never_edited() -> None:
    """sql/migrations/SHA256SUMS lists every released migration; a release adds its line
    and no line is ever changed."""
    listed = {}
    for line in (SQL / "migrations" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (SQL / "migrations").glob("*.sql")}
    assert files.keys() == listed.keys(), "a migration is missing from SHA256SUMS (or gone)"
    edited = [name for name, digest in files.items() if listed[name] != digest]
    assert edited == [], f"released migrations were edited: {edited}"


async def test_migrate_refuses_when_an_applied_migration_changed(admin_dsn: str,
                                                                 tmp_path: Path) -> None:
    sql = _copy_sql(tmp_path)
    async with fresh_database(admin_dsn, "mpp_mig") as dsn:
        first = await migrate.migrate(dsn, sql)
        assert first.migrations == [] and not first.functions  # fresh_database applied all
        edited = sql / "migrations" / "002_payments.sql"
        edited.write_text(edited.read_text() + "\nCREATE TABLE sneaked_in (id int);\n")
        (sql / "migrations" / "999_new.sql").write_text("CREATE TABLE brand_new (id int);\n")
        with pytest.raises(migrate.MigrationChanged, match=r"002_payments\.sql"):
            await migrate.migrate(dsn, sql)
        conn = await asyncpg.connect(dsn)
        try:
            # Nothing of the run was applied: not the edit, not the new migration.
            assert await conn.fetchval("SELECT to_regclass('sneaked_in')") is None
            assert await conn.fetchval("SELECT to_regclass('brand_new')") is None
            assert "002_payments.sql (changed after it was applied)" in await migrate.pending(
                conn, sql)
        finally:
            await conn.close()
        # The command says so and exits non-zero.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mpp_server", "migrate", stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "DATABASE_URL": dsn, "MPP_SQL_DIR": str(sql)})
        _, stderr = await proc.communicate()
        assert proc.returncode == 1
        assert "002_payments.sql changed after it was applied" in stderr.decode()


async def test_changed_functions_are_applied_again_and_old_signatures_dropped(
        admin_dsn: str, tmp_path: Path) -> None:
    sql = _copy_sql(tmp_path)
    probe = sql / "functions" / "zz_probe.sql"
    async with fresh_database(admin_dsn, "mpp_fun") as dsn:
        probe.write_text("CREATE OR REPLACE FUNCTION zz_probe(p int) RETURNS int "
                         "LANGUAGE sql AS 'SELECT p';\n")
        assert (await migrate.migrate(dsn, sql)).functions
        probe.write_text("CREATE OR REPLACE FUNCTION zz_probe(p int, q text) RETURNS text "
                         "LANGUAGE sql AS 'SELECT q';\n")
        done = await migrate.migrate(dsn, sql)
        assert done.functions and done.dropped_functions == ["zz_probe(integer)"]
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT zz_probe(1, 'new')") == "new"
            signatures = await conn.fetch(
                "SELECT oid::regprocedure::text AS s FROM pg_proc WHERE proname = 'zz_probe'")
            assert [r["s"] for r in signatures] == ["zz_probe(integer,text)"]
            # Unchanged text: nothing applied again.
            assert not (await migrate.migrate(dsn, sql)).functions
            probe.unlink()
            done = await migrate.migrate(dsn, sql)
            assert done.dropped_functions == ["zz_probe(integer,text)"]
            assert await conn.fetchval("SELECT count(*) FROM pg_proc "
                                       "WHERE proname = 'zz_probe'") == 0
        finally:
            await conn.close()


async def test_every_function_lives_in_sql_functions(pool: db.Pool) -> None:
    """A reader finds a function's current text in sql/functions/, not in the history:
    on a database migrated from nothing, each function the files define exists once (an
    old signature that migrations 001-007 created is gone), and no other exists."""
    defined: Counter[str] = Counter()
    for path in (SQL / "functions").glob("*.sql"):
        defined.update(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(", path.read_text()))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT proname FROM pg_proc p WHERE pronamespace = 'public'::regnamespace
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                  WHERE d.objid = p.oid AND d.deptype = 'e')""")
    assert Counter(r["proname"] for r in rows) == defined


def _migrations_from(first: str) -> list[str]:
    return sorted(p.name for p in (SQL / "migrations").glob("*.sql") if p.name >= first)


@pytest.mark.parametrize("migration", _migrations_from("020"))
async def test_a_migration_applies_to_a_deployed_database(admin_dsn: str, tmp_path: Path,
                                                          migration: str) -> None:
    """A deployed database has the guards the function files put on its tables (status
    moves, records) when a new migration comes: each migration since 020 applies to the
    schema before it with those guards (and the server role's grants) in place, as well
    as to an empty database. (022
    changed the type of columns a status guard names, which PostgreSQL refuses while
    the trigger exists: fresh databases, which get the triggers after every migration,
    never showed it.)"""
    before = tmp_path / "before"
    (before / "functions").mkdir(parents=True)
    (before / "migrations").mkdir()
    for p in (SQL / "migrations").glob("*.sql"):
        if p.name < migration:
            shutil.copy(p, before / "migrations" / p.name)
    for guards in ("states.sql", "records.sql", "retention.sql", "privileges.sql"):
        shutil.copy(SQL / "functions" / guards, before / "functions" / guards)
    async with fresh_database(admin_dsn, "mpp_upg", sql_dir=before) as dsn:
        done = await migrate.migrate(dsn)
        assert done.migrations == _migrations_from(migration) and done.functions
        assert (await migrate.migrate(dsn)).migrations == []


async def test_a_function_whose_out_columns_change_is_applied_again(admin_dsn: str,
                                                                      tmp_path: Path) -> None:
    """CREATE OR REPLACE cannot change a function's result type: migrate drops it first
    (retention_maintain gained an OUT column after a release)."""
    sql = _copy_sql(tmp_path)
    probe = sql / "functions" / "zz_probe.sql"
    async with fresh_database(admin_dsn, "mpp_out") as dsn:
        probe.write_text("CREATE OR REPLACE FUNCTION zz_probe(OUT a int) "
                         "LANGUAGE sql AS 'SELECT 1';\n")
        assert (await migrate.migrate(dsn, sql)).functions
        probe.write_text("CREATE OR REPLACE FUNCTION zz_probe(OUT a int, OUT b int) "
                         "LANGUAGE sql AS 'SELECT 1, 2';\n")
        done = await migrate.migrate(dsn, sql)
        assert done.functions and done.dropped_functions == []
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT * FROM zz_probe()")
            assert row is not None and tuple(row) == (1, 2)
        finally:
            await conn.close()


async def test_a_superseded_release_of_a_migration_is_recorded_not_refused(
        admin_dsn: str) -> None:
    """A database that applied a text migrate.SUPERSEDED lists (015 as released at stop
    31) is recorded with the current text and gets the functions again; any other text
    is still refused."""
    name = "015_exchange_journal.sql"
    (old_digest,) = migrate.SUPERSEDED[name]
    current = hashlib.sha256((SQL / "migrations" / name).read_bytes()).hexdigest()
    async with fresh_database(admin_dsn, "mpp_sup") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE schema_migrations SET sha256 = $2 WHERE name = $1",
                               name, old_digest)
            assert await migrate.pending(conn) == [f"{name} (superseded text, to record)",
                                                   migrate.FUNCTIONS]
            done = await migrate.migrate(dsn)
            assert (done.superseded, done.migrations, done.functions) == ([name], [], True)
            assert await conn.fetchval("SELECT sha256 FROM schema_migrations "
                                       "WHERE name = $1", name) == current
            assert await migrate.pending(conn) == []
            await conn.execute("UPDATE schema_migrations SET sha256 = $2 WHERE name = $1",
                               name, "0" * 64)
            with pytest.raises(migrate.MigrationChanged, match=name):
                await migrate.migrate(dsn)
        finally:
            await conn.close()
