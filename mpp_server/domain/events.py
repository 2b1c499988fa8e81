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
and those for at most EVENTS_HOLD_MS (docs/design.md, "The event feed").

Cursors are the last seq read ("42"). Cursors of the old design, "txid-id", are still
taken: 009_events_publisher numbered the events that existed in (txid, id) order, so
such a cursor stands for the largest seq among the events at or before it.
"""

from __future__ import annotations

import re

import asyncpg

from mpp_server.errors import ValidationFailed

_CURSOR = re.compile(r"^(?:(\d{1,19})|(\d{1,20})-(\d{1,20}))$")
START = "0"
# A seq is a bigint; a legacy cursor's parts an xid8 and a bigint event id. Larger
# numbers are no cursor of ours and must not reach the database (an overflow there
# was a 500).
_MAX_SEQ = 2**63 - 1
_MAX_TXID = 2**64 - 1
_MAX_EVENT_ID = 2**63 - 1
# The most events one publisher call numbers: a read after a long quiet spell catches
# up over a few calls instead of one long statement.
PUBLISH_BATCH = 10_000


def parse_cursor(cursor: str | None) -> int | tuple[int, int]:
    """A seq, or a legacy (txid, event id) pair."""
    if not cursor:
        return 0
    match = _CURSOR.match(cursor)
    if match is None:
        raise ValidationFailed("after must be a cursor returned as `next`")
    if match.group(1) is not None:
        seq = int(match.group(1))
        if seq > _MAX_SEQ:
            raise ValidationFailed("after must be a cursor returned as `next`")
        return seq
    txid, event_id = int(match.group(2)), int(match.group(3))
    if txid > _MAX_TXID or event_id > _MAX_EVENT_ID:
        raise ValidationFailed("after must be a cursor returned as `next`")
    return txid, event_id


async def read_after(pool: asyncpg.Pool, cursor: str | None, limit: int,
                     hold_ms: int) -> tuple[list[asyncpg.Record], str]:
    parsed = parse_cursor(cursor)
    async with pool.acquire() as conn:
        # Its own transaction: the numbers must be committed before they are read.
        await conn.execute("SELECT events_publish($1, $2)", hold_ms, PUBLISH_BATCH)
        if isinstance(parsed, tuple):
            after = await conn.fetchval(
                """SELECT coalesce(max(seq), 0) FROM events
                   WHERE (txid, id) <= ($1::text::xid8, $2) AND seq IS NOT NULL""",
                str(parsed[0]), parsed[1])
        else:
            after = parsed
        rows = await conn.fetch(
            """SELECT id, seq, type, customer_id, payment_id, refund_id, topup_id,
                      amount_tiyn,
                      created_at
               FROM events WHERE seq > $1 ORDER BY seq LIMIT $2""", after, limit)
    if rows:
        return list(rows), str(rows[-1]["seq"])
    return [], str(after)
