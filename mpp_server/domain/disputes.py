"""Disputes: a customer's complaint about a payment, answered within
DISPUTE_RESPONSE_HOURS (the integration checklist: 24 hours; docs/notices.md).

Each step is one statement of sql/functions/disputes.sql: `dispute_open` (the disputeId
claimed first: docs/design.md, "Idempotency") and `dispute_resolve`, the one way a dispute
is resolved, whoever resolves it: `resolve` below for an operator (the command line,
the console; journaled), `withdraw` for the wallet, and refund_apply when Kaspi's
refunds of the payment cover the dispute (REFUNDED). Each writes its event (dispute.opened,
dispute.resolved), which the feed and the webhooks carry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from mpp_server import audit
from mpp_server.db import Conn
from mpp_server.domain.outcomes import (
    DisputeOpenOutcome,
    DisputeResolution,
    DisputeResolveOutcome,
)
from mpp_server.errors import (
    CustomerMismatch,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from mpp_server.logs import mask_customer

log = logging.getLogger(__name__)

NOTE_MAX_CHARS = 1000
BY_MAX_CHARS = 128
# Who resolves a dispute when the wallet withdraws it on the customer's behalf.
BY_WALLET = "wallet"
# How many open disputes a list shows at most.
LIST_MAX = 1000


@dataclass(frozen=True)
class DisputeRequest:
    dispute_id: str
    payment_id: str
    customer_id: str
    reason: str
    amount_tiyn: int | None  # None: the whole payment


@dataclass(frozen=True)
class Opened:
    dispute: asyncpg.Record
    created: bool  # False: a repeat of the same request


async def open_dispute(pool: asyncpg.Pool, req: DisputeRequest,
                       response_hours: int) -> Opened:
    """OPEN, due `response_hours` from now, once per disputeId. NotFound (no such
    payment), CustomerMismatch, InvalidState (nothing was paid), ValidationFailed (more
    than the payment), IdempotencyConflict: each records nothing."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT d.outcome, (d.dispute).* FROM dispute_open($1, $2, $3, $4, $5, $6) d",
            req.dispute_id, req.payment_id, req.customer_id, req.reason, req.amount_tiyn,
            float(response_hours))
    assert row is not None
    outcome = DisputeOpenOutcome(row["outcome"])
    if outcome is DisputeOpenOutcome.UNKNOWN_PAYMENT:
        raise NotFound(f"payment {req.payment_id!r} not found")
    if outcome is DisputeOpenOutcome.CUSTOMER_MISMATCH:
        raise CustomerMismatch("the payment is another customer's")
    if outcome is DisputeOpenOutcome.NOT_PAID:
        raise InvalidState("nothing was paid: only a PENDING or COMPLETED payment can be "
                           "disputed")
    if outcome is DisputeOpenOutcome.EXCEEDS:
        raise ValidationFailed("amount is more than the payment")
    if outcome is DisputeOpenOutcome.CONFLICT:
        raise IdempotencyConflict(f"disputeId {req.dispute_id!r} was already used with "
                                  f"another payment, customer, reason or amount")
    if outcome is DisputeOpenOutcome.OPENED:
        log.info("dispute opened", extra={"dispute_id": req.dispute_id,
                                          "payment_id": req.payment_id,
                                          "customer": mask_customer(req.customer_id)})
    return Opened(row, outcome is DisputeOpenOutcome.OPENED)


