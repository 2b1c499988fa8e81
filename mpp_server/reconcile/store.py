"""Reconciliation runs in PostgreSQL (sql/004_reconciliation.sql): run one, read them,
and the metrics the server derives from them.

A run is one transaction: it claims the file's SHA-256, moves the registry's PENDING
payments to COMPLETED, matches, and stores the findings, so a failure leaves nothing
behind and a second import of the same file finds the first and changes nothing.
Runs are serialized by an advisory lock: they are rare, and one at a time keeps
discrepancy ids in commit order for refresh_metrics().
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from mpp_server.db import Conn
from mpp_server.domain import payments
from mpp_server.metrics import MONEY_ALARMS, RECONCILIATION_OPEN
from mpp_server.reconcile.matching import (
    Books,
    Finding,
    Kind,
    OurPayment,
    OurRefund,
    Result,
    fully_consistent,
    match,
)
from mpp_server.reconcile.registry import OpType, Registry

log = logging.getLogger(__name__)

RUN_LOCK_KEY = 7_316_204_004  # any constant, distinct from db.MIGRATION_LOCK_KEY

_PAYMENT_COLUMNS = ("payment_id, mpp_payment_id::text AS mpp_payment_id, customer_id, status, "
                    "amount_tiyn")
_REFUND_QUERY = """
    SELECT f.refund_id, f.payment_id, p.mpp_payment_id::text AS payment_mpp_id,
           f.customer_id, f.status, f.amount_tiyn
    FROM refunds f LEFT JOIN payments p ON p.payment_id = f.payment_id"""
# The latest run of each registry (kind and period): a new file for a period replaces
# the earlier one's view, the earlier discrepancies stay on record.
_LATEST_RUNS = """SELECT DISTINCT ON (kind, period_start) id FROM reconciliation_runs
                  ORDER BY kind, period_start, id DESC"""
_RUN_QUERY = """
    SELECT r.*, (SELECT count(*) FROM reconciliation_discrepancies d
                 WHERE d.run_id = r.id AND NOT d.resolved) AS open_count
    FROM reconciliation_runs r"""


@dataclass(frozen=True)
class Outcome:
    run_id: int
    created: bool  # false: the same file was imported before, nothing was done


async def reconcile(pool: asyncpg.Pool, registry: Registry) -> Outcome:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK_KEY)
        earlier = await conn.fetchval("SELECT id FROM reconciliation_runs WHERE file_sha256 = $1",
                                      registry.sha256)
        if earlier is not None:
            return Outcome(earlier, False)
        completed_now = await _complete_pending(conn, registry)
        result = match(registry, await _load_books(conn, registry), completed_now)
        run_id = await _store(conn, registry, result)
    alarms = sum(f.kind is Kind.CONFIRMS_DECLINED for f in result.findings)
    if alarms:
        log.error("Kaspi's registry confirms payments we declined",
                  extra={"run_id": run_id, "count": alarms})
    return Outcome(run_id, True)


async def _complete_pending(conn: Conn, registry: Registry) -> set[str]:
    """Kaspi's registry proves these payments completed; our notifyPayment's answer was
    lost. Only a row that agrees on everything else changes a payment by itself."""
    rows = {r.kaspi_id: r for r in registry.rows if r.type is OpType.PAYMENT}
    pending = await conn.fetch(
        f"""SELECT {_PAYMENT_COLUMNS} FROM payments
            WHERE payment_id = ANY($1::text[]) AND status = 'PENDING'
            ORDER BY payment_id FOR UPDATE""", list(rows))
    done: set[str] = set()
    for payment in pending:
        if fully_consistent(rows[payment["payment_id"]], OurPayment(**payment)):
            await payments.complete_unanswered(
                conn, payment, evidence=f"Kaspi's {registry.period.kind} registry")
            done.add(payment["payment_id"])
    return done


async def _load_books(conn: Conn, registry: Registry) -> Books:
    ids = list({r.kaspi_id for r in registry.rows})
    start, end = registry.period.utc_bounds()
    named_payments = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE payment_id = ANY($1::text[])", ids)
    named_refunds = await conn.fetch(_REFUND_QUERY + " WHERE f.refund_id = ANY($1::text[])",
                                     ids)
    # Our completion time of a payment is its debit (confirmed_at): notifyPayment goes
    # out at once, and Kaspi completes it on the first attempt it processes.
    period_payments = await conn.fetch(
        f"""SELECT {_PAYMENT_COLUMNS} FROM payments WHERE status = 'COMPLETED'
            AND confirmed_at >= $1 AND confirmed_at < $2""", start, end)
    period_refunds = await conn.fetch(
        _REFUND_QUERY + " WHERE f.status = 'SUCCESS' AND f.created_at >= $1 "
        "AND f.created_at < $2", start, end)
    return Books(
        payments={r["payment_id"]: OurPayment(**r) for r in named_payments},
        refunds={r["refund_id"]: OurRefund(**r) for r in named_refunds},
        period_payments={r["payment_id"]: OurPayment(**r) for r in period_payments},
        period_refunds={r["refund_id"]: OurRefund(**r) for r in period_refunds})


async def _store(conn: Conn, registry: Registry, result: Result) -> int:
    period = registry.period
    run_id: int = await conn.fetchval(
        """INSERT INTO reconciliation_runs (
               file_sha256, file_name, kind, period_start, period_end, status, rows_count,
               matched_count, discrepancy_count, kaspi_payments_count, kaspi_payments_tiyn,
               kaspi_refunds_count, kaspi_refunds_tiyn, kaspi_fees_tiyn, our_payments_count,
               our_payments_tiyn, our_refunds_count, our_refunds_tiyn)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18) RETURNING id""",
        registry.sha256, registry.file_name, period.kind, period.start, period.end,
        "discrepancies" if result.open_count else "matched", len(registry.rows),
        result.matched_count, len(result.findings), result.kaspi_payments.count,
        result.kaspi_payments.tiyn, result.kaspi_refunds.count, result.kaspi_refunds.tiyn,
        result.kaspi_fees_tiyn, result.our_payments.count, result.our_payments.tiyn,
        result.our_refunds.count, result.our_refunds.tiyn)
    now = datetime.now(UTC)
    await conn.copy_records_to_table(
        "reconciliation_discrepancies",
        columns=["run_id", "kind", "kaspi_id", "our_id", "row_number", "expected", "actual",
                 "message", "resolved", "resolved_at", "resolution"],
        records=[_record(run_id, f, now) for f in result.findings])
    # What an earlier registry lacked and this one has (a payment Kaspi completed after
    # midnight, a late registry line) is no longer missing.
    await conn.execute(
        """UPDATE reconciliation_discrepancies
              SET resolved = true, resolved_at = now(), resolution = $2
            WHERE NOT resolved AND kind = 'not_in_registry' AND kaspi_id = ANY($1::text[])""",
        result.matched_ids, f"in the {period.kind} registry {period.label} (run {run_id})")
    return run_id


def _record(run_id: int, f: Finding, now: datetime) -> tuple[object, ...]:
    return (run_id, str(f.kind), f.kaspi_id, f.our_id, f.row_number, f.expected, f.actual,
            f.message, f.resolved, now if f.resolved else None,
            "resolved by this run" if f.resolved else None)


async def get_run(conn: Conn, run_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_RUN_QUERY + " WHERE r.id = $1", run_id)


async def discrepancies(conn: Conn, run_id: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT * FROM reconciliation_discrepancies WHERE run_id = $1
           ORDER BY row_number NULLS LAST, id""", run_id))


