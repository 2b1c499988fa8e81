"""Reconciliation runs in PostgreSQL (sql/migrations/004_reconciliation.sql): run one, read them,
and the metrics the server derives from them.

A run is one transaction: it claims the file's SHA-256, moves the registry's PENDING
payments to COMPLETED, matches, stores the findings and which operations it matched
(reconciliation_matches, sql/010: one registry of a kind settles an operation once), so
a failure leaves nothing behind and a second import of the same file finds the first and
changes nothing (the same file under another period is refused).
Runs are serialized by an advisory lock: they are rare, and one at a time keeps
discrepancy ids in commit order for refresh_metrics().
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from mpp_server import audit, cursors
from mpp_server.db import Conn
from mpp_server.domain import payments
from mpp_server.metrics import MONEY_ALARMS, RECONCILIATION_ACKNOWLEDGED, RECONCILIATION_OPEN
from mpp_server.reconcile.matching import (
    MONEY_ALARM_KINDS,
    NO_AGREED_RATE,
    Books,
    FeeRule,
    Finding,
    MatchResult,
    OurPayment,
    OurRefund,
    fully_consistent,
    match,
)
from mpp_server.reconcile.registry import OpType, Registry, RegistryError, RegistryPeriod
from mpp_server.reconcile.report import ACKNOWLEDGED_WITH_DIFFERENCES

log = logging.getLogger(__name__)

RUN_LOCK_KEY = 7_316_204_004  # any constant, distinct from db.MIGRATION_LOCK_KEY

_PAYMENT_COLUMNS = ("payment_id, mpp_payment_id::text AS mpp_payment_id, customer_id, status, "
                    "amount_tiyn, confirmed_at, updated_at")
_REFUND_QUERY = """
    SELECT f.refund_id, f.payment_id, p.mpp_payment_id::text AS payment_mpp_id,
           f.customer_id, f.status, f.amount_tiyn, f.created_at
    FROM refunds f LEFT JOIN payments p ON p.payment_id = f.payment_id"""
# The latest run of each registry (kind and period): a new file for a period replaces
# the earlier one's view, the earlier discrepancies stay on record.
_LATEST_RUNS = """SELECT DISTINCT ON (kind, period_start) id FROM reconciliation_runs
                  ORDER BY kind, period_start, id DESC"""
# A run with its status as it reads now (sql/functions/reconciliation.sql); `status` is
# the one the run ended with.
_RUN_QUERY = """
    SELECT r.*, n.status AS status_now, n.open_count, n.acknowledged_count,
           n.settlement_difference_tiyn
    FROM reconciliation_runs r, LATERAL reconciliation_run_now(r) n"""


@dataclass(frozen=True)
class Outcome:
    run_id: int
    created: bool  # false: the same file was imported before, nothing was done


class NotFound(LookupError):
    pass


class AlreadyResolved(ValueError):
    pass


async def reconcile(pool: asyncpg.Pool, registry: Registry,
                    fees: FeeRule = NO_AGREED_RATE) -> Outcome:
    """RegistryError (nothing written) for a file imported before as another registry."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK_KEY)
        earlier = await conn.fetchrow(
            "SELECT id, kind, period_start FROM reconciliation_runs WHERE file_sha256 = $1",
            registry.sha256)
        if earlier is not None:
            period = registry.period
            if (earlier["kind"], earlier["period_start"]) != (period.kind, period.start):
                raise RegistryError(
                    f"{registry.file_name}: this file was imported as the {earlier['kind']} "
                    f"registry of {_label(earlier['kind'], earlier['period_start'])} (run "
                    f"{earlier['id']}), not as {period.kind} {period.label}: a file is one "
                    "registry; get the right file for this period from Kaspi")
            return Outcome(earlier["id"], False)
        completed_now = await _complete_pending(conn, registry)
        result = match(registry, await _load_books(conn, registry), completed_now, fees)
        run_id = await _store(conn, registry, result)
    for kind in MONEY_ALARM_KINDS:
        alarms = sum(f.kind is kind for f in result.findings)
        if alarms:
            log.error("Kaspi's registry confirms payments whose money we never kept",
                      extra={"run_id": run_id, "kind": str(kind), "count": alarms})
    return Outcome(run_id, True)


