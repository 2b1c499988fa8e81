"""What an operator does with a webhook delivery: replay it, list them. One function
each, for the command line (cli.py) and the console alike."""

from __future__ import annotations

import asyncpg

from mpp_server import audit
from mpp_server.db import Conn
from mpp_server.domain.outcomes import WebhookReplayOutcome, WebhookStatus


async def replay(conn: Conn, event_id: int,
                 actor: audit.Actor) -> tuple[WebhookReplayOutcome, asyncpg.Record]:
    """Send a delivery again (GIVEN_UP or DELIVERED: due now, with a fresh
    WEBHOOK_MAX_AGE_S) and journal who asked, in one transaction; the senders of every
    server process take it at their next poll."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT r.outcome, (r.delivery).* FROM webhook_replay($1) r", event_id)
        assert row is not None
        outcome = WebhookReplayOutcome(row["outcome"])
        if outcome is WebhookReplayOutcome.REPLAYED:
            await audit.append(conn, actor, audit.Action.WEBHOOK_REPLAYED,
                               f"webhook:{event_id}", {"replays": row["replays"]})
    return outcome, row


async def listed(conn: Conn, status: WebhookStatus, limit: int) -> list[asyncpg.Record]:
    """Deliveries in `status` with their events' types, the longest waiting first."""
    return list(await conn.fetch(
        """SELECT d.*, e.type FROM webhook_deliveries d LEFT JOIN events e ON e.id = d.event_id
            WHERE d.status = $1 ORDER BY d.pending_since, d.event_id LIMIT $2""",
        status.value, limit))
