"""The wallet's event feed (`GET /v1/events`): every event once, in one order, with a
bound on how long any transaction can keep a committed event from it.

Events are inserted unnumbered (seq NULL) in the transaction whose change they report.
Before each read the reader runs the publisher, `events_publish`
(sql/functions/events.sql): under an advisory lock held to its commit it numbers the
committed, unnumbered events in id order from one sequence. Readers read numbered
events by seq. Because one publisher at a time numbers only what has committed, and its
numbers become visible together at its commit, before the next publisher can start, a
reader that has seen seq N has seen every seq below it: a reader that follows `next`
never misses an event. Nothing but our own event-writing transactions is waited for,
and those for at most EVENTS_HOLD_MS (docs/events.md).

Cursors are the last seq read ("42", mpp_server/cursors.py); one beyond the feed's end
is refused. Cursors of the old design, "txid-id", are still taken: 009_events_publisher
numbered the events that existed in (txid, id) order, so such a cursor stands for the
largest seq among the events at or before it, and it is beyond the end when no numbered
event is at or after it.
"""

from __future__ import annotations

import asyncpg

from mpp_server import cursors
from mpp_server.db import Conn
from mpp_server.errors import ValidationFailed

FEED = "the event feed"
# The most events one publisher call numbers: a read after a long quiet spell catches
# up over a few calls instead of one long statement.
PUBLISH_BATCH = 10_000
Legacy = tuple[int, int]


# An event with what the app shows beside it (docs/notices.md): the receipt of a
# completed payment or a credited refund, the merchant's name, a resolved dispute's
# resolution. The feed and the webhooks read events this way, and only this way.
_EVENTS = """
    SELECT e.id, e.seq, e.type, e.customer_id, e.payment_id, e.refund_id, e.topup_id,
           e.dispute_id, e.amount_tiyn, e.created_at, p.locale,
           p.merchant ->> 'merchantName' AS merchant_name,
           CASE e.type WHEN 'payment.completed' THEN p.link_receipt
                       WHEN 'refund.credited' THEN r.link_receipt END AS link_receipt,
           CASE WHEN e.type = 'dispute.resolved' THEN d.resolution END AS resolution
      FROM events e
      LEFT JOIN payments p ON p.payment_id = e.payment_id
      LEFT JOIN refunds r ON r.refund_id = e.refund_id
      LEFT JOIN disputes d ON d.dispute_id = e.dispute_id"""


async def by_ids(conn: Conn, event_ids: list[int]) -> dict[int, asyncpg.Record]:
    """The events of these ids that are still kept, as the feed shows them."""
    rows = await conn.fetch(_EVENTS + " WHERE e.id = ANY($1::bigint[])", event_ids)
    return {row["id"]: row for row in rows}


async def read_after(pool: asyncpg.Pool, after: int | Legacy, limit: int,
                     hold_ms: int) -> tuple[list[asyncpg.Record], str]:
    """The events after the cursor (a seq, or an old (txid, event id)), and the cursor
    that follows them: the last seq read, or the one given when none follows yet."""
    async with pool.acquire() as conn:
        # Its own transaction: the numbers must be committed before they are read.
        await conn.execute("SELECT events_publish($1, $2)", hold_ms, PUBLISH_BATCH)
        seq = await _legacy_seq(conn, after) if isinstance(after, tuple) else after
        rows = await conn.fetch(_EVENTS + " WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
                                seq, limit)
        if not rows:
            # Nothing after it: at the end, or beyond it (asked only then, so a busy
            # feed pays nothing for the check).
            last: int = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
            cursors.refuse_beyond_end(seq, last, FEED)
    if rows:
        return list(rows), str(rows[-1]["seq"])
    return [], str(seq)


async def _legacy_seq(conn: Conn, after: Legacy) -> int:
    """The seq an old cursor stands for; refused when no numbered event is at or after
    it (the old server handed out only the place of an event it had read)."""
    if after == (0, 0):
        return cursors.START
    row = await conn.fetchrow(
        """SELECT (SELECT coalesce(max(seq), 0) FROM events
                    WHERE (txid, id) <= ($1::text::xid8, $2) AND seq IS NOT NULL) AS seq,
                  EXISTS (SELECT FROM events
                           WHERE (txid, id) >= ($1::text::xid8, $2)
                             AND seq IS NOT NULL) AS within,
                  (SELECT coalesce(max(seq), 0) FROM events) AS last""",
        str(after[0]), after[1])
    assert row is not None
    if not row["within"]:
        raise ValidationFailed(cursors.beyond_end(f"{after[0]}-{after[1]}", row["last"], FEED))
    seq: int = row["seq"]
    return seq
