"""`python -m mpp_server migrate`: bring a database to the schema of this checkout.

Two kinds of SQL (sql/README.md):
- `sql/migrations/NNN_*.sql`: tables, constraints, indexes; applied once each, in name
  order, and never edited once released. A migration whose text changed after it was
  applied stops `migrate` with an error naming the file: a deployed database would
  otherwise silently keep what the old text created.
- `sql/functions/*.sql`: every function, one file per concern, `CREATE OR REPLACE`.
  Whenever any of their texts differs from what the database last applied, all of them
  are applied again (name order), and every function of the schema they no longer
  define (a dropped function, or the old signature of a changed one) is dropped; the
  functions nothing depends on are dropped first and created again by the files, so a
  changed result type applies too. A released migration text listed in SUPERSEDED is
  recorded with the current one instead of being refused.

Everything pending is applied in one transaction, under an advisory lock, so several
hosts may run `migrate` at once and a failure leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from mpp_server.db import Conn

# The checkout's sql/; an installed package (a container image) sets MPP_SQL_DIR.
SQL_DIR = Path(os.environ.get("MPP_SQL_DIR")
               or Path(__file__).resolve().parent.parent / "sql")
# Any constant: every migrator takes this advisory lock, so two processes starting at
# once apply each file exactly once.
MIGRATION_LOCK_KEY = 7_316_204_001
# The name under which the function files' combined digest is stored.
FUNCTIONS = "functions"


# Released texts that a later release replaced by one leading to the same schema, by
# file: a database that applied such a text is recorded with the current one (and the
# functions applied again) instead of being refused. Any other change to an applied
# migration still stops `migrate`. Each entry says why the two are the same.
SUPERSEDED: dict[str, dict[str, str]] = {
    "015_exchange_journal.sql": {
        # Released at stop 31; its records triggers were then moved, unchanged in name
        # and definition, into the records policy of sql/functions/records.sql, which
        # creates them (CREATE OR REPLACE) with the functions after every migration.
        "ecaacc4525bed773f00667955f7169f04e070f21eb19bb89ca6e4dbbec7ebb61":
            "records triggers moved to sql/functions/records.sql",
    },
}


class MigrationChanged(Exception):
    """An applied migration's text differs from what was applied."""

    def __init__(self, name: str, applied_sha256: str, file_sha256: str) -> None:
        super().__init__(
            f"sql/migrations/{name} changed after it was applied (applied sha256 "
            f"{applied_sha256[:12]}, file {file_sha256[:12]}): a released migration is "
            "never edited; restore it and put the change in a new migration")
        self.name = name


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class Applied:
    migrations: list[str] = field(default_factory=list)
    functions: bool = False
    dropped_functions: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # recorded with the current text


def migration_files(sql_dir: Path = SQL_DIR) -> list[SqlFile]:
    return [SqlFile(p.name, p.read_text())
            for p in sorted((sql_dir / "migrations").glob("*.sql")) if p.name[:3].isdigit()]


def function_files(sql_dir: Path = SQL_DIR) -> list[SqlFile]:
    return [SqlFile(p.name, p.read_text()) for p in sorted((sql_dir / "functions").glob("*.sql"))]


def functions_digest(files: list[SqlFile]) -> str:
    combined = hashlib.sha256()
    for f in files:
        combined.update(f"{f.name}\0{f.sha256}\0".encode())
    return combined.hexdigest()


