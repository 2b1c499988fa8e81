"""Issue 24: the audit journal on a real PostgreSQL: one chain however many write at
once, rows that cannot be changed by the server's role, and `audit verify` finding the
first row that does not fit once a superuser changed one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from mpp_server import audit, db
from mpp_server.audit import GENESIS, Action, Actor, Via

ACTOR = Actor("tests", Via.CLI)


@pytest.fixture
async def journal_pool(isolated_db: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(isolated_db, min_size=1, max_size=12)
    yield pool
    await pool.close()


async def append(pool: db.Pool, n: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await audit.append(conn, ACTOR, Action.NOTIFY_RETRY, f"payment:{n}",
                             {"n": n, "text": "Ünïcode ✓ \"quoted\" <b>"})


def verify_cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpp_server", "audit", "verify", *args],
                          env={**os.environ, "DATABASE_URL": dsn}, capture_output=True,
                          text=True, timeout=60)


async def test_concurrent_writers_never_fork_the_chain(journal_pool: db.Pool) -> None:
    await asyncio.gather(*(append(journal_pool, n) for n in range(60)))
    async with journal_pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, prev_hash, hash FROM audit_journal ORDER BY id")
        verdict = await audit.verify(conn)
    assert [r["id"] for r in rows] == list(range(1, 61))
    assert [r["prev_hash"] for r in rows] == [GENESIS] + [r["hash"] for r in rows[:-1]]
    assert verdict == audit.Verdict(60, 60, rows[-1]["hash"])


async def test_a_row_is_written_only_with_its_action(journal_pool: db.Pool) -> None:
    async with journal_pool.acquire() as conn:
        with pytest.raises(AssertionError, match="action's transaction"):
            await audit.append(conn, ACTOR, Action.SIGN_OUT, "operator:x", {})
        # The action fails after its row was written: neither stays.
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await audit.append(conn, ACTOR, Action.SIGN_OUT, "operator:x", {})
                raise RuntimeError("the action failed")
        assert await conn.fetchval("SELECT count(*) FROM audit_journal") == 0
        with pytest.raises(TypeError, match="float"):
            async with conn.transaction():
                await audit.append(conn, ACTOR, Action.SIGN_OUT, "operator:x",
                                     {"x": 0.1})  # type: ignore[dict-item]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_journal SET actor = 'someone else' WHERE id = 2",
    "DELETE FROM audit_journal WHERE id = 2",
    "TRUNCATE audit_journal"])
async def test_rows_cannot_be_changed_or_removed(journal_pool: db.Pool,
                                                 statement: str) -> None:
    for n in range(3):
        await append(journal_pool, n)
    async with journal_pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="audit_journal is append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_journal") == 3
        assert (await audit.verify(conn)).bad_id is None


async def test_verify_names_the_first_row_a_superuser_altered(
        journal_pool: db.Pool, isolated_db: str) -> None:
    for n in range(5):
        await append(journal_pool, n)
    intact = await asyncio.to_thread(verify_cli, isolated_db)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("audit journal: 5 rows, the chain holds; head 5:")
    head = intact.stdout.split("head ")[1].strip()

    async with journal_pool.acquire() as conn:
        # What only a superuser can do: switch the trigger off for a session.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("""UPDATE audit_journal SET details = details || '{"n": 99}'
                              WHERE id = 3""")
        await conn.execute("RESET session_replication_role")
    broken = await asyncio.to_thread(verify_cli, isolated_db)
    assert broken.returncode == 1
    assert broken.stdout.startswith("audit journal: row 3 does not fit: its contents do not "
                                    "match its hash: the row was altered")

    # Rewriting the hashes from row 3 on hides it from the chain, not from the anchor.
    async with journal_pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")
        rows = await conn.fetch("SELECT * FROM audit_journal WHERE id >= 3 ORDER BY id")
        prev = await conn.fetchval("SELECT hash FROM audit_journal WHERE id = 2")
        for row in rows:
            entry = audit.Entry.from_row(row)
            new_hash = entry.chained_hash(prev)
            await conn.execute("UPDATE audit_journal SET prev_hash = $2, hash = $3 "
                               "WHERE id = $1", row["id"], prev, new_hash)
            prev = new_hash
        await conn.execute("RESET session_replication_role")
    assert (await asyncio.to_thread(verify_cli, isolated_db)).returncode == 0
    anchored = await asyncio.to_thread(verify_cli, isolated_db, "--anchor", head)
    assert anchored.returncode == 1
    assert "row 5 does not fit: its hash is not the anchored one" in anchored.stdout


async def test_verify_names_the_row_after_a_removed_one(journal_pool: db.Pool,
                                                       isolated_db: str) -> None:
    for n in range(4):
        await append(journal_pool, n)
    async with journal_pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM audit_journal WHERE id = 2")
        await conn.execute("RESET session_replication_role")
    broken = await asyncio.to_thread(verify_cli, isolated_db)
    assert broken.returncode == 1
    assert "row 3 does not fit: it follows row 1: row 2 is missing" in broken.stdout


async def test_verify_of_an_empty_journal_and_bad_arguments(isolated_db: str) -> None:
    empty = await asyncio.to_thread(verify_cli, isolated_db)
    assert empty.returncode == 0 and "0 rows, the chain holds" in empty.stdout
    bad = await asyncio.to_thread(verify_cli, isolated_db, "--anchor", "x")
    assert bad.returncode == 2
