"""The overview page (`/`): what needs a person now, one section each. A section is a
title, a template (templates/overview/) and a loader; adding one is one entry in
SECTIONS and one template."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mpp_server.config import Settings
from mpp_server.db import Conn
from mpp_server.domain import disputes
from mpp_server.domain.outcomes import WebhookStatus
from mpp_server.webhooks import store as webhook_store

LISTED = 10  # rows listed per section (the count says how many there are)

Loader = Callable[[Conn, Settings], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    load: Loader

    @property
    def template(self) -> str:
        return f"overview/{self.key}.html"


async def _pending_past_budget(conn: Conn, settings: Settings) -> dict[str, Any]:
    """PENDING longer than confirm's budget: the worker is still trying Kaspi. Found
    through the outbox: every PENDING payment has its row there (migration 023)."""
    rows = await conn.fetch(
        """SELECT p.payment_id, p.customer_id, p.amount_tiyn, p.confirmed_at,
                  o.attempts, o.last_error, o.next_attempt_at, count(*) OVER () AS total
             FROM notify_outbox o JOIN payments p USING (payment_id)
            WHERE p.status = 'PENDING'
              AND p.confirmed_at < now() - make_interval(secs => $1)
            ORDER BY p.confirmed_at LIMIT $2""",
        settings.confirm_budget_ms / 1000, LISTED)
    return {"rows": rows, "total": rows[0]["total"] if rows else 0}


async def _notify_outbox(conn: Conn, settings: Settings) -> dict[str, Any]:
    summary = await conn.fetchrow(
        """SELECT count(*) AS depth, min(created_at) AS oldest,
                  count(*) FILTER (WHERE last_error IS NOT NULL) AS failing
             FROM notify_outbox""")
    rows = await conn.fetch(
        """SELECT payment_id, result_code, attempts, last_error, next_attempt_at, created_at
             FROM notify_outbox ORDER BY created_at LIMIT $1""", LISTED)
    return {"summary": summary, "rows": rows}


async def _topups_past_session(conn: Conn, settings: Settings) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT topup_id, customer_id, provider, amount_tiyn, created_at, expires_at,
                  checks, last_check_error, count(*) OVER () AS total
             FROM topups WHERE status = 'CREATED' AND expires_at < now()
            ORDER BY expires_at LIMIT $1""", LISTED)
    return {"rows": rows, "total": rows[0]["total"] if rows else 0}


async def _card_refunds_waiting(conn: Conn, settings: Settings) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT refund_id, topup_id, amount_tiyn, status, attempts, last_error,
                  next_attempt_at, created_at, count(*) OVER () AS total
             FROM topup_refunds WHERE status IN ('PENDING', 'UNKNOWN')
            ORDER BY status DESC, created_at LIMIT $1""", LISTED)
    return {"rows": rows, "total": rows[0]["total"] if rows else 0}


async def _open_discrepancies(conn: Conn, settings: Settings) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT d.id, d.run_id, d.kind, d.kaspi_id, d.message, d.created_at,
                  count(*) OVER () AS total
             FROM reconciliation_discrepancies d WHERE NOT d.resolved
            ORDER BY d.id DESC LIMIT $1""", LISTED)
    return {"rows": rows, "total": rows[0]["total"] if rows else 0}


async def _open_disputes(conn: Conn, settings: Settings) -> dict[str, Any]:
    """Customers' disputes waiting for an answer, the soonest due first (resolved here)."""
    rows = await disputes.open_by_due(conn, LISTED)
    return {"rows": rows, "total": rows[0]["total"] if rows else 0,
            "overdue": sum(r["overdue"] for r in rows)}


async def _webhooks_given_up(conn: Conn, settings: Settings) -> dict[str, Any]:
    """Webhooks the wallet backend never acknowledged within WEBHOOK_MAX_AGE_S (replayed
    here)."""
    rows = await webhook_store.listed(conn, WebhookStatus.GIVEN_UP, LISTED)
    total = await conn.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'GIVEN_UP'") if rows else 0
    return {"rows": rows, "total": total}


async def _reachability(conn: Conn, settings: Settings) -> dict[str, Any]:
    """The database: it answered this page (how fast, which role); Kaspi: what the books
    say of the two directions (its last request to us over the tunnel, our notifies it
    has not answered), since the console never calls Kaspi itself."""
    started = time.perf_counter()
    database = await conn.fetchrow(
        "SELECT pg_is_in_recovery() AS standby, current_setting('server_version') AS version")
    round_trip_ms = (time.perf_counter() - started) * 1000
    kaspi = await conn.fetchrow(
        """SELECT (SELECT max(received_at) FROM inbound_requests) AS last_inbound,
                  (SELECT count(*) FROM notify_outbox WHERE last_error IS NOT NULL)
                    AS notify_failing,
                  (SELECT last_error FROM notify_outbox WHERE last_error IS NOT NULL
                    ORDER BY next_attempt_at DESC LIMIT 1) AS last_error""")
    return {"database": database, "round_trip_ms": round_trip_ms, "kaspi": kaspi,
            "kaspi_base_url": settings.kaspi_base_url}


SECTIONS: tuple[Section, ...] = (
    Section("reachability", "Database and Kaspi", _reachability),
    Section("pending", "Payments PENDING past their budget", _pending_past_budget),
    Section("outbox", "notifyPayment outbox", _notify_outbox),
    Section("topups", "Top-ups CREATED past their session", _topups_past_session),
    Section("card_refunds", "Refunds to cards waiting", _card_refunds_waiting),
    Section("discrepancies", "Unacknowledged reconciliation discrepancies",
            _open_discrepancies),
    Section("disputes", "Customers' disputes, the soonest due first", _open_disputes),
    Section("webhooks", "Webhooks given up", _webhooks_given_up),
)


async def load(conn: Conn, settings: Settings) -> list[tuple[Section, dict[str, Any]]]:
    return [(section, await section.load(conn, settings)) for section in SECTIONS]
