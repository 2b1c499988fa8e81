"""The exchange journal (issue 26; docs/operations.md, "Records, retention and roles"):
every exchange with a counterpart is one row of `exchange_journal`: each call to Kaspi
(every notifyPayment attempt), each inbound /refund, each acquirer call and callback,
each webhook delivery attempt.

Each kind of client records in one place, through `Journal.record`: the Kaspi client's
`_call`, the acquirers' `Caller.call`, the refund listener's and the acquiring
listener's middleware. Recording never slows or fails the exchange it records:
`record` only appends to a bounded in-memory queue (full: the row is dropped and
counted); a background task (`start`) writes the queue in batches (COPY) on a pooled
connection of its own, never one held across a call to anyone.

What a crash loses: rows still queued when the process dies without stopping (SIGKILL,
out of memory, power), at most FLUSH_INTERVAL_S of exchanges, or what waited while the
database was away. That is acceptable for a journal: it is the evidence of what was
said, not the money. Every money record (payments, refunds, top-ups, the ledger, the
notify outbox) is written in its own transaction before the call it leads to, and
Kaspi's /refund is also in inbound_requests, written in the refund's own statement. A
stop (SIGTERM, Ctrl-C) writes what is queued before the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from mpp_server import db, redact
from mpp_server.metrics import JOURNAL_LAG, JOURNAL_QUEUE, JOURNAL_ROWS

log = logging.getLogger(__name__)

QUEUE_MAX_ROWS = 20_000
BATCH_ROWS = 1_000
FLUSH_INTERVAL_S = 0.25
# A failed write (the database away) is tried again after this long, doubling.
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
# Bodies are kept whole up to this many characters (Kaspi's and the acquirers' are a
# few hundred bytes); beyond it the end is cut and the cut says so.
MAX_BODY_CHARS = 64 * 1024
CLOSE_TIMEOUT_S = 5.0
COLUMNS = ("occurred_at", "direction", "counterparty", "operation", "target", "payment_id",
           "refund_id", "topup_id", "request_id", "http_status", "transport_error",
           "duration_ms", "request_body", "response_body")


class Direction(StrEnum):
    OUT = "out"   # we called them
    IN = "in"     # they called us


@dataclass(frozen=True)
class Refs:
    """The ids an exchange concerns."""

    payment_id: str | None = None
    refund_id: str | None = None
    topup_id: str | None = None


_CONCERNING: ContextVar[Refs | None] = ContextVar("journal_concerning", default=None)


@contextlib.contextmanager
def concerning(refs: Refs) -> Iterator[None]:
    """The ids the exchanges made inside this block concern (the domain knows the top-up
    an acquirer call is for; the acquirer client does not need to)."""
    token = _CONCERNING.set(refs)
    try:
        yield
    finally:
        _CONCERNING.reset(token)


def concerned() -> Refs:
    return _CONCERNING.get() or Refs()


@dataclass(frozen=True)
class Started:
    """When an exchange began: the wall clock for the row, a monotonic clock for its
    duration."""

    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    perf_s: float = field(default_factory=time.perf_counter)

    def elapsed_ms(self) -> int:
        return max(0, int((time.perf_counter() - self.perf_s) * 1000))


Body = str | bytes | None


@dataclass(frozen=True)
class Exchange:
    direction: Direction
    counterparty: str
    operation: str
    started: Started
    duration_ms: int
    target: str | None = None
    refs: Refs = Refs()
    request_id: str | None = None
    http_status: int | None = None
    transport_error: str | None = None
    request_body: Body = None
    response_body: Body = None
    # Card data or secrets may be in the bodies or the target (acquirers): redacted
    # before writing (mpp_server/redact.py). Kaspi's QR protocol carries neither.
    redact: bool = False


def new_request_id() -> str:
    return uuid.uuid4().hex


def _text(body: Body, limit: int = MAX_BODY_CHARS) -> str | None:
    if body is None:
        return None
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    text = text.replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL
    if len(text) > limit:
        text = text[:limit] + f"...[cut: {len(text) - limit} more characters]"
    return text


def _short(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def row(exchange: Exchange) -> tuple[object, ...]:
    """The journal row, redacted as the exchange asks."""
    request, response, target = (_text(exchange.request_body), _text(exchange.response_body),
                                 _text(exchange.target, 2048))
    if exchange.redact:
        request, response = redact.body(request), redact.body(response)
        target = redact.url(target)
    refs = exchange.refs
    return (exchange.started.at, exchange.direction.value, exchange.counterparty[:32],
            exchange.operation[:64], _short(target, 2048), _short(refs.payment_id, 64),
            _short(refs.refund_id, 64), _short(refs.topup_id, 64),
            _short(exchange.request_id, 64), exchange.http_status,
            _short(exchange.transport_error, 256), exchange.duration_ms, request, response)


class Journal:
    """The recorder one server process shares: `record` from anywhere, `start` its
    writer, `close` at the end."""

    def __init__(self, pool: asyncpg.Pool, max_rows: int = QUEUE_MAX_ROWS) -> None:
        self._pool = pool
        self._max_rows = max_rows
        self._queue: deque[Exchange] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, exchange: Exchange) -> None:
        """Queue the exchange; never blocks, never raises."""
        if len(self._queue) >= self._max_rows:
            JOURNAL_ROWS.labels("queue_full").inc()
            return
        self._queue.append(exchange)
        if len(self._queue) >= BATCH_ROWS:
            self._wake.set()

    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """The background task that writes the queue (until `close`)."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        retry_s = RETRY_INITIAL_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                await self.flush()
                retry_s = RETRY_INITIAL_S
            except Exception as exc:  # the database away: the rows wait, bounded
                db.background_failure("journal", exc)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, RETRY_MAX_S)

    async def flush(self) -> None:
        """Write everything queued now. A batch the database refuses for its content
        (not for being away) is dropped and counted, so one bad row cannot stop the
        journal; a batch that could not be written for the database being away goes
        back to the head of the queue and the error is raised."""
        self._report_lag()
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH_ROWS, len(self._queue)))]
            try:
                await self._write(batch)
            except Exception as exc:
                if db.is_unavailable(exc):
                    self._queue.extendleft(reversed(batch))
                    raise
                JOURNAL_ROWS.labels("write_failed").inc(len(batch))
                log.error("exchange journal: a batch was refused and dropped",
                          exc_info=exc, extra={"rows": len(batch)})
            else:
                JOURNAL_ROWS.labels("written").inc(len(batch))
            self._report_lag()

    async def _write(self, batch: list[Exchange]) -> None:
        rows = [row(exchange) for exchange in batch]
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table("exchange_journal", records=rows,
                                             columns=COLUMNS)

    def _report_lag(self) -> None:
        JOURNAL_QUEUE.set(len(self._queue))
        oldest = self._queue[0].started.at if self._queue else None
        JOURNAL_LAG.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the background task and write what is left (bounded: the database may
        be away; then what is left is lost, and counted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except Exception as exc:
            JOURNAL_ROWS.labels("lost_at_stop").inc(len(self._queue))
            log.warning("exchange journal: rows lost at stop",
                        extra={"rows": len(self._queue), "error": f"{type(exc).__name__}"})
            self._queue.clear()