def _label(kind: str, start: object) -> str:
    text = str(start)
    return text if kind == "daily" else text[:7]


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
    """Each operation is read once and held once: a month's registry names most of what
    the period holds (memory, docs/reconciliation.md)."""
    ids = list({r.kaspi_id for r in registry.rows})
    start, end = registry.period.utc_bounds()
    named_payments = {r["payment_id"]: OurPayment(**r) for r in await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE payment_id = ANY($1::text[])", ids)}
    named_refunds = {r["refund_id"]: OurRefund(**r) for r in await conn.fetch(
        _REFUND_QUERY + " WHERE f.refund_id = ANY($1::text[])", ids)}
    # Our completion time of a payment is its debit (confirmed_at): notifyPayment goes
    # out at once, and Kaspi completes it on the first attempt it processes. What the
    # registry names was read above; the rest of the period is read here.
    period_payments = {p.payment_id: p for p in named_payments.values()
                       if p.status == "COMPLETED" and p.confirmed_at is not None
                       and start <= p.confirmed_at < end}
    period_payments.update((r["payment_id"], OurPayment(**r)) for r in await conn.fetch(
        f"""SELECT {_PAYMENT_COLUMNS} FROM payments WHERE status = 'COMPLETED'
            AND confirmed_at >= $1 AND confirmed_at < $2
            AND NOT payment_id = ANY($3::text[])""", start, end, ids))
    period_refunds = {f.refund_id: f for f in named_refunds.values()
                      if f.status == "SUCCESS" and f.created_at is not None
                      and start <= f.created_at < end}
    period_refunds.update((r["refund_id"], OurRefund(**r)) for r in await conn.fetch(
        _REFUND_QUERY + " WHERE f.status = 'SUCCESS' AND f.created_at >= $1 "
        "AND f.created_at < $2 AND NOT f.refund_id = ANY($3::text[])", start, end, ids))
    elsewhere = await conn.fetch(
        """SELECT kaspi_id, op_type, period_start, run_id FROM reconciliation_matches
           WHERE kind = $1 AND kaspi_id = ANY($2::text[]) AND period_start <> $3""",
        registry.period.kind, ids, registry.period.start)
    return Books(
        payments=named_payments, refunds=named_refunds, period_payments=period_payments,
        period_refunds=period_refunds,
        matched_elsewhere={
            (r["kaspi_id"], OpType(r["op_type"])):
                f"{registry.period.kind} {_label(registry.period.kind, r['period_start'])} "
                f"(run {r['run_id']})" for r in elsewhere})


async def _store(conn: Conn, registry: Registry, result: MatchResult) -> int:
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
                 "message", "resolved", "resolved_at", "resolution", "sheet", "customer_id",
                 "registry_at", "our_at"],
        records=(_record(run_id, f, now) for f in result.findings))
    await _claim_matches(conn, period, run_id, result)
    # What an earlier registry lacked and this one has (a payment Kaspi completed after
    # midnight, a late registry line) is no longer missing.
    await conn.execute(
        """UPDATE reconciliation_discrepancies
              SET resolved = true, resolved_at = now(), resolution = $2
            WHERE NOT resolved AND kind = 'not_in_registry' AND kaspi_id = ANY($1::text[])""",
        result.matched_ids, f"in the {period.kind} registry {period.label} (run {run_id})")
    return run_id


async def _claim_matches(conn: Conn, period: RegistryPeriod, run_id: int,
                         result: MatchResult) -> None:
    """Record which operations this run matched. The primary key is the guard: an
    operation another period's registry holds is never taken over (matching reported it
    already; should it not have, the run fails and writes nothing)."""
    claimed: int = await conn.fetchval(
        """WITH claimed AS (
               INSERT INTO reconciliation_matches AS m (kind, op_type, kaspi_id,
                                                        period_start, run_id)
               SELECT $1, op_type, kaspi_id, $2, $3
               FROM unnest($4::text[], $5::text[]) AS t (kaspi_id, op_type)
               ON CONFLICT (kind, op_type, kaspi_id) DO UPDATE SET run_id = excluded.run_id
                   WHERE m.period_start = excluded.period_start
               RETURNING 1)
           SELECT count(*) FROM claimed""",
        period.kind, period.start, run_id, result.matched_ids,
        [str(op_type) for _, op_type in result.matched])
    if claimed != len(result.matched):
        raise RuntimeError(f"run {run_id}: {len(result.matched) - claimed} matched operations "
                           "are held by another registry of the same kind")


def _record(run_id: int, f: Finding, now: datetime) -> tuple[object, ...]:
    return (run_id, str(f.kind), f.kaspi_id, f.our_id, f.row_number, f.expected, f.actual,
            f.message, f.resolved, now if f.resolved else None,
            "resolved by this run" if f.resolved else None, f.sheet, f.customer_id,
            f.registry_at, f.our_at)


async def get_run(conn: Conn, run_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_RUN_QUERY + " WHERE r.id = $1", run_id)


async def discrepancies(conn: Conn, run_id: int, limit: int | None = None,
                        after_id: int = cursors.START) -> list[asyncpg.Record]:
    """In the order found (the rows' order, then what only our books have, then the
    totals); `limit` and `after_id` page through them by id. A cursor beyond the run's
    last item is refused (mpp_server/cursors.py)."""
    rows = list(await conn.fetch(
        """SELECT * FROM reconciliation_discrepancies
           WHERE run_id = $1 AND id > $3 ORDER BY id LIMIT $2""", run_id, limit, after_id))
    if not rows and after_id != cursors.START:
        last: int = await conn.fetchval(
            """SELECT coalesce(max(id), 0) FROM reconciliation_discrepancies
                WHERE run_id = $1""", run_id)
        cursors.refuse_beyond_end(after_id, last, f"reconciliation {run_id}'s items")
    return rows


