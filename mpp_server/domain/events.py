"""The wallet's event feed (`GET /v1/events`), read in commit-safe order.

Events are ordered by (txid, id) and a reader only sees events whose transaction is
older than the oldest transaction still running (`pg_snapshot_xmin`). Any event that
commits later belongs to a transaction at or above that horizon, so it sorts after
every cursor handed out so far: a reader that follows `next` never misses an event.
"""

from __future__ import annotations

import re

import asyncpg

from mpp_server.errors import ValidationFailed

_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,20})$")
START = "0-0"
# A cursor's parts are an xid8 and a bigint event id; larger numbers are no cursor of
# ours and must not reach the database (a bigint overflow there was a 500).
_MAX_TXID = 2**64 - 1
_MAX_EVENT_ID = 2**63 - 1


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return (0, 0)
    match = _CURSOR.match(cursor)
    if match is None:
        raise ValidationFailed("after must be a cursor returned as `next`")
    txid, event_id = int(match.group(1)), int(match.group(2))
    if txid > _MAX_TXID or event_id > _MAX_EVENT_ID:
        raise ValidationFailed("after must be a cursor returned as `next`")
    return txid, event_id


async def read_after(pool: asyncpg.Pool, cursor: str | None,
                     limit: int) -> tuple[list[asyncpg.Record], str]:
    txid, event_id = parse_cursor(cursor)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, txid::text::numeric AS txid, type, customer_id, payment_id, refund_id,
                      topup_id, amount_tiyn, created_at
               FROM events
               WHERE (txid, id) > ($1::text::xid8, $2)
                 AND txid < pg_snapshot_xmin(pg_current_snapshot())
               ORDER BY txid, id LIMIT $3""", str(txid), event_id, limit)
    if rows:
        last = rows[-1]
        return list(rows), f"{int(last['txid'])}-{last['id']}"
    return [], f"{txid}-{event_id}"