async def get(pool: asyncpg.Pool, dispute_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM disputes WHERE dispute_id = $1", dispute_id)
    if row is None:
        raise NotFound(f"dispute {dispute_id!r} not found")
    return row


async def resolve(conn: Conn, dispute_id: str, resolution: DisputeResolution, note: str,
                  actor: audit.Actor) -> asyncpg.Record:
    """The one function operators resolve a dispute with (the command line and the
    console): RESOLVED with `resolution` (REJECTED, or REFUNDED once Kaspi has refunded
    some of the payment), the note and who, dispute.resolved, and the audit journal's row,
    in one transaction. Resolving again the same way answers the dispute as it is, and
    journals nothing. NotFound, InvalidState (resolved otherwise; REFUNDED while Kaspi has
    refunded nothing), ValidationFailed (no note, a note out of bounds, WITHDRAWN: that
    is the customer's)."""
    if resolution is DisputeResolution.WITHDRAWN:
        raise ValidationFailed("only the customer withdraws a dispute (the wallet API)")
    if not note.strip():
        raise ValidationFailed("a note must say why")
    async with conn.transaction():
        outcome, row = await _resolve(conn, dispute_id, resolution, note, actor.name, None)
        if outcome is DisputeResolveOutcome.RESOLVED:
            await audit.append(conn, actor, audit.Action.DISPUTE_RESOLVED,
                               f"dispute:{dispute_id}",
                               {"resolution": resolution.value, "note": note,
                                "payment_id": row["payment_id"]})
    return row


async def withdraw(pool: asyncpg.Pool, dispute_id: str, customer_id: str) -> asyncpg.Record:
    """The customer withdraws the complaint (the wallet on their behalf)."""
    async with pool.acquire() as conn:
        _, row = await _resolve(conn, dispute_id, DisputeResolution.WITHDRAWN, None,
                                BY_WALLET, customer_id)
    return row


async def _resolve(conn: Conn, dispute_id: str, resolution: DisputeResolution,
                   note: str | None, by: str,
                   customer_id: str | None) -> tuple[DisputeResolveOutcome, asyncpg.Record]:
    """dispute_resolve (disputes.sql), every resolver's one step, its refusals raised.
    `customer_id`: only that customer's dispute (a withdrawal). NotFound,
    CustomerMismatch, InvalidState, ValidationFailed (a note or name out of bounds)."""
    if note is not None and (len(note) > NOTE_MAX_CHARS or "\x00" in note):
        raise ValidationFailed(f"a note is at most {NOTE_MAX_CHARS} characters, no NUL")
    if not 0 < len(by) <= BY_MAX_CHARS:
        raise ValidationFailed(f"who resolves it is 1-{BY_MAX_CHARS} characters")
    row = await conn.fetchrow(
        "SELECT r.outcome, (r.dispute).* FROM dispute_resolve($1, $2, $3, $4, $5) r",
        dispute_id, resolution.value, note, by, customer_id)
    assert row is not None
    outcome = DisputeResolveOutcome(row["outcome"])
    if outcome is DisputeResolveOutcome.UNKNOWN:
        raise NotFound(f"dispute {dispute_id!r} not found")
    if outcome is DisputeResolveOutcome.CUSTOMER_MISMATCH:
        raise CustomerMismatch("the dispute is another customer's")
    if outcome is DisputeResolveOutcome.ALREADY_RESOLVED:
        raise InvalidState(f"dispute {dispute_id!r} is already RESOLVED as "
                           f"{row['resolution']} (by {row['resolved_by']})")
    if outcome is DisputeResolveOutcome.NOT_REFUNDED:
        raise InvalidState(f"Kaspi has refunded nothing of payment {row['payment_id']!r}: "
                           f"REFUNDED needs its refund (it resolves the dispute by itself "
                           f"once the refunds cover it)")
    if outcome is DisputeResolveOutcome.RESOLVED:
        log.info("dispute resolved", extra={"dispute_id": dispute_id,
                                            "resolution": resolution.value, "by": by})
    return outcome, row


async def open_by_due(conn: Conn, limit: int = LIST_MAX) -> list[asyncpg.Record]:
    """The OPEN disputes, the soonest due first (the operators' list), each with `total`
    (how many are open) and `overdue` (past dueAt)."""
    return list(await conn.fetch(
        """SELECT d.*, count(*) OVER () AS total, d.due_at <= now() AS overdue
             FROM disputes d WHERE d.status = 'OPEN' ORDER BY d.due_at LIMIT $1""",
        limit))


async def counts(conn: Conn) -> asyncpg.Record:
    """How many disputes are OPEN, and how many of them are past dueAt (the gauges)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS open, count(*) FILTER (WHERE due_at <= now()) AS overdue
             FROM disputes WHERE status = 'OPEN'""")
    assert row is not None
    return row
