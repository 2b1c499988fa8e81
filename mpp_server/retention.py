"""Retention, run by every server's housekeeping (docs/operations.md, "Records,
retention and roles"): the exchange journal's coming months created and its months older
than EXCHANGE_RETENTION_DAYS dropped, the inbound request log (same retention), the
published events older than EVENTS_RETENTION_DAYS and the delivered webhooks of the
events gone deleted. Money records are never pruned.

The work is `retention_maintain` (sql/functions/retention.sql), which runs as the owner
and refuses retentions below 30 days. Several servers may run it at once: one round
holds an advisory lock, the others' rounds are skipped. Deletions go in batches, each
round its own short transaction, until a round comes back short (or MAX_ROUNDS).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from mpp_server import db
from mpp_server.metrics import (
    RETENTION_PARTITIONS_CREATED,
    RETENTION_REMOVED,
    RETENTION_RUNS,
)

log = logging.getLogger(__name__)

INTERVAL_S = 3600.0
BATCH_ROWS = 10_000
MAX_ROUNDS = 100


@dataclass
class Removed:
    ran: bool = False
    partitions_created: int = 0
    partitions_dropped: int = 0
    inbound_deleted: int = 0
    events_deleted: int = 0
    deliveries_deleted: int = 0


async def run_once(pool: asyncpg.Pool, exchange_days: int, events_days: int,
                   batch_rows: int = BATCH_ROWS) -> Removed:
    """One retention run: rounds until nothing is left to delete. `ran` is false when
    another server's round held the lock (nothing done here)."""
    total = Removed()
    for _ in range(MAX_ROUNDS):
        async with pool.acquire() as conn:
            got = await conn.fetchrow("SELECT * FROM retention_maintain($1, $2, $3)",
                                      exchange_days, events_days, batch_rows)
        assert got is not None
        if not got["ran"]:
            break
        total.ran = True
        total.partitions_created += got["partitions_created"]
        total.partitions_dropped += got["partitions_dropped"]
        total.inbound_deleted += got["inbound_deleted"]
        total.events_deleted += got["events_deleted"]
        total.deliveries_deleted += got["deliveries_deleted"]
        if max(got["inbound_deleted"], got["events_deleted"],
               got["deliveries_deleted"]) < batch_rows:
            break
    _count(total)
    return total


def _count(removed: Removed) -> None:
    RETENTION_RUNS.labels("done" if removed.ran else "skipped").inc()
    RETENTION_PARTITIONS_CREATED.inc(removed.partitions_created)
    RETENTION_REMOVED.labels("exchange_journal_partitions").inc(removed.partitions_dropped)
    RETENTION_REMOVED.labels("inbound_requests").inc(removed.inbound_deleted)
    RETENTION_REMOVED.labels("events").inc(removed.events_deleted)
    RETENTION_REMOVED.labels("webhook_deliveries").inc(removed.deliveries_deleted)
    if (removed.partitions_dropped or removed.inbound_deleted or removed.events_deleted
            or removed.deliveries_deleted):
        log.info("retention", extra=removed.__dict__)


async def run(pool: asyncpg.Pool, exchange_days: int, events_days: int,
              interval_s: float = INTERVAL_S) -> None:
    """At start, then every `interval_s`, for ever (a background task)."""
    while True:
        try:
            await run_once(pool, exchange_days, events_days)
        except Exception as exc:  # the database away, or a lock not granted in time
            RETENTION_RUNS.labels("failed").inc()
            db.background_failure("retention", exc)
        await asyncio.sleep(interval_s)