async def list_runs(conn: Conn, limit: int, before_id: int | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        _RUN_QUERY + " WHERE $2::bigint IS NULL OR r.id < $2 ORDER BY r.id DESC LIMIT $1",
        limit, before_id))


# Per database (tests run several servers in one process): the newest alarm row that
# this process has counted.
_alarms_counted_up_to: dict[str, int] = {}


async def refresh_metrics(pool: asyncpg.Pool) -> None:
    """For the server's /metrics (the CLI is another, short-lived process): the open
    discrepancies of the latest run of each registry, and registry_confirms_declined_payment
    alarms stored since this process started, counted once each."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""SELECT current_database() AS db,
                  (SELECT count(*) FROM reconciliation_discrepancies
                    WHERE NOT resolved AND run_id IN ({_LATEST_RUNS})) AS open,
                  (SELECT coalesce(max(id), 0) FROM reconciliation_discrepancies
                    WHERE kind = $1) AS newest_alarm""", str(Kind.CONFIRMS_DECLINED))
        assert row is not None
        newest: int = row["newest_alarm"]
        counted = _alarms_counted_up_to.setdefault(row["db"], newest)
        if newest > counted:
            # Claimed before the next await: a concurrent refresh cannot count them again.
            _alarms_counted_up_to[row["db"]] = newest
            new: int = await conn.fetchval(
                """SELECT count(*) FROM reconciliation_discrepancies
                   WHERE kind = $1 AND id > $2 AND id <= $3""",
                str(Kind.CONFIRMS_DECLINED), counted, newest)
            MONEY_ALARMS.labels(str(Kind.CONFIRMS_DECLINED)).inc(new)
    RECONCILIATION_OPEN.set(row["open"])
