"""Retention (issue 26): the journal's coming months created and its old months dropped,
the inbound log and published events pruned, all as the server's role (which may
delete nothing itself), safe from several servers at once, counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from mpp_server import db, retention
from mpp_server.metrics import REGISTRY
from tests.support.stack import server_role_dsn


@pytest.fixture
async def owner(isolated_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(isolated_db)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def server_pool(isolated_db: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(await server_role_dsn(isolated_db), min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def month_start(months_from_now: int) -> date:
    today = datetime.now(UTC).date().replace(day=1)
    index = today.year * 12 + today.month - 1 + months_from_now
    return date(index // 12, index % 12 + 1, 1)


async def partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("""SELECT c.relname FROM pg_inherits i
                                 JOIN pg_class c ON c.oid = i.inhrelid
                                WHERE i.inhparent = 'exchange_journal'::regclass""")
    return {r["relname"] for r in rows}


def name(month: date) -> str:
    return f"exchange_journal_{month:%Y_%m}"


async def old_rows(owner: asyncpg.Connection, age_days: int, count: int) -> None:
    """`count` inbound log rows and published events, `age_days` old."""
    for _ in range(count):
        await owner.execute(
            """INSERT INTO inbound_requests (received_at, source_ip, method, path, headers,
                                             body_masked, http_status)
               VALUES (now() - make_interval(days => $1), '127.0.0.1', 'POST', '/refund',
                       '{}', '{}', 200)""", age_days)
        await owner.execute(
            """INSERT INTO events (created_at, type, customer_id, seq)
               VALUES (now() - make_interval(days => $1), 'payment.completed', 'c',
                       nextval('events_seq'))""", age_days)


def counted(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


async def test_old_months_go_and_coming_months_are_made(owner: asyncpg.Connection,
                                                        server_pool: db.Pool) -> None:
    # Five months back is past 90 days however the month falls; one month back is not.
    old, recent = month_start(-5), month_start(-1)
    for month in (old, recent):
        assert await owner.fetchval("SELECT exchange_journal_partition($1)", month)
        await owner.execute(
            """INSERT INTO exchange_journal (occurred_at, direction, counterparty, operation,
                                             duration_ms) VALUES ($1, 'out', 'kaspi', 'scan', 1)""",
            datetime(month.year, month.month, 15, tzinfo=UTC))
    await owner.execute(f"DROP TABLE {name(month_start(3))}")  # a coming month missing
    dropped_before = counted("mpp_retention_removed_total", what="exchange_journal_partitions")
    done = await retention.run_once(server_pool, exchange_days=90, events_days=90)
    assert done.ran and done.partitions_dropped == 1 and done.partitions_created == 1
    assert {name(month_start(i)) for i in (-1, 0, 1, 2, 3)} == await partitions(owner)
    assert await owner.fetchval("SELECT count(*) FROM exchange_journal") == 1
    assert counted("mpp_retention_removed_total",
                   what="exchange_journal_partitions") == dropped_before + 1
    again = await retention.run_once(server_pool, exchange_days=90, events_days=90)
    assert (again.partitions_created, again.partitions_dropped) == (0, 0)


async def test_inbound_log_and_events_are_pruned_in_batches(owner: asyncpg.Connection,
                                                            server_pool: db.Pool) -> None:
    await old_rows(owner, 100, 5)
    await old_rows(owner, 40, 2)
    unpublished = await owner.fetchval(
        """INSERT INTO events (created_at, type, customer_id)
           VALUES (now() - interval '100 days', 'payment.completed', 'c') RETURNING id""")
    done = await retention.run_once(server_pool, exchange_days=30, events_days=90,
                                    batch_rows=2)
    # Rounds of two until a round came back short; the 40-day-old rows go from the
    # inbound log (30 days) and stay among the events (90 days).
    assert (done.inbound_deleted, done.events_deleted) == (7, 5)
    assert await owner.fetchval("SELECT count(*) FROM inbound_requests") == 0
    remaining = await owner.fetch("SELECT id, seq FROM events ORDER BY id")
    assert len(remaining) == 3 and unpublished in [r["id"] for r in remaining]


async def test_a_round_another_server_holds_is_skipped(owner: asyncpg.Connection,
                                                       server_pool: db.Pool) -> None:
    await old_rows(owner, 100, 1)
    skipped_before = counted("mpp_retention_runs_total", outcome="skipped")
    async with owner.transaction():
        await owner.execute("SELECT pg_advisory_xact_lock(7172208, 26)")
        done = await retention.run_once(server_pool, exchange_days=90, events_days=90)
        assert not done.ran and done.inbound_deleted == 0
    assert counted("mpp_retention_runs_total", outcome="skipped") == skipped_before + 1
    assert (await retention.run_once(server_pool, 90, 90)).inbound_deleted == 1


async def test_several_servers_at_once_remove_each_row_once(owner: asyncpg.Connection,
                                                            server_pool: db.Pool) -> None:
    await old_rows(owner, 100, 6)
    runs = await asyncio.gather(*(retention.run_once(server_pool, 90, 90, batch_rows=1)
                                  for _ in range(3)))
    assert sum(r.inbound_deleted for r in runs) == 6
    assert sum(r.events_deleted for r in runs) == 5  # the newest stays (below)
    assert await owner.fetchval("SELECT count(*) FROM inbound_requests") == 0


async def test_the_newest_event_stays_however_old(owner: asyncpg.Connection,
                                                  server_pool: db.Pool) -> None:
    """It marks the feed's end: a reader's cursor stays valid (not beyond the end) after
    a quiet spell longer than the retention."""
    await old_rows(owner, 100, 3)
    newest = await owner.fetchval("SELECT max(seq) FROM events")
    assert (await retention.run_once(server_pool, 90, 90)).events_deleted == 2
    assert await owner.fetchval("SELECT array_agg(seq) FROM events") == [newest]


async def test_the_background_task_counts_a_failed_round(isolated_db: str) -> None:
    """A round that fails (here: retention below the floor reaches the database) is
    counted and logged; the task carries on."""
    pool = await db.create_pool(isolated_db, min_size=1, max_size=1)
    failed_before = counted("mpp_retention_runs_total", outcome="failed")
    task = asyncio.create_task(retention.run(pool, 29, 90, interval_s=0.05))
    try:
        for _ in range(200):
            if counted("mpp_retention_runs_total", outcome="failed") >= failed_before + 2:
                break
            await asyncio.sleep(0.05)
        assert counted("mpp_retention_runs_total", outcome="failed") >= failed_before + 2
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


def test_month_arithmetic_of_the_test_is_right() -> None:
    assert month_start(0) <= datetime.now(UTC).date() < month_start(1)
    assert month_start(-5) + timedelta(days=31 * 5) > month_start(0)


async def test_a_delivered_webhook_goes_with_its_event(owner: asyncpg.Connection,
                                                      server_pool: db.Pool) -> None:
    """Its delivery record goes once the event is gone and it was delivered; one given up
    stays (a person replays it)."""
    await old_rows(owner, 100, 3)  # each event stages its delivery (the webhook trigger)
    staged = [r["event_id"] for r in await owner.fetch(
        "SELECT event_id FROM webhook_deliveries ORDER BY event_id")]
    assert len(staged) == 3
    await owner.execute("UPDATE webhook_deliveries SET status = 'DELIVERED', "
                        "delivered_at = now() WHERE event_id = ANY($1)", staged[:1])
    await owner.execute("UPDATE webhook_deliveries SET status = 'GIVEN_UP', "
                        "given_up_at = now() WHERE event_id = $1", staged[1])
    done = await retention.run_once(server_pool, 90, 90)
    assert (done.events_deleted, done.deliveries_deleted) == (2, 1)
    left = {r["event_id"]: r["status"] for r in await owner.fetch(
        "SELECT event_id, status FROM webhook_deliveries")}
    assert left == {staged[1]: "GIVEN_UP", staged[2]: "PENDING"}