async def _ensure_bookkeeping(conn: Conn) -> None:
    await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        name text PRIMARY KEY, sha256 text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())""")


async def _applied(conn: Conn) -> dict[str, str]:
    try:
        rows = await conn.fetch("SELECT name, sha256 FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return {}
    return {r["name"]: r["sha256"] for r in rows}


def _pending(applied: dict[str, str], sql_dir: Path
             ) -> tuple[list[SqlFile], list[SqlFile], bool]:
    """Migrations not applied yet; applied ones whose text was SUPERSEDED (to record with
    the current text); and whether the functions must be applied again (always after a
    superseded text: the functions hold what it created). Raises MigrationChanged for an
    applied migration whose text changed otherwise."""
    pending, superseded = [], []
    for f in migration_files(sql_dir):
        if f.name not in applied:
            pending.append(f)
        elif applied[f.name] in SUPERSEDED.get(f.name, {}):
            superseded.append(f)
        elif applied[f.name] != f.sha256:
            raise MigrationChanged(f.name, applied[f.name], f.sha256)
    functions_stale = (bool(superseded) or applied.get(FUNCTIONS)
                       != functions_digest(function_files(sql_dir)))
    return pending, superseded, functions_stale


# The schema's own functions (not an extension's), with where their catalogue row is.
_SCHEMA_FUNCTIONS = """
    SELECT p.oid, p.ctid::text AS ctid, p.oid::regprocedure::text AS signature
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"""


# Of those, the ones no object depends on (all but the triggers' functions): dropped
# before the files are applied, so that the files create them again whatever changed,
# their result or OUT columns too, which CREATE OR REPLACE refuses to change.
_UNREFERENCED = _SCHEMA_FUNCTIONS + """
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = p.oid)"""


async def _apply_functions(conn: Conn, sql_dir: Path) -> list[str]:
    """Apply every function file, and leave no function of the schema the files do not
    define. First every function no object depends on is dropped (the files create each
    again); then the files are applied; then a function still where it was is stale:
    `CREATE OR REPLACE` writes a new version of the catalogue row of each function it
    defines, so one the files defined is new or has moved (its ctid changed), and one left
    where it was (a trigger's function no file defines any more) is dropped. Returns the
    signatures the schema had before and has no more."""
    files = function_files(sql_dir)
    before = {r["signature"] for r in await conn.fetch(_SCHEMA_FUNCTIONS)}
    for r in await conn.fetch(_UNREFERENCED):
        await conn.execute(f"DROP FUNCTION {r['signature']}")
    kept = {r["oid"]: r["ctid"] for r in await conn.fetch(_SCHEMA_FUNCTIONS)}
    for f in files:
        await conn.execute(f.text)
    for r in await conn.fetch(_SCHEMA_FUNCTIONS):
        if kept.get(r["oid"]) == r["ctid"]:
            await conn.execute(f"DROP FUNCTION {r['signature']}")
    after = {r["signature"] for r in await conn.fetch(_SCHEMA_FUNCTIONS)}
    dropped = sorted(before - after)
    await conn.execute(
        """INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()""",
        FUNCTIONS, functions_digest(files))
    return dropped


async def migrate(dsn: str, sql_dir: Path = SQL_DIR) -> Applied:
    """Apply what is pending, all in one transaction. Raises MigrationChanged (nothing
    applied) when an applied migration's text changed."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    done = Applied()
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await _ensure_bookkeeping(conn)
            pending, superseded, functions_stale = _pending(await _applied(conn), sql_dir)
            for f in superseded:
                await conn.execute("UPDATE schema_migrations SET sha256 = $2 WHERE name = $1",
                                   f.name, f.sha256)
                done.superseded.append(f.name)
            for f in pending:
                await conn.execute(f.text)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)",
                    f.name, f.sha256)
                done.migrations.append(f.name)
            if pending or functions_stale:
                done.dropped_functions = await _apply_functions(conn, sql_dir)
                done.functions = True
                # The server role's privileges, for every table there is now and by its
                # guards (sql/functions/privileges.sql, records.sql).
                await conn.execute("SELECT server_role_grant()")
    finally:
        await conn.close()
    return done


async def pending(conn: Conn, sql_dir: Path = SQL_DIR) -> list[str]:
    """What `migrate` would apply (used by /readyz): migration names, and `functions`
    when the function files differ from the database's."""
    try:
        migrations, superseded, functions_stale = _pending(await _applied(conn), sql_dir)
    except MigrationChanged as exc:
        return [f"{exc.name} (changed after it was applied)"]
    return ([f"{f.name} (superseded text, to record)" for f in superseded]
            + [f.name for f in migrations] + ([FUNCTIONS] if functions_stale else []))


def main(argv: list[str]) -> int:
    from mpp_server.config import Settings

    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m mpp_server migrate\n\napplies sql/migrations/*.sql (once "
              "each) and sql/functions/*.sql (when changed) to DATABASE_URL")
        return 0
    try:
        done = asyncio.run(migrate(Settings().database_url))
    except MigrationChanged as exc:
        print(f"migrate: refused: {exc}", file=sys.stderr)
        return 1
    print("applied: " + (", ".join(done.migrations) if done.migrations else "no migration")
          + (f"; recorded with their current text: {', '.join(done.superseded)}"
             if done.superseded else "")
          + ("; functions re-applied" if done.functions else "; functions up to date")
          + (f"; dropped {', '.join(done.dropped_functions)}" if done.dropped_functions
             else ""))
    return 0