async def acknowledge(conn: Conn, item_id: int, by: audit.Actor,
                      reason: str) -> asyncpg.Record:
    """A person handled a discrepancy: it stops counting as open, and stays on record
    with who, when and why; in the same transaction, the audit journal's row (whether
    from `reconcile ack` or the operators' console). NotFound, AlreadyResolved. The one way
    to acknowledge; what the run then reads as is derived from its items
    (reconciliation_run_now): a run with an acknowledged item is never `matched`."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE reconciliation_discrepancies
                  SET resolved = true, resolved_at = now(), resolved_by = $2, resolution = $3
                WHERE id = $1 AND NOT resolved RETURNING *""", item_id, by.name, reason)
        if row is not None:
            await audit.append(conn, by, audit.Action.DISCREPANCY_ACKNOWLEDGED,
                               f"discrepancy:{item_id}",
                               {"reason": reason, "kind": row["kind"], "run_id": row["run_id"],
                                "kaspi_id": row["kaspi_id"]})
            return row
    earlier = await conn.fetchrow("SELECT * FROM reconciliation_discrepancies WHERE id = $1",
                                  item_id)
    if earlier is None:
        raise NotFound(f"discrepancy {item_id} not found")
    raise AlreadyResolved(
        f"discrepancy {item_id} was resolved at {earlier['resolved_at']:%Y-%m-%d %H:%M:%S%z}"
        f"{' by ' + earlier['resolved_by'] if earlier['resolved_by'] else ''}: "
        f"{earlier['resolution']}")


async def list_runs(conn: Conn, limit: int, before_id: int | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        _RUN_QUERY + " WHERE $2::bigint IS NULL OR r.id < $2 ORDER BY r.id DESC LIMIT $1",
        limit, before_id))


# Per database (tests run several servers in one process): the newest alarm row that
# this process has counted.
_alarms_counted_up_to: dict[str, int] = {}

# The latest run of each registry as it reads now: its open discrepancies (every registry
# with some is a series, and the newest registry of each kind is one even at 0) and, once
# nothing is open but it is not a match, its settlement difference.
_LATEST_BY_REGISTRY = f"""
    SELECT r.kind, r.period_start, n.status, n.open_count, n.settlement_difference_tiyn,
           r.period_start = max(r.period_start) OVER (PARTITION BY r.kind) AS newest
    FROM reconciliation_runs r, LATERAL reconciliation_run_now(r) n
    WHERE r.id IN ({_LATEST_RUNS})"""


async def refresh_metrics(pool: asyncpg.Pool) -> None:
    """For the server's /metrics (the CLI is another, short-lived process): the open
    discrepancies of the latest run of each registry, and money alarms
    (MONEY_ALARM_KINDS) stored since this process started, counted once each."""
    kinds = [str(k) for k in MONEY_ALARM_KINDS]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT current_database() AS db,
                  (SELECT coalesce(max(id), 0) FROM reconciliation_discrepancies
                    WHERE kind = ANY($1::text[])) AS newest_alarm""", kinds)
        assert row is not None
        registries = await conn.fetch(_LATEST_BY_REGISTRY)
        newest: int = row["newest_alarm"]
        seen = _alarms_counted_up_to.setdefault(row["db"], newest)
        alarms = [] if newest <= seen else await conn.fetch(
            """SELECT id, kind FROM reconciliation_discrepancies
               WHERE kind = ANY($1::text[]) AND id > $2 AND id <= $3""", kinds, seen, newest)
    # Counted and claimed with no await in between: a concurrent refresh cannot count
    # them again, and a refresh that returns has counted every alarm it saw (claiming
    # before the fetch left them uncounted while it ran, and for ever if it failed).
    counted = _alarms_counted_up_to[row["db"]]
    for alarm in alarms:
        if alarm["id"] > counted:
            MONEY_ALARMS.labels(alarm["kind"]).inc()
    _alarms_counted_up_to[row["db"]] = max(counted, newest)
    # No await between clear and set: a scrape never sees the gauges half refreshed.
    RECONCILIATION_OPEN.clear()
    RECONCILIATION_ACKNOWLEDGED.clear()
    for r in registries:
        labels = (r["kind"], _label(r["kind"], r["period_start"]))
        if r["open_count"] or r["newest"]:
            RECONCILIATION_OPEN.labels(*labels).set(r["open_count"])
        if r["status"] == ACKNOWLEDGED_WITH_DIFFERENCES:
            RECONCILIATION_ACKNOWLEDGED.labels(*labels).set(r["settlement_difference_tiyn"])
