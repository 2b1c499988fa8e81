"""Storage per completed payment (issue 26): how much the database grows per payment,
across every table (tables, their indexes and TOAST; the exchange journal's partitions
counted as one table), and what a year at 1 million payments a day needs: with the
journal kept EXCHANGE_RETENTION_DAYS (it stops growing once its oldest month is
dropped) and with the journal kept for ever.

Measured as growth on disk between two snapshots around the payment phases, once the
servers' journal queues are written: dead row versions of the payments' status updates
are included until autovacuum lets their space be reused, so the figure is an upper
bound of the steady state. WAL and the backups' repository are not counted.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg

from mpp_server.config import DEFAULT_RETENTION_DAYS
from mpp_server.journal import FLUSH_INTERVAL_S

PAYMENTS_PER_DAY = 1_000_000
DAYS_PER_YEAR = 365
# A journal month is dropped once it ended EXCHANGE_RETENTION_DAYS ago: up to a month more.
LONGEST_MONTH_DAYS = 31
JOURNAL = "exchange_journal"
SETTLE_BOUND_S = 15.0

_SIZES = """
    SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
           sum(pg_total_relation_size(c.oid))::bigint AS bytes
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
     GROUP BY 1"""


async def snapshot(dsn: str) -> dict[str, int]:
    """Bytes on disk per table (with its indexes and TOAST)."""
    conn = await asyncpg.connect(dsn)
    try:
        return {r["name"]: r["bytes"] for r in await conn.fetch(_SIZES)}
    finally:
        await conn.close()


async def _journal_settled(dsn: str) -> None:
    """Until the journal's row count holds still across a few flush intervals (the
    servers write it in batches), bounded."""
    conn = await asyncpg.connect(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_BOUND_S
        last = -1
        while loop.time() < deadline:
            rows = await conn.fetchval(f"SELECT count(*) FROM {JOURNAL}")
            if rows == last:
                return
            last = rows
            await asyncio.sleep(FLUSH_INTERVAL_S * 4)
    finally:
        await conn.close()


def _gb(value: float) -> float:
    return round(value / 1e9, 1)


async def per_payment(dsn: str, before: dict[str, int], payments: int) -> dict[str, Any]:
    """Growth since `before`, per completed payment, and the projection."""
    await _journal_settled(dsn)
    after = await snapshot(dsn)
    growth = {name: after[name] - before.get(name, 0) for name in after}
    if payments <= 0:
        return {"payments": 0}
    by_table = {name: round(grown / payments) for name, grown in
                sorted(growth.items(), key=lambda item: -item[1]) if grown > 0}
    total = sum(growth.values()) / payments
    journal = growth.get(JOURNAL, 0) / payments
    retention_days = int(os.environ.get("EXCHANGE_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS)
    kept_days = retention_days + LONGEST_MONTH_DAYS
    records_per_year = (total - journal) * PAYMENTS_PER_DAY * DAYS_PER_YEAR
    return {
        "payments": payments,
        "bytes_per_payment": round(total),
        "journal_bytes_per_payment": round(journal),
        "bytes_per_payment_by_table": by_table,
        "at_1m_payments_a_day": {
            "gb_per_year_journal_kept_for_ever": _gb(total * PAYMENTS_PER_DAY * DAYS_PER_YEAR),
            "gb_per_year_journal_retained": _gb(records_per_year),
            "journal_retention_days": retention_days,
            "gb_journal_retained_at_most": _gb(journal * PAYMENTS_PER_DAY * kept_days),
        },
    }


def table_rows(storage: dict[str, Any]) -> list[tuple[str, Any]]:
    """The benchmark table's lines."""
    if not storage.get("payments"):
        return [("storage per payment", "no payment completed")]
    year = storage["at_1m_payments_a_day"]
    return [
        ("storage per completed payment, bytes (journal)",
         f"{storage['bytes_per_payment']} ({storage['journal_bytes_per_payment']})"),
        ("  at 1M payments/day, GB/year, journal kept", year["gb_per_year_journal_kept_for_ever"]),
        (f"  ... journal kept {year['journal_retention_days']} days: GB/year + journal GB",
         f"{year['gb_per_year_journal_retained']} + {year['gb_journal_retained_at_most']}"),
    ]
