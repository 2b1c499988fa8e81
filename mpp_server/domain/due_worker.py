"""The background loop the notify outbox, the top-up status poller and the top-up refund
outbox share: read the ids of due rows, most overdue first, attempt each one in its own
task (at most `concurrency` at once, never the same id twice at once), sleep unless the
read was a full batch (a backlog drains without waiting the poll interval), forever.
Each attempt decides itself, under its row's lock, whether the row is still due; a
failed attempt is logged and counted, and the row stays due. Stopping the loop cancels
the attempts in flight: their transactions roll back and the rows wait, untouched, for
the next process.

The webhook sender (webhooks/sender.py) does not use it, on purpose: its deliveries are
claimed a batch at a time by one statement that leases them and counts the attempt
(`webhook_claim`), so the sender makes one round trip per poll however many events are
due (events come one or two per payment; notifications, checks and card refunds are
fewer and each decides under its own row's lock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from mpp_server import db
from mpp_server.db import Conn

log = logging.getLogger(__name__)


async def run_due(pool: asyncpg.Pool, due_sql: str, attempt: Callable[[str], Awaitable[object]],
                  *, what: str, concurrency: int, poll_interval_s: float,
                  each_round: Callable[[Conn], Awaitable[None]] | None = None) -> None:
    """`due_sql` takes the batch size as $1 and returns rows whose first column is the id,
    in due order (ORDER BY the due time); `each_round` runs on the same connection after
    each read (gauges). A failed read or attempt is counted under `what`
    (mpp_db_unavailable_total{where} when the database was away)."""
    batch = concurrency * 4
    sem = asyncio.Semaphore(concurrency)
    in_flight: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def one(row_id: str) -> None:
        try:
            await attempt(row_id)
        except Exception as exc:
            db.background_failure(what, exc)
        finally:
            in_flight.discard(row_id)
            sem.release()

    try:
        while True:
            full = False
            try:
                async with pool.acquire() as conn:
                    due = await conn.fetch(due_sql, batch)
                    if each_round is not None:
                        await each_round(conn)
                full = len(due) >= batch
                for record in due:
                    row_id = record[0]
                    if row_id in in_flight:
                        continue
                    await sem.acquire()
                    in_flight.add(row_id)
                    task = asyncio.create_task(one(row_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            except Exception as exc:  # the database away (a failover), or a bug: go on
                db.background_failure(what, exc)
            if not full:
                await asyncio.sleep(poll_interval_s)
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
